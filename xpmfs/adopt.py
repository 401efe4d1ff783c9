"""``xpmfs adopt WS``: take over an experimaestro workspace in place, adding files only.

experimaestro's job folders are xpmfs's already (same identifiers, same ``jobs/<typeid>/<jobid>``);
what they lack is xpmfs's record, ``__xpm__/``. Adoption adds it to each job folder, imports the
experiments' submissions (tags, runs) into xpmfs's journals, and writes ``.xpmfs/format`` last, so
the workspace opens as an xpmfs workspace only once every job was looked at. Every file that
experimaestro wrote stays byte-identical (spec/adopt.md says which files are added, and why none
is changed).

Each job is adopted by one atomic step: its ``__xpm__`` folder is built under a temporary name in
the job folder and renamed into place. A job with ``__xpm__/`` is never touched again, so an
interrupted adoption (Ctrl-C, SIGKILL) run again completes, and a second one changes nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import _atomic, journal
from . import experimaestro_layout as layout
from ._process import pid_alive
from .errors import ConfigError, OptionError, WorkspaceError
from .job import ADOPTED_FILE, SPEC_FILE, XPM_DIR, Job, Spec
from .journal import Journal
from .status import DONE_MARKER, FAILED_MARKER, STATUS_FILE, Reason, State, Status
from .workspace import (
    DEFAULT_LEASE_DURATION,
    DOT_DIR,
    EXPERIMENT_JOURNAL,
    EXPERIMENT_LOCK,
    FORMAT_FILE,
    JOBS_DIR,
    LockMode,
    Workspace,
)

log = logging.getLogger("xpmfs.adopt")

ADOPT_FORMAT = "xpmfs-adopt/1"
#: ``.xpmfs/adopt.lock``: flock-ed by the adoption running (one at a time per workspace).
LOCK_FILE = "adopt.lock"
#: ``.xpmfs/adopted.json``: what the last adoption found (for people; replaced by each one that adopts).
RECORD_FILE = "adopted.json"
#: The folder a job's ``__xpm__`` is built in before it is renamed into place.
BUILDING = ".xpmfs-adopting"

#: What became of a job folder (the report counts these).
CATEGORIES = ("done", "failed", "unfinished", "running", "known", "skipped")

UNFINISHED_MESSAGE = (
    "unfinished when adopted from experimaestro (no .done or .failed, and no live process): "
    "re-run its experiment, or `xpmfs retry` it, to run it again"
)


@dataclass
class Report:
    """What an adoption did (or, with ``dry_run``, would do)."""

    root: Path
    dry_run: bool
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    submissions: int = 0  # experiment submissions imported into xpmfs's journals
    experiments: int = 0  # experiments they belong to
    versions: Counter[str] = field(default_factory=Counter)  # experimaestro versions seen in params.json
    was_adopted: bool = False  # the workspace had .xpmfs/format already
    seconds: float = 0.0

    @property
    def adopted(self) -> int:
        return self.counts["done"] + self.counts["failed"] + self.counts["unfinished"]

    def lines(self) -> list[str]:
        would = "would adopt" if self.dry_run else "adopted"
        versions = ", ".join(f"{version} ({count})" for version, count in sorted(self.versions.items()))
        lines = [
            f"{self.root}: experimaestro workspace" + (f", written by experimaestro {versions}" if versions else ""),
            f"  {would} {self.adopted} jobs: {self.counts['done']} done, {self.counts['failed']} failed, "
            f"{self.counts['unfinished']} unfinished (failed, reason lost: runnable again)",
        ]
        if self.counts["running"]:
            lines.append(
                f"  {self.counts['running']} jobs are being run by experimaestro: left as they are; "
                f"run `xpmfs adopt {self.root}` again once they have ended"
            )
        if self.counts["known"]:
            lines.append(f"  {self.counts['known']} jobs were xpmfs's already (left as they are)")
        if self.counts["skipped"]:
            lines.append(f"  {self.counts['skipped']} folders skipped (see the problems below)")
        lines.append(
            f"  {'would import' if self.dry_run else 'imported'} {self.submissions} submissions "
            f"of {self.experiments} experiments (tags, runs)"
        )
        if self.dry_run:
            lines.append("  nothing was changed (--dry-run)")
        elif self.was_adopted:
            lines.append("  the workspace was an xpmfs workspace already")
        else:
            lines.append(f"  {self.root} is now an xpmfs workspace as well ({self.seconds:.1f}s)")
        if self.problems:
            lines.append(f"problems ({len(self.problems)}):")
            lines.extend(f"  {problem}" for problem in self.problems[:50])
            if len(self.problems) > 50:
                lines.append(f"  ... and {len(self.problems) - 50} more")
        return lines


Progress = Callable[[int, int], None]  # (jobs looked at, jobs in all)


def adopt(
    path: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
    lock_mode: LockMode | str | None = None,
    lease_duration: float | None = None,
) -> Report:
    """Adopt the experimaestro workspace at ``path`` (see the module's documentation).

    ``dry_run``: look at everything, change nothing, and say what would be done. ``progress`` is
    called as jobs are looked at. ``lock_mode`` (and ``lease_duration``): those of the xpmfs
    workspace made (default ``local``); for one adopted already, they must be the recorded ones
    (``None``: whatever is recorded). Raises :class:`WorkspaceError` when ``path`` is no
    experimaestro workspace, or an adoption of it is running already.
    """
    began = time.monotonic()
    root = Path(path).expanduser().absolute()
    report = Report(root, dry_run)
    format_file = root / DOT_DIR / FORMAT_FILE
    report.was_adopted = format_file.exists()
    if not root.is_dir():
        raise WorkspaceError(root, "is not a directory", "give the path of an experimaestro workspace")
    if not report.was_adopted and not layout.is_workspace(root):
        raise WorkspaceError(
            root,
            "is not an experimaestro workspace (no .__experimaestro__, no jobs/<typeid>/<jobid>/params.json)",
            "give the folder experimaestro's experiments used as their workspace",
        )
    if report.was_adopted:
        # Refuses another format, or another lock mode than asked, with its fix.
        workspace = Workspace.open(root, lock_mode=lock_mode, lease_duration=lease_duration)
    else:
        # Created at the end (below); meanwhile, the lock settings the experiments' locks obey.
        if lease_duration is not None and not (
            isinstance(lease_duration, (int, float)) and 0 < lease_duration < math.inf
        ):
            raise OptionError("lease_duration", f"must be a positive number of seconds, not {lease_duration!r}")
        workspace = Workspace(
            root,
            LockMode(lock_mode or LockMode.LOCAL),
            DEFAULT_LEASE_DURATION if lease_duration is None else float(lease_duration),
        )
    lock_fd = None if dry_run else _lock(root)
    try:
        refs = _job_folders(root / JOBS_DIR)
        typeids = {jobid: typeid for typeid, jobid in refs}
        for number, (typeid, jobid) in enumerate(refs, 1):
            category, problem, version = adopt_folder(root, typeid, jobid, typeids, dry_run=dry_run)
            report.counts[category] += 1
            if problem is not None:
                report.problems.append(problem)
            if version is not None:
                report.versions[version] += 1
            if progress is not None:
                progress(number, len(refs))
        _import_experiments(workspace, report)
        if not dry_run and (not report.was_adopted or report.adopted or report.submissions):
            # Last: until this file exists, the workspace is refused with `xpmfs adopt` as the fix.
            Workspace.open(
                root,
                create=True,
                lock_mode=workspace.lock_mode,
                lease_duration=workspace.lease_duration,
                experimaestro_ok=True,
            )
            report.seconds = time.monotonic() - began
            _atomic.write_json(
                root / DOT_DIR / RECORD_FILE,
                {
                    "format": ADOPT_FORMAT,
                    "from": "experimaestro",
                    "adopted": time.time(),
                    "counts": {name: report.counts[name] for name in CATEGORIES},
                    "submissions": report.submissions,
                    "versions": dict(report.versions),
                    "problems": len(report.problems),
                },
            )
    finally:
        if lock_fd is not None:
            os.close(lock_fd)
    report.seconds = time.monotonic() - began
    return report


def _lock(root: Path) -> int:
    (root / DOT_DIR).mkdir(exist_ok=True)
    fd = os.open(root / DOT_DIR / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise WorkspaceError(
                root / DOT_DIR / LOCK_FILE, "another `xpmfs adopt` of this workspace is running", "wait for it to end"
            ) from None
        raise
    return fd


def _job_folders(jobs_dir: Path) -> list[tuple[str, str]]:
    refs: list[tuple[str, str]] = []
    try:
        typeids = sorted(name for name in os.listdir(jobs_dir) if name[:1] != ".")
    except FileNotFoundError:
        return refs
    for typeid in typeids:
        try:
            with os.scandir(jobs_dir / typeid) as entries:
                ids = sorted(entry.name for entry in entries if entry.name[:1] != "." and entry.is_dir())
        except NotADirectoryError:
            continue
        refs.extend((typeid, jobid) for jobid in ids)
    return refs


@contextlib.contextmanager
def progress_bar(stream: IO[str]) -> Iterator[Progress | None]:
    """A rich progress bar on ``stream`` if it is a terminal (else ``None``: nothing is drawn)."""
    if not stream.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    with Bar("adopting", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(file=stream)) as bar:
        task = bar.add_task("adopting", total=None)
        last = 0.0

        def update(done: int, total: int) -> None:
            nonlocal last
            now = time.monotonic()
            if now - last >= 0.1 or done == total:  # rich's update costs ~10 µs: not once per job
                last = now
                bar.update(task, completed=done, total=total)

        yield update


# -- one job ---------------------------------------------------------------------------------------


def adopt_folder(
    root: Path,
    typeid: str,
    jobid: str,
    typeids: dict[str, str] | None = None,
    *,
    dry_run: bool = False,
    spec: Spec | None = None,
) -> tuple[str, str | None, str | None]:
    """Adopt one job folder; return its category (:data:`CATEGORIES`), a problem and the
    experimaestro version that wrote it (each ``None`` if there is none).

    ``spec``: the spec an xpmfs submission of this job has (then ``params.json`` is not read, and
    the spec is final, not provisional).
    """
    folder = f"{root}/{JOBS_DIR}/{typeid}/{jobid}"
    xpm_dir = f"{folder}/{XPM_DIR}"
    if os.path.lexists(xpm_dir):
        return "known", None, None
    if not os.path.isfile(f"{folder}/{layout.PARAMS_FILE}"):
        return "skipped", f"{folder}: has neither __xpm__/ nor params.json: not a job of xpmfs or experimaestro", None
    name = layout.task_name(typeid)
    outcome = layout.outcome(folder, name)
    if outcome.state is None:
        live = layout.live_process(folder, name)
        if live is not None:
            return "running", f"{folder}: being run by experimaestro ({live}): left as it is", None
    category = outcome.state or "unfinished"
    problem = version = None
    record: dict[str, Any]
    if spec is not None:
        record = spec.to_json()
    else:
        try:
            params = layout.read_params(folder, root, typeids)
            config, dependencies, version = params.config, params.dependencies, params.experimaestro
        except ConfigError as error:
            config, dependencies = None, ()
            problem = f"{folder}: adopted without its configuration: {error}"
        try:
            submitted = os.stat(f"{folder}/{layout.PARAMS_FILE}").st_mtime
        except OSError:
            submitted = 0.0
        record = Spec(
            typeid=typeid,
            jobid=jobid,
            config=config,  # type: ignore[arg-type]
            dependencies=dependencies,
            python=sys.executable,
            submitted=submitted,
            provisional=True,
        ).to_json()
    if dry_run:
        return category, problem, version
    _build(folder, xpm_dir, record, _first_status(outcome), version, bulk=spec is None)
    return category, problem, version


def _first_status(outcome: layout.Outcome) -> Status:
    now = time.time()
    if outcome.state == "done":
        ended = outcome.ended or now
        return Status(State.DONE, attempt=1, updated=ended, ended=ended, message="adopted from experimaestro")
    if outcome.state == "failed":
        ended = outcome.ended or now
        return Status(
            State.FAILED,
            attempt=1,
            updated=ended,
            ended=ended,
            exit_code=outcome.exit_code,
            reason=Reason(outcome.reason),
            message=outcome.message,
        )
    return Status(State.FAILED, attempt=1, updated=now, ended=now, reason=Reason.LOST, message=UNFINISHED_MESSAGE)


def _build(folder: str, xpm_dir: str, spec: dict[str, Any], first: Status, version: str | None, *, bulk: bool) -> None:
    """Build ``__xpm__`` whole in a :data:`BUILDING` folder, then rename it into place (one atomic step).

    The bulk adoption (one at a time: its lock) builds in ``.xpmfs-adopting`` and first removes
    what an interrupted one left; a submission adopting one job builds in a folder named with its
    pid. When both adopt the same job at once, the first rename wins and the other finds
    ``__xpm__`` in place.
    """
    if bulk:
        clean_debris(folder)
        building = f"{folder}/{BUILDING}"
    else:
        building = f"{folder}/{BUILDING}.{os.getpid()}.{os.urandom(4).hex()}"
    try:
        os.mkdir(building)
        adopted = {"format": ADOPT_FORMAT, "from": "experimaestro", "experimaestro": version, "adopted": time.time()}
        _atomic.write_new(f"{building}/{ADOPTED_FILE}", _atomic.dumps(adopted))
        _atomic.write_new(f"{building}/{SPEC_FILE}", _atomic.dumps(spec))
        _atomic.write_new(f"{building}/{STATUS_FILE}", _atomic.dumps(first.to_json()))
        os.utime(f"{building}/{STATUS_FILE}", (first.updated, first.updated))  # listings date a marker by it
        if first.state.terminal:
            marker = DONE_MARKER if first.state is State.DONE else FAILED_MARKER
            os.link(f"{building}/{STATUS_FILE}", f"{building}/{marker}")
        os.rename(building, xpm_dir)
    except OSError as error:
        shutil.rmtree(building, ignore_errors=True)
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
            return  # adopted meanwhile (a submission of the same job)
        raise _atomic.write_error(xpm_dir, error) from error


def clean_debris(folder: str) -> None:
    """Remove what interrupted adoptions left in the job ``folder``: the bulk adoption's
    :data:`BUILDING` folder, and those of submissions whose process is gone."""
    try:
        names = [name for name in os.listdir(folder) if name.startswith(BUILDING)]
    except OSError:
        return
    for name in names:
        pid = name[len(BUILDING) + 1 :].partition(".")[0]
        if name != BUILDING and pid.isdigit() and pid_alive(int(pid)):
            continue
        shutil.rmtree(f"{folder}/{name}", ignore_errors=True)


# -- submissions of an xpmfs experiment ------------------------------------------------------------


def adopt_for_submission(job: Job, spec: Spec) -> None:
    """Adopt ``job``'s folder if experimaestro created it, before an xpmfs experiment submits it.

    Called by the experiment when the folder exists without ``__xpm__/spec.json``; it is
    experimaestro's when it holds ``params.json`` (a job experimaestro ran after the workspace was
    adopted). Raises :class:`WorkspaceError` if experimaestro is running it now.
    """
    if not os.path.exists(f"{os.fspath(job)}/{layout.PARAMS_FILE}"):
        return  # xpmfs's own (a crash half-way through a submission): nothing to adopt
    category, _problem, _version = adopt_folder(job.workspace.path, job.ref.typeid, job.ref.jobid, spec=spec)
    if category == "running":
        name = layout.task_name(job.ref.typeid)
        raise WorkspaceError(
            job.path,
            f"is being run by experimaestro ({layout.live_process(os.fspath(job), name) or 'it holds its lock'})",
            "wait until it has ended, then run the experiment again (xpmfs then adopts its outcome)",
        )


def run_by_experimaestro(job: Job) -> str | None:
    """Why experimaestro may be running the adopted ``job`` now, or ``None``.

    Asked by a worker's claim (xpmfs.lifecycle), for adopted folders only: experimaestro does not
    know xpmfs's lock, so its lock file and its pid file (:func:`experimaestro_layout.live_process`)
    are what tells. Logged once per job and process while it lasts.
    """
    folder = os.fspath(job)
    why = layout.live_process(folder, layout.task_name(job.ref.typeid))
    if why is None:
        _told.discard(folder)
    elif folder not in _told:
        _told.add(folder)
        log.warning("%s is being run by experimaestro (%s): left queued until it has ended", folder, why)
    return why


_told: set[str] = set()  # the jobs run_by_experimaestro has reported (it says so once)


def mirror_done(job: Job) -> None:
    """Add experimaestro's ``<name>.done`` (empty, as experimaestro writes it) to the adopted
    ``job``'s folder, which an xpmfs attempt ended done: experimaestro, run again on the workspace,
    then does not run it again (it reads only its own markers). Created only where there is none
    (``O_EXCL``: never an existing file, experimaestro's or not); a failure is logged, not raised
    (xpmfs's own marker is the record)."""
    path = f"{os.fspath(job)}/{layout.task_name(job.ref.typeid)}.done"
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except FileExistsError:
        pass
    except OSError as error:
        log.warning("%s: cannot be created (%s): experimaestro would run this job again", path, error.strerror)


# -- experiments -----------------------------------------------------------------------------------


def _import_experiments(workspace: Workspace, report: Report) -> None:
    """Append each experimaestro submission not imported yet to ``experiments/<name>/jobs.jsonl``.

    The journal's single writer is whoever holds xpmfs's experiment lock (``xpmfs.lock``, in the
    workspace's lock mode): an xpmfs run of the experiment, or this. experimaestro's ``lock`` is
    flock-ed as well (without writing it), so that a run of experimaestro's does not add lines to
    its run journal while they are read. A running experiment is skipped, and imported next time.
    """
    from .lock import JobLock  # filelock: only where a lock is taken

    experiments_dir = workspace.experiments_dir
    try:
        names = sorted(entry.name for entry in os.scandir(experiments_dir) if entry.is_dir() and entry.name[:1] != ".")
    except FileNotFoundError:
        return
    for name in names:
        folder = experiments_dir / name
        found = list(layout.submissions(folder))
        if not found:
            continue
        new = _not_imported(folder, found)
        if not new:
            continue
        if report.dry_run:
            report.submissions += len(new)
            report.experiments += 1
            continue
        fd = layout.experiment_lock(folder)
        lock = JobLock(folder / EXPERIMENT_LOCK, workspace.lock_mode, lease_duration=workspace.lease_duration)
        if fd is None or not lock.try_acquire():
            if fd is not None:
                os.close(fd)
            who = "experimaestro's lock" if fd is None else EXPERIMENT_LOCK
            report.problems.append(
                f"{folder}: the experiment is running ({who} is held): its {len(new)} submissions "
                "are imported by the next `xpmfs adopt`"
            )
            continue
        try:
            found = list(layout.submissions(folder))  # under experimaestro's lock: complete runs
            new = _not_imported(folder, found)  # under xpmfs's: an xpmfs run may have written meanwhile
            with Journal(folder / EXPERIMENT_JOURNAL) as writer:
                for submission in new:
                    writer.append(
                        {
                            "job": submission.job,
                            "run": submission.run,
                            "tags": submission.tags,
                            "submitted": submission.submitted,
                            "from": "experimaestro",
                        }
                    )
        finally:
            lock.release()
            os.close(fd)
        if new:
            report.submissions += len(new)
            report.experiments += 1


def _not_imported(folder: Path, found: list[layout.Submission]) -> list[layout.Submission]:
    seen = {(record.get("run"), record.get("job")) for _offset, record in journal.read(folder / EXPERIMENT_JOURNAL)}
    return [submission for submission in found if (submission.run, submission.job) not in seen]


__all__ = [
    "CATEGORIES",
    "Report",
    "adopt",
    "adopt_folder",
    "adopt_for_submission",
    "mirror_done",
    "run_by_experimaestro",
]
