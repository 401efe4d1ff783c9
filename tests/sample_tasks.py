"""Tasks the integration tests submit; importable by job runners through the spec's sys.path."""

from __future__ import annotations

import os
import time
from pathlib import Path

from xpmfs import Config, GracefulTimeout, Meta, Param, PathGenerator, ResumableTask, Task, field


def _append(path: str, line: str) -> None:
    # One write of one short line with O_APPEND: atomic on a local file system.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


class Count(Task):
    """Appends its number and pid to a shared counter file, once per run."""

    n: Param[int]
    counter: Meta[str]

    def execute(self) -> None:
        _append(self.counter, f"{self.n} {os.getpid()}")


class Add(Task):
    """Writes x + y (reading y from another Add's output when given)."""

    x: Param[int]
    y: Param[int] = 0
    previous: Param[Add | None] = None
    result: Meta[Path] = field(default_factory=PathGenerator("result.txt"))

    def execute(self) -> None:
        base = int(self.previous.result.read_text()) if self.previous is not None else 0
        self.result.write_text(str(base + self.x + self.y))


class ReadsX(Task):
    """Writes the ``x`` of the configuration it is given (any configuration: a task never submitted too)."""

    source: Param[Config]
    result: Meta[Path] = field(default_factory=PathGenerator("result.txt"))

    def execute(self) -> None:
        self.result.write_text(str(self.source.x))  # type: ignore[attr-defined]


class Fail(Task):
    """Always fails, loudly."""

    why: Param[str] = "on purpose"

    def execute(self) -> None:
        raise RuntimeError(f"failing {self.why}")


class FailUntil(Task):
    """Fails until the file ``fixed`` exists: a bug fixed between two runs of an experiment."""

    fixed: Meta[str]

    def execute(self) -> None:
        if not os.path.exists(self.fixed):
            raise RuntimeError(f"failing until {self.fixed} exists")


class Gate(Task):
    """Writes ``started`` in its folder, then waits until the file ``gate`` exists."""

    name: Param[str]
    gate: Meta[str]
    counter: Meta[str] = ""

    def execute(self) -> None:
        if self.counter:
            _append(self.counter, f"{self.name} {os.getpid()} start")
        # Whole or not at all: tests read the pid as soon as the file exists.
        Path("started.tmp").write_text(str(os.getpid()))
        os.replace("started.tmp", "started")
        while not os.path.exists(self.gate):
            time.sleep(0.02)
        if self.counter:
            _append(self.counter, f"{self.name} {os.getpid()} end")


class Linger(Task):
    """Ends at once, but its process lingers ``seconds`` after the job is recorded done (an atexit
    handler, which only a fresh interpreter runs); writes its pid in ``started`` first."""

    seconds: Param[float]

    def execute(self) -> None:
        import atexit

        atexit.register(time.sleep, self.seconds)
        Path("started.tmp").write_text(str(os.getpid()))
        os.replace("started.tmp", "started")


class Sleep(Task):
    seconds: Param[float]

    def execute(self) -> None:
        time.sleep(self.seconds)


class After(Task):
    """Runs after ``before`` (any task's output); records that it ran."""

    before: Param[Task]
    counter: Meta[str] = ""

    def execute(self) -> None:
        if self.counter:
            _append(self.counter, "after")


class Tally(Task):
    """Appends ``<n> <pid> start <time>`` and ``<n> <pid> end <time>`` around its (tiny) work."""

    n: Param[int]
    counter: Meta[str]

    def execute(self) -> None:
        _append(self.counter, f"{self.n} {os.getpid()} start {time.time()}")
        _append(self.counter, f"{self.n} {os.getpid()} end {time.time()}")


class Flaky(ResumableTask):
    """Times out (GracefulTimeout) on its first attempt, then succeeds; tallies like Tally."""

    n: Param[int]
    counter: Meta[str]

    def execute(self) -> None:
        _append(self.counter, f"{self.n} {os.getpid()} start {time.time()}")
        if not os.path.exists("attempted"):
            Path("attempted").write_text("")
            raise GracefulTimeout("first attempt stops early")
        _append(self.counter, f"{self.n} {os.getpid()} end {time.time()}")


class Overtaken(Task):
    """Its first run writes ``started`` in its folder, waits until the file ``gate`` exists, then ends
    (or raises, with ``fail``); any later run ends at once."""

    name: Param[str]
    gate: Meta[str]
    fail: Meta[bool] = False

    def execute(self) -> None:
        if os.path.exists("first-run"):
            return
        Path("first-run").write_text(str(os.getpid()))
        Path("started.tmp").write_text(str(os.getpid()))
        os.replace("started.tmp", "started")
        while not os.path.exists(self.gate):
            time.sleep(0.02)
        if self.fail:
            raise RuntimeError("the overtaken run fails")
