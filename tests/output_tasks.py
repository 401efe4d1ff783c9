"""The seed's "Dynamic Task Outputs" example, filled in just enough to run (imports from xpmfs)."""

from __future__ import annotations

import os
from pathlib import Path

from xpmfs import Config, DependentMarker, Meta, Param, PathGenerator, ResumableTask, Task, field


class Model(Config):
    size: Param[int] = 1


class Checkpoint(Config):
    step: Param[int]
    model: Param[Model]


class Validation(Config):
    model: Param[Model]

    def checkpoint(self, dep: DependentMarker, *, step: int) -> Checkpoint:
        """Method that produces dynamic outputs"""
        return dep(Checkpoint.C(model=self.model, step=step))

    def compute(self, step: int) -> None:
        """Called during task execution to register an output"""
        self.register_task_output(self.checkpoint, step=step)


def train_step() -> None:
    pass


class Learn(ResumableTask):
    model: Param[Model]
    validation: Param[Validation]

    def execute(self) -> None:
        for step in range(100):
            train_step()
            if step % 10 == 0:
                self.validation.compute(step)  # Triggers callbacks


class NotResumable(Task):
    validation: Param[Validation]

    def execute(self) -> None:
        self.validation.compute(0)


class Evaluate(Task):
    checkpoint: Param[Checkpoint]
    result: Meta[Path] = field(default_factory=PathGenerator("result.txt"))

    def execute(self) -> None:
        self.result.write_text(f"{self.checkpoint.step} {os.getpid()}")
