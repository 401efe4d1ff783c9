"""``xpmfs top``: a live view of a workspace in the terminal (see spec/progress.md).

One frame is a :class:`Frame`, read from the files by :func:`snapshot` (the same reads as
``xpmfs ls``, plus each running job's ``progress.json`` and the tail of its output) and drawn by
:func:`render` with rich. :func:`run` redraws when :class:`xpmfs.watch.Watcher` wakes it: on an
event in ``queue/`` (a job submitted or ended) or ``workers/`` (a worker came, went, or beat), and
on its rescan timer, which also catches what raises no event here (a job starting, progress,
another host's writes). Nothing is kept between frames: every frame is read afresh.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import heartbeat
from .catalog import JobInfo, last_log_line, list_jobs
from .display import STATE_ORDER, STATE_STYLES, clock
from .heartbeat import WorkerInfo
from .job import Job
from .progress import Progress
from .status import Reason, State
from .watch import Watcher
from .workspace import Workspace

#: Seconds between two full rescans (what raises no event: a job starting, its progress).
DEFAULT_RESCAN = 1.0
#: Seconds between two frames at least, however many events arrive (a burst of submissions).
MIN_FRAME = 0.2
#: How many of the most recent failures a frame lists.
MAX_FAILED = 5
#: States counted only when some job is in them (rare: a cluster launcher, a damaged job).
_SHOWN_IF_ANY = frozenset({"submitted", "unknown"})


@dataclass(frozen=True)
class RunningJob:
    """A job whose status says running (or submitted): where, for how long, how far, what it said."""

    info: JobInfo
    last_line: str | None

    @property
    def runtime(self) -> float | None:
        started = self.info.status.started if self.info.status is not None else None
        return time.time() - started if started else None


@dataclass(frozen=True)
class FailedJob:
    """A failed job and the file that says why (its ``<name>.err``)."""

    info: JobInfo
    stderr: Path


@dataclass(frozen=True)
class Frame:
    """What one screen of ``xpmfs top`` shows."""

    workspace: Path
    experiment: str | None
    taken: float  # time.time() when it was read
    counts: dict[str, int]  # state label -> number of jobs, every label of STATE_ORDER
    stale: int  # running or submitted jobs whose process is gone
    running: tuple[RunningJob, ...]
    failed: tuple[FailedJob, ...]  # the most recent failures, newest first
    workers: tuple[WorkerInfo, ...]
    busy: dict[str, int]  # worker name -> how many running jobs name it

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def snapshot(ws: Workspace, experiment: str | None = None) -> Frame:
    """Read one frame from the workspace's files."""
    infos = list_jobs(ws, experiment=experiment, brief=True)  # counted, not shown: no status needed
    counts = Counter(info.label for info in infos)
    running = []
    busy: Counter[str] = Counter()
    for info in infos:
        if info.state in (State.RUNNING, State.SUBMITTED):
            running.append(RunningJob(info, last_log_line(Job(ws, info.ref)) if info.state is State.RUNNING else None))
            if info.status is not None and info.status.worker and not info.stale:
                busy[info.status.worker] += 1
    running.sort(key=lambda row: (row.info.status.started or 0.0) if row.info.status else 0.0)
    failed = sorted(
        (info for info in infos if info.state is State.FAILED),
        key=lambda info: (info.status.ended or 0.0) if info.status is not None else 0.0,
        reverse=True,
    )
    workers = sorted(heartbeat.scan(ws.workers_dir), key=lambda item: (item.record.host, item.record.pid))
    return Frame(
        workspace=ws.path,
        experiment=experiment,
        taken=time.time(),
        counts={label: counts.get(label, 0) for label in STATE_ORDER},
        stale=sum(1 for info in infos if info.stale),
        running=tuple(running),
        failed=tuple(FailedJob(info, Job(ws, info.ref).failure_log()) for info in failed[:MAX_FAILED]),
        workers=tuple(workers),
        busy=dict(busy),
    )


# -- drawing -----------------------------------------------------------------------------------


def _one_line(text: str | None) -> str:
    """Text from a task (a message, an exception) as one line: no newline or control character."""
    kept = []
    for char in text or "":
        if char in "\r\n\t":
            kept.append(" ")
        elif char.isprintable():
            kept.append(char)
    return "".join(kept)


