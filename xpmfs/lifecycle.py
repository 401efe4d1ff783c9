"""A job's life, rule by rule: the one module that moves a job from one state to another.

Each outcome is decided here, once, and every other module asks for it (DESIGN, "One lifecycle
module"): the dependency verdict; a worker's claim and what it finds under the lock; a runner's
start and the end of its attempt (with the retry decision); the end of a runner that died without
recording one; the hand-back of a run nobody holds any more; cancelling, requeueing and
resubmitting; and the one rebuild ``xpmfs check --fix`` makes of a contradictory record. Only this
module calls :func:`xpmfs.status.transition`, and each function here is called with the job's lock
held, except :func:`claim`, which takes it.

The environment a claiming worker gives a runner (the ``ENV_*`` names) is the handshake between
the two halves of a claim, so it is declared here too.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from . import _atomic, journal, queue, status
from ._crash import crash_point
from ._process import kill_job_group
from .errors import CorruptedError, UntrustedError
from .job import ADOPTED_STEM, XPM_DIR, Job, Spec
from .status import Reason, State, Status, Superseded

if TYPE_CHECKING:
    from .lock import JobLock
    from .workspace import Workspace

log = logging.getLogger("xpmfs.lifecycle")

ENV_LOCK_HELD = "XPMFS_LOCK_HELD"  # "1": the parent (a worker) holds the job's lock for us
ENV_PARENT_PID = "XPMFS_PARENT_PID"  # die when this process dies
ENV_WORKER = "XPMFS_WORKER"  # the name of the worker that started us
ENV_CLAIMED = "XPMFS_CLAIMED"  # when that worker claimed the job (time.time())
ENV_ATTEMPT = "XPMFS_ATTEMPT"  # the attempt that claim starts: the runner records only for it
#: What a claim tells its runner; a spec's ``environ`` never overrides these.
CLAIM_VARIABLES = frozenset({ENV_LOCK_HELD, ENV_PARENT_PID, ENV_WORKER, ENV_CLAIMED, ENV_ATTEMPT})


# -- the dependency verdict ------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a job's dependencies let it run: ``READY``, ``WAITING`` (for ``dependency``, the
    first unfinished one) or ``FAILED`` (``dependency`` failed, and so must the job)."""

    state: Literal[State.READY, State.WAITING, State.FAILED]
    dependency: str | None = None  # "<typeid>/<jobid>"


READY = Verdict(State.READY)


def marker_of(workspace: Workspace) -> Callable[[str], State | None]:
    """The terminal marker of a dependency ``"<typeid>/<jobid>"`` of ``workspace``, looked at now."""
    jobs_dir = workspace.jobs_dir
    return lambda relpath: status.terminal_marker(f"{jobs_dir}/{relpath}/{XPM_DIR}")


def verdict(dependencies: Iterable[str], marker: Callable[[str], State | None]) -> Verdict:
    """The dependency verdict, with ``marker`` telling each dependency's terminal marker (the
    worker passes a cached one: many waiting jobs share a dependency; a claim looks afresh)."""
    waiting = None
    for relpath in dependencies:
        found = marker(relpath)
        if found is State.FAILED:
            return Verdict(State.FAILED, relpath)
        if found is None and waiting is None:
            waiting = relpath
    return READY if waiting is None else Verdict(State.WAITING, waiting)


def initial_state(spec: Spec) -> State:
    """The state a (re)submitted job starts in: ``waiting`` if it has dependencies (workers judge
    them when they claim it), else ``ready``."""
    return State.WAITING if spec.dependencies else State.READY


def _dependency_failed(job: Job, relpath: str) -> str:
    dependency = job.workspace.jobs_dir / relpath
    reason = status.read_failure(dependency / XPM_DIR).get("reason", "error")
    return f"dependency {dependency} failed ({reason})"


# -- claiming (a worker) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    """A job a worker holds the lock of, ready to start attempt ``attempt``."""

    job: Job
    spec: Spec
    lock: JobLock
    worker: str
    claimed: float  # time.time() when the lock was taken
    attempt: int
    previous: Status | None  # the status before this attempt (a retry's hints: reason, message)

    def environ(self) -> dict[str, str]:
        """What the environment of a runner its worker starts adds to the worker's: the spec's,
        then the claim's."""
        return {
            **self.spec.environ,
            ENV_LOCK_HELD: "1",
            ENV_PARENT_PID: str(os.getpid()),
            ENV_WORKER: self.worker,
            ENV_CLAIMED: repr(self.claimed),
            ENV_ATTEMPT: str(self.attempt),
        }


