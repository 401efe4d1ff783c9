"""A running task's progress: ``__xpm__/progress.json`` in its job folder (see spec/progress.md).

Written by the job's runner process (single writer), read by ``xpmfs ls``/``show``/``top``::

    {"fraction": 0.3, "message": "epoch 3/10", "updated": 1764000000.0,
     "nested": [{"fraction": 0.4, "message": "batch"}]}

``fraction``/``message`` are level 0, the outermost loop; ``nested`` the deeper levels (1, 2...),
kept as experimaestro's Reporter keeps them: a report at level L drops the levels below it.

Tasks report with :func:`progress` or iterate with :class:`tqdm` (a small, dependency-free
class with the common tqdm surface). Both find their job through ``XPMFS_JOB_DIR``, which the
runner sets before ``execute()``; outside a job :func:`progress` warns once and does nothing.

A training loop may report millions of times; the file is rewritten (atomically) at most once
per :data:`MIN_INTERVAL`. Calls only record the latest value, under a lock; one daemon thread per
process writes it, so the task's thread never waits on the file system, and the last value always
lands within :data:`MIN_INTERVAL` (the final ``1.0`` or a new message too). At interpreter exit
whatever is still pending is written at once.

Note: ``xpmfs.progress`` is also the name of the function exported by the package, so this
module is reached as ``from xpmfs.progress import ...`` (never ``from xpmfs import progress``
when the module is meant).
"""

from __future__ import annotations

import atexit
import math
import os
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import orjson

from . import _atomic
from .display import clock
from .errors import Error
from .job import XPM_DIR

PROGRESS_FILE = "progress.json"
# Set by the runner (xpmfs.runner.ENV_JOB_DIR, not imported: the runner pulls in too much for a task).
ENV_JOB_DIR = "XPMFS_JOB_DIR"
#: Seconds between two writes of ``progress.json``, at least (the bound readers and NFS rely on).
MIN_INTERVAL = 0.25

T = TypeVar("T")


def progress_path(job_dir: Path) -> Path:
    """Where the job whose folder is ``job_dir`` reports its progress."""
    return job_dir / XPM_DIR / PROGRESS_FILE


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """One nested loop's progress: how far (``None``: no known total) and what it is doing."""

    fraction: float | None
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "message": self.message}

    @property
    def percent(self) -> str:
        """``"42%"`` (``"-"`` without a fraction), rounded down: 99.9% is not shown as done."""
        return "-" if self.fraction is None else f"{math.floor(self.fraction * 100):.0f}%"

    @property
    def text(self) -> str:
        """``"batch 40%"``, ``"40%"`` or ``"batch"``: how a nested level shows."""
        percent = None if self.fraction is None else self.percent
        return " ".join(part for part in (self.message, percent) if part)


@dataclass(frozen=True)
class Progress:
    """The content of ``progress.json``. ``fraction`` is ``None`` when the task reports no total.

    ``fraction`` and ``message`` are level 0 (the outermost loop); ``nested`` the levels below it,
    outermost first (empty when the task reports one level only).
    """

    fraction: float | None
    message: str | None
    updated: float
    nested: tuple[Level, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "message": self.message,
            "updated": self.updated,
            "nested": [level.to_json() for level in self.nested],
        }

    @property
    def percent(self) -> str:
        """``"42%"`` (``"-"`` without a fraction): how ``ls`` and ``top`` show it."""
        return Level(self.fraction).percent

    @property
    def levels(self) -> tuple[Level, ...]:
        """Every level, the outermost (level 0) first."""
        return (Level(self.fraction, self.message), *self.nested)

    @property
    def detail(self) -> str:
        """Level 0's message, then each nested level: ``"epoch 3/10 · batch 40%"`` (``show``, ``top``)."""
        return " · ".join(part for part in (self.message, *(level.text for level in self.nested)) if part)


def _fraction(value: Any) -> float | None:
    return min(1.0, max(0.0, float(value))) if isinstance(value, (int, float)) and not math.isnan(value) else None


def _level(record: Any) -> Level:
    if not isinstance(record, dict):
        return Level(None)  # kept, so that the levels after it keep their depth
    message = record.get("message")
    return Level(_fraction(record.get("fraction")), message if isinstance(message, str) else None)


def read(job_dir: Path) -> Progress | None:
    """The progress the job in ``job_dir`` last reported, or ``None`` (none, or unreadable).

    Tolerant on purpose: progress is a hint for people, and a file edited by hand or written by a
    newer xpmfs must not make ``ls`` fail.
    """
    try:
        record = orjson.loads(progress_path(job_dir).read_bytes())
        fraction = record.get("fraction")
        message = record.get("message")
        updated = record.get("updated")
        nested = record.get("nested")
        return Progress(
            fraction=_fraction(fraction),
            message=message if isinstance(message, str) else None,
            updated=float(updated) if isinstance(updated, (int, float)) else 0.0,
            # Missing (a file of an xpmfs before nested levels) or odd: no nested level.
            nested=tuple(_level(level) for level in nested) if isinstance(nested, list) else (),
        )
    except (OSError, ValueError, AttributeError):
        return None


