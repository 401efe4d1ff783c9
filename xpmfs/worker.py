"""A worker: claims runnable jobs of a workspace and runs them, keeping nothing but files.

Any number of workers, on any hosts sharing the workspace, may run at once. A worker:

1. registers itself in ``WS/workers/`` and refreshes its heartbeat;
2. wakes on changes in ``WS/queue/`` (inotify) and rescans on a timer anyway;
3. for each queue entry whose dependencies are done, tries the job's lock: the lock *is* the claim;
4. starts the job's runner as a child that dies with it, and keeps the lock while it runs;
5. when the child ends without a terminal state (killed, crashed), records the failure itself.

On SIGTERM/SIGINT it stops claiming, hands its running jobs back (``ready``, queue entry kept,
lock released) so another worker takes them, and exits; with ``drain`` it lets them finish first.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from . import _atomic, heartbeat, queue, status
from ._crash import crash_point
from ._process import kill_job_group
from .errors import Error, OptionError, UntrustedError, WorkspaceError
from .job import XPM_DIR, Job, Spec
from .launchers import DirectLauncher, SlurmError, SlurmLauncher, slurm
from .lock import JobLock
from .queue import JobRef
from .runner import ENV_ATTEMPT, ENV_CLAIMED, ENV_LOCK_HELD, ENV_PARENT_PID, ENV_WORKER
from .status import Reason, State
from .trust import Trust, resolve_user
from .watch import Watcher
from .workspace import Workspace
from .zygote import ForkedProcess, Zygote

log = logging.getLogger("xpmfs.worker")

DEFAULT_RESCAN = 5.0
DEFAULT_HEARTBEAT = 2.0
# A waiting job is looked at again when the dependency it waits for ends; its own folder (a kill
# or a crash may have ended it while it waited) only on a pass this many seconds after the last.
THOROUGH_EVERY = 60.0
RETRY_SOON = 0.02  # seconds before looking again at a job whose lock was held only briefly
# A runner that dies before it records `running` (it could not start: a full disk, a broken
# interpreter...) is started again after 1, 2, 4... seconds; after this many such starts in a row,
# the job fails, saying why.
MAX_FAILED_STARTS = 3
FAILED_START_BACKOFF_CAP = 60.0
STDERR_TAIL = 2000  # bytes of a runner's .err quoted when it could not start


@dataclass
class _Running:
    job: Job
    spec: Spec
    lock: JobLock
    process: subprocess.Popen[bytes] | ForkedProcess
    env: dict[str, str]  # what the runner's environment adds to the worker's (see Worker._start)
    attempt: int  # the attempt this claim starts: records are fenced by it (spec/failure-model.md)
    idle_before: float  # the worker's idle clock when it claimed the job (see _failed_start)
    #: Set when its runner has recorded the end (this marker) and removed its queue entry: only the
    #: process's exit is left.
    ended: State | None = None
    released: bool = False  # we killed it to hand the job back
    lost: bool = False  # a peer took the lease (shared mode): the job is no longer ours to record


@dataclass
class _FailedStarts:
    """A job whose runner died before recording `running`, start after start (kept in memory only:
    a worker that restarts tries again, a bounded number of times)."""

    count: int
    retry_at: float  # time.monotonic() before which the job is not claimed again
    idle_since: float  # the worker's idle clock before the first of them: a failing loop is idle


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
    _orphaned: bool = False  # set from the lifeline's thread
    _unregistered: bool = False
    _running: dict[JobRef, _Running] = field(default_factory=dict)
    _specs: dict[JobRef, Spec] = field(default_factory=dict)  # specs are immutable: cache them
    _done: set[str] = field(default_factory=set)  # dependencies seen done ("<typeid>/<jobid>")
    _waiting: dict[str, str] = field(default_factory=dict)  # queue entry -> the dependency it waits for
    _thorough: bool = True  # this pass looks at every waiting job's own folder too
    _next_thorough: float = 0.0
    _pass_markers: dict[str, State | None] = field(default_factory=dict)  # dependencies' markers, this pass
    _reported: set[JobRef] = field(default_factory=set)  # damaged jobs already reported
    _refused: set[JobRef] = field(default_factory=set)  # jobs whose code belongs to a user not trusted
    _stopping: bool = False
    _cluster_checked: bool = False  # whether _no_cluster was looked up (once: which commands exist)
    _no_cluster: str | None = None  # why this host cannot submit or follow SLURM jobs
    warm: bool = True  # fork jobs from a warm runner (xpmfs.zygote) unless a job asks to be isolated
    _retry_soon: bool = False  # a claim met a lock held only briefly: rescan without waiting for events
    _zygote: Zygote | None = None
    _failed_starts: dict[JobRef, _FailedStarts] = field(default_factory=dict)
    _idle_since: float = 0.0

    def __post_init__(self) -> None:
        self._trust = Trust.of(self.trust_users)
        self._entries = queue.Entries(self.workspace.queue_dir)
        # Runners inherit the worker's environment as it was when the worker started: decoding
        # os.environ for every job was 6% of a busy worker's time.
        self._environ = dict(os.environ)

    def run(self) -> int:
        """Work until stopped (signal) or idle for ``idle_exit`` seconds; return the exit code."""
        record, record_path = heartbeat.register(self.workspace.workers_dir, jobs=self.jobs, heartbeat=self.heartbeat)
        self.name = record.name
        watcher = Watcher([self.workspace.queue_dir], rescan=self.rescan, track=True)
        self._watcher = watcher
        self._install_signal_handlers()
        if self.lifeline is not None:
            threading.Thread(target=self._follow_lifeline, name="xpmfs-lifeline", daemon=True).start()
        log.info("worker %s: %d slot(s) on %s", self.name, self.jobs, self.workspace.path)
        next_beat = 0.0
        self._idle_since = time.monotonic()
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
                        busy = self._schedule(full)
                        if self._running or busy:
                            self._idle_since = time.monotonic()
                    elif self._running:
                        self._idle_since = time.monotonic()
                    now = time.monotonic()
                    if now >= next_beat:
                        self._beat(record_path)
                        next_beat = now + self.heartbeat
                    if (
                        self.idle_exit is not None
                        and not self._running
                        and not self._stopping
                        and now - self._idle_since >= self.idle_exit
                    ):
                        log.info("worker %s: idle for %.1fs, exiting", self.name, self.idle_exit)
                        break
                    wait_for = next_beat - now
                    if self.idle_exit is not None and not self._running:
                        wait_for = min(wait_for, max(0.01, self._idle_since + self.idle_exit - now))
                    retry = self._retry_soon
                    if retry:
                        self._retry_soon = False
                        wait_for = min(wait_for, RETRY_SOON)
                    restart_at = min((failed.retry_at for failed in self._failed_starts.values()), default=None)
                    if restart_at is not None:
                        wait_for = min(wait_for, restart_at - now)
                    full = watcher.wait(max(0.0, wait_for))
                    # A heartbeat timeout alone changes nothing on disk: scan only when something
                    # happened (an event, a child's end), a retry is due, or a full rescan is.
                    due = full or watcher.woken or retry or (restart_at is not None and time.monotonic() >= restart_at)
        finally:
            if self._zygote is not None:
                self._zygote.close()
            try:
                os.unlink(record_path)
            except FileNotFoundError:
                pass
            except OSError as error:
                # Read-only, failing: the record goes stale (`xpmfs check --fix` removes it). The
                # error that ends the worker, if one does, is what to report, not this one.
                log.warning("worker %s: cannot remove %s (%s)", self.name, record_path, error.strerror)
        return 0

    # -- signals -------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_stop_signal)

    def _on_stop_signal(self, signum: int, frame: object) -> None:
        self._stopping = True
        self._watcher.wake()

    def stop(self) -> None:
        """Ask the worker to stop (thread-safe)."""
        self._stopping = True
        self._watcher.wake()

    def _follow_lifeline(self) -> None:
        assert self.lifeline is not None
        try:
            while os.read(self.lifeline, 512):
                pass  # nobody writes: only the end of file (every write end closed) matters
        except OSError:
            pass  # a bad descriptor is as good as a closed one
        self._orphaned = True
        self._watcher.wake()

    def _orphan(self, record_path: Path) -> None:
        """The experiment that started this embedded worker is gone (any exit, SIGKILL included):
        claim nothing more, let the running jobs finish and be recorded, then exit. The registration
        goes at once, so the next experiment starts a worker of its own instead of waiting for this
        one (spec/workspace.md, "Embedded workers")."""
        log.info(
            "worker %s: its experiment's process is gone; claiming no new job, finishing %d running",
            self.name,
            len(self._running),
        )
        self._stopping = self.drain = self._unregistered = True
        try:
            os.unlink(record_path)
        except FileNotFoundError:
            pass

    # -- scheduling ----------------------------------------------------------------------------

    def _schedule(self, full: bool) -> int:
        """Claim and start runnable jobs while slots are free, hand SLURM jobs to sbatch, and (on a
        full rescan) follow the SLURM jobs in flight; return how many jobs keep this worker busy."""
        self._pass_markers.clear()
        now = time.monotonic()
        self._thorough = full and now >= self._next_thorough
        if self._thorough:
            self._next_thorough = now + THOROUGH_EVERY
        # A full rescan lists queue/; other passes look only at the entries inotify said changed.
        self._entries.refresh(None if full else (os.path.basename(path) for path in self._watcher.take_changed()))
        cluster = self._cluster_problem() is None
        runnable = 0
        followed: list[tuple[Job, Spec, status.Status]] = []
        seen: set[str] = set()
        finishing = self._finishing()
        for name, ref in self._entries:  # oldest first, while a slot is free
            if len(self._running) - finishing >= self.jobs:
                break
            seen.add(name)
            runnable += self._consider(name, ref, cluster, followed, full_up=False)
        else:
            return self._end_pass(runnable, followed, full)
        if not cluster:
            return runnable + 1
        # Every slot is taken: only jobs that need none (SLURM's) can go on. Jobs known to run
        # here are skipped without a look: thousands of them wait in a busy queue.
        for name, ref in self._entries.unsettled(seen):
            runnable += self._consider(name, ref, cluster, followed, full_up=True)
        return self._end_pass(runnable, followed, full)

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
                running.ended = running.job.marker()
            count += running.ended is not None
        return count

    def _consider(
        self, name: str, ref: JobRef, cluster: bool, followed: list[tuple[Job, Spec, status.Status]], *, full_up: bool
    ) -> int:
        """Start, submit or note the job of queue entry ``name``; 1 if it keeps this worker busy."""
        if ref in self._running:
            return 0
        failed_starts = self._failed_starts.get(ref)
        if failed_starts is not None and time.monotonic() < failed_starts.retry_at:
            return 0  # its runner could not start: not again before its back-off ends (idle till then)
        blocker = self._waiting.get(name)
        if blocker is not None and not self._thorough:
            if self._dependency_marker(blocker) is None:
                return 0  # still waiting for the same dependency: nothing else to look at
            del self._waiting[name]
        job = Job(self.workspace, ref)
        if job.marker() is not None:
            self._clean_finished(job)
            return 0
        spec = self._spec(job)
        if spec is None:
            return 0
        kind = spec.launcher.get("type", DirectLauncher.TYPE)
        if kind == SlurmLauncher.TYPE:
            if not cluster:
                return 0
            try:
                return self._schedule_cluster(job, spec, followed)
            except Error as error:
                self._report(job, error)
                return 0
        if kind != DirectLauncher.TYPE:
            self._report(job, WorkspaceError(job.spec_path, f"unknown launcher {kind!r}", "upgrade xpmfs"))
            return 0
        self._entries.settle(name)  # run here: the passes where every slot is taken skip it
        if full_up:
            return 1
        if self._dependencies(spec) is State.WAITING:
            # Remember what it waits for: later passes look at that dependency alone (its own
            # folder is looked at again on a thorough pass, see THOROUGH_EVERY).
            self._waiting[name] = next(rel for rel in spec.dependencies if self._dependency_marker(rel) is None)
            return 0
        try:
            self._claim(job, spec)
        except Error as error:
            # One damaged job (unreadable status, ...) must not stop the worker: say it once.
            self._report(job, error)
        return 1

    def _end_pass(self, runnable: int, followed: list[tuple[Job, Spec, status.Status]], full: bool) -> int:
        if followed and full:
            self._follow(followed)
        self._forget_ended()
        return runnable

    def _forget_ended(self) -> None:
        """Drop what is cached about jobs whose entry is gone, once that is most of the cache."""
        if len(self._specs) > 2 * len(self._entries) + 64:
            self._specs = {ref: spec for ref, spec in self._specs.items() if ref.entry_name in self._entries.names()}
        if self._failed_starts and len(self._failed_starts) > len(self._entries):
            self._failed_starts = {
                ref: failed for ref, failed in self._failed_starts.items() if ref.entry_name in self._entries.names()
            }
        if len(self._waiting) > 2 * len(self._entries) + 64:
            self._waiting = {name: rel for name, rel in self._waiting.items() if name in self._entries.names()}
        if len(self._refused) > 2 * len(self._entries) + 64:
            self._refused = {ref for ref in self._refused if ref.entry_name in self._entries.names()}

    def _report(self, job: Job, error: Error) -> None:
        if job.ref not in self._reported:
            self._reported.add(job.ref)
            log.error("worker %s: skipping job %s: %s", self.name, job.ref, error)

    def _spec(self, job: Job) -> Spec | None:
        """The job's spec if it can be read and its owner is trusted (cached: specs are immutable)."""
        spec = self._specs.get(job.ref)
        if spec is None:
            if job.ref in self._refused and not self._thorough:
                return None  # a chown makes no event: looked at again on thorough passes only
            try:
                # The owner of the very file read: what the worker takes from the spec (the
                # interpreter, the environment, the import path) is then the owner's.
                spec, owner = job.read_owned_spec()
            except WorkspaceError as error:
                # A spec still being written has no file yet; anything else (damage, a newer
                # format) is reported once, and the job left alone.
                if job.spec_path.exists() and job.ref not in self._reported:
                    self._reported.add(job.ref)
                    log.error("worker %s: skipping job: %s", self.name, error)
                return None
            refusal = self._trust.refusal(job.spec_path, owner)
            if refusal is not None:
                self._refuse(job, refusal)
                return None
            self._refused.discard(job.ref)
            self._specs[job.ref] = spec
        return spec

    def _untrusted(self, job: Job) -> UntrustedError | None:
        """Why the job's code must not run, by the owners of its spec and ``<name>.py`` as they are
        now; asked under the job's lock, just before it is started or submitted (spec/workspace.md,
        "Trust")."""
        return self._trust.check(job.spec_path) or self._trust.check(job.script_path)

    def _refuse(self, job: Job, refusal: UntrustedError) -> None:
        """Leave a job whose code belongs to a user not trusted as it is (state, queue entry), and say
        so once."""
        self._refused.add(job.ref)
        self._specs.pop(job.ref, None)
        if job.ref not in self._reported:
            self._reported.add(job.ref)
            log.error("worker %s: refusing job %s: %s", self.name, job.ref, refusal)

    def _dependencies(self, spec: Spec, *, fresh: bool = False) -> State | tuple[State, str]:
        """``READY``, ``WAITING``, or ``(FAILED, which)`` when a dependency failed.

        Scans trust dependencies they saw done (a done job rarely leaves that state: only by an
        explicit `xpmfs retry --force`); a claim, under the job's lock, looks again (``fresh``).
        """
        verdict: State | tuple[State, str] = State.READY
        for relpath in spec.dependencies:
            if not fresh and relpath in self._done:
                continue
            marker = self._dependency_marker(relpath, fresh=fresh)
            if marker is State.FAILED:
                dependency = Job(self.workspace, JobRef.from_relpath(relpath))
                reason = status.read_failure(dependency.xpm_dir).get("reason", "error")
                return (State.FAILED, f"dependency {dependency.path} failed ({reason})")
            if marker is None:
                verdict = State.WAITING
        return verdict

    def _dependency_marker(self, relpath: str, *, fresh: bool = False) -> State | None:
        """The terminal marker of dependency ``relpath``, looked at once a pass (unless ``fresh``)."""
        if not fresh and relpath in self._done:
            return State.DONE
        if fresh or relpath not in self._pass_markers:
            # Many waiting jobs often share one dependency: look at its markers once a pass.
            self._pass_markers[relpath] = status.terminal_marker(self.workspace.jobs_dir / relpath / XPM_DIR)
        marker = self._pass_markers[relpath]
        if marker is State.DONE:
            self._done.add(relpath)
        return marker

    def _clean_finished(self, job: Job) -> None:
        if not queue.contains(self.workspace.queue_dir, job.ref):
            return  # its runner (or our reaping) removed the entry since the view was refreshed
        # Under the lock: an experiment may be resubmitting this job right now (DESIGN invariant 4).
        lock = job.lock()
        if not lock.try_acquire():
            return
        try:
            if job.marker() is not None:
                queue.remove(self.workspace.queue_dir, job.ref)
        finally:
            lock.release()

    def _claim(self, job: Job, spec: Spec) -> None:
        lock = job.lock(on_lost=lambda reason, ref=job.ref: self._on_lost(ref, reason))
        if not lock.try_acquire():
            # Another worker runs it, or someone holds it for a moment (an experiment writing its
            # status, the CLI): that release makes no event in queue/, so look again shortly.
            current = job.status()
            if current is None or current.state not in (State.RUNNING, State.SUBMITTED):
                self._retry_soon = True
            return
        claimed = time.time()
        crash_point("claim.after-lock")
        try:
            refusal = self._untrusted(job)
            if refusal is not None:
                # Replaced since the scan read it (or its script is not trusted): change nothing.
                lock.release()
                self._refuse(job, refusal)
                return
            # Everything may have changed between the scan and the claim: look again under the lock.
            if job.marker() is not None:
                queue.remove(self.workspace.queue_dir, job.ref)
                lock.release()
                return
            verdict = self._dependencies(spec, fresh=True)
            if verdict is State.WAITING:
                lock.release()
                return
            if isinstance(verdict, tuple):
                status.transition(job.xpm_dir, State.FAILED, reason=Reason.DEPENDENCY, message=verdict[1])
                queue.remove(self.workspace.queue_dir, job.ref)
                lock.release()
                return
            current = job.status()
            if status.complete_interrupted(job.xpm_dir, current) is not None:
                # A runner died between writing its final status and the marker: finish that.
                queue.remove(self.workspace.queue_dir, job.ref)
                lock.release()
                return
            if current is not None and current.state is State.RUNNING:
                # Its runner died and the lock came free; what its task started may still run.
                if current.host == socket.gethostname() and current.pid:
                    killed = kill_job_group(current.pid, str(job.path))
                    if killed:
                        log.info("worker %s: killed %d leftover process(es) of %s", self.name, killed, job.ref)
                # Record that before running it again.
                status.transition(
                    job.xpm_dir,
                    State.READY,
                    current=current,
                    message=f"previous run (pid {current.pid} on {current.host}) ended without a status",
                )
            self._start(job, spec, lock, claimed, (current.attempt if current is not None else 0) + 1)
        except BaseException:
            lock.release()
            raise

    def _start(self, job: Job, spec: Spec, lock: JobLock, claimed: float, attempt: int) -> None:
        # The runner's environment is the worker's with these on top (the warm runner is sent
        # only these: it started with the worker's environment).
        env = {
            **spec.environ,
            ENV_LOCK_HELD: "1",
            ENV_PARENT_PID: str(os.getpid()),
            ENV_WORKER: self.name,
            ENV_CLAIMED: repr(claimed),
            ENV_ATTEMPT: str(attempt),
        }
        process = self._fork_warm(job, spec, env) or self._start_fresh(job, spec, env)
        self._running[job.ref] = _Running(job, spec, lock, process, env, attempt, self._idle_since)
        crash_point("claim.after-spawn")
        log.info("worker %s: started %s", self.name, job.ref)

    def _start_fresh(self, job: Job, spec: Spec, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the job's runner as a new interpreter, ``python <name>.py``, with ``env`` added to
        the worker's environment."""
        mode = "ab" if spec.resumable else "wb"
        with _open_output(job.stdout_path, mode) as out, _open_output(job.stderr_path, mode) as err:
            process = subprocess.Popen(
                [spec.python, str(job.script_path)],
                cwd=job.path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**self._environ, **env},
                start_new_session=True,
            )
        threading.Thread(target=self._await, args=(process,), daemon=True).start()
        return process

    def _fork_warm(self, job: Job, spec: Spec, env: dict[str, str]) -> ForkedProcess | None:
        """Fork the job from the warm runner; ``None`` when it must (or could not) start fresh."""
        if not self.warm or spec.launcher.get("isolate") or not _same_python(spec.python):
            return None
        if self._zygote is None or not self._zygote.alive:
            # None yet, or it exited because a task module changed on disk: start a new one.
            self._zygote = Zygote(on_exit=self._watcher.wake, environ=self._environ)
        stdout, stderr = job.output_files
        request = {
            "job": job.folder,
            "env": {**env, ENV_PARENT_PID: str(self._zygote.process.pid)},  # the fork dies with the zygote
            "stdout": stdout,
            "stderr": stderr,
            "append": spec.resumable,
            "sys_path": list(spec.sys_path),
            "preload": [record["type"] for record in spec.config.get("objects", ()) if "type" in record],
        }
        return self._zygote.spawn(request)

    def _await(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self._watcher.wake()

    # -- SLURM jobs (spec/slurm.md) --------------------------------------------------------------

    def _cluster_problem(self) -> str | None:
        """Why this host cannot submit or follow SLURM jobs (then it leaves them to other workers)."""
        if not self._cluster_checked:
            self._cluster_checked = True
            self._no_cluster = slurm.available()
            if self._no_cluster is not None:
                log.info("worker %s: leaves SLURM jobs to other workers: %s", self.name, self._no_cluster)
        return self._no_cluster

    def _schedule_cluster(self, job: Job, spec: Spec, followed: list[tuple[Job, Spec, status.Status]]) -> int:
        """Submit a ready SLURM job, or note one in flight to follow; 1 if it keeps us busy."""
        current = job.status()
        if current is not None and current.state in (State.SUBMITTED, State.RUNNING) and current.cluster_id:
            mine = 1 if current.worker == self.name else 0
            if current.state is State.RUNNING and job.lock().probe():
                return mine  # its runner holds the lock: alive, nothing to follow
            followed.append((job, spec, current))
            return mine
        if current is not None and current.state is State.SUBMITTED:
            return 0  # no cluster id: a damaged record; `xpmfs kill`/`retry` repair it
        verdict = self._dependencies(spec)
        if verdict is State.WAITING:
            return 0
        self._claim_cluster(job, spec)
        return 1

    def _cluster_environ(self, claimed: float) -> dict[str, str | None]:
        # The runner takes the job's lock itself: never let it believe a parent holds it for it.
        return {ENV_LOCK_HELD: None, ENV_PARENT_PID: None, ENV_WORKER: self.name, ENV_CLAIMED: repr(claimed)}

    def _claim_cluster(self, job: Job, spec: Spec) -> None:
        """Hand the job to sbatch, record ``submitted`` with the SLURM job id, release the lock."""
        lock = job.lock()
        if not lock.try_acquire():
            return  # another worker is submitting it, or its runner started
        claimed = time.time()
        try:
            refusal = self._untrusted(job)
            if refusal is not None:
                self._refuse(job, refusal)  # the batch script would run code of a user not trusted
                return
            # Everything may have changed between the scan and the claim: look again under the lock.
            if job.marker() is not None or status.complete_interrupted(job.xpm_dir) is not None:
                queue.remove(self.workspace.queue_dir, job.ref)
                return
            verdict = self._dependencies(spec, fresh=True)
            if verdict is State.WAITING:
                return
            if isinstance(verdict, tuple):
                status.transition(job.xpm_dir, State.FAILED, reason=Reason.DEPENDENCY, message=verdict[1])
                queue.remove(self.workspace.queue_dir, job.ref)
                return
            current = job.status()
            if current is not None and current.state is State.SUBMITTED:
                return  # another worker submitted it since we looked
            if current is not None and current.state is State.RUNNING:
                if current.cluster_id:
                    return  # a SLURM run whose end the follower settles
                # Run by hand, and that runner died: record it before submitting again.
                status.transition(
                    job.xpm_dir,
                    State.READY,
                    current=current,
                    message=f"previous run (pid {current.pid} on {current.host}) ended without a status",
                )
            try:
                launcher = SlurmLauncher.from_json(spec.launcher)
                cluster_id = launcher.submit(job, spec, environ=self._cluster_environ(claimed))
            except SlurmError as error:
                if error.transient:
                    log.warning("worker %s: cannot submit %s now, will retry: %s", self.name, job.ref, error)
                    return
                self._fail_submission(job, f"cannot submit to SLURM: {error}")
                return
            except ValueError as error:
                self._fail_submission(job, f"bad SLURM launcher in {job.spec_path}: {error}")
                return
            # The SLURM job may start before this: its runner waits for the lock we hold.
            status.transition(
                job.xpm_dir,
                State.SUBMITTED,
                cluster_id=cluster_id,
                worker=self.name,
                claimed=claimed,
                pid=None,
                host=None,
                message=f"submitted to SLURM as job {cluster_id}"
                + (f" ({current.message})" if current is not None and current.reason is Reason.TIMEOUT else ""),
            )
            log.info("worker %s: submitted %s as SLURM job %s", self.name, job.ref, cluster_id)
        finally:
            lock.release()

    def _fail_submission(self, job: Job, message: str) -> None:
        log.error("worker %s: %s: %s", self.name, job.ref, message)
        status.transition(job.xpm_dir, State.FAILED, reason=Reason.ERROR, message=message)
        queue.remove(self.workspace.queue_dir, job.ref)

    def _follow(self, followed: list[tuple[Job, Spec, status.Status]]) -> None:
        """Ask SLURM once about every job in flight; settle those that ended without a status."""
        try:
            known = slurm.query([current.cluster_id for _, _, current in followed if current.cluster_id])
        except SlurmError as error:
            log.warning("worker %s: cannot follow SLURM jobs now: %s", self.name, error)
            return  # never conclude that a job vanished from a failed call
        for job, spec, seen in followed:
            assert seen.cluster_id is not None
            settled = slurm.settlement(seen.cluster_id, known.get(seen.cluster_id))
            if settled is not None:
                try:
                    self._settle(job, spec, seen, *settled)
                except Error as error:
                    self._report(job, error)

    def _settle(self, job: Job, spec: Spec, seen: status.Status, reason: Reason, message: str) -> None:
        """Record the end of a job whose SLURM job ended without its runner recording one."""
        lock = job.lock()
        if not lock.try_acquire():
            return  # its runner holds it: alive (fail closed), or another worker is settling it
        try:
            if job.marker() is not None or status.complete_interrupted(job.xpm_dir) is not None:
                queue.remove(self.workspace.queue_dir, job.ref)
                return
            current = job.status()
            if (
                current is None
                or current.state not in (State.SUBMITTED, State.RUNNING)
                or current.cluster_id != seen.cluster_id
            ):
                return  # it moved on since we looked (a runner started, a retry was submitted...)
            if reason is Reason.TIMEOUT and spec.resumable and current.retry_count < spec.max_retries:
                retry = current.retry_count + 1
                status.transition(
                    job.xpm_dir,
                    State.READY,
                    retry_count=retry,
                    reason=Reason.TIMEOUT,
                    ended=time.time(),
                    message=f"{message}; retry {retry} of {spec.max_retries}",
                )
                log.info("worker %s: %s: %s; retry %d", self.name, job.ref, message, retry)
                return  # the queue entry stays: the next claim submits it again
            status.transition(job.xpm_dir, State.FAILED, reason=reason, message=message)
            job.clear_cancel()  # as its runner would have: a kill request must not outlive the run
            queue.remove(self.workspace.queue_dir, job.ref)
            log.info("worker %s: %s: %s (%s)", self.name, job.ref, message, reason.value)
        finally:
            lock.release()

    # -- ending ----------------------------------------------------------------------------------

    def _on_lost(self, ref: JobRef, reason: str) -> None:
        # Called from the lease's heartbeat thread: only flag it; the main loop kills the run.
        running = self._running.get(ref)
        if running is not None:
            running.lost = True
            log.error("worker %s: lost the lease of %s (%s); stopping its run", self.name, ref, reason)
            self._watcher.wake()

    def _reap(self) -> None:
        for ref, running in list(self._running.items()):
            if running.lost and not running.released:
                running.released = True
                _kill_group(running.process.pid, signal.SIGKILL)
            code = running.process.poll()
            if code is None:
                continue
            refused = getattr(running.process, "refused", None)
            if refused is not None and not running.released and not running.lost:
                # The zygote did not fork it (a task module changed, or does not import): the
                # job never started; start it the fresh way, still under our lock.
                log.info("worker %s: %s starts in a new interpreter (%s)", self.name, ref, refused)
                try:
                    running.process = self._start_fresh(running.job, running.spec, running.env)
                    continue
                except OSError as error:
                    code = 1
                    log.error("worker %s: cannot start %s: %s", self.name, ref, error)
            del self._running[ref]
            if running.lost:
                running.lock.release()  # whoever took the lease records the job now, not us
                continue
            try:
                self._record_end(running, code)
            except Error as error:
                self._report(running.job, error)
            finally:
                running.lock.release()

    def _record_end(self, running: _Running, code: int) -> None:
        job = running.job
        if running.ended is not None:
            # _finishing saw its marker, then its entry gone; under our lock neither comes back.
            self._failed_starts.pop(job.ref, None)
            self._log_end(job, running.ended)
            return
        current = job.status()
        attempt = current.attempt if current is not None else 0
        if attempt > running.attempt or (
            attempt == running.attempt and current is not None and current.worker != self.name
        ):
            # Another attempt started since our claim (a lease taken over while this node was
            # frozen): its outcome is its own, and ours is not recorded (spec/failure-model.md).
            log.warning(
                "worker %s: %s: attempt %d was superseded by attempt %d; nothing recorded",
                self.name,
                job.ref,
                running.attempt,
                attempt,
            )
            return
        marker = job.marker()
        if marker is not None:
            queue.remove(self.workspace.queue_dir, job.ref)  # the runner may have died just before this
            self._log_end(job, marker)
            return
        marker = status.complete_interrupted(job.xpm_dir, current)
        if marker is not None:
            queue.remove(self.workspace.queue_dir, job.ref)  # the runner died between status and marker
            self._log_end(job, marker)
            return
        if attempt < running.attempt:
            # The runner died before it recorded `running`: it never started the task.
            if not running.released:
                self._failed_start(running, code, current)
            return
        self._failed_starts.pop(job.ref, None)
        if running.released:
            if current is not None and current.state is State.RUNNING:
                message = f"handed back by worker {self.name}"
                status.transition(job.xpm_dir, State.READY, fence=running.attempt, message=message)
            return
        if current is not None and current.state is State.READY:
            return  # the runner asked for a retry (resumable timeout); the queue entry stays
        if code < 0 and -code in (signal.SIGTERM, signal.SIGINT):
            reason, message = Reason.CANCELLED, f"runner killed by signal {-code}"
        elif code < 0:
            reason, message = Reason.ERROR, f"runner killed by signal {-code}"
        else:
            reason, message = Reason.ERROR, f"runner exited with code {code} without a status; see {job.stderr_path}"
        status.transition(
            job.xpm_dir, State.FAILED, fence=running.attempt, reason=reason, message=message, exit_code=code
        )
        crash_point("reap.after-failed")
        queue.remove(self.workspace.queue_dir, job.ref)
        self._log_end(job, State.FAILED)

    def _failed_start(self, running: _Running, code: int, current: status.Status | None) -> None:
        """A runner that died before recording `running`: back off, then fail the job after
        :data:`MAX_FAILED_STARTS` such starts in a row, saying why (its exit and its .err)."""
        job = running.job
        previous = self._failed_starts.get(job.ref)
        count = previous.count + 1 if previous is not None else 1
        idle_since = previous.idle_since if previous is not None else running.idle_before
        delay = min(2.0 ** (count - 1), FAILED_START_BACKOFF_CAP)
        # Before anything is written: should writing fail too (a full disk), the back-off holds.
        self._failed_starts[job.ref] = _FailedStarts(count, time.monotonic() + delay, idle_since)
        self._idle_since = idle_since  # a job that cannot start keeps no worker busy
        how = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        tail = _tail(job.stderr_path)
        said = f"; its stderr ends with:\n{tail}" if tail else f"; {job.stderr_path} says nothing"
        if count < MAX_FAILED_STARTS:
            log.error(
                "worker %s: the runner of %s did not start (%s; try %d of %d, next in %.0fs)%s",
                self.name,
                job.ref,
                how,
                count,
                MAX_FAILED_STARTS,
                delay,
                said,
            )
            return
        last = tail.rsplit("\n", 1)[-1] if tail else "no message"
        message = f"the runner never started ({count} tries; the last: {how}: {last}); see {job.stderr_path}"
        status.transition(
            job.xpm_dir,
            State.FAILED,
            current=current,
            fence=running.attempt - 1,
            reason=Reason.ERROR,
            message=message,
            exit_code=code,
        )
        queue.remove(self.workspace.queue_dir, job.ref)
        del self._failed_starts[job.ref]
        log.error("worker %s: %s%s", self.name, message, said)
        self._log_end(job, State.FAILED)

    def _log_end(self, job: Job, marker: State) -> None:
        """The line that ends a job's story in the worker's log ("started" began it)."""
        if marker is State.DONE:
            log.info("worker %s: done %s", self.name, job.ref)
            return
        why = status.failure_text(status.read_failure(job.xpm_dir))
        log.info("worker %s: failed %s (%s); see %s", self.name, job.ref, why, job.failure_log())

    def _hand_back(self) -> bool:
        """Kill running jobs to hand them back (or let them finish, with ``drain``); True while some run."""
        if not self.drain:
            for running in self._running.values():
                if not running.released:
                    running.released = True
                    _kill_group(running.process.pid, signal.SIGKILL)
        return bool(self._running)

    def _beat(self, record_path: Path) -> None:
        try:
            if not self._unregistered:
                heartbeat.beat(record_path)
        except FileNotFoundError:
            # Someone cleaned our registration (`xpmfs check --fix` thought us dead): register again.
            heartbeat.register(self.workspace.workers_dir, jobs=self.jobs, heartbeat=self.heartbeat)
        for running in self._running.values():
            if running.job.cancel_path.exists() and not running.released:
                _kill_group(running.process.pid, signal.SIGTERM)


@functools.lru_cache(maxsize=16)
def _same_python(python: str) -> bool:
    """Whether ``python`` (a spec's interpreter) is the one running this worker (asked per job)."""
    # Not samefile(): a venv's python is a symlink to the base interpreter, with other packages.
    return os.path.abspath(python) == os.path.abspath(sys.executable)


def _open_output(path: Path, mode: str) -> IO[bytes]:
    """A job's ``.out``/``.err`` opened for its runner; a full or read-only disk names the file."""
    try:
        return open(path, mode)  # the caller's `with` closes it
    except OSError as error:
        raise _atomic.write_error(path, error) from error


def _tail(path: Path) -> str:
    """The last lines of the file at ``path`` (at most :data:`STDERR_TAIL` bytes), stripped; "" if none."""
    try:
        with open(path, "rb") as stream:
            size = stream.seek(0, os.SEEK_END)
            stream.seek(max(0, size - STDERR_TAIL))
            data = stream.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return "\n".join(lines[1:] if size > STDERR_TAIL and len(lines) > 1 else lines)


def _kill_group(pid: int | None, signum: int) -> None:
    if pid is None:
        return  # a job the zygote refused: it never started
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


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
