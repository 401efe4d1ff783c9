"""Run modes: run an experiment for real, write its jobs without running them, or only show them.

``experiment(ws, name, run_mode=RunMode.DRY_RUN)`` checks an experiment before running it: every
submission is listed with its state in the workspace, and nothing is written. The values are
experimaestro 2.7's, so ``RunMode("dry-run")`` and experimaestro's ``--run-mode`` spellings work::

    normal     submit: write the job, queue it; workers run it (the default)
    generate   write the job's folder (spec, status, <name>.py), queue nothing
    dry-run    write nothing; list each job: [new], [done], [failed], [running]...
    prepare    experimaestro runs its Prepare configurations only; xpmfs has none: a dry run

A submission's ``submit(run_mode=...)`` can only make its own submission write less than the
experiment does (see :func:`effective`).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, TextIO

from .errors import OptionError

if TYPE_CHECKING:
    from .job import Job

#: The label of a job that has no folder in the workspace yet.
NEW = "new"


class RunMode(str, Enum):
    """How an experiment treats what it submits; the values are experimaestro's."""

    NORMAL = "normal"
    """Write and queue each job; workers run it."""

    GENERATE_ONLY = "generate"
    """Write each job's folder (spec, status, script) but queue nothing: no worker runs it."""

    DRY_RUN = "dry-run"
    """Write nothing at all; list each job with its state in the workspace."""

    PREPARE = "prepare"
    """experimaestro: run only the Prepare configurations. xpmfs has none: the same as a dry run."""

    @property
    def writes(self) -> bool:
        """Whether a submission in this mode writes the job's folder."""
        return self in (RunMode.NORMAL, RunMode.GENERATE_ONLY)

    @property
    def queues(self) -> bool:
        """Whether a submission in this mode queues the job for the workers."""
        return self is RunMode.NORMAL


def parse(value: RunMode | str | None, where: str) -> RunMode:
    """``value`` as a :class:`RunMode` (``None``: normal); an unknown one is an :class:`OptionError`."""
    if value is None:
        return RunMode.NORMAL
    try:
        return RunMode(value)
    except ValueError:
        known = ", ".join(repr(mode.value) for mode in RunMode)
        raise OptionError(where, f"unknown run mode {value!r}", f"use RunMode.DRY_RUN or one of {known}") from None


_WRITES_LESS = [RunMode.NORMAL, RunMode.GENERATE_ONLY, RunMode.DRY_RUN, RunMode.PREPARE]


def effective(experiment_mode: RunMode, submit_mode: RunMode | str | None) -> RunMode:
    """The mode of one submission: the experiment's, or the submission's own if it writes less.

    A dry-run experiment has no lock and no journal to record a real submission in, so
    ``submit(run_mode=RunMode.NORMAL)`` there is a dry run too; ``submit(run_mode=DRY_RUN)`` in a
    normal experiment only shows that job (experimaestro's identifier tests do this).
    """
    own = parse(submit_mode, "submit(run_mode=...)") if submit_mode is not None else experiment_mode
    return max(experiment_mode, own, key=_WRITES_LESS.index)


def state_label(job: Job) -> str:
    """How a listing names ``job``'s state: its terminal marker, its status, or ``new``."""
    from .errors import CorruptedError

    marker = job.marker()
    if marker is not None:
        return marker.value
    try:
        current = job.status()
    except CorruptedError:
        return "damaged"
    if current is not None:
        return current.state.value
    return NEW


@dataclass
class Listing:
    """What a dry (or generate-only) run prints: one entry per job, then a summary.

    ``[state] <typeid>/<jobid> (tags)``, then its launcher and dependencies, on ``stream``
    (standard error, like the experiment's status line).
    """

    name: str
    mode: RunMode
    stream: TextIO | None = None
    counts: Counter[str] = field(default_factory=Counter)
    seen: set[str] = field(default_factory=set)

    def job(
        self,
        relpath: str,
        state: str,
        tags: Mapping[str, Any],
        launcher: Mapping[str, Any],
        dependencies: Iterable[str],
    ) -> None:
        if relpath in self.seen:
            return  # submitted twice: listed once, like the jobs of a normal run
        self.seen.add(relpath)
        self.counts[state] += 1
        shown_tags = ", ".join(f"{key}={value}" for key, value in tags.items())
        lines = [f"[{state}] {relpath}{f' ({shown_tags})' if shown_tags else ''}"]
        lines.append(f"   launcher: {_launcher(launcher)}")
        lines.extend(f"   depends on: {dependency}" for dependency in dependencies)
        self._print("\n".join(lines))

    def summary(self) -> str:
        total = sum(self.counts.values())
        states = ", ".join(f"{count} {state}" for state, count in sorted(self.counts.items()))
        what = "nothing was written" if self.mode is not RunMode.GENERATE_ONLY else "nothing was queued"
        return f"{self.name}: {self.mode.value}: {total} job(s){': ' + states if states else ''}; {what}"

    def close(self) -> None:
        self._print(self.summary())

    def _print(self, text: str) -> None:
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            print(text, file=stream, flush=True)
        except (OSError, ValueError):
            pass  # a closed or broken stream: the listing never stops an experiment


def _launcher(record: Mapping[str, Any]) -> str:
    options = ", ".join(f"{key}={value}" for key, value in record.items() if key != "type")
    return f"{record.get('type', 'direct')}{f' ({options})' if options else ''}"


__all__ = ["NEW", "Listing", "RunMode", "effective", "parse", "state_label"]