# -- writing ------------------------------------------------------------------------------------


class _Reporter:
    """Rate-limited writer of one job's ``progress.json``; a daemon thread does the writing."""

    def __init__(self, job_dir: Path) -> None:
        self.job_dir = job_dir
        self.path = progress_path(job_dir)
        self._condition = threading.Condition(threading.Lock())  # guards the values below
        self._write_lock = threading.Lock()  # one write at a time (the thread, or a flush)
        # [fraction, message] per level, outermost first: experimaestro's Reporter.levels.
        self._levels: list[list[Any]] = []
        self._pending = False
        self._last_write = -math.inf  # time.monotonic() of the last write
        self._thread: threading.Thread | None = None
        self._closed = False
        self._failed = False
        self.writes = 0

    def report(self, fraction: float | None, message: str | None, keep_message: bool, level: int = 0) -> None:
        with self._condition:
            # As experimaestro's Reporter.set_progress: a report at a level ends the loops below it
            # (an outer loop stepping means its inner loop is over), and a level reported before
            # the levels above it starts them at 0 with no message.
            levels = self._levels
            del levels[level + 1 :]
            while len(levels) <= level:
                levels.append([0.0, None])
            levels[level][0] = fraction
            if not keep_message:
                levels[level][1] = message
            if not self._pending:
                self._pending = True
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="xpmfs-progress", daemon=True)
                    self._thread.start()
                self._condition.notify()

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._closed:
                    delay = self._last_write + MIN_INTERVAL - time.monotonic()
                    if self._pending and delay <= 0:
                        break
                    self._condition.wait(delay if self._pending else None)
                if self._closed:
                    return
            self._write(respect_interval=True)

    def _write(self, *, respect_interval: bool) -> None:
        # The file is written outside the values' lock: a task reporting from its own thread never
        # waits on the file system (NFS can take milliseconds). The write lock orders the writes,
        # so the value written last is the latest one taken.
        with self._write_lock:
            with self._condition:
                if not self._pending:
                    return
                if respect_interval and time.monotonic() - self._last_write < MIN_INTERVAL:
                    return
                self._pending = False
                self._last_write = time.monotonic()
                (fraction, message), *nested = self._levels
                record = {
                    "fraction": fraction,
                    "message": message,
                    "updated": time.time(),
                    "nested": [{"fraction": value, "message": text} for value, text in nested],
                }
            try:
                _atomic.write_json(self.path, record)
                self.writes += 1
            except OSError as error:
                # The job folder was removed, or the disk is full: a progress report must never
                # kill the task. Say so once, on the task's stderr (its .err file).
                if not self._failed:
                    self._failed = True
                    named = error if isinstance(error, Error) else f"{self.path}: {error}"
                    print(f"xpmfs: cannot write the progress: {named}", file=sys.stderr)

    def flush(self) -> None:
        """Write what is pending now, ignoring the rate limit (the process is ending)."""
        self._write(respect_interval=False)

    def close(self) -> None:
        self.flush()
        with self._condition:
            self._closed = True
            self._condition.notify()


_state_lock = threading.Lock()
_reporter: _Reporter | None = None
_warned = False


def _current() -> _Reporter | None:
    """The reporter of the job this process runs (``XPMFS_JOB_DIR``), or ``None`` outside a job."""
    global _reporter
    job_dir = os.environ.get(ENV_JOB_DIR)
    reporter = _reporter
    if reporter is not None and job_dir is not None and str(reporter.job_dir) == job_dir:
        return reporter  # the fast path of every call
    with _state_lock:
        if _reporter is not None and (job_dir is None or str(_reporter.job_dir) != job_dir):
            _reporter.close()  # another job (tests, or a task re-pointing the variable): finish the old one
            _reporter = None
        if job_dir is None or not (Path(job_dir) / XPM_DIR).is_dir():
            return None
        if _reporter is None:
            _reporter = _Reporter(Path(job_dir))
        return _reporter


def _warn_outside(what: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        where = os.environ.get(ENV_JOB_DIR)
        why = f"{ENV_JOB_DIR}={where} is not a job folder" if where else f"{ENV_JOB_DIR} is not set"
        warnings.warn(
            f"xpmfs.{what}: not running in an xpmfs job ({why}); progress is not recorded",
            RuntimeWarning,
            stacklevel=3,
        )


def _check_fraction(fraction: float | None) -> float | None:
    if fraction is None:
        return None
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"progress fraction must be a number between 0 and 1, not {fraction!r}")
    if math.isnan(fraction):
        raise ValueError("progress fraction must be a number between 0 and 1, not NaN")
    return min(1.0, max(0.0, float(fraction)))


