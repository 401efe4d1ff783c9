"""``xpmfs check [--fix]``: find (and repair) what crashes leave behind in a workspace.

Every step of xpmfs is ordered so that a crash between two writes leaves a state that a rescan
completes (DESIGN invariant 4); this module names those states, one :class:`Problem` each, and
with ``fix=True`` completes them the way a worker would, under the job's lock. It touches nothing
but what it reports, and never deletes a job: a spec that does not hash to its folder is reported
only, because the code that defines the task may have changed since, not the spec.

Things being written right now look like leftovers for a moment (a temporary file before its
rename, a spec before its queue entry). They are reported only once older than :data:`GRACE`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import _atomic, catalog, heartbeat, lifecycle, queue, status
from .errors import CorruptedError, FormatError
from .job import TRASH_PREFIX, Job, Spec
from .lock import LockMode, LockStatus
from .lock import inspect as lock_inspect
from .queue import JobRef
from .rehash import rehash
from .status import State
from .trust import Trust
from .workspace import EXPERIMENT_RUNS, Workspace

#: Seconds after which an unfinished write (temp file, spec without status or entry) is a leftover.
GRACE = 60.0
#: Slack added to ``lease_duration`` when waiting for other hosts' leases to prove expired.
LEASE_MARGIN = 0.1
#: A damaged ``status.json`` is kept under this suffix when ``--fix`` rewrites it, for a person to read.
DAMAGED_SUFFIX = ".damaged"

Kind = Literal[
    "stale-lock",  # status running, no terminal marker, nobody alive holds the lock
    "blocked-lock",  # a shared-mode lock marker no process will take over (unreadable, other lease): rm it
    "empty-lock",  # an empty shared-mode lease marker (its creator died writing it); taken over in time
    "orphan-entry",  # a queue entry whose job folder or spec is missing
    "finished-entry",  # a queue entry for a job that has a terminal marker
    "unknown-entry",  # a file in queue/ that names no job
    "spec-mismatch",  # the spec does not hash to its folder (or names another folder)
    "unverifiable-spec",  # the spec's task cannot be loaded here, so its hash cannot be checked
    "damaged-spec",  # spec.json missing or unreadable
    "damaged-status",  # status.json unreadable
    "not-queued",  # spec without queue entry and without terminal marker
    "temp-file",  # a .tmp-* file left by a writer that died before its rename
    "trash",  # a .trash-* folder left by a clean that died before deleting it
    "temp-folder",  # a .tmp-* job folder left by a submission that died before renaming it into place
    "stale-worker",  # a worker registration whose worker is dead
    "stale-cancel",  # a cancel request left on a job that is not running: it would kill the next run
    "contradictory-outcome",  # both markers, a marker disagreeing with status.json, or an attempt gone back
    "untrusted-spec",  # a job's spec.json or <name>.py owned by a user not trusted: no worker of ours runs it
]


@dataclass(frozen=True)
class Problem:
    """One inconsistency: where, what kind, in words, and whether ``check(fix=True)`` repaired it.

    ``severity`` is ``warning`` for what may well be fine (a spec whose task cannot be imported
    here): warnings do not make ``xpmfs check`` exit 1.
    """

    path: Path
    kind: Kind
    message: str
    fix_applied: bool = False
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.kind}: {self.message}" + (" [fixed]" if self.fix_applied else "")


def check(
    ws: Workspace,
    fix: bool = False,
    *,
    verify: bool = True,
    lease_wait: bool = True,
    notify: Callable[[str], None] | None = None,
    trust_users: Iterable[str | int] = (),
) -> list[Problem]:
    """Every inconsistency of the workspace; with ``fix``, repaired where that is safe.

    ``verify``: also load each spec's task to check that it hashes to its folder (this imports the
    tasks' modules, from the import path each spec recorded).

    ``lease_wait`` (``shared`` lock mode only): a running job whose lease belongs to another host
    can only be proven abandoned by watching its lease go unrefreshed for ``lease_duration``
    seconds (see :func:`xpmfs.lock.inspect`); if there are such jobs, wait that long once and look
    again. ``notify`` is told, in a sentence, before that wait.

    ``trust_users``: users (names or uids) trusted besides the one running this, as a worker given
    them with ``--trust-user`` would (xpmfs.trust): a job whose spec or script anyone else owns
    is reported (``untrusted-spec``), never touched, and its task never imported to verify it.
    """
    trust = Trust.of(trust_users)
    now = time.time()
    problems: list[Problem] = []
    problems += _check_workers(ws, fix)
    problems += _check_queue(ws, fix)
    queued = set(queue.refs(ws.queue_dir))
    remote: list[Job] = []  # running on another host, as far as we can tell yet
    for ref in catalog.iter_refs(ws):
        job = Job(ws, ref)
        if os.path.islink(job.path):
            continue  # another name for a job folder (`xpmfs deprecated --fix`): checked under its own
        problems += _check_job(job, fix, queued=ref in queued, now=now, verify=verify, remote=remote, trust=trust)
    if remote and lease_wait:
        if notify is not None:
            notify(
                f"waiting {ws.lease_duration:.0f}s to see whether the leases of {len(remote)} job(s) "
                "running on other hosts are refreshed"
            )
        time.sleep(ws.lease_duration + LEASE_MARGIN)
        for job in remote:
            problem = _stale_run(job, fix, remote=None)
            if problem is not None:
                problems.append(problem)
    problems += _check_type_folders(ws, fix, now)
    for folder in _service_folders(ws):
        problems += _check_temp_files(folder, fix, now)
    return problems


# -- workers and queue -----------------------------------------------------------------------


def _check_workers(ws: Workspace, fix: bool) -> list[Problem]:
    problems = []
    for worker in heartbeat.scan(ws.workers_dir):
        if worker.alive:
            continue
        fixed = fix and heartbeat.remove_registration(worker.path)
        message = (
            f"worker {worker.record.name} is gone (last heartbeat {worker.age:.0f}s ago); "
            "its registration was left behind"
        )
        problems.append(Problem(worker.path, "stale-worker", message, fixed))
    return problems


def _check_queue(ws: Workspace, fix: bool) -> list[Problem]:
    problems = []
    try:
        names = sorted(os.listdir(ws.queue_dir))
    except FileNotFoundError:
        return []
    for name in names:
        path = ws.queue_dir / name
        if name.startswith("."):
            continue  # temp files are looked at with the other service folders
        ref = JobRef.from_entry_name(name)
        if ref is None:
            problems.append(Problem(path, "unknown-entry", "names no job (expected <typeid>~<jobid>); not touched"))
            continue
        job = Job(ws, ref)
        if not job.spec_path.exists():
            # Submission writes the spec before the entry, so no submission in progress looks like this.
            what = "job folder" if not job.path.exists() else "job spec"
            fixed = False
            if fix:
                queue.remove(ws.queue_dir, ref)
                fixed = True
            problems.append(Problem(path, "orphan-entry", f"its {what} {job.path} is missing", fixed))
        elif job.marker() is not None:
            problems += _finished_entry(job, path, fix)
    return problems


def _finished_entry(job: Job, path: Path, fix: bool) -> list[Problem]:
    lock = job.lock()
    if not lock.try_acquire():
        return []  # its runner or worker is ending it right now and removes the entry itself
    try:
        marker = job.marker()
        if marker is None or not queue.contains(job.workspace.queue_dir, job.ref):
            return []  # resubmitted, or cleaned, while we looked
        if fix:
            queue.remove(job.workspace.queue_dir, job.ref)
    finally:
        lock.release()
    return [Problem(path, "finished-entry", f"the job has ended ({marker.value}) but is still queued", fix)]


# -- jobs ------------------------------------------------------------------------------------


def _check_job(
    job: Job, fix: bool, *, queued: bool, now: float, verify: bool, remote: list[Job], trust: Trust
) -> list[Problem]:
    problems = _check_temp_files(job.path, fix, now) + _check_temp_files(job.xpm_dir, fix, now)
    spec: Spec | None = None
    if not job.spec_path.exists():
        if _age(job.path, now) > GRACE:
            problems.append(
                Problem(job.spec_path, "damaged-spec", "is missing: this folder is no job; remove it by hand")
            )
        return problems
    try:
        spec, owner = job.read_owned_spec()
    except CorruptedError as error:
        problems.append(Problem(job.spec_path, "damaged-spec", f"{error.problem}; remove the job folder by hand"))
    if spec is not None:
        untrusted = _untrusted(job, trust, owner)
        problems += untrusted
        problems += _check_spec(job, spec, verify and not untrusted)  # never import code not trusted
    marker = job.marker()
    if marker is None:
        problem = _blocked_lock(job, now)
        if problem is not None:
            problems.append(problem)
    if job.cancel_path.exists():
        problem = _stale_cancel(job, fix)
        if problem is not None:
            problems.append(problem)
    try:
        current = job.status()
    except CorruptedError as error:
        problems.append(_damaged_status(job, fix, error.problem))
        return problems
    contradiction = _contradictory_outcome(job, fix)
    if contradiction is not None:
        problems.append(contradiction)
        marker, current = job.marker(), job.status()
    if marker is None and current is not None and current.state is State.RUNNING:
        problem = _stale_run(job, fix, remote=remote)
        if problem is not None:
            problems.append(problem)
    elif (
        marker is None
        and not queued
        and (current is None or current.state in (State.WAITING, State.READY))
        and _age(job.spec_path, now) > GRACE
        and not job.lock().probe()
    ):
        problems.append(
            Problem(
                job.path,
                "not-queued",
                "has no queue entry and has not ended (its submission was interrupted); "
                f"re-run its experiment, or `xpmfs retry {job.path}`",
            )
        )
    return problems


def _untrusted(job: Job, trust: Trust, spec_owner: int) -> list[Problem]:
    """The job's spec (owned by ``spec_owner``) and ``<name>.py`` if a user not trusted owns them.

    A worker of the user running this (with the same ``--trust-user``) would refuse the job, which
    therefore stays queued until someone trusted runs it: an error while the job is unfinished, a
    warning once it has ended (nothing runs it again unless it is retried). Never touched: xpmfs
    did not write them.
    """
    refusals = [trust.refusal(job.spec_path, spec_owner), trust.check(job.script_path)]
    ended = job.marker() is not None
    problems = []
    for refusal in refusals:
        if refusal is None:
            continue
        message = (
            f"owned by {refusal.owner_name} (uid {refusal.owner}), whom you do not trust: "
            + ("the job has ended; it would not run again here" if ended else "no worker of yours runs this job")
            + f"; not touched (if you trust them: `xpmfs worker --trust-user {refusal.owner_name}`, "
            f"and `xpmfs check --trust-user {refusal.owner_name}`)"
        )
        problems.append(Problem(refusal.path, "untrusted-spec", message, severity="warning" if ended else "error"))
    return problems


def _blocked_lock(job: Job, now: float) -> Problem | None:
    """A lease marker no worker will ever take over (shared mode): report it, never remove it.

    An empty or unreadable marker (its creator died between creating and writing it) names no
    owner whose death or silence could be proven, and a lease of another duration is refused by
    every process of the workspace: both block their job until an operator removes them.
    """
    if job.workspace.lock_mode is not LockMode.SHARED or not job.lock_path.exists():
        return None
    fix = "no worker will take it; once sure no process runs the job, remove it (`rm`)"
    try:
        state = lock_inspect(job.lock_path, LockMode.SHARED, lease_duration=job.workspace.lease_duration)
    except FormatError as error:
        return Problem(job.lock_path, "blocked-lock", f"{error.problem}; {fix}")
    if state.holder is None and state.status in (LockStatus.REMOTE, LockStatus.EXPIRED):
        if _age(job.lock_path, now) <= GRACE:
            return None  # being written right now, most likely
        if job.lock_path.stat().st_size == 0:
            return Problem(
                job.lock_path,
                "empty-lock",
                "an empty lease marker (its creator died before writing it); "
                "workers take it over once it has stayed unchanged for the lease duration",
            )
        return Problem(job.lock_path, "blocked-lock", f"{state.detail or 'names no owner'}; {fix}")
    return None


def _check_spec(job: Job, spec: Spec, verify: bool) -> list[Problem]:
    if (spec.typeid, spec.jobid) != (job.ref.typeid, job.ref.jobid):
        return [
            Problem(
                job.spec_path,
                "spec-mismatch",
                f"names job {spec.typeid}/{spec.jobid}, not the folder it is in; not touched",
            )
        ]
    if not verify:
        return []
    rebuilt, why = rehash(spec)
    if rebuilt is None:
        message = f"cannot verify its identifier: {why}"
        return [Problem(job.spec_path, "unverifiable-spec", message, severity="warning")]
    identifier = rebuilt.jobid
    if identifier != job.ref.jobid:
        return [
            Problem(
                job.spec_path,
                "spec-mismatch",
                f"hashes to {identifier}, not to its folder name; corrupted, or the task's code changed "
                "(not touched: remove the folder by hand if it is garbage)",
            )
        ]
    return []


def _damaged_status(job: Job, fix: bool, problem: str) -> Problem:
    return _settle(job, fix, "damaged-status", problem, "rewrite it from the terminal markers", damaged=True)


def _contradictory_outcome(job: Job, fix: bool) -> Problem | None:
    """Both markers, a marker that disagrees with ``status.json``, or an attempt that went back."""
    found = lifecycle.outcome_problems(job.xpm_dir)
    if not found:
        return None
    return _settle(job, fix, "contradictory-outcome", "; ".join(found), "settle it by the job's history")


def _settle(job: Job, fix: bool, kind: Kind, problem: str, how: str, *, damaged: bool = False) -> Problem:
    """A job whose outcome must be settled again: say ``how`` to fix it, or with ``fix``, under the
    job's lock, let :func:`xpmfs.lifecycle.settle` rebuild it from the markers and the history (a
    ``damaged`` ``status.json`` moved aside first, kept for a person to look at), and queue it
    again if it is unfinished (invariant 4)."""
    path = job.xpm_dir / status.STATUS_FILE
    if not fix:
        return Problem(path, kind, f"{problem} (fix: {how})")
    # A worker that meets the damaged status takes the lock for a moment, then gives up: wait that out.
    with job.locked() as lock:
        if lock is None:
            return Problem(path, kind, f"{problem}; not fixed: the job's lock is held, try again later")
        if damaged:
            os.replace(path, job.xpm_dir / f"{status.STATUS_FILE}{DAMAGED_SUFFIX}")
        why = "status rebuilt" if damaged else "outcome settled"
        state = lifecycle.settle(job.xpm_dir, f"{why} by xpmfs check --fix")
        if not state.terminal:
            queue.add(job.workspace.queue_dir, job.ref)
    done = "rewritten as {} from the markers" if damaged else "settled as {} by the history"
    return Problem(path, kind, f"{problem}; {done.format(state.value)}", True)


def _stale_cancel(job: Job, fix: bool) -> Problem | None:
    """A ``cancel`` file (from ``xpmfs kill``) on a job that nobody runs.

    It was meant for the run that was going on; left there, the worker of the job's next run (a
    retry, a resubmission) would cancel that one at its first heartbeat.
    """
    lock = job.lock()
    if not lock.try_acquire():
        return None  # being run: the request is live (its worker acts on it within a heartbeat)
    try:
        if not job.cancel_path.exists():
            return None
        if fix:
            with contextlib.suppress(FileNotFoundError):
                job.cancel_path.unlink()
    finally:
        lock.release()
    message = "a cancel request for a run that has ended; the next run would be cancelled at once"
    return Problem(job.cancel_path, "stale-cancel", message, fix)


def _stale_run(job: Job, fix: bool, *, remote: list[Job] | None) -> Problem | None:
    """A job whose status says running while no live process holds its lock: its run crashed.

    Only a proven verdict counts (DESIGN: staleness fails closed): a free lock, a holder proven
    dead, a lease seen expired. A lease held from another host is put in ``remote`` to be looked
    at again after ``lease_duration``; with ``remote=None`` it is taken as alive.
    """
    lock = job.lock()
    state = lock.inspect()
    if state.status is LockStatus.HELD:
        return None  # running for real
    if state.status is LockStatus.REMOTE:
        if remote is not None:
            remote.append(job)
        return None
    why = f" ({state.detail})" if state.detail and state.status is not LockStatus.FREE else ""
    message = f"status says running but no live process holds its lock{why}: its run crashed"
    if not fix:
        return Problem(job.lock_path, "stale-lock", message + " (fix: make it ready to run again)")
    # try_acquire takes over a dead owner's or an expired lease's marker (shared mode) by
    # filelock's own rules; a local lock of a dead process is simply free.
    if not lock.try_acquire():
        return None  # a worker claimed it just now: it is being re-run, which is the fix
    try:
        # Look again under the lock: a runner may have finished it meanwhile.
        current = job.status()
        if job.marker() is not None or current is None or current.state is not State.RUNNING:
            return None
        lifecycle.recover(job, current, by="xpmfs check")
        queue.add(job.workspace.queue_dir, job.ref)  # normally still there; a repair if not
    finally:
        lock.release()
    return Problem(job.lock_path, "stale-lock", message + "; made ready to run again", True)


# -- leftovers of interrupted writes ---------------------------------------------------------


def _service_folders(ws: Workspace) -> Iterator[Path]:
    """The folders where xpmfs writes with temp files, outside job folders (checked per job)."""
    yield ws.format_file.parent
    yield ws.queue_dir
    yield ws.workers_dir
    try:
        experiments = sorted(entry.path for entry in os.scandir(ws.experiments_dir) if entry.is_dir())
    except FileNotFoundError:
        return
    for folder in map(Path, experiments):
        yield folder
        runs = folder / EXPERIMENT_RUNS
        if runs.is_dir():
            yield from sorted(path for path in runs.iterdir() if path.is_dir())


def _check_temp_files(folder: Path, fix: bool, now: float) -> list[Problem]:
    """``.tmp-*`` files older than :data:`GRACE` in ``folder``: writers that died before renaming."""
    problems = []
    try:
        entries = [entry for entry in os.scandir(folder) if entry.name.startswith(_atomic.TMP_PREFIX)]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for entry in sorted(entries, key=lambda item: item.name):
        path = Path(entry.path)
        if _age(path, now) <= GRACE:
            continue  # a write in progress
        fixed = False
        if fix:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            fixed = True
        problems.append(Problem(path, "temp-file", "a half-written file left by an interrupted write", fixed))
    return problems


def _check_type_folders(ws: Workspace, fix: bool, now: float) -> list[Problem]:
    problems = []
    try:
        typeids = sorted(os.listdir(ws.jobs_dir))
    except FileNotFoundError:
        return []
    for typeid in typeids:
        folder = ws.jobs_dir / typeid
        try:
            debris = sorted(path for path in folder.iterdir() if path.name.startswith(_DEBRIS))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for path in debris:
            if _age(path, now) <= GRACE:
                continue  # a clean deleting it, or a submission building it, right now
            if fix:
                shutil.rmtree(path, ignore_errors=True)
            if path.name.startswith(TRASH_PREFIX):
                problems.append(Problem(path, "trash", "a removed job's folder that an interrupted clean left", fix))
            else:
                message = "a new job's folder that an interrupted submission left (re-running submits it)"
                problems.append(Problem(path, "temp-folder", message, fix))
    return problems


_DEBRIS = (TRASH_PREFIX, _atomic.TMP_PREFIX)  # what clean and submissions leave in a type's folder


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0
