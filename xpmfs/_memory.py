"""What a worker remembers between passes over the queue: caches of what the files say, each
rebuildable by a rescan (DESIGN: no process holds state that a rescan cannot rebuild).

- :class:`Dependencies`: which dependencies were seen done, each one's marker this pass, and which
  dependency each waiting job waits for (so that a pass looks at that one file only);
- :class:`Specs`: specs read (they are immutable), jobs refused as untrusted, damage reported once;
- :class:`FailedStarts`: jobs whose runner died before it recorded ``running``, and their back-off.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection, Container
from dataclasses import dataclass
from pathlib import Path

from . import lifecycle, status
from .errors import Error, UntrustedError, WorkspaceError
from .job import XPM_DIR, Job, Spec
from .queue import JobRef
from .status import State
from .trust import Trust

log = logging.getLogger("xpmfs.worker")

# A runner that dies before it records `running` (it could not start: a full disk, a broken
# interpreter...) is started again after 1, 2, 4... seconds; after this many such starts in a row,
# the job fails, saying why.
MAX_FAILED_STARTS = 3
FAILED_START_BACKOFF_CAP = 60.0
STDERR_TAIL = 2000  # bytes of a runner's .err quoted when it could not start


class Dependencies:
    """Dependency markers as a worker's passes see them.

    Passes trust dependencies they saw done (a done job rarely leaves that state: only by an
    explicit `xpmfs retry --force`); a claim, under the job's lock, looks again (:meth:`fresh`).
    """

    def __init__(self, jobs_dir: Path) -> None:
        self._jobs_dir = jobs_dir
        self._done: set[str] = set()  # dependencies seen done ("<typeid>/<jobid>")
        self._pass: dict[str, State | None] = {}  # dependencies' markers, this pass
        self._waiting: dict[str, str] = {}  # queue entry -> the dependency it waits for

    def new_pass(self) -> None:
        self._pass.clear()

    def marker(self, relpath: str) -> State | None:
        """The terminal marker of dependency ``relpath``, looked at once a pass."""
        if relpath in self._done:
            return State.DONE
        if relpath not in self._pass:
            # Many waiting jobs often share one dependency: look at its markers once a pass.
            self._pass[relpath] = self.fresh(relpath)
        return self._pass[relpath]

    def fresh(self, relpath: str) -> State | None:
        """The terminal marker of dependency ``relpath``, looked at now."""
        marker = self._pass[relpath] = status.terminal_marker(f"{self._jobs_dir}/{relpath}/{XPM_DIR}")
        if marker is State.DONE:
            self._done.add(relpath)
        return marker

    def waits(self, name: str, spec: Spec) -> bool:
        """Whether the job of queue entry ``name`` waits for a dependency. Which one is remembered:
        later passes look at that dependency alone (:meth:`blocked`)."""
        found = lifecycle.verdict(spec.dependencies, self.marker)
        if found.state is State.WAITING:
            assert found.dependency is not None
            self._waiting[name] = found.dependency
            return True
        self._waiting.pop(name, None)
        return False

    def blocked(self, name: str) -> bool:
        """Whether queue entry ``name`` waits for a dependency not ended yet (no file looked at
        but that dependency's markers, once a pass)."""
        blocker = self._waiting.get(name)
        return blocker is not None and self.marker(blocker) is None

    def forget(self, names: Container[str]) -> None:
        """Drop waiting jobs whose queue entry is not in ``names``."""
        self._waiting = {name: rel for name, rel in self._waiting.items() if name in names}


class Specs:
    """Specs a worker read, the trust it checks them with, and the jobs it reported once."""

    def __init__(self, trust: Trust, worker: Callable[[], str]) -> None:
        self._trust = trust
        self._worker = worker
        self._specs: dict[JobRef, Spec] = {}  # specs are immutable: cache them
        self._refused: set[JobRef] = set()  # jobs whose code belongs to a user not trusted
        self._reported: set[JobRef] = set()  # damaged or refused jobs already reported

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, job: Job, thorough: bool) -> Spec | None:
        """The job's spec if it can be read and its owner is trusted (a refused job is looked at
        again on ``thorough`` passes only: a chown makes no event)."""
        spec = self._specs.get(job.ref)
        if spec is not None:
            return spec
        if job.ref in self._refused and not thorough:
            return None
        try:
            # The owner of the very file read: what the worker takes from the spec (the
            # interpreter, the environment, the import path) is then the owner's.
            spec, owner = job.read_owned_spec()
        except WorkspaceError as error:
            # A spec still being written has no file yet; anything else (damage, a newer
            # format) is reported once, and the job left alone.
            if job.spec_path.exists():
                self.report(job, error, "skipping job: ")
            return None
        if not self._trust.trusts(owner):  # the path is named only in a refusal (its two Path objects: ~5 µs a spec)
            self.refuse(job, self._trust.untrusted(job.spec_path, owner))
            return None
        self._refused.discard(job.ref)
        self._specs[job.ref] = spec
        return spec

    def untrusted(self, job: Job) -> UntrustedError | None:
        """Why the job's code must not run, by the owners of its spec and ``<name>.py`` as they are
        now; asked under the job's lock, just before it is started or submitted (spec/workspace.md,
        "Trust")."""
        return self._trust.check(job.spec_path) or self._trust.check(job.script_path)

    def refuse(self, job: Job, refusal: UntrustedError) -> None:
        """Leave a job whose code belongs to a user not trusted as it is (state, queue entry), and
        say so once."""
        self._refused.add(job.ref)
        self._specs.pop(job.ref, None)
        self.report(job, refusal, f"refusing job {job.ref}: ")

    def report(self, job: Job, error: Error, what: str = "") -> None:
        """Say once that ``job`` is skipped: one damaged job must not stop the worker."""
        if job.ref not in self._reported:
            self._reported.add(job.ref)
            log.error("worker %s: %s%s", self._worker(), what or f"skipping job {job.ref}: ", error)

    def forget(self, names: Container[str]) -> None:
        """Drop what is cached of jobs whose queue entry is not in ``names``."""
        self._specs = {ref: spec for ref, spec in self._specs.items() if ref.entry_name in names}
        self._refused = {ref for ref in self._refused if ref.entry_name in names}