def progress(
    value: float | None = None,
    level: int | str = 0,
    desc: str | None = None,
    console: bool = False,
    *,
    message: str | None = None,
    fraction: float | None = None,
) -> None:
    """Report the running task's progress: ``value`` between 0 and 1, and an optional description.

    experimaestro's signature, ``progress(value, level=0, desc=None, console=False)``. Cheap
    enough to call on every step: the value is recorded and written to ``__xpm__/progress.json``
    at most every :data:`MIN_INTERVAL` seconds, the latest value always within that time.
    ``desc=None`` keeps the previous description (``""`` clears it); ``message`` is a synonym of
    ``desc`` and ``fraction`` of ``value``, and a string in second place is the description
    (``progress(0.5, "epoch 3")``, xpmfs's first spelling). ``level`` is the depth of the loop
    (0: the outermost); a report at a level drops the deeper levels, as experimaestro does.
    ``console=True`` also prints the report on standard error (the job's ``.err``). Outside an
    xpmfs job it warns once and does nothing.
    """
    if isinstance(level, str):
        if desc is not None or message is not None:
            raise TypeError("progress(): the level must be a whole number (the description is desc=...)")
        message = level
        level = 0
    if fraction is not None:
        if value is not None:
            raise TypeError("progress(): give the value or fraction=, not both")
        value = fraction
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise TypeError(f"progress(): the level must be a whole number, 0 or more, not {level!r}")
    if message is not None and desc is not None and message != desc:
        raise TypeError("progress(): give desc= or message=, not both")
    text = desc if desc is not None else message
    checked = _check_fraction(value)
    if console:
        percent = "-" if checked is None else f"{checked * 100:.1f}%"
        print(f"xpmfs: progress [{level}] {text or ''} {percent}".replace("  ", " "), file=sys.stderr, flush=True)
    reporter = _current()
    if reporter is None:
        _warn_outside("progress")
        return
    reporter.report(checked, text, keep_message=text is None, level=level)


def flush() -> None:
    """Write the pending progress now (the runner's exit does it anyway)."""
    reporter = _reporter
    if reporter is not None:
        reporter.flush()


@atexit.register
def _flush_at_exit() -> None:
    reporter = _reporter
    if reporter is not None:
        reporter.close()


def _after_fork_in_child() -> None:
    # The writer thread and a held lock do not survive a fork: a forked data loader starts afresh.
    global _reporter, _state_lock
    _state_lock = threading.Lock()
    _reporter = None


os.register_at_fork(after_in_child=_after_fork_in_child)


# -- tqdm ---------------------------------------------------------------------------------------


