"""A worker: claims runnable jobs of a workspace and runs them, keeping nothing but files.

Any number of workers, on any hosts sharing the workspace, may run at once. A worker:

1. registers itself in ``WS/workers/`` and refreshes its heartbeat;
2. wakes on changes in ``WS/queue/`` (inotify) and rescans on a timer anyway;
3. for each queue entry whose dependencies are done, tries the job's lock: the lock *is* the claim
   (:func:`xpmfs.lifecycle.claim`);
4. starts the job with the launcher its spec names (:mod:`xpmfs.launchers`): a direct job runs as
   its child, and it keeps the lock while it runs; a SLURM job is handed to ``sbatch``;
5. when the child ends without a terminal state (killed, crashed), records the failure itself
   (:func:`xpmfs.lifecycle.runner_exited`).

On SIGTERM/SIGINT it stops claiming, hands its running jobs back (``ready``, queue entry kept,
lock released) so another worker takes them, and exits; with ``drain`` it lets them finish first.
Every rule about a job's state is in :mod:`xpmfs.lifecycle`; this module is the loop.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from . import heartbeat, lifecycle, queue
from ._crash import crash_point
from ._memory import MAX_FAILED_STARTS, Dependencies, Specs, forget_ended
from ._process import when_closed
from ._running import Running
from .errors import Error, OptionError, WorkspaceError
from .job import Job, Spec
from .launchers import Context, Launchers
from .launchers.base import Launcher
from .queue import JobRef
from .trust import Trust
from .watch import Watcher
from .workspace import Workspace

__all__ = ["DEFAULT_HEARTBEAT", "DEFAULT_RESCAN", "MAX_FAILED_STARTS", "Worker", "run_worker"]

log = logging.getLogger("xpmfs.worker")

DEFAULT_RESCAN = 5.0
DEFAULT_HEARTBEAT = 2.0
# A waiting job is looked at again when the dependency it waits for ends; its own folder (a kill
# or a crash may have ended it while it waited) only on a pass this many seconds after the last.
THOROUGH_EVERY = 60.0
RETRY_SOON = 0.02  # seconds before looking again at a job whose lock was held only briefly


@dataclass
class Worker:
    workspace: Workspace
    jobs: int = 1
    idle_exit: float | None = None
    rescan: float = DEFAULT_RESCAN
    heartbeat: float = DEFAULT_HEARTBEAT
    drain: bool = False
    #: Users (names or uids) whose jobs this worker runs besides its own user's (xpmfs.trust).
    trust_users: tuple[str | int, ...] = ()
    #: An embedded worker's end of its experiment's lifeline (a pipe): at its end of file, the
    #: experiment's process is gone, and the worker claims no new job (see :meth:`_orphan`).
    lifeline: int | None = None
    warm: bool = True  # fork jobs from a warm runner (xpmfs.zygote) unless a job asks to be isolated
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")  # as heartbeat names it

    def __post_init__(self) -> None:
        self._stopping = self._unregistered = False
        self._orphaned = False  # set from the lifeline's thread
        self._retry_soon = False  # a claim met a lock held briefly: rescan soon
        self._thorough, self._next_thorough = True, 0.0  # this pass looks at every waiting job's own folder too
        self._idle_since = 0.0
        self._watcher: Watcher | None = None
        self._entries = queue.Entries(self.workspace.queue_dir)
        self._dependencies = Dependencies(self.workspace.jobs_dir)
        self._specs = Specs(Trust.of(self.trust_users), lambda: self.name)
        self._running = Running(self.name, self._specs.report, self._wake)
        # Runners inherit the worker's environment as it was when the worker started: decoding
        # os.environ for every job was 6% of a busy worker's time.
        self._launchers = Launchers(Context(self.name, dict(os.environ), self._wake, self.warm))

    def run(self) -> int:
        """Work until stopped (signal) or idle for ``idle_exit`` seconds; return the exit code."""
        _, record = heartbeat.register(self.workspace.workers_dir, jobs=self.jobs, heartbeat=self.heartbeat)
        self._watcher = watcher = Watcher([self.workspace.queue_dir], rescan=self.rescan, track=True)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop())
        if self.lifeline is not None:
            when_closed(self.lifeline, self._lifeline_ended)
        log.info("worker %s: %d slot(s) on %s", self.name, self.jobs, self.workspace.path)
        next_beat, self._idle_since, full, due = 0.0, time.monotonic(), True, True
        try:
            with watcher:
                while True:
                    idle_since = self._running.reap()
                    if idle_since is not None:
                        self._idle_since = idle_since  # a job that cannot start keeps no worker busy
                    if self._orphaned and not self._unregistered:
                        self._orphan(record)
                    if self._stopping and not self._running.stop(kill=not self.drain):
                        break
                    # Even with every slot taken: SLURM jobs need no slot, only a submission.
                    busy = not self._stopping and due and self._schedule(full)
                    if busy or self._running:
                        self._idle_since = time.monotonic()
                    if time.monotonic() >= next_beat:
                        self._beat(record)
                        next_beat = time.monotonic() + self.heartbeat
                    wait = self._wait_for(next_beat)
                    if wait is None:
                        log.info("worker %s: idle for %.1fs, exiting", self.name, self.idle_exit)
                        break
                    full = watcher.wait(wait)
                    # A heartbeat timeout alone changes nothing on disk: scan only when something
                    # happened (an event, a child's end), a retry is due, or a full rescan is.
                    due = full or watcher.woken or self._retry_due()
        finally:
            self._launchers.close()
            heartbeat.unregister(record)
        return 0

    def _wait_for(self, next_beat: float) -> float | None:
        """How long to wait for an event: until the next heartbeat, idle exit, or retry; ``None``
        to exit now, idle for ``idle_exit`` seconds."""
        now = time.monotonic()
        wait = next_beat - now
        if self.idle_exit is not None and not self._running and not self._stopping:
            if now - self._idle_since >= self.idle_exit:
                return None
            wait = min(wait, max(0.01, self._idle_since + self.idle_exit - now))
        if self._retry_soon:
            wait = min(wait, RETRY_SOON)
        restart_at = self._running.failed_starts.next_retry()
        if restart_at is not None:
            wait = min(wait, restart_at - now)
        return max(0.0, wait)

    def _retry_due(self) -> bool:
        """Whether a claim met a lock held only briefly, or a failed start's back-off has ended."""
        restart_at = self._running.failed_starts.next_retry()
        retry, self._retry_soon = self._retry_soon, False
        return retry or (restart_at is not None and time.monotonic() >= restart_at)

    def stop(self) -> None:
        """Ask the worker to stop (thread-safe, and what SIGTERM/SIGINT do)."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        if self._watcher is not None:
            self._watcher.wake()

    def _lifeline_ended(self) -> None:
        self._orphaned = True
        self._wake()

    def _orphan(self, record_path: Path) -> None:
        """The experiment that started this embedded worker is gone (any exit, SIGKILL included):
        claim nothing more, let the running jobs finish and be recorded, then exit. The registration
        goes at once, so the next experiment starts a worker of its own instead of waiting for this
        one (spec/workspace.md, "Embedded workers")."""
        log.info("worker %s: its experiment's process is gone; claiming no new job, finishing %d running",
                 self.name, len(self._running))  # fmt: skip
        self._stopping = self.drain = self._unregistered = True
        heartbeat.unregister(record_path)

    # -- scheduling ----------------------------------------------------------------------------

    def _schedule(self, full: bool) -> int:
        """Claim and start runnable jobs while slots are free (jobs that need none, SLURM's, even
        when all are taken); return how many jobs keep this worker busy."""
        self._dependencies.new_pass()
        now = time.monotonic()
        self._thorough = full and now >= self._next_thorough
        if self._thorough:
            self._next_thorough = now + THOROUGH_EVERY
        # A full rescan lists queue/; other passes look only at the entries inotify said changed.
        changed = None if full or self._watcher is None else self._watcher.take_changed()
        self._entries.refresh(None if changed is None else (os.path.basename(path) for path in changed))
        busy, seen, finishing, full_up = 0, set(), self._running.finishing(self._entries.names()), False
        for name, ref in self._entries:  # oldest first, while a slot is free
            full_up = len(self._running) - finishing >= self.jobs
            if full_up:
                break
            seen.add(name)
            busy += self._consider(name, ref, slots=True)
        if full_up and not self._launchers.any_without_slot():
            busy += 1
        elif full_up:
            # Every slot is taken: only jobs that need none go on. Jobs known to run here are
            # skipped without a look: thousands of them wait in a busy queue.
            for name, ref in self._entries.unsettled(seen):
                busy += self._consider(name, ref, slots=False)
        for launcher in self._launchers.made():
            launcher.follow(full)
        forget_ended(self._entries.names(), self._specs, self._dependencies, self._running.failed_starts)
        return busy

    def _consider(self, name: str, ref: JobRef, *, slots: bool) -> int:
        """Start the job of queue entry ``name`` if it can run (``slots``: a slot is free); 1 if it
        keeps this worker busy."""
        if ref in self._running:
            return 0
        if not self._thorough and self._dependencies.blocked(name):
            return 0  # asked first: most entries of a long queue wait for a dependency
        if self._running.failed_starts.backing_off(ref):
            return 0  # a runner that could not start: not again before its back-off ends (idle till then)
        job = Job(self.workspace, ref)
        if job.marker() is not None:
            if queue.contains(self.workspace.queue_dir, ref):  # else removed since the view was refreshed
                lifecycle.drop_ended(job)
            return 0
        spec = self._specs.get(job, self._thorough)
        if spec is None:
            return 0
        try:
            launcher = self._launchers.of(spec.launcher)
        except ValueError as error:
            self._specs.report(job, WorkspaceError(job.spec_path, str(error), "upgrade xpmfs"))
            return 0
        if launcher.problem() is not None:
            return 0  # left to workers on hosts that can launch it
        if launcher.holds_slot:
            self._entries.settle(name)  # runs here: the passes where every slot is taken skip it
            if not slots:
                return 1
        else:
            current = job.status()
            if current is not None and launcher.track(job, spec, current):
                return int(current.worker == self.name)  # in flight; its launcher follows it
        if self._dependencies.waits(name, spec):
            return 0
        try:
            return self._claim(job, spec, launcher)
        except Error as error:
            self._specs.report(job, error)  # one damaged job (unreadable status...) must not stop us
            return 1

    def _claim(self, job: Job, spec: Spec, launcher: Launcher) -> int:
        # A run held here is stopped when a peer takes its lease; a job handed off is not ours to hold.
        on_lost = (lambda reason, ref=job.ref: self._running.lost(ref, reason)) if launcher.holds_slot else None
        marker, untrusted = self._dependencies.fresh, self._specs.untrusted
        claim = lifecycle.claim(job, spec, worker=self.name, marker=marker, untrusted=untrusted, on_lost=on_lost)
        if not isinstance(claim, lifecycle.Claim):
            why, refusal = claim
            if why == "held":
                self._retry_soon = True  # a brief hold (an experiment, the CLI) makes no event in queue/
            elif refusal is not None:
                self._specs.refuse(job, refusal)
            return 0 if why == "in-flight" else 1
        try:
            handle = launcher.start(claim)
        except BaseException:
            claim.lock.release()
            raise
        if handle is None:
            claim.lock.release()  # handed off (its runner takes the lock there), or not started now
            return 1
        self._running.add(claim, handle, self._idle_since)
        crash_point("claim.after-spawn")
        log.info("worker %s: started %s", self.name, job.ref)
        return 1

    def _beat(self, record_path: Path) -> None:
        try:
            if not self._unregistered:
                heartbeat.beat(record_path)
        except FileNotFoundError:
            # Someone cleaned our registration (`xpmfs check --fix` thought us dead): register again.
            heartbeat.register(self.workspace.workers_dir, jobs=self.jobs, heartbeat=self.heartbeat)
        self._running.cancel_requested()


def run_worker(
    path: str | os.PathLike[str],
    *,
    jobs: int = 1,
    idle_exit: float | None = None,
    rescan: float = DEFAULT_RESCAN,
    drain: bool = False,
    trust_users: Iterable[str | int] = (),
    lifeline: int | None = None,
) -> int:
    """Open the workspace at ``path`` (it must exist) and work on it; return the exit code.

    ``trust_users``: users (login names or uids) whose jobs it runs besides its own user's
    (xpmfs.trust); ``OptionError`` for a name no account has.
    """
    workspace = Workspace.open(path)
    if jobs < 1:
        raise WorkspaceError(
            Path(path), f"--jobs must be at least 1, not {jobs}", "give a positive number of job slots"
        )
    users = tuple(trust_users)
    try:
        Trust.of(users)  # an unknown name fails now, naming the option
    except LookupError as error:
        raise OptionError("trust_users", str(error), "name an existing user, or give a uid") from None
    worker = Worker(workspace, jobs, idle_exit, rescan, drain=drain, trust_users=users, lifeline=lifeline)
    return worker.run()