def _job_name(info: JobInfo) -> str:
    return f"{info.ref.typeid}/{info.ref.jobid[:12]}"


def _bar(reported: Progress | None, width: int = 12) -> Text:
    """``━━━━━━──────  42%``: a bar and the percentage as ``ls`` shows it (rounded down)."""
    if reported is None or reported.fraction is None:
        return Text("")
    filled = int(reported.fraction * width)
    text = Text("━" * filled, style="green")
    text.append("─" * (width - filled), style="grey37")
    text.append(f" {reported.percent:>4}")
    return text


def render(frame: Frame, *, live: bool = False) -> RenderableType:
    """The frame as rich renderables: a header, the counts, running jobs, failures, workers.

    ``live``: the frame is redrawn (the header says how to quit).
    """
    title = Text("xpmfs top  ", style="bold")
    title.append(str(frame.workspace))
    if frame.experiment:
        title.append(f"  experiment {frame.experiment}", style="bold")
    title.append(time.strftime("  %H:%M:%S", time.localtime(frame.taken)), style="dim")
    if live:
        title.append("   (q or Ctrl-C quits)", style="dim")

    counts = Text(f"{frame.total} job{'' if frame.total == 1 else 's'}: ", style="bold")
    shown = [label for label in STATE_ORDER if frame.counts.get(label) or label not in _SHOWN_IF_ANY]
    for index, label in enumerate(shown):
        number = frame.counts.get(label, 0)
        if index:
            counts.append(" · ", style="dim")
        counts.append(f"{label} {number}", style=STATE_STYLES[label] if number else "dim")
    if frame.stale:
        counts.append(f"   ({frame.stale} stale: their process is gone; `xpmfs check --fix`)", style="magenta")

    parts: list[RenderableType] = [title, counts, Text("")]

    running = Table(title="running", title_justify="left", title_style="bold", expand=False, box=None, padding=(0, 1))
    for name, options in (
        # Narrow terminals shrink the free-text columns first; numbers keep their width.
        ("job", {"no_wrap": True, "overflow": "ellipsis", "min_width": 20, "max_width": 48}),
        ("host", {"no_wrap": True, "overflow": "ellipsis", "min_width": 6, "max_width": 20}),
        ("runtime", {"no_wrap": True, "justify": "right", "min_width": 7}),
        ("progress", {"no_wrap": True, "min_width": 17}),
        ("message", {"no_wrap": True, "overflow": "ellipsis", "max_width": 40, "ratio": 1}),
        ("last line", {"no_wrap": True, "overflow": "ellipsis", "ratio": 2}),
    ):
        running.add_column(name, header_style="dim", **options)
    for row in frame.running:
        info, status = row.info, row.info.status
        job = Text(_job_name(info))
        if info.stale:
            job.append(" (stale)", style="magenta")
        elif info.state is State.SUBMITTED:
            job.append(" (submitted)", style="cyan")
        reported = info.progress
        running.add_row(
            job,
            status.host if status is not None and status.host else "-",
            clock(row.runtime) if row.runtime is not None else "-",
            _bar(reported),
            Text(_one_line(reported.detail)) if reported is not None else Text(""),  # nested levels too
            Text(row.last_line or "", style="dim"),
        )
    parts.append(running if frame.running else Text("no job running", style="dim"))

    if frame.failed:
        # Lines, not a table: the .err path is what one copies, so it is never cut (it folds).
        parts += [Text(""), Text("failed (latest)", style="bold red")]
        for item in frame.failed:
            info = item.info
            reason = info.reason.value if isinstance(info.reason, Reason) else str(info.reason or "error")
            line = Text(" " + _job_name(info) + "  ", no_wrap=True, overflow="ellipsis")
            line.append(_one_line(reason + (f": {info.message}" if info.message else "")), style="red")
            parts += [line, Text(f"   see {item.stderr}", style="dim", overflow="fold")]

    parts.append(Text(""))
    if frame.workers:
        workers = Table(title="workers", title_justify="left", title_style="bold", box=None, padding=(0, 1))
        for name in ("worker", "host", "pid", "jobs", "heartbeat", "state"):
            workers.add_column(name, no_wrap=True, header_style="dim")
        for worker in frame.workers:
            record = worker.record
            workers.add_row(
                record.name,
                record.host,
                str(record.pid),
                f"{frame.busy.get(record.name, 0)}/{record.jobs}",
                f"{worker.age:.1f}s ago",
                Text("alive", style="green") if worker.alive else Text("dead", style="red"),
            )
        parts.append(workers)
    if not any(worker.alive for worker in frame.workers):
        # Queued jobs wait for a worker: say how to start one, with this workspace's real path.
        said = "no worker alive" if frame.workers else "no worker registered"
        parts.append(Text(f"{said} (start one: {heartbeat.start_command(frame.workspace)})", style="yellow"))
    return Group(*parts)