class tqdm(Generic[T]):  # noqa: N801 -- named like the class it stands in for
    """A progress bar with the common surface of ``tqdm.tqdm``, reporting to the job's progress.

    ``for batch in tqdm(loader, desc="train"):`` ... or ``with tqdm(total=n) as bar: bar.update()``.
    Each open bar reports ``n / total`` (and its description) through :func:`progress` at its
    level: the outermost open bar of the process at level 0, a bar opened inside it at level 1... It also prints a
    tqdm-like line to ``file`` (standard error: the job's ``.err``): redrawn in place on a
    terminal at most every ``mininterval`` seconds, and on a file as whole lines at most every
    :data:`FILE_INTERVAL` seconds, so logs stay short. ``disable=True`` stops the printing only.
    Other tqdm keyword arguments are accepted and ignored.
    """

    #: Seconds between two printed lines when the output is not a terminal (a job's .err).
    FILE_INTERVAL = 5.0
    # Bars not closed yet, outermost first. Weak references: a bar dropped without close() is
    # closed by the garbage collector, as tqdm's are.
    _open: list[weakref.ref[tqdm[Any]]] = []
    _open_lock = threading.Lock()

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        desc: str | None = None,
        total: float | None = None,
        leave: bool = True,
        file: IO[str] | None = None,
        *,
        mininterval: float = 0.1,
        disable: bool = False,
        unit: str = "it",
        initial: float = 0,
        **_ignored: Any,
    ) -> None:
        if total is None and iterable is not None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                total = None
        self.iterable = iterable
        self.desc = desc or ""
        self.total = total
        self.n = initial
        self.leave = leave
        self.unit = unit
        self.disable = disable
        self.postfix = ""
        self.file = file
        self._tty = _isatty(file if file is not None else sys.stderr)
        self.mininterval = mininterval if self._tty else max(mininterval, self.FILE_INTERVAL)
        self.start_t = time.monotonic()
        # On a terminal the bar shows at once; in a file (a job's .err) a bar that ends within
        # FILE_INTERVAL prints only its final line, so short inner loops do not flood the log.
        self._last_print = -math.inf if self._tty else self.start_t
        self._printed_n: float | None = None  # the count of the last printed line
        self.closed = False
        with tqdm._open_lock:
            tqdm._open[:] = [ref for ref in tqdm._open if ref() is not None]
            self.level = len(tqdm._open)
            tqdm._open.append(weakref.ref(self))
        self._report()
        if self._tty:
            self._print(force=True)

    # -- tqdm's surface -------------------------------------------------------------------

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("this tqdm was created without an iterable: call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is not None:
            return int(self.total)
        return len(self.iterable)  # type: ignore[arg-type]

    def __enter__(self) -> tqdm[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "closed", True):
            self.close()

    def update(self, n: float = 1) -> bool | None:
        """Advance by ``n`` steps."""
        self.n += n
        self._report()
        self._print()
        return None

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        self._report()
        if refresh:
            self._print()

    set_description_str = set_description

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, refresh: bool = True, **kwargs: Any) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self.set_postfix_str(", ".join(f"{key}={_short(value)}" for key, value in items.items()), refresh)

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)
        if refresh:
            self._print()

    def refresh(self) -> None:
        self._print(force=True)

    def reset(self, total: float | None = None) -> None:
        self.n = 0
        if total is not None:
            self.total = total
        self.start_t = time.monotonic()
        self._report()
        self._print()

    def close(self) -> None:
        """End the bar: its final state is reported and printed."""
        if self.closed:
            return
        self.closed = True
        self._report()
        self._print(force=True, final=True)
        with tqdm._open_lock:
            tqdm._open[:] = [ref for ref in tqdm._open if ref() is not None and ref() is not self]

    @classmethod
    def write(cls, s: str, file: IO[str] | None = None, end: str = "\n") -> None:
        """Print a message without breaking the bar (it is redrawn at the next update)."""
        stream = file if file is not None else sys.stderr
        if _isatty(stream):
            stream.write("\r\x1b[K")
        stream.write(s + end)
        stream.flush()

    @property
    def format_dict(self) -> dict[str, Any]:
        return {"n": self.n, "total": self.total, "elapsed": time.monotonic() - self.start_t, "desc": self.desc}

    def __str__(self) -> str:
        return self._line()

    # -- reporting and printing -----------------------------------------------------------

    def _report(self) -> None:
        fraction = self.n / self.total if self.total else None
        message = self.desc or None
        if fraction is None:
            message = f"{self.desc + ': ' if self.desc else ''}{_count(self.n)} {self.unit}"
        reporter = _current()
        if reporter is not None:
            reporter.report(_check_fraction(fraction), message or "", keep_message=False, level=self.level)

    def _print(self, force: bool = False, final: bool = False) -> None:
        if self.disable:
            return
        now = time.monotonic()
        if not force and now - self._last_print < self.mininterval:
            return
        if final and not self.leave:
            if self._tty:  # tqdm's leave=False: the bar disappears
                self._out().write("\r\x1b[K")
                self._out().flush()
            return
        if final and not self._tty and self._printed_n == self.n:
            return  # this very state is the log's last line already
        self._last_print = now
        self._printed_n = self.n
        line = self._line()
        stream = self._out()
        if self._tty:
            stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
        else:
            stream.write(line + "\n")
        stream.flush()

    def _out(self) -> IO[str]:
        return self.file if self.file is not None else sys.stderr

    def _line(self) -> str:
        elapsed = time.monotonic() - self.start_t
        rate = self.n / elapsed if elapsed > 0 else 0.0
        prefix = f"{self.desc}: " if self.desc else ""
        postfix = f", {self.postfix}" if self.postfix else ""
        if self.total:
            fraction = min(1.0, max(0.0, self.n / self.total))
            filled = int(fraction * 20)
            bar = "#" * filled + " " * (20 - filled)
            remaining = (self.total - self.n) / rate if rate > 0 else None
            eta = clock(remaining, pad=True) if remaining is not None else "?"
            return (
                f"{prefix}{fraction * 100:3.0f}%|{bar}| {_count(self.n)}/{_count(self.total)} "
                f"[{clock(elapsed, pad=True)}<{eta}, {rate:.2f}{self.unit}/s{postfix}]"
            )
        return f"{prefix}{_count(self.n)}{self.unit} [{clock(elapsed, pad=True)}, {rate:.2f}{self.unit}/s{postfix}]"


def trange(*args: int, **kwargs: Any) -> tqdm[int]:
    """``tqdm(range(*args), **kwargs)``."""
    return tqdm(range(*args), **kwargs)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _count(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
