"""Tasks for the experimaestro-compatibility tests; importable by job runners (module level)."""

from __future__ import annotations

from pathlib import Path

from xpmfs import Config, Meta, Param, PathGenerator, Task, field


class Scaled(Config):
    value: Param[int]

    def __post_init__(self) -> None:
        self.scaled = 10 * self.value  # derived state: exists in the job, not in the experiment


class WriteDerived(Task):
    inner: Param[Scaled]
    out: Meta[Path] = field(default_factory=PathGenerator("derived.txt"))

    def __post_init__(self) -> None:
        self.total = self.inner.scaled + 1  # the child's __post_init__ ran first

    def execute(self) -> None:
        self.out.write_text(str(self.total))


class CatchesCancel(Task):
    """Sends itself SIGTERM, catches TaskCancelled as experimaestro allows, and returns."""

    out: Meta[Path] = field(default_factory=PathGenerator("caught.txt"))

    def execute(self) -> None:
        import os
        import signal
        import time

        from xpmfs import TaskCancelled

        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        except Exception as error:  # TaskCancelled is an Exception, as in experimaestro
            assert isinstance(error, TaskCancelled)
            self.out.write_text(error.message)


class ReadsTaskGlobals(Task):
    """Writes what experimaestro's taskglobals.Env says while it runs."""

    out: Meta[Path] = field(default_factory=PathGenerator("env.txt"))

    def execute(self) -> None:
        from xpmfs.taskglobals import Env

        env = Env.instance()
        self.out.write_text(f"{env.wspath}\n{env.taskpath}\n{env.current_task is self}\n")
