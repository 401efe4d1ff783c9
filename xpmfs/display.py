"""What an experiment prints while it waits for its jobs (see spec/progress.md).

:class:`StatusLine` gets the job counts per state and the failures so far from the waiting loop
(``experiment.wait()``) and prints them:

* on a terminal, one line redrawn in place (``12/20 done, 3 running, 5 waiting  0:42``), with
  each failure printed once above it as a permanent line naming the job and its ``.err``;
* elsewhere (CI logs, a file), a plain line only when the counts changed, at most every
  :data:`PLAIN_INTERVAL` seconds, and each failure once, at once;
* on :meth:`StatusLine.close`, a one-line summary (``experiment.wait()`` then raises
  ``FailedExperiment``, which lists the failures again).

It keeps no state that matters: what it prints is only what it was last given.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, NamedTuple

from .workspace import JOBS_DIR

#: Seconds between two redraws on a terminal, at least.
TTY_INTERVAL = 0.2
#: Seconds between two plain lines (not a terminal), at least.
PLAIN_INTERVAL = 10.0
#: The order states are shown in, by ``xpmfs top`` and here (a status line names ``done``
#: first, as ``12/20 done``); others, from newer writers, come after, sorted.
STATE_ORDER = ("running", "submitted", "ready", "waiting", "done", "failed", "unknown")
#: Each state's colour on a terminal, as rich style words (the colour last); ``stale``: a job
#: whose status says running while nobody runs it.
STATE_STYLES = {
    "running": "cyan",
    "submitted": "cyan",
    "ready": "yellow",
    "waiting": "dim yellow",
    "done": "green",
    "failed": "bold red",
    "unknown": "magenta",
    "stale": "magenta",
}


class Failure(NamedTuple):
    """A failed job: its folder, its ``.err`` file, and why (``reason: message``)."""

    job: str
    stderr: str
    reason: str = ""


def _text_counts(counts: Mapping[str, int]) -> str:
    total = sum(counts.values())
    parts = [f"{counts.get('done', 0)}/{total} done"]
    for state in (*(name for name in STATE_ORDER if name != "done"), *sorted(set(counts) - set(STATE_ORDER))):
        if counts.get(state):
            parts.append(f"{counts[state]} {state}")
    return ", ".join(parts)


def _short_job(job: str) -> str:
    """``<typeid>/<first 12 of the id>`` for a job folder ``WS/jobs/<typeid>/<jobid>`` (its .err names it whole)."""
    path = Path(job)
    if path.parent.parent.name == JOBS_DIR:
        return f"{path.parent.name}/{path.name[:12]}"
    return job


def clock(seconds: float, *, pad: bool = False) -> str:
    """A duration as ``1:02:03``, or ``2:03`` under an hour (``02:03`` with ``pad``, as tqdm prints it)."""
    minutes, seconds = divmod(int(max(0.0, seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{minutes:02d}:{seconds:02d}" if pad else f"{minutes}:{seconds:02d}"


def age(seconds: float) -> str:
    """How long ago, in one short word: ``42s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class StatusLine:
    """The experiment's status on ``stream`` (standard error by default).

    ``name`` prefixes every line (the experiment's name). ``is_tty`` forces the terminal (or the
    plain) behaviour; by default it is ``stream.isatty()`` (and not ``TERM=dumb``). ``clock`` is
    for tests.

    Use it as a context manager, or call :meth:`close` at the end::

        with StatusLine("squares") as line:
            while ...:
                if line.due():
                    line.update({"done": 3, "running": 2}, [Failure(job_dir, err_path, "error: ...")])
    """

    def __init__(
        self,
        name: str = "",
        stream: IO[str] | None = None,
        is_tty: bool | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if is_tty is None:
            try:
                is_tty = self.stream.isatty() and os.environ.get("TERM") != "dumb"
            except (AttributeError, ValueError):
                is_tty = False
        self.is_tty = is_tty
        self.prefix = f"{name}: " if name else ""
        self._clock = clock
        self._started = clock()
        self._interval = TTY_INTERVAL if is_tty else PLAIN_INTERVAL
        self._last_draw = -float("inf")  # when update() last drew (terminal) or compared (plain)
        self._counts: dict[str, int] = {}
        self._printed_counts: dict[str, int] | None = None  # plain mode: the counts of the last line
        self._failures: list[Failure] = []
        self._announced: set[str] = set()  # jobs whose failure was printed
        self._drawn = False  # terminal mode: a status line is on screen
        self.closed = False

    def __enter__(self) -> StatusLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def due(self) -> bool:
        """Whether :meth:`update` would redraw now: callers may skip counting until it is."""
        return self._clock() - self._last_draw >= self._interval

    def update(self, counts: Mapping[str, int], failures: Sequence[Failure | tuple[str, ...]] = ()) -> None:
        """Show ``counts`` (state -> number of jobs) and announce new ``failures`` (job, .err, reason)."""
        if self.closed:
            return
        self._counts = {state: number for state, number in counts.items() if number}
        self._failures = [item if isinstance(item, Failure) else Failure(*item) for item in failures]
        new = [item for item in self._failures if item.job not in self._announced]
        now = self._clock()
        if new:
            # A failure is news: it is printed at once, whatever the rate limit.
            self._clear()
            for item in new:
                self._announced.add(item.job)
                self._write(self._failure_line(item) + "\n")
        elif now - self._last_draw < self._interval:
            return  # kept: the next update or close() shows it
        self._last_draw = now
        if self.is_tty:
            self._draw_tty(now)
        elif self._counts != self._printed_counts:
            self._printed_counts = dict(self._counts)
            self._write(f"{self.prefix}{_text_counts(self._counts)}  {clock(now - self._started)}\n")

    def close(
        self, counts: Mapping[str, int] | None = None, failures: Sequence[Failure | tuple[str, ...]] | None = None
    ) -> None:
        """Replace the status line with the final summary (given counts, else the last ones)."""
        if self.closed:
            return
        if counts is not None:
            self._counts = {state: number for state, number in counts.items() if number}
        if failures is not None:
            self._failures = [item if isinstance(item, Failure) else Failure(*item) for item in failures]
        self.closed = True
        self._clear()
        elapsed = clock(self._clock() - self._started)
        total = sum(self._counts.values())
        self._write(f"{self.prefix}{total} job(s) in {elapsed}: {_text_counts(self._counts)}\n")
        # Failures not announced yet (given only now); the others were printed as they happened,
        # and experiment.wait() raises FailedExperiment listing them all.
        for item in self._failures:
            if item.job not in self._announced:
                self._announced.add(item.job)
                self._write(self._failure_line(item) + "\n")

    def say(self, text: str) -> None:
        """Print ``text`` as a line of its own (after the summary, once closed)."""
        self._clear()
        self._write(f"{self.prefix}{text}\n")

    # -- output --------------------------------------------------------------------------------

    def _failure_line(self, item: Failure) -> str:
        why = f" ({item.reason})" if item.reason else ""
        return f"{self.prefix}failed: {_short_job(item.job)}{why}; see {item.stderr}"

    def _draw_tty(self, now: float) -> None:
        text = f"{self.prefix}{_text_counts(self._counts)}  {clock(now - self._started)}"
        width = self._width()
        if len(text) >= width:
            # A line longer than the terminal wraps, and "\r" would then redraw only its end.
            text = text[: max(0, width - 2)] + "…"
        self._write("\r" + text + "\x1b[K")
        self._drawn = True

    def _clear(self) -> None:
        if self.is_tty and self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, ValueError, OSError):
            return 80

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed or broken stream must not stop the experiment
