"""The protocol between a worker and its launchers: how a claimed job gets run, whatever runs it.

A spec's ``launcher`` record (:class:`~xpmfs.launchers.DirectLauncher`,
:class:`~xpmfs.launchers.SlurmLauncher`) says *what* a job asks for; a worker holds one
:class:`Launcher` object per kind, which *does* it: starts a claimed job and returns a
:class:`Handle` to poll and cancel, or hands the job off (a cluster scheduler), then follows it
until it ends. The worker loop knows no launcher by name; it asks
:class:`xpmfs.launchers.Launchers` for the one a spec names. A job's runner asks
:func:`xpmfs.launchers.inside` for the scheduler job it runs in, if any (:class:`Inside`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..job import Job, Spec
    from ..lifecycle import Claim
    from ..status import Status


@dataclass(frozen=True)
class Context:
    """What launchers share with the worker that holds them."""

    worker: str  # the worker's name
    environ: Mapping[str, str]  # the worker's environment as it started: runners inherit it
    wake: Callable[[], None]  # wakes the worker's loop (a run ended)
    warm: bool = True  # fork direct jobs from a warm runner (xpmfs.zygote)


class Handle(Protocol):
    """A job's run that the worker holds the lock of while it runs."""

    @property
    def pid(self) -> int | None:
        """The runner's pid (its process group), ``None`` if it never started."""

    def poll(self) -> int | None:
        """``None`` while it runs, else its exit code (negative: killed by that signal)."""

    def cancel(self, signum: int) -> None:
        """Send ``signum`` to the run's process group (SIGTERM: stop; SIGKILL: hand back)."""


class Inside(Protocol):
    """The runner's side of a launcher: the scheduler job (a SLURM job) this runner runs in."""

    cluster_id: str  # the scheduler's id of the job
    name: str  # the job in messages: ``SLURM job 42``

    def remaining_time(self) -> float | None:
        """Seconds left before the scheduler ends the job (``None``: no limit); what
        ``ResumableTask.remaining_time()`` answers."""

    def runs(self, launcher: Mapping[str, Any]) -> bool:
        """Whether the scheduler job was submitted for a job whose spec's ``launcher`` record is
        this launcher's (not, say, for a worker started in an allocation, running direct jobs)."""

    def lock_wait(self, lease_duration: float) -> float:
        """How long the runner waits for the job's lock (its submitter may still hold it)."""

    def timed_out(self) -> bool:
        """Asked on SIGTERM: whether it came at the time limit (else it is a cancellation)."""


class Launcher(Protocol):
    """One kind of launcher, as a worker uses it."""

    #: Whether a job it runs takes one of the worker's slots (its runner is the worker's child).
    holds_slot: bool

    def problem(self) -> str | None:
        """Why this host cannot launch such jobs (then they are left to other workers), or ``None``."""

    def start(self, claim: Claim) -> Handle | None:
        """Start the claimed job: a :class:`Handle` if the worker keeps the lock while it runs,
        ``None`` if the job was handed off (the worker releases the lock) or could not start now.
        Raises :class:`~xpmfs.errors.Error` for a job that cannot be started (reported, skipped)."""

    def track(self, job: Job, spec: Spec, current: Status) -> bool:
        """Whether ``job`` (``current``) was handed off and may still run there; if so it is
        followed at the next :meth:`follow`."""

    def follow(self, full: bool) -> None:
        """At the end of each pass: on a full one (``full``), ask about every job tracked during
        the pass and settle those that ended without their runner recording it."""

    def close(self) -> None:
        """Let go of what the launcher holds (the worker is stopping)."""