# -- the live view -----------------------------------------------------------------------------


class _Keys:
    """Reads keys from a terminal on stdin, in a daemon thread: ``q`` asks to quit.

    The terminal is put in cbreak mode (keys arrive one by one, unechoed; Ctrl-C still sends
    SIGINT) and restored on exit. Without a terminal on stdin it does nothing.
    """

    def __init__(self, on_quit: Any) -> None:
        self.quit = threading.Event()
        self._on_quit = on_quit
        self._saved: Any = None

    def __enter__(self) -> _Keys:
        try:
            import termios
            import tty

            fd = sys.stdin.fileno()
            if not os.isatty(fd):
                return self
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except (ImportError, OSError, ValueError, AttributeError):
            return self  # no terminal (tests, a pipe): Ctrl-C still quits
        threading.Thread(target=self._read, args=(fd,), name="xpmfs-top-keys", daemon=True).start()
        return self

    def _read(self, fd: int) -> None:
        while not self.quit.is_set():
            try:
                key = os.read(fd, 1)
            except OSError:
                return
            if key in (b"q", b"Q", b""):
                self.quit.set()
                self._on_quit()
                return

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            import termios

            with contextlib.suppress(OSError, ValueError):
                termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)


class _StopRequest(Exception):
    """SIGTERM or SIGHUP: leave like Ctrl-C, restoring the terminal."""


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    def stop(signum: int, frame: object) -> None:
        raise _StopRequest()

    saved = {}
    try:
        for number in (signal.SIGTERM, signal.SIGHUP):
            saved[number] = signal.signal(number, stop)
    except ValueError:
        pass  # not the main thread (a test driving run()): signals keep their handlers
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)


def run(
    ws: Workspace,
    experiment: str | None = None,
    *,
    once: bool = False,
    rescan: float = DEFAULT_RESCAN,
    console: Console | None = None,
) -> int:
    """Show the workspace until ``q``, Ctrl-C or SIGTERM (or one frame with ``once``); return 0.

    On a terminal the frame is redrawn in place (rich's alternate screen, restored on exit).
    Otherwise each new frame is printed after the previous one, separated by a blank line.
    """
    console = console or Console(highlight=False)
    if once:
        console.print(render(snapshot(ws, experiment)))
        return 0
    folders = [folder for folder in (ws.queue_dir, ws.workers_dir) if folder.is_dir()]
    watcher = Watcher(folders, rescan=rescan, contents=True)  # a heartbeat touches its record
    keys = _Keys(watcher.wake)
    try:
        with watcher, keys, _stop_on_signals():
            live = Live(console=console, screen=True, auto_refresh=False) if console.is_terminal else None
            with live if live is not None else contextlib.nullcontext():
                while not keys.quit.is_set():
                    began = time.monotonic()
                    view = render(snapshot(ws, experiment), live=True)
                    if live is not None:
                        live.update(view, refresh=True)
                    else:
                        console.print(view)
                        console.print()
                    spent = time.monotonic() - began
                    watcher.wait()
                    # However many events arrive, redraw at most every MIN_FRAME (or twice the time
                    # a frame takes to read, on a huge workspace): top must not load the machine.
                    rest = max(MIN_FRAME, 2 * spent) - (time.monotonic() - began)
                    if rest > 0 and not keys.quit.is_set():
                        keys.quit.wait(rest)
    except (KeyboardInterrupt, _StopRequest):
        pass
    return 0
