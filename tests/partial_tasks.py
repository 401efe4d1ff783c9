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
