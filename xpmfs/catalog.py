"""Reading a workspace's jobs for people: listing, naming a job, following its output.

Nothing here writes. :func:`list_jobs` walks ``WS/jobs/<typeid>/<jobid>/`` and reads, per job,
what a scanner reads anyway (the terminal markers, then ``status.json``, which a brief listing
skips for done jobs); it parses no spec. Tags
and experiment membership come from the experiments' journals (``jobs.jsonl``), each read once.

A job's state as shown is what is on disk, with one precedence rule: a terminal marker wins over
``status.json``, because the marker is written last when a job ends and a crash between the two
writes leaves the status behind, never the marker (see :func:`xpmfs.status.transition`). A job
whose status says it is running (or handed to a scheduler) while nobody holds its lock is still
shown as such, with ``stale=True``: ``xpmfs check --fix`` (or the next worker) hands it back.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson

from . import journal, queue, status
from ._tagvalue import tag_matches
from .errors import CorruptedError, JobNotFoundError, WorkspaceError
from .job import Job, Spec
from .progress import Progress
from .progress import read as read_progress
from .queue import JobRef
from .status import Reason, State, Status
from .workspace import DOT_DIR, EXPERIMENT_JOURNAL, FORMAT_FILE, JOBS_DIR, QUEUE_DIR, Workspace

if TYPE_CHECKING:
    from .lock import Holder

#: States whose record claims that a process holds the job's lock: stale without a lock holder.
#: (``submitted`` is not one: a cluster job waits in its scheduler's queue without the lock, and
#: the worker following it records ``lost`` when the scheduler forgets it.)
LIVE_STATES = frozenset({State.RUNNING})
#: How many candidates an "ambiguous prefix" error names before it says "...".
MAX_CANDIDATES = 10


@dataclass(frozen=True)
class JobInfo:
    """One job as ``xpmfs ls`` shows it.

    ``state`` is ``None`` when the job has no status yet (its submission was interrupted before the
    status was written) or its ``status.json`` is damaged; ``problem`` then says which.
    """

    ref: JobRef
    folder: str  # the job's folder (``path`` as text: a listing makes one per job, and Path is slow)
    state: State | None
    status: Status | None  # the content of status.json (None: missing or damaged)
    reason: Reason | str | None = None  # why it failed (from the ``failed`` marker first)
    message: str | None = None
    stale: bool = False  # the status says running, but nobody holds the lock
    queued: bool = False  # a queue entry exists
    tags: Mapping[str, Any] = field(default_factory=dict)
    experiments: tuple[str, ...] = ()
    problem: str | None = None  # why the state could not be read
    progress: Progress | None = None  # what the current attempt last reported (see job_info)
    #: When the job last changed state: ``status.json``'s ``updated``, or, for a done job listed
    #: briefly (its ``status.json`` unread), the time of its ``done`` marker; ``None`` if unknown.
    updated: float | None = None

    @property
    def path(self) -> Path:
        """The job's folder, ``WS/jobs/<typeid>/<jobid>``."""
        return Path(self.folder)

    @property
    def label(self) -> str:
        """The state as one word for people: ``running``, ``failed``, ``unknown``..."""
        return self.state.value if self.state is not None else "unknown"

    def to_json(self) -> dict[str, Any]:
        """The record ``xpmfs ls --json`` prints (one per line); every value is plain JSON."""
        reason = self.reason.value if isinstance(self.reason, Reason) else self.reason
        return {
            "job": self.ref.relpath,
            "typeid": self.ref.typeid,
            "jobid": self.ref.jobid,
            "path": self.folder,
            "state": self.state.value if self.state is not None else None,
            "stale": self.stale,
            "queued": self.queued,
            "reason": reason,
            "message": self.message,
            "tags": dict(self.tags),
            "experiments": list(self.experiments),
            "status": self.status.to_json() if self.status is not None else None,
            "problem": self.problem,
            "progress": self.progress.to_json() if self.progress is not None else None,
        }


# -- experiments' journals -------------------------------------------------------------------


@dataclass(frozen=True)
class Membership:
    """What the experiments' journals say about one job: its tags and the experiments that submitted it."""

    tags: dict[str, Any]
    experiments: tuple[str, ...]