#: Why :func:`claim` took no job: its lock is held by a run (``busy``) or briefly (``held``: look
#: again soon, a release makes no event), it ``ended``, it ``waits`` for a dependency, it ``failed``
#: because one did, it is ``in-flight`` on a cluster, its code is ``untrusted``, or (an adopted
#: folder) ``experimaestro`` is running it (spec/adopt.md): left queued, looked at again later.
NotClaimed = Literal["busy", "held", "ended", "waits", "failed", "in-flight", "untrusted", "experimaestro"]


def claim(
    job: Job,
    spec: Spec,
    *,
    worker: str,
    marker: Callable[[str], State | None],
    untrusted: Callable[[Job], UntrustedError | None],
    on_lost: Callable[[str], None] | None = None,
) -> Claim | tuple[NotClaimed, UntrustedError | None]:
    """Take ``job``'s lock and look again under it: everything may have changed since the scan.

    Returns the :class:`Claim` (lock held) or why not (lock released, and the refusal when the
    job's code is not trusted). A job whose dependency failed fails here; one whose runner died
    is handed back first (:func:`recover`), after its leftover processes on this host are killed.
    """
    lock = job.lock(on_lost=on_lost)
    if not lock.try_acquire():
        current = job.status()
        return ("busy" if current is not None and current.state in (State.RUNNING, State.SUBMITTED) else "held"), None
    claimed = time.time()
    crash_point("claim.after-lock")
    try:
        result = _look_again(job, spec, lock, worker, claimed, marker, untrusted)
    except BaseException:
        lock.release()
        raise
    if not isinstance(result, Claim):
        lock.release()  # one exit for every way of not starting it
    return result


def _look_again(
    job: Job,
    spec: Spec,
    lock: JobLock,
    worker: str,
    claimed: float,
    marker: Callable[[str], State | None],
    untrusted: Callable[[Job], UntrustedError | None],
) -> Claim | tuple[NotClaimed, UntrustedError | None]:
    refusal = untrusted(job)
    if refusal is not None:
        return "untrusted", refusal  # replaced since the scan read it, or its script is not trusted
    if job.marker() is not None:
        queue.remove(job.workspace.queue_dir, job.ref)
        return "ended", None
    found = verdict(spec.dependencies, marker)
    if found.state is State.WAITING:
        return "waits", None
    if found.state is State.FAILED:
        assert found.dependency is not None
        fail(job, Reason.DEPENDENCY, _dependency_failed(job, found.dependency))
        return "failed", None
    # Adopted from experimaestro, which knows not xpmfs's lock but has its own. `stem` costs other
    # jobs nothing: it is looked up once per Job, and starting the runner needs it anyway.
    if job.stem.endswith(ADOPTED_STEM):
        from .adopt import run_by_experimaestro

        if run_by_experimaestro(job) is not None:
            return "experimaestro", None
    current = job.status()
    if status.complete_interrupted(job.xpm_dir, current) is not None:
        # A runner died between writing its final status and the marker: finish that.
        queue.remove(job.workspace.queue_dir, job.ref)
        return "ended", None
    if current is not None and (
        current.state is State.SUBMITTED or (current.state is State.RUNNING and current.cluster_id)
    ):
        return "in-flight", None  # a cluster job, followed (and settled) by its launcher
    if current is not None and current.state is State.RUNNING:
        # Its runner died and the lock came free; what its task started may still run.
        if current.host == socket.gethostname() and current.pid:
            killed = kill_job_group(current.pid, str(job.path))
            if killed:
                log.info("worker %s: killed %d leftover process(es) of %s", worker, killed, job.ref)
        current = recover(job, current)
    return Claim(job, spec, lock, worker, claimed, (current.attempt if current is not None else 0) + 1, current)


def recover(job: Job, current: Status, *, by: str = "") -> Status:
    """Hand back a run that ended without a status: ``running``, and nobody held the lock (the
    caller does now). The job goes back to ``ready``, saying so."""
    found = f"; found by {by}" if by else ""
    message = f"previous run (pid {current.pid} on {current.host}) ended without a status{found}"
    return status.transition(job.xpm_dir, State.READY, current=current, message=message)


def submitted(claim: Claim, cluster_id: str) -> Status:
    """The claim's job was handed to a cluster scheduler as ``cluster_id`` (its runner will start
    there, and take the lock the caller is about to release)."""
    previous = claim.previous
    retried = f" ({previous.message})" if previous is not None and previous.reason is Reason.TIMEOUT else ""
    return status.transition(
        claim.job.xpm_dir,
        State.SUBMITTED,
        cluster_id=cluster_id,
        worker=claim.worker,
        claimed=claim.claimed,
        pid=None,
        host=None,
        message=f"submitted to SLURM as job {cluster_id}" + retried,
    )