@dataclass
class _Failed:
    count: int
    retry_at: float  # time.monotonic() before which the job is not claimed again
    idle_since: float  # the worker's idle clock before the first of them: a failing loop is idle


class FailedStarts:
    """Jobs whose runner died before recording ``running``, start after start (kept in memory
    only: a worker that restarts tries again, a bounded number of times)."""

    def __init__(self) -> None:
        self._failed: dict[JobRef, _Failed] = {}

    def __len__(self) -> int:
        return len(self._failed)

    def backing_off(self, ref: JobRef) -> bool:
        failed = self._failed.get(ref)
        return failed is not None and time.monotonic() < failed.retry_at

    def next_retry(self) -> float | None:
        """When the soonest back-off ends (``time.monotonic()``), if any."""
        return min((failed.retry_at for failed in self._failed.values()), default=None)

    def started(self, ref: JobRef) -> None:
        """The job's runner started (or ended it): its count starts again."""
        self._failed.pop(ref, None)

    def failed(self, job: Job, attempt: int, code: int, idle_before: float, worker: str) -> float:
        """Count a runner that died before recording ``running``; fail the job after
        :data:`MAX_FAILED_STARTS` such starts in a row, saying why (its exit and its .err).
        Returns the worker's idle clock: a job that cannot start keeps no worker busy."""
        previous = self._failed.get(job.ref)
        count = previous.count + 1 if previous is not None else 1
        idle_since = previous.idle_since if previous is not None else idle_before
        delay = min(2.0 ** (count - 1), FAILED_START_BACKOFF_CAP)
        # Before anything is written: should writing fail too (a full disk), the back-off holds.
        self._failed[job.ref] = _Failed(count, time.monotonic() + delay, idle_since)
        how = f"exit code {code}" if code >= 0 else f"killed by signal {-code}"
        tail = _tail(job.stderr_path)
        said = f"; its stderr ends with:\n{tail}" if tail else f"; {job.stderr_path} says nothing"
        if count < MAX_FAILED_STARTS:
            log.error(
                "worker %s: the runner of %s did not start (%s; try %d of %d, next in %.0fs)%s",
                worker,
                job.ref,
                how,
                count,
                MAX_FAILED_STARTS,
                delay,
                said,
            )
            return idle_since
        last = tail.rsplit("\n", 1)[-1] if tail else "no message"
        message = f"the runner never started ({count} tries; the last: {how}: {last}); see {job.stderr_path}"
        lifecycle.never_started(job, attempt=attempt, code=code, message=message)
        del self._failed[job.ref]
        log.error("worker %s: %s%s", worker, message, said)
        return idle_since

    def forget(self, names: Container[str]) -> None:
        self._failed = {ref: failed for ref, failed in self._failed.items() if ref.entry_name in names}


def forget_ended(names: Collection[str], specs: Specs, dependencies: Dependencies, failed: FailedStarts) -> None:
    """Drop what is cached about jobs whose queue entry is gone (not in ``names``), once that is
    most of the cache."""
    if len(specs) > 2 * len(names) + 64:
        specs.forget(names)
        dependencies.forget(names)
    if len(failed) > len(names):
        failed.forget(names)


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