def memberships(ws: Workspace) -> dict[str, Membership]:
    """For every job named in an experiment journal (by ``<typeid>/<jobid>``), its tags and experiments.

    A job submitted several times keeps the tags of its latest submission (journals are read in
    submission order) merged over earlier ones.
    """
    tags: dict[str, dict[str, Any]] = {}
    experiments: dict[str, list[str]] = {}
    try:
        names = sorted(entry.name for entry in os.scandir(ws.experiments_dir) if entry.is_dir())
    except FileNotFoundError:
        names = []
    records: list[tuple[float, str, dict[str, Any]]] = []
    for name in names:
        if name.startswith("."):
            continue
        for _offset, record in journal.read(ws.experiment_path(name) / EXPERIMENT_JOURNAL):
            relpath = record.get("job")
            if not isinstance(relpath, str):
                continue  # a line from a newer writer we do not understand: skip it, do not fail
            when = record.get("submitted")
            records.append((when if isinstance(when, (int, float)) else 0.0, name, record))
    for _when, name, record in sorted(records, key=lambda item: item[0]):
        relpath = record["job"]
        record_tags = record.get("tags")
        if isinstance(record_tags, dict):
            tags.setdefault(relpath, {}).update(record_tags)
        names_of_job = experiments.setdefault(relpath, [])
        if name not in names_of_job:
            names_of_job.append(name)
    return {relpath: Membership(tags.get(relpath, {}), tuple(sorted(names))) for relpath, names in experiments.items()}