def fail(job: Job, reason: Reason, message: str) -> None:
    """End a job that never ran, or cannot (a failed dependency, a refused submission): marker
    first, queue entry last (DESIGN invariant 4)."""
    status.transition(job.xpm_dir, State.FAILED, reason=reason, message=message)
    queue.remove(job.workspace.queue_dir, job.ref)


def drop_ended(job: Job) -> None:
    """Remove the queue entry of a job that has a terminal marker (DESIGN invariant 4), under its
    lock: an experiment may be resubmitting it right now. Left for later if the lock is held."""
    lock = job.lock()
    if lock.try_acquire():
        try:
            if job.marker() is not None:
                queue.remove(job.workspace.queue_dir, job.ref)
        finally:
            lock.release()


# -- a runner's attempt ----------------------------------------------------------------------------


def begin(
    job: Job, *, claimed_attempt: int | None, cluster_id: str | None, worker: str | None, claimed: float | None
) -> Status | State:
    """Record the start of a runner's attempt (lock held): its ``running`` status, or the terminal
    state that stops it (``DONE``: done already; ``FAILED``: failed while its cluster job was
    pending). Raises :class:`~xpmfs.status.Superseded` when the claim was for another attempt.
    ``worker`` and ``claimed`` say which claim started it (``None``: started by hand)."""
    # Read once: under the lock nobody else writes it, so each transition below hands the status
    # it wrote to the next.
    current = job.status()
    if status.complete_interrupted(job.xpm_dir, current) is not None:
        queue.remove(job.workspace.queue_dir, job.ref)  # an earlier runner died just before its marker
    marker = job.marker()
    if marker is State.DONE or (marker is State.FAILED and cluster_id is not None):
        return marker  # a cancelled or failed cluster job is not its pending runner's to revive
    attempt = (current.attempt if current is not None else 0) + 1
    if claimed_attempt is not None and claimed_attempt != attempt:
        # The worker's claim was for another attempt: its lease was taken over before we started.
        raise Superseded(job.xpm_dir / status.STATUS_FILE, claimed_attempt, current)
    if current is not None and current.state is State.RUNNING:
        current = recover(job, current, by="its next runner")
    elif current is not None and current.state is State.FAILED:
        # Run again by hand: a failed attempt is followed by a fresh one.
        current = status.transition(job.xpm_dir, State.READY, current=current, message="previous attempt ended failed")
    return status.transition(
        job.xpm_dir,
        State.RUNNING,
        current=current,
        attempt=attempt,
        pid=os.getpid(),
        host=socket.gethostname(),
        cluster_id=cluster_id,
        # A retried attempt starts from `ready`, which keeps how the previous one ended as a hint:
        # a running status must not look as if it had ended already.
        ended=None,
        exit_code=None,
        reason=None,
        message=None,
        worker=worker,
        claimed=claimed,
    )


def end_attempt(
    job: Job,
    spec: Spec,
    running: Status,
    to: State,
    reason: Reason | None,
    message: str | None,
    exit_code: int | None = None,
) -> State:
    """Record how attempt ``running`` ended (``to`` and ``reason``), and decide whether it is
    retried: a resumable task that timed out goes back to ``ready`` while retries are left, its
    queue entry and folder (checkpoints) kept. Returns the state written.

    Fenced by the attempt (spec/failure-model.md): raises :class:`~xpmfs.status.Superseded`, with
    nothing written, when another attempt started meanwhile.
    """
    ending: dict[str, Any] = {"exit_code": exit_code} if exit_code is not None else {}
    if reason is Reason.TIMEOUT and spec.resumable and running.retry_count < spec.max_retries:
        retry = running.retry_count + 1
        # `reason` stays as a hint in `ready` (spec/workspace.md).
        status.transition(
            job.xpm_dir,
            State.READY,
            fence=running.attempt,
            retry_count=retry,
            reason=Reason.TIMEOUT,
            ended=time.time(),
            message=f"timeout, retry {retry} of {spec.max_retries}: {message}",
            **ending,
        )
        crash_point("retry.after-ready")
        return State.READY
    status.transition(job.xpm_dir, to, fence=running.attempt, reason=reason, message=message, **ending)
    if to is State.DONE and job.stem.endswith(ADOPTED_STEM):
        from .adopt import mirror_done

        mirror_done(job)  # experimaestro's <name>.done too, so that it does not run the job again
    job.clear_cancel()  # a kill request must not outlive the run
    crash_point("complete.after-marker")
    queue.remove(job.workspace.queue_dir, job.ref)
    return to


