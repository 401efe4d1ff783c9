"""Acting on jobs from outside: ``kill``, ``retry`` and ``clean``.

Every state change here is one of :mod:`xpmfs.lifecycle`'s, made holding the job's lock,
exactly as a worker would make it. The lock is what tells a running job (its holder is alive)
from a queued one: a queued job is changed directly, a running one is asked to stop through its
``__xpm__/cancel`` file, which its worker checks at every heartbeat (the worker may be on another
host: a signal could not reach it, a file does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psutil

from . import _atomic, catalog, heartbeat, lifecycle, queue, status
from .errors import CorruptedError, WorkspaceError
from .job import LOCK_WAIT, TRASH_PREFIX, Job
from .launchers import from_json
from .lock import JobLock
from .status import State
from .workspace import EXPERIMENT_LOCK, Workspace

#: A runner's process may be a little younger than its recorded start (clock granularity).
_START_SLACK = 1.0


@dataclass(frozen=True)
class Outcome:
    """What :func:`kill` or :func:`retry` did, in a word (``action``) and in a sentence (``message``)."""

    job: Job
    action: Literal["cancelled", "cancel-requested", "ended", "queued", "already-queued"]
    message: str


def locked(job: Job, wait: float | None = None) -> contextlib.AbstractContextManager[JobLock | None]:
    """``job.locked()`` for :data:`LOCK_WAIT` seconds (read at each call) unless told (``wait``)."""
    return job.locked(LOCK_WAIT if wait is None else wait)


# -- kill ------------------------------------------------------------------------------------


def kill(job: Job, *, wait: float | None = None) -> Outcome:
    """Stop ``job``: cancel it if it is queued, ask it to stop if it is running.

    A queued job (``waiting``, ``ready``, or with no status yet) ends ``failed`` with reason
    ``cancelled`` and leaves the queue. A running job gets a ``cancel`` file (its worker then
    sends SIGTERM to the runner, which records ``cancelled``); if it runs on this host, it also
    gets SIGTERM right away. A job that has ended is left alone.
    """
    ended = _ended(job)
    if ended is not None:
        return ended
    current = job.status()
    # A job handed to a scheduler (SLURM) first: cancelled there, it cannot start while we change
    # its status (and a running one gets SIGTERM from it, wherever it runs; its runner records
    # `cancelled`).
    handed_off = _cancel_handed_off(job, current)
    if current is not None and current.state is State.RUNNING and job.lock().probe():
        # Running for real: no brief holder to wait out.
        return _request_cancel(job, handed_off)
    with locked(job, wait) as lock:
        if lock is None:
            return _request_cancel(job, handed_off)
        ended = _ended(job)  # it may have ended while we waited for the lock
        if ended is not None:
            return ended
        previous = lifecycle.cancel(job, f"xpmfs kill ({_me()})")
        note = {
            State.RUNNING: " (its runner had died: nobody held its lock)",
            State.SUBMITTED: f" ({handed_off})" if handed_off else "",
        }.get(previous, "")
    return Outcome(job, "cancelled", f"{job.ref}: cancelled (was {previous.value}){note}")


def _ended(job: Job) -> Outcome | None:
    marker = job.marker()
    if marker is None:
        return None
    detail = ""
    if marker is State.FAILED:
        detail = f", reason {status.read_failure(job.xpm_dir).get('reason', 'error')}"
    return Outcome(job, "ended", f"{job.ref}: has already ended ({marker.value}{detail}); nothing to kill")


def _me() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


def _cancel_handed_off(job: Job, current: status.Status | None) -> str:
    """Cancel the scheduler job of a ``submitted``/``running`` job handed to one, by its spec's
    launcher; say what happened ("" if there is none)."""
    if current is None or current.state not in (State.SUBMITTED, State.RUNNING) or not current.cluster_id:
        return ""
    try:
        launcher = from_json(job.read_spec().launcher)
    except (CorruptedError, ValueError) as error:
        return f"its scheduler job {current.cluster_id} was not cancelled: {error}"
    return launcher.cancel(current.cluster_id)


def _request_cancel(job: Job, handed_off: str = "") -> Outcome:
    _atomic.write_json(job.cancel_path, {"requested": time.time(), "by": _me()})
    try:
        current = job.status()
    except CorruptedError:
        current = None
    signalled = ""
    if (
        current is not None
        and current.state is State.RUNNING
        and current.pid is not None
        and current.host == socket.gethostname()
        and _is_runner(current.pid, current.started)
    ):
        # The runner leads its own process group (spec/workspace.md): the task's subprocesses
        # are told too, as its worker would tell them.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(current.pid, signal.SIGTERM)
            signalled = f"; sent SIGTERM to its runner's process group ({current.pid})"
    if handed_off:
        signalled += f"; {handed_off}"
    return Outcome(
        job,
        "cancel-requested",
        f"{job.ref}: asked to stop (wrote {job.cancel_path}; its worker stops it at its next heartbeat){signalled}",
    )


def _is_runner(pid: int, started: float | None) -> bool:
    """Whether ``pid`` is still the process that started the run at ``started`` (not a reused pid)."""
    try:
        created = psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    # The runner writes ``started`` after it started: a process created later is another one.
    return started is None or created <= started + _START_SLACK


# -- retry -----------------------------------------------------------------------------------


def retry(job: Job, *, force: bool = False, wait: float | None = None) -> Outcome:
    """Queue ``job`` again: a failed one, a done one with ``force``, or one never queued.

    The job goes to ``ready`` (or ``waiting`` while a dependency has not finished) and its queue
    entry is written last, after its cancel file (from an earlier kill) is gone.
    """
    with locked(job, wait) as lock:
        if lock is None:
            holder = job.lock().holder()
            who = f" by pid {holder.pid} on {holder.host}" if holder else ""
            raise WorkspaceError(
                job.path,
                f"is running (its lock is held{who})",
                f"wait for it to end, or stop it first with `xpmfs kill {job.path}`",
            )
        marker = job.marker()
        current = job.status()
        if marker is State.DONE and not force:
            raise WorkspaceError(job.path, "is done", f"to run it again anyway: `xpmfs retry --force {job.path}`")
        if marker is None and current is not None and current.state in (State.WAITING, State.READY):
            queue.add(job.workspace.queue_dir, job.ref)  # harmless if it is there, a repair if not
            message = f"{job.ref}: is queued already ({current.state.value}){_no_worker(job.workspace)}"
            return Outcome(job, "already-queued", message)
        if marker is None and current is not None and current.state is State.SUBMITTED:
            raise WorkspaceError(
                job.path,
                "is handed to a cluster scheduler",
                f"stop it first with `xpmfs kill {job.path}`",
            )
        found = lifecycle.verdict(job.read_spec().dependencies, lifecycle.marker_of(job.workspace))
        # A failed dependency leaves it waiting (retried, the dependency lets it run).
        initial = State.READY if found.state is State.READY else State.WAITING
        blocked = found.dependency if found.state is State.FAILED else None
        # Nobody held the lock (we do now): a `running` one had a runner that died, and is handed back.
        initial = lifecycle.requeue(job, initial, f"xpmfs retry ({_me()})")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(job.cancel_path)
        # The entry last: once it exists a worker may take the job (DESIGN invariant 4).
        queue.add(job.workspace.queue_dir, job.ref)
    warning = f"; but dependency {blocked} failed: retry it first" if blocked else _no_worker(job.workspace)
    return Outcome(job, "queued", f"{job.ref}: queued again ({initial.value}){warning}")


def _no_worker(ws: Workspace) -> str:
    """What to add to "queued" when nobody will run the job: a retry outside an experiment has no
    embedded worker, and the one its experiment started exits once idle."""
    if heartbeat.any_alive(ws.workers_dir):
        return ""
    return (
        f"; no worker is alive to run it: start one with `{heartbeat.start_command(ws.path)}`, or re-run its experiment"
    )


# -- clean -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    """One thing :func:`clean` removes (or would remove), or keeps and why (``kept``)."""

    path: Path
    kind: Literal["job", "worker"]
    description: str
    removed: bool = False
    kept: str | None = None  # why it was not removed although selected


def clean(
    ws: Workspace,
    *,
    failed: bool = False,
    done: bool = False,
    workers: bool = False,
    experiment: str | None = None,
    tags: Mapping[str, str] | None = None,
    apply: bool = False,
) -> list[Removal]:
    """Remove ended job folders (``failed``, ``done``) and dead workers' registrations.

    Without ``apply``, nothing is touched: the list says what would go. Never removed: a job
    without a terminal marker (queued or running; a ``failed`` status without its marker is a
    crash that a worker re-runs), a job whose lock is held, a job that an unfinished job depends
    on, a job of an experiment that is running right now (it may be resubmitting it). A job
    folder is renamed to ``.trash-*`` under its lock, then deleted: a crash leaves an invisible
    ``.trash-*`` folder (``xpmfs check --fix`` removes it), never half a job.
    """
    states = {state for state, wanted in ((State.FAILED, failed), (State.DONE, done)) if wanted}
    if not states and not workers:
        raise ValueError("clean: say what to remove (failed jobs, done jobs, worker registrations)")
    removals: list[Removal] = []
    if states:
        infos = [
            info
            for info in catalog.list_jobs(ws, experiment=experiment, tags=tags, brief=True)
            if info.state in states and (Job(ws, info.ref).marker() in states)
        ]
        needed = _needed_by_unfinished(ws) if infos else {}
        running = _running_experiments(ws) if infos else set()
        for info in infos:
            job = Job(ws, info.ref)
            description = f"({info.label}{'; ' + _tags_text(info.tags) if info.tags else ''})"
            kept = None
            if info.ref.relpath in needed:
                kept = f"unfinished job {needed[info.ref.relpath]} depends on it"
            elif running.intersection(info.experiments):
                kept = f"its experiment {min(running.intersection(info.experiments))!r} is running"
            if kept is None and apply:
                kept = _remove_job(job, states)
            removals.append(Removal(job.path, "job", description, removed=apply and kept is None, kept=kept))
    if workers:
        for worker in heartbeat.scan(ws.workers_dir):
            if worker.alive:
                continue
            removed = apply and heartbeat.remove_registration(worker.path)
            description = f"(worker {worker.record.name} is gone; last heartbeat {worker.age:.0f}s ago)"
            removals.append(Removal(worker.path, "worker", description, removed=removed))
    return removals


def _tags_text(tags: Mapping[str, object]) -> str:
    return " ".join(f"{key}={catalog.tag_text(value)}" for key, value in sorted(tags.items()))


def _needed_by_unfinished(ws: Workspace) -> dict[str, str]:
    """Dependencies of every queued job without a terminal marker: ``{dependency: dependent}``."""
    needed: dict[str, str] = {}
    for ref in queue.refs(ws.queue_dir):
        job = Job(ws, ref)
        if job.marker() is not None:
            continue
        try:
            spec = job.read_spec()
        except CorruptedError:
            continue
        for relpath in spec.dependencies:
            needed.setdefault(relpath, ref.relpath)
    return needed


def _running_experiments(ws: Workspace) -> set[str]:
    names: set[str] = set()
    try:
        entries = list(os.scandir(ws.experiments_dir))
    except FileNotFoundError:
        return names
    for entry in entries:
        lock_path = Path(entry.path) / EXPERIMENT_LOCK
        if (
            entry.is_dir()
            and lock_path.exists()
            and JobLock(lock_path, ws.lock_mode, lease_duration=ws.lease_duration).probe()
        ):
            names.add(entry.name)
    return names


def _remove_job(job: Job, states: set[State]) -> str | None:
    """Remove ``job``'s folder if it is still ended in one of ``states``; else say why not."""
    lock = job.lock()
    if not lock.try_acquire():
        return "its lock is held (it is being resubmitted or run)"
    trash = job.path.with_name(f"{TRASH_PREFIX}{job.ref.jobid}.{os.getpid()}.{os.urandom(4).hex()}")
    try:
        # Look again under the lock: it may have been resubmitted since we listed it.
        if job.marker() not in states:
            return "it changed state meanwhile"
        # A terminal marker exists, so its entry may go (DESIGN invariant 4).
        queue.remove(job.workspace.queue_dir, job.ref)
        # Renamed while we hold its lock: nobody can be starting it, and from now on nobody sees it.
        os.rename(job.path, trash)
    finally:
        # The lock file moved with the folder; releasing may not find it any more, which is fine.
        with contextlib.suppress(OSError):
            lock.release()
    shutil.rmtree(trash, ignore_errors=True)
    return None
