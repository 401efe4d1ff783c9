"""Tasks of tests/test_partial.py (importable by the job runner); the same classes computed the
vectors with experimaestro 2.7.0."""

from __future__ import annotations

from pathlib import Path

from xpmfs import Config, Meta, Param, PathGenerator, Task, field
from xpmfs.partial import param_group, partial

it = param_group("iter")
lr = param_group("lr")


class Sub(Config):
    __xpmid__ = "test.partial.sub"
    x: Param[int] = field(default=1, groups=[it])


class Learn(Task):
    __xpmid__ = "test.partial.learn"
    checkpoints = partial(exclude_groups=[it])
    only_lr = partial(exclude_all=True, include_groups=[lr])
    no_group = partial(exclude_no_group=True)
    max_iter: Param[int] = field(groups=[it])
    learning_rate: Param[float] = field(groups=[lr])
    seed: Param[int] = 0
    sub: Param[Sub]
    path: Meta[Path] = field(default_factory=PathGenerator("ckpt", partial=checkpoints))

    def execute(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / f"{self.max_iter}.txt").write_text(str(self.max_iter))


class Slow(Task):
    """Writes ``start``/``end`` lines into its partial folder, sleeping in between (lock tests)."""

    __xpmid__ = "test.partial.slow"
    shared = partial(exclude_groups=[it])
    n: Param[int] = field(groups=[it])
    folder: Meta[Path] = field(default_factory=PathGenerator("", partial=shared))

    def execute(self) -> None:
        import time

        self.folder.mkdir(parents=True, exist_ok=True)
        log = self.folder / "log.txt"
        with log.open("a") as out:
            out.write(f"start {self.n} {time.time()}\n")
        time.sleep(1.0)
        with log.open("a") as out:
            out.write(f"end {self.n} {time.time()}\n")
