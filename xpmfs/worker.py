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

from . import heartbeat, lifecycle, queue, status
from ._crash import crash_point
from ._memory import MAX_FAILED_STARTS, Dependencies, FailedStarts, Specs
from .errors import Error, OptionError, WorkspaceError
from .job import Job, Spec
from .launchers import Context, Handle, Launchers
from .launchers.base import Launcher
from .queue import JobRef
from .status import State
from .trust import Trust, resolve_user
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
class _Running:
    claim: lifecycle.Claim
    handle: Handle
    idle_before: float  # the worker's idle clock when it claimed the job (see FailedStarts)
    #: Set when its runner has recorded the end (this marker) and removed its queue entry: only the
    #: process's exit is left.
    ended: State | None = None
    released: bool = False  # we killed it to hand the job back
    lost: bool = False  # a peer took the lease (shared mode): the job is no longer ours to record


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
    _running: dict[JobRef, _Running] = field(default_factory=dict, init=False)
    _stopping: bool = field(default=False, init=False)
    _orphaned: bool = field(default=False, init=False)  # set from the lifeline's thread
    _unregistered: bool = field(default=False, init=False)
    _thorough: bool = field(default=True, init=False)  # this pass looks at every waiting job's own folder too
    _next_thorough: float = field(default=0.0, init=False)
    _retry_soon: bool = field(default=False, init=False)  # a claim met a lock held briefly: rescan soon
    _idle_since: float = field(default=0.0, init=False)
    _watcher: Watcher | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._entries = queue.Entries(self.workspace.queue_dir)
        self._dependencies = Dependencies(self.workspace.jobs_dir)
        self._specs = Specs(Trust.of(self.trust_users), lambda: self.name)
        self._failed_starts = FailedStarts()
        # Runners inherit the worker's environment as it was when the worker started: decoding
        # os.environ for every job was 6% of a busy worker's time.
        self._launchers = Launchers(Context(self.name, dict(os.environ), self._wake, self.warm))

    def run(self) -> int:
        """Work until stopped (signal) or idle for ``idle_exit`` seconds; return the exit code."""
        _, record_path = heartbeat.register(self.workspace.workers_dir, jobs=self.jobs, heartbeat=self.heartbeat)
        self._watcher = watcher = Watcher([self.workspace.queue_dir], rescan=self.rescan, track=True)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, lambda *_: self.stop())
        if self.lifeline is not None:
            threading.Thread(target=self._follow_lifeline, name="xpmfs-lifeline", daemon=True).start()
        log.info("worker %s: %d slot(s) on %s", self.name, self.jobs, self.workspace.path)
        next_beat, self._idle_since = 0.0, time.monotonic()
        try:
            with watcher:
                full = due = True
                while True:
                    self._reap()
                    if self._orphaned and not self._unregistered:
                        self._orphan(record_path)
                    if self._stopping:
                        if not self._hand_back():
                            break
                    elif due:
                        # Even with every slot taken: SLURM jobs need no slot, only a submission.
                        if self._schedule(full) or self._running:
                            self._idle_since = time.monotonic()
                    elif self._running:
                        self._idle_since = time.monotonic()
                    now = time.monotonic()
                    if now >= next_beat:
                        self._beat(record_path)
                        next_beat = now + self.heartbeat
                    wait_for = next_beat - now
                    if self.idle_exit is not None and not self._running and not self._stopping:
                        if now - self._idle_since >= self.idle_exit:
                            log.info("worker %s: idle for %.1fs, exiting", self.name, self.idle_exit)
                            break
                        wait_for = min(wait_for, max(0.01, self._idle_since + self.idle_exit - now))
                    retry, self._retry_soon = self._retry_soon, False
                    if retry:
                        wait_for = min(wait_for, RETRY_SOON)
                    restart_at = self._failed_starts.next_retry()
                    if restart_at is not None:
                        wait_for = min(wait_for, restart_at - now)
                    full = watcher.wait(max(0.0, wait_for))
                    # A heartbeat timeout alone changes nothing on disk: scan only when something
                    # happened (an event, a child's end), a retry is due, or a full rescan is.
                    due = full or watcher.woken or retry or (restart_at is not None and time.monotonic() >= restart_at)
        finally:
            self._launchers.close()
            _unregister(record_path, self.name)
        return 0

    def stop(self) -> None:
        """Ask the worker to stop (thread-safe, and what SIGTERM/SIGINT do)."""
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
        if self._watcher is not None:
            self._watcher.wake()

    def _follow_lifeline(self) -> None:
        assert self.lifeline is not None
        try:
            while os.read(self.lifeline, 512):
                pass  # nobody writes: only the end of file (every write end closed) matters
        except OSError:
            pass  # a bad descriptor is as good as a closed one
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
        _unregister(record_path, self.name)

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
        busy, seen, finishing, full_up = 0, set(), self._finishing(), False
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
        self._forget_ended()
        return busy

    def _finishing(self) -> int:
        """How many running jobs have ended but for their process's exit; their slots are free.

        A runner's last act is to remove its queue entry, after its terminal marker. What is left
        (the process's exit, the zygote telling us, our reaping) takes a millisecond of a busy
        machine, during which the slot would stand idle. The job stays in ``_running``, its lock
        held, until it is reaped as usual.
        """
        names = self._entries.names()
        count = 0
        for ref, running in self._running.items():
            if running.ended is None and ref.entry_name not in names:
                running.ended = running.claim.job.marker()
            count += running.ended is not None
        return count

    def _consider(self, name: str, ref: JobRef, *, slots: bool) -> int:
        """Start the job of queue entry ``name`` if it can run (``slots``: a slot is free); 1 if it
        keeps this worker busy."""
        if ref in self._running or self._failed_starts.backing_off(ref):
            return 0  # a runner that could not start: not again before its back-off ends (idle till then)
        if not self._thorough and self._dependencies.blocked(name):
            return 0
        job = Job(self.workspace, ref)
        if job.marker() is not None:
            self._clean_finished(job)
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

    def _forget_ended(self) -> None:
        """Drop what is cached about jobs whose entry is gone, once that is most of the cache."""
        names = self._entries.names()
        if len(self._specs) > 2 * len(self._entries) + 64:
            self._specs.forget(names)
            self._dependencies.forget(names)
        if len(self._failed_starts) > len(self._entries):
            self._failed_starts.forget(names)

    def _clean_finished(self, job: Job) -> None:
        if not queue.contains(self.workspace.queue_dir, job.ref):
            return  # its runner (or our reaping) removed the entry since the view was refreshed
        # Under the lock: an experiment may be resubmitting this job right now (DESIGN invariant 4).
        lock = job.lock()
        if lock.try_acquire():
            try:
                if job.marker() is not None:
                    queue.remove(self.workspace.queue_dir, job.ref)
            finally:
                lock.release()

    def _claim(self, job: Job, spec: Spec, launcher: Launcher) -> int:
        # A run held here is stopped when a peer takes its lease; a job handed off is not ours to hold.
        on_lost = (lambda reason, ref=job.ref: self._on_lost(ref, reason)) if launcher.holds_slot else None
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
        self._running[job.ref] = _Running(claim, handle, self._idle_since)
        crash_point("claim.after-spawn")
        log.info("worker %s: started %s", self.name, job.ref)
        return 1

    # -- ending ----------------------------------------------------------------------------------

    def _on_lost(self, ref: JobRef, reason: str) -> None:
        # Called from the lease's heartbeat thread: only flag it; the main loop kills the run.
        running = self._running.get(ref)
        if running is not None:
            running.lost = True
            log.error("worker %s: lost the lease of %s (%s); stopping its run", self.name, ref, reason)
            self._wake()

    def _reap(self) -> None:
        for ref, running in list(self._running.items()):
            if running.lost and not running.released:
                running.released = True
                running.handle.cancel(signal.SIGKILL)
            code = running.handle.poll()
            if code is None:
                continue
            del self._running[ref]
            try:
                if not running.lost:  # else whoever took the lease records the job now, not us
                    self._record_end(running, code)
            except Error as error:
                self._specs.report(running.claim.job, error)
            finally:
                running.claim.lock.release()

    def _record_end(self, running: _Running, code: int) -> None:
        job, attempt = running.claim.job, running.claim.attempt
        # _finishing saw its marker, then its entry gone; under our lock neither comes back.
        ended = running.ended or lifecycle.runner_exited(
            job, attempt=attempt, worker=self.name, code=code, handed_back=running.released
        )
        if ended == "never-started":
            if not running.released:
                self._idle_since = self._failed_starts.failed(job, attempt, code, running.idle_before, self.name)
            return
        self._failed_starts.started(job.ref)
        if ended == "superseded":
            log.warning("worker %s: %s: attempt %d was superseded by another; nothing recorded",
                        self.name, job.ref, attempt)  # fmt: skip
        elif ended is State.DONE:
            log.info("worker %s: done %s", self.name, job.ref)
        elif ended is State.FAILED:
            why = status.failure_text(status.read_failure(job.xpm_dir))
            log.info("worker %s: failed %s (%s); see %s", self.name, job.ref, why, job.failure_log())

    def _hand_back(self) -> bool:
        """Kill running jobs to hand them back (or let them finish, with ``drain``); True while some run."""
        if not self.drain:
            for running in self._running.values():
                if not running.released:
                    running.released = True
                    running.handle.cancel(signal.SIGKILL)
        return bool(self._running)

    def _beat(self, record_path: Path) -> None:
        try:
            if not self._unregistered:
                heartbeat.beat(record_path)
        except FileNotFoundError:
            # Someone cleaned our registration (`xpmfs check --fix` thought us dead): register again.
            heartbeat.register(self.workspace.workers_dir, jobs=self.jobs, heartbeat=self.heartbeat)
        for running in self._running.values():
            if running.claim.job.cancel_path.exists() and not running.released:
                running.handle.cancel(signal.SIGTERM)


def _unregister(record_path: Path, name: str) -> None:
    try:
        os.unlink(record_path)
    except FileNotFoundError:
        pass
    except OSError as error:
        # Read-only, failing: the record goes stale (`xpmfs check --fix` removes it). The error
        # that ends the worker, if one does, is what to report, not this one.
        log.warning("worker %s: cannot remove %s (%s)", name, record_path, error.strerror)


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
        raise WorkspaceError(path, f"--jobs must be at least 1, not {jobs}", "give a positive number of job slots")
    users = tuple(trust_users)
    for user in users:
        try:
            resolve_user(user)
        except LookupError as error:
            raise OptionError("trust_users", str(error), "name an existing user, or give a uid") from None
    worker = Worker(
        workspace, jobs=jobs, idle_exit=idle_exit, rescan=rescan, drain=drain, trust_users=users, lifeline=lifeline
    )
    return worker.run()