def tag_text(value: Any) -> str:
    """A tag value as ``--tag k=v`` compares it: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return str(value)


# -- the jobs --------------------------------------------------------------------------------


def iter_refs(ws: Workspace, typeid: str | None = None) -> Iterator[JobRef]:
    """Every job folder of the workspace (or of one type), as a reference; no file is opened.

    Names starting with ``.`` are skipped: they are temporary files and the ``.trash-*`` folders
    that :func:`xpmfs.control.clean` removes.
    """
    try:
        typeids = [typeid] if typeid is not None else sorted(os.listdir(ws.jobs_dir))
    except FileNotFoundError:
        return
    for name in typeids:
        if name.startswith("."):
            continue
        try:
            with os.scandir(ws.jobs_dir / name) as entries:
                jobids = sorted(entry.name for entry in entries if entry.is_dir() and not entry.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for jobid in jobids:
            yield JobRef(name, jobid)


def job_info(
    job: Job,
    membership: Membership | None = None,
    *,
    queued: bool | None = None,
    with_progress: bool = False,
    brief: bool = False,
) -> JobInfo:
    """What is on disk about ``job``: marker first, then ``status.json``; probes the lock only if needed.

    ``progress.json`` is read for a running job, or for any job with ``with_progress`` (``show``):
    a listing of thousands of ended jobs does not pay one more read each. ``brief`` skips
    ``status.json`` for a done job, whose marker tells its state and its time: most of a big
    workspace is done jobs, and the marker's ``stat`` is one system call where the status is four.
    """
    found = job.marker_stat()
    marker = found[0] if found is not None else None
    problem = None
    if brief and marker is State.DONE:
        current = None
    else:
        try:
            current = job.status()
        except CorruptedError as error:
            current, problem = None, str(error)
    state = marker if marker is not None else (current.state if current is not None else None)
    if state is None and problem is None and current is None:
        problem = "no status: its submission was interrupted (re-run its experiment, or `xpmfs retry`)"
    reason: Reason | str | None = None
    message = None
    if marker is State.FAILED:
        failure = status.read_failure(job.xpm_dir)
        reason = _reason(failure.get("reason"))
        message = failure.get("message")
    elif current is not None:
        reason, message = current.reason, current.message
    stale = False
    if marker is None and current is not None and current.state in LIVE_STATES:
        # Only here do we touch the lock: a probe costs a syscall (or a read, in shared mode).
        stale = not job.lock().probe()
    if queued is None:
        queued = queue.contains(job.workspace.queue_dir, job.ref)
    membership = membership or Membership({}, ())
    reported = None
    if with_progress or (marker is None and current is not None and current.state is State.RUNNING):
        reported = current_progress(job, current)
    return JobInfo(
        ref=job.ref,
        folder=os.fspath(job),
        state=state,
        status=current,
        reason=reason,
        message=message,
        stale=stale,
        queued=queued,
        tags=membership.tags,
        experiments=membership.experiments,
        problem=problem,
        progress=reported,
        updated=current.updated if current is not None else found[1].st_mtime if found is not None else None,
    )


def current_progress(job: Job, current: Status | None) -> Progress | None:
    """The progress the job's current (or last) attempt reported, ``None`` if it reported none.

    ``progress.json`` survives retries (the job folder is kept): one older than the attempt's
    start (``status.json``'s ``started``, written by the same process, so on the same clock) was
    left by an earlier attempt and is ignored.
    """
    reported = read_progress(job.path)
    if reported is None:
        return None
    if current is not None and current.started is not None and reported.updated < current.started:
        return None
    return reported


def _reason(value: Any) -> Reason | str | None:
    if value is None:
        return None
    try:
        return Reason(value)
    except ValueError:
        return str(value)  # a reason from a newer xpmfs: show it as written


def list_jobs(
    ws: Workspace,
    state: State | str | None = None,
    experiment: str | None = None,
    tags: Mapping[str, str] | None = None,
    brief: bool = False,
) -> list[JobInfo]:
    """The workspace's jobs, sorted by type then id, filtered by state, experiment and tags.

    ``tags`` match by value (see :func:`xpmfs._tagvalue.tag_matches`): ``{"lr": "1e-4"}`` selects jobs
    tagged ``lr=0.0001``.
    ``state="unknown"`` selects jobs whose state cannot be read. ``brief``: done jobs come without
    their ``status.json`` (see :func:`job_info`).
    """
    wanted_state = None if state is None else (state.value if isinstance(state, State) else str(state))
    tags = dict(tags or {})
    member = memberships(ws)
    if experiment is not None and not ws.experiment_path(experiment).is_dir():
        raise WorkspaceError(
            ws.experiment_path(experiment),
            f"no experiment {experiment!r} in this workspace",
            "list them with `ls " + str(ws.experiments_dir) + "`",
        )
    # One listing of the queue instead of one stat per job.
    queued = set(queue.refs(ws.queue_dir))
    infos = []
    for ref in iter_refs(ws):
        membership = member.get(ref.relpath)
        if experiment is not None and (membership is None or experiment not in membership.experiments):
            continue
        if tags:
            have = membership.tags if membership is not None else {}
            if any(key not in have or not tag_matches(have[key], value) for key, value in tags.items()):
                continue
        info = job_info(Job(ws, ref), membership, queued=ref in queued, brief=brief)
        if wanted_state is not None and info.label != wanted_state:
            continue
        infos.append(info)
    return infos


@dataclass(frozen=True)
class JobDetails:
    """Everything ``xpmfs show`` prints about one job."""

    info: JobInfo
    spec: Spec | None
    spec_problem: str | None  # why the spec cannot be read
    dependencies: tuple[tuple[JobRef, str], ...]  # each dependency and its state label
    holder: Holder | None  # who holds the job's lock (None: free)
    cancel_requested: bool
    stdout: Path
    stderr: Path
    script: Path
    last_line: str | None = None  # the last line the job printed (see last_log_line)

    def to_json(self) -> dict[str, Any]:
        """The record ``xpmfs show --json`` prints: the ``ls --json`` record plus the details."""
        record = self.info.to_json()
        record.update(
            {
                "dependencies": [{"job": ref.relpath, "state": label} for ref, label in self.dependencies],
                "launcher": self.spec.launcher if self.spec is not None else None,
                "max_retries": self.spec.max_retries if self.spec is not None else None,
                "resumable": self.spec.resumable if self.spec is not None else None,
                "submitted": self.spec.submitted if self.spec is not None else None,
                "spec_problem": self.spec_problem,
                "lock_holder": (
                    {"host": self.holder.host, "pid": self.holder.pid, "since": self.holder.since}
                    if self.holder is not None
                    else None
                ),
                "cancel_requested": self.cancel_requested,
                "stdout": str(self.stdout),
                "stderr": str(self.stderr),
                "script": str(self.script),
                "last_line": self.last_line,
            }
        )
        return record


def details(job: Job) -> JobDetails:
    """All that is known of ``job``: its :class:`JobInfo`, spec, dependencies' states and lock holder."""
    membership = memberships(job.workspace).get(job.ref.relpath)
    info = job_info(job, membership, with_progress=True)
    spec: Spec | None = None
    spec_problem = None
    try:
        spec = job.read_spec()
    except CorruptedError as error:
        spec_problem = str(error)
    dependencies = []
    for relpath in spec.dependencies if spec is not None else ():
        ref = JobRef.from_relpath(relpath)
        dependency = Job(job.workspace, ref)
        label = job_info(dependency).label if dependency.path.is_dir() else "missing"
        dependencies.append((ref, label))
    return JobDetails(
        info=info,
        spec=spec,
        spec_problem=spec_problem,
        dependencies=tuple(dependencies),
        holder=job.lock().holder(),
        cancel_requested=job.cancel_path.exists(),
        stdout=job.stdout_path,
        stderr=job.stderr_path,
        script=job.script_path,
        last_line=last_log_line(job),
    )


# -- naming a job ----------------------------------------------------------------------------


def find_workspace(start: Path) -> Path | None:
    """The workspace that ``start`` is in (the nearest folder upwards holding ``.xpmfs/format``)."""
    for folder in (start, *start.parents):
        if (folder / DOT_DIR / FORMAT_FILE).is_file():
            return folder
    return None


def _looks_like_path(name: str) -> bool:
    # A ``typeid/idprefix`` has exactly one "/" and type ids never start with "." or "~".
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def find_job(ws: Workspace | None, name: str) -> Job:
    """The job that ``name`` designates; raise :class:`JobNotFoundError` saying how to name it.

    ``name`` is, in this order of preference:

    * a path that exists: the job's folder, any file or folder inside it (its ``<name>.py``,
      ``__xpm__/status.json``...) or its queue entry; the workspace is derived from the path
      (``WS/jobs/<typeid>/<jobid>``), so ``ws`` may be ``None``;
    * ``<typeid>/<idprefix>``;
    * an id prefix, unique among all the workspace's jobs.

    Without ``ws``, a prefix is looked up in the workspace the current directory is in.
    """
    if not name:
        raise JobNotFoundError(name, ws.path if ws else Path.cwd(), "an empty job name matches nothing")
    candidate = Path(name).expanduser()
    if candidate.exists():
        return _job_from_path(candidate.absolute(), name)
    if _looks_like_path(name):
        raise JobNotFoundError(name, ws.path if ws else Path.cwd(), "no such file or folder")
    if ws is None:
        root = find_workspace(Path.cwd())
        if root is None:
            raise WorkspaceError(
                Path.cwd(),
                f"cannot look up job {name!r}: no workspace given and the current folder is in none",
                "give the workspace with --workspace WS (or XPMFS_WORKSPACE=WS), or name the job by its folder",
            )
        ws = Workspace.open(root)
    typeid, sep, prefix = name.rpartition("/")
    matches = [ref for ref in iter_refs(ws, typeid if sep else None) if ref.jobid.startswith(prefix)]
    if not matches:
        raise JobNotFoundError(name, ws.path)
    if len(matches) > 1:
        shown = ", ".join(ref.relpath for ref in matches[:MAX_CANDIDATES])
        more = f" and {len(matches) - MAX_CANDIDATES} more" if len(matches) > MAX_CANDIDATES else ""
        raise JobNotFoundError(
            name,
            ws.path,
            f"is ambiguous: it matches {len(matches)} jobs ({shown}{more}); give more characters of the id",
        )
    return Job(ws, matches[0])


#: How many names shell completion offers at most.
MAX_COMPLETIONS = 200


def complete_job(workspace: str | None, incomplete: str) -> list[str]:
    """Names that complete ``incomplete`` as a JOB (shell completion); never raises.

    The workspace is ``workspace``, else ``XPMFS_WORKSPACE``, else the one the current folder is
    in. ``<typeid>/<prefix>`` completes ids of that type; a bare prefix completes full ids, and
    type ids as ``<typeid>/`` (so that typing on narrows by type).
    """
    root = workspace or os.environ.get("XPMFS_WORKSPACE") or find_workspace(Path.cwd())
    if root is None:
        return []
    try:
        ws = Workspace.open(root)
        typeid, sep, prefix = incomplete.rpartition("/")
        if sep:
            return [ref.relpath for ref in iter_refs(ws, typeid) if ref.jobid.startswith(prefix)][:MAX_COMPLETIONS]
        names = sorted(
            {ref.jobid for ref in iter_refs(ws) if ref.jobid.startswith(incomplete)}
            | {name + "/" for name in os.listdir(ws.jobs_dir) if name.startswith(incomplete) and name[:1] != "."}
        )
        return names[:MAX_COMPLETIONS]
    except (OSError, WorkspaceError):
        return []


def _job_from_path(path: Path, name: str) -> Job:
    for folder in (path, *path.parents):
        jobs_dir = folder.parent.parent
        if jobs_dir.name == JOBS_DIR and (jobs_dir.parent / DOT_DIR / FORMAT_FILE).is_file():
            if folder.name.startswith("."):
                break  # a .trash-* folder being removed: not a job
            return Job(Workspace.open(jobs_dir.parent), JobRef(folder.parent.name, folder.name))
        if folder.parent.name == QUEUE_DIR and (folder.parent.parent / DOT_DIR / FORMAT_FILE).is_file():
            ref = JobRef.from_entry_name(folder.name)
            if ref is not None:
                return Job(Workspace.open(folder.parent.parent), ref)
    root = find_workspace(path)
    raise JobNotFoundError(
        name,
        root if root is not None else path,
        "is not a job: give its folder WS/jobs/<typeid>/<jobid>, a file in it, or an id prefix",
    )


# -- output ----------------------------------------------------------------------------------

Stream = Literal["out", "err"]


def log_path(job: Job, stream: Stream = "out") -> Path:
    """The file holding the job's standard output (``out``) or error (``err``)."""
    path = job.stderr_path if stream == "err" else job.stdout_path
    if job.adopted and not path.exists():
        # Adopted from experimaestro and not run by xpmfs since: experimaestro's <name>.out/.err.
        return job.path / f"{job.name}.{stream}"
    return path


def read_log(
    job: Job,
    stream: Stream = "out",
    *,
    follow: bool = False,
    poll: float = 0.2,
    chunk_size: int = 1 << 16,
) -> Iterator[bytes]:
    """The job's output, in chunks; with ``follow``, keep reading until the job has ended.

    Following stops once a terminal marker exists and everything written before it was read. A
    plain loop with short waits rather than inotify: the job may write from another NFS client,
    whose writes raise no event here (DESIGN invariant 5). A file that shrinks was restarted by
    a new attempt (non-resumable jobs truncate it): reading starts over.
    """
    path = log_path(job, stream)
    if not follow and not path.exists():
        raise WorkspaceError(
            path,
            "does not exist: the job has not started yet",
            f"follow it with `xpmfs log -f {job.path}`",
        )
    offset = 0
    while True:
        # Look for the marker *before* reading: whatever the job wrote before it ended is then read.
        ended = job.marker() is not None
        try:
            with open(path, "rb") as file:
                if os.fstat(file.fileno()).st_size < offset:
                    offset = 0
                file.seek(offset)
                while data := file.read(chunk_size):
                    offset += len(data)
                    yield data
        except FileNotFoundError:
            pass
        if not follow or ended:
            return
        time.sleep(poll)


#: How much of the end of an output file :func:`last_log_line` reads.
TAIL_BYTES = 4096
#: How long a line :func:`last_log_line` returns, at most (the rest is cut, with "...").
MAX_LINE = 300
_ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|[@-Z\\-_])")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def last_line(path: Path) -> str | None:
    """The last non-blank line of the file ``path``, reading only its last :data:`TAIL_BYTES`.

    A carriage return ends a line too (a progress bar redraws itself with ``\\r``). Terminal escape
    sequences and control characters are removed: the line is shown in someone else's terminal.
    ``None`` if the file is missing or holds no text.
    """
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            stream.seek(max(0, size - TAIL_BYTES))
            data = stream.read(TAIL_BYTES)
    except OSError:
        return None
    for line in reversed(re.split(rb"[\r\n]", data)):
        text = _CONTROLS.sub("", _ESCAPES.sub("", line.decode("utf-8", errors="replace"))).strip()
        if text:
            return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."
    return None


def last_log_line(job: Job) -> str | None:
    """The last line the job printed: from ``<name>.out`` or ``<name>.err``, whichever changed last."""
    candidates = []
    for path in (log_path(job, "out"), log_path(job, "err")):
        try:
            candidates.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    for _mtime, path in sorted(candidates, key=lambda item: item[0], reverse=True):
        text = last_line(path)
        if text is not None:
            return text
    return None
