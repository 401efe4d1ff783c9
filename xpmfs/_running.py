"""The runs a worker holds the lock of (its slots), and what it does when each one ends."""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Container
from dataclasses import dataclass

from . import lifecycle, status
from ._memory import FailedStarts
from .errors import Error
from .job import Job
from .launchers import Handle
from .queue import JobRef
from .status import State

log = logging.getLogger("xpmfs.worker")


@dataclass
class _Run:
    claim: lifecycle.Claim
    handle: Handle
    idle_before: float  # the worker's idle clock when it claimed the job (see FailedStarts)
    #: Set when its runner has recorded the end (this marker) and removed its queue entry: only the
    #: process's exit is left.
    ended: State | None = None
    released: bool = False  # we killed it to hand the job back
    lost: bool = False  # a peer took the lease (shared mode): the job is no longer ours to record


class Running:
    """A worker's running jobs, each with its claim (the lock) and its launcher's handle."""

    def __init__(self, worker: str, report: Callable[[Job, Error], None], wake: Callable[[], None]) -> None:
        self._worker = worker
        self._report = report  # says once that a job is skipped (a damaged record)
        self._wake = wake
        self._runs: dict[JobRef, _Run] = {}
        self.failed_starts = FailedStarts()

    def __len__(self) -> int:
        return len(self._runs)

    def __contains__(self, ref: object) -> bool:
        return ref in self._runs

    def add(self, claim: lifecycle.Claim, handle: Handle, idle_since: float) -> None:
        self._runs[claim.job.ref] = _Run(claim, handle, idle_since)

    def finishing(self, entries: Container[str]) -> int:
        """How many running jobs have ended but for their process's exit; their slots are free.

        A runner's last act is to remove its queue entry (``entries`` are those left), after its
        terminal marker. What is left (the process's exit, the zygote telling us, our reaping) takes
        a millisecond of a busy machine, during which the slot would stand idle. The job stays
        here, its lock held, until it is reaped as usual.
        """
        count = 0
        for ref, run in self._runs.items():
            if run.ended is None and ref.entry_name not in entries:
                run.ended = run.claim.job.marker()
            count += run.ended is not None
        return count

    def lost(self, ref: JobRef, reason: str) -> None:
        """A peer took the lease of ``ref`` (from the lease's heartbeat thread): only flag it; the
        main loop kills the run."""
        run = self._runs.get(ref)
        if run is not None:
            run.lost = True
            log.error("worker %s: lost the lease of %s (%s); stopping its run", self._worker, ref, reason)
            self._wake()

    def cancel_requested(self) -> None:
        """Stop (SIGTERM) the runs whose job has a cancel request (`xpmfs kill`)."""
        for run in self._runs.values():
            if run.claim.job.cancel_path.exists() and not run.released:
                run.handle.cancel(signal.SIGTERM)

    def stop(self, *, kill: bool) -> bool:
        """Kill the runs to hand their jobs back (or, without ``kill``, let them finish); True while
        some run."""
        if kill:
            for run in self._runs.values():
                if not run.released:
                    run.released = True
                    run.handle.cancel(signal.SIGKILL)
        return bool(self._runs)

    def reap(self) -> float | None:
        """Record the end of each run that ended and release its lock. Returns the worker's idle
        clock to go back to when a runner could not start (such a job keeps no worker busy)."""
        idle_since = None
        for ref, run in list(self._runs.items()):
            if run.lost and not run.released:
                run.released = True
                run.handle.cancel(signal.SIGKILL)
            code = run.handle.poll()
            if code is None:
                continue
            del self._runs[ref]
            try:
                if not run.lost:  # else whoever took the lease records the job now, not us
                    idle_since = self._ended(run, code) or idle_since
            except Error as error:
                self._report(run.claim.job, error)
            finally:
                run.claim.lock.release()
        return idle_since

    def _ended(self, run: _Run, code: int) -> float | None:
        job, attempt = run.claim.job, run.claim.attempt
        # `finishing` saw its marker, then its entry gone; under our lock neither comes back.
        ended = run.ended or lifecycle.runner_exited(
            job, attempt=attempt, worker=self._worker, code=code, handed_back=run.released
        )
        if ended == "never-started":
            if run.released:
                return None
            return self.failed_starts.failed(job, attempt, code, run.idle_before, self._worker)
        self.failed_starts.started(job.ref)
        if ended == "superseded":
            log.warning("worker %s: %s: attempt %d was superseded; nothing recorded", self._worker, job.ref, attempt)
        elif ended is State.DONE:
            log.info("worker %s: done %s", self._worker, job.ref)
        elif ended is State.FAILED:
            why = status.failure_text(status.read_failure(job.xpm_dir))
            log.info("worker %s: failed %s (%s); see %s", self._worker, job.ref, why, job.failure_log())
        return None


__all__ = ["Running"]