# -- the end of a runner's process (its worker) ----------------------------------------------------

#: What :func:`runner_exited` found: the job's terminal state, or that the runner ``never-started``
#: (it died before recording ``running``), that its attempt was ``superseded``, or ``left`` (the
#: job continues: handed back, or retried).
Exited = State | Literal["never-started", "superseded", "left"]


def runner_exited(job: Job, *, attempt: int, worker: str, code: int, handed_back: bool) -> Exited:
    """Record the end of the runner a worker started for ``attempt`` of ``job``, which exited with
    ``code`` (negative: killed by that signal) — unless the runner recorded it itself. With
    ``handed_back`` the worker killed it to stop: the job goes back to ``ready``."""
    current = job.status()
    now = current.attempt if current is not None else 0
    if now > attempt or (now == attempt and current is not None and current.worker != worker):
        # Another attempt started since our claim (a lease taken over while this node was
        # frozen): its outcome is its own, and ours is not recorded (spec/failure-model.md).
        return "superseded"
    marker = job.marker() or status.complete_interrupted(job.xpm_dir, current)
    if marker is not None:
        queue.remove(job.workspace.queue_dir, job.ref)  # the runner may have died just before this
        return marker
    if now < attempt:
        return "never-started"  # it never started the task
    assert current is not None
    if handed_back:
        if current.state is State.RUNNING:
            message = f"handed back by worker {worker}"
            status.transition(job.xpm_dir, State.READY, fence=attempt, message=message)
        return "left"
    if current.state is State.READY:
        return "left"  # the runner asked for a retry (resumable timeout); the queue entry stays
    if code < 0:
        cancelled = -code in (signal.SIGTERM, signal.SIGINT)  # stopped from outside
        reason, message = (Reason.CANCELLED if cancelled else Reason.ERROR), f"runner killed by signal {-code}"
    else:
        reason, message = Reason.ERROR, f"runner exited with code {code} without a status; see {job.stderr_path}"
    status.transition(job.xpm_dir, State.FAILED, fence=attempt, reason=reason, message=message, exit_code=code)
    crash_point("reap.after-failed")
    queue.remove(job.workspace.queue_dir, job.ref)
    return State.FAILED


def never_started(job: Job, *, attempt: int, code: int, message: str) -> None:
    """Fail a job whose runner, started for ``attempt``, died again and again before recording
    ``running`` (its worker counts; see ``MAX_FAILED_STARTS`` in :mod:`xpmfs.worker`)."""
    status.transition(
        job.xpm_dir, State.FAILED, fence=attempt - 1, reason=Reason.ERROR, message=message, exit_code=code
    )
    queue.remove(job.workspace.queue_dir, job.ref)


def settle_lost(job: Job, spec: Spec, seen: Status, reason: Reason, message: str) -> State | None:
    """Record the end of a cluster job that ended without its runner recording one (the lock held):
    ``seen`` is the status its launcher followed. ``None`` when the job moved on since (a runner
    started, a retry was submitted...) or had ended after all."""
    if job.marker() is not None or status.complete_interrupted(job.xpm_dir) is not None:
        queue.remove(job.workspace.queue_dir, job.ref)
        return None
    current = job.status()
    if (
        current is None
        or current.state not in (State.SUBMITTED, State.RUNNING)
        or current.cluster_id != seen.cluster_id
    ):
        return None
    return end_attempt(job, spec, current, State.FAILED, reason, message)


# -- asked by a person (xpmfs kill / retry / check, a resubmitting experiment) --------------------


def cancel(job: Job, by: str) -> State:
    """End a job that nobody runs as ``cancelled`` (``by`` whom); return the state it was in."""
    current = job.status()
    if current is None:
        # An interrupted submission: give it a state it can leave, so it ends like any other.
        current = status.transition(job.xpm_dir, State.READY, message=f"status written by {by}")
    fail(job, Reason.CANCELLED, f"cancelled by {by}")
    return current.state


def requeue(job: Job, state: State, by: str) -> State:
    """Make an ended (or never queued) job runnable again (``by`` whom), in ``state`` (``ready``, or
    ``waiting`` for a dependency), granting its retries again; a ``running`` one nobody holds is
    handed back (:func:`recover`). The caller then writes its queue entry, last. Returns the state
    written."""
    current = job.status()
    if current is not None and current.state is State.RUNNING and job.marker() is None:
        return recover(job, current, by=by).state
    status.transition(job.xpm_dir, state, retry_count=0, message=f"retried by {by}")
    return state


def resubmit(job: Job, spec: Spec) -> None:
    """A job submitted again after it failed (or whose submission was cut short): back to its
    initial state, with its retries granted again, as `xpmfs retry` does."""
    job.clear_cancel()
    status.transition(job.xpm_dir, initial_state(spec), retry_count=0)


# -- the one documented rebuild (`xpmfs check --fix`) ----------------------------------------------


def outcome_problems(xpm_dir: Path | str) -> list[str]:
    """What contradicts the rule "one outcome per attempt, attempts only go up" in ``xpm_dir``.

    Both markers present; a marker whose record disagrees with ``status.json`` (state or attempt);
    ``status.json`` at an attempt lower than one its history has seen. Empty when consistent.
    """
    current = status.read_record(f"{xpm_dir}/{status.STATUS_FILE}")
    done, failed = (os.path.lexists(f"{xpm_dir}/{name}") for name in (status.DONE_MARKER, status.FAILED_MARKER))
    problems = []
    if done and failed:
        problems.append("has both a done and a failed marker")
    for present, name, state in ((done, status.DONE_MARKER, State.DONE), (failed, status.FAILED_MARKER, State.FAILED)):
        marked = status.read_record(f"{xpm_dir}/{name}") if present else None
        if marked is not None and current is not None and (current.state, current.attempt) != (state, marked.attempt):
            problems.append(
                f"its {name} marker (attempt {marked.attempt}) disagrees with status.json "
                f"({current.state.value}, attempt {current.attempt})"
            )
    history = journal.read(Path(xpm_dir, status.HISTORY_FILE))
    seen = max((record.get("attempt", 0) for _, record in history), default=0)
    if current is not None and isinstance(seen, int) and current.attempt < seen:
        problems.append(f"status.json is at attempt {current.attempt}, but its history saw attempt {seen}")
    return problems


def settle(xpm_dir: Path | str, message: str) -> State:
    """Rebuild the job's outcome from every record it has; return the state written. Lock held.

    The one rebuild outside :func:`xpmfs.status.transition` (`xpmfs check --fix`, for a damaged or
    contradictory ``status.json``): of ``status.json``, the markers and the history, the record of
    the highest attempt wins (an ended one over one that was still running; then the later; then a
    marker). If it ended, ``status.json`` becomes that record and its marker the only marker. If it
    had not ended, or nothing is readable, the job is ``ready`` to run again (the caller queues it)
    at that attempt.
    """
    markers = ((status.DONE_MARKER, State.DONE), (status.FAILED_MARKER, State.FAILED))
    # Markers first: between records of one attempt that disagree, the outcome marked first stands.
    names = (status.DONE_MARKER, status.FAILED_MARKER, status.STATUS_FILE)
    records = [status.read_record(f"{xpm_dir}/{name}") for name in names]
    for _, line in journal.read(Path(xpm_dir, status.HISTORY_FILE)):
        try:
            records.append(Status.from_json(line, status.HISTORY_FILE))
        except CorruptedError:
            continue  # a damaged line says nothing
    readable = [record for record in records if record is not None]
    for name, state in markers:
        # A marker is an outcome by its presence alone: one whose content is unreadable (a hard link
        # to a status.json that was damaged) still says how the latest attempt known ended.
        if status.read_record(f"{xpm_dir}/{name}") is None and os.path.lexists(f"{xpm_dir}/{name}"):
            attempt = max((record.attempt for record in readable), default=0)
            ended = os.lstat(f"{xpm_dir}/{name}").st_mtime
            readable.append(Status(state, attempt, updated=ended, ended=ended, message=message))
    best = max(readable, key=lambda r: (r.attempt, r.state.terminal, r.ended or 0, r.updated), default=None)
    if best is None or not best.state.terminal:
        for name, _ in markers:
            _unlink(f"{xpm_dir}/{name}")
        attempt = best.attempt if best is not None else 0
        ready = Status(State.READY, attempt, updated=time.time(), message=message)
        _atomic.write_json(f"{xpm_dir}/{status.STATUS_FILE}", ready.to_json())
        return State.READY
    for name, state in markers:
        marked = status.read_record(f"{xpm_dir}/{name}")
        if state is not best.state or (marked is not None and marked.attempt != best.attempt):
            _unlink(f"{xpm_dir}/{name}")
    _atomic.write_json(f"{xpm_dir}/{status.STATUS_FILE}", best.to_json())
    if status.terminal_marker(xpm_dir) is None:
        status.write_marker(xpm_dir, best)
    return best.state


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
