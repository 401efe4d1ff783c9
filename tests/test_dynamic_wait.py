"""``xp.wait()`` waits for the jobs that output callbacks submit (experimaestro's test_task_dynamic_*).

The tasks are experimaestro's (tests/tasks/test_dynamic.py), with xpmfs imports; the runner
imports this module by name, through the experiment's ``sys.path``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Processes

from xpmfs import (
    Config,
    DependentMarker,
    LightweightTask,
    Meta,
    Param,
    PathGenerator,
    ResumableTask,
    Task,
    experiment,
    field,
)
from xpmfs.status import State


class Model(Config):
    pass


class Checkpoint(Config):
    step: Param[int]
    model: Param[Model]


class CheckpointLoader(LightweightTask):
    checkpoint: Param[Checkpoint]

    def execute(self) -> None:
        pass


class Evaluate(Task):
    model: Param[Model]

    def execute(self) -> None:
        pass


class Validation(Config):
    model: Param[Model]

    def checkpoint(self, dep: DependentMarker, *, step: int) -> Checkpoint:
        return dep(Checkpoint.C(model=self.model, step=step))

    def compute(self, step: int) -> None:
        self.register_task_output(self.checkpoint, step=step)


class Learn(ResumableTask):
    """Waits for ``max_step`` (a file the test writes), then announces checkpoints up to it."""

    model: Param[Model]
    validation: Param[Validation]
    max_step_file: Meta[Path] = field(default_factory=PathGenerator("max_step"))

    def execute(self) -> None:
        while not self.max_step_file.is_file():
            time.sleep(0.05)
        max_step = int(self.max_step_file.read_text().strip())
        for step in (15, 30, 45):
            if step > max_step:
                break
            self.validation.compute(step)


def _learn(collect: Any) -> Learn:
    model = Model.C()
    validation = Validation.C(model=model)
    learn = Learn.C(model=model, validation=validation)
    learn.watch_output(validation.checkpoint, collect)
    learn.submit()
    learn.max_step_file.parent.mkdir(parents=True, exist_ok=True)
    learn.max_step_file.write_text("30")  # two checkpoints: steps 15 and 30
    return learn


@pytest.mark.timeout(120)
def test_task_dynamic_simple(ws: Path, processes: Processes) -> None:
    """A callback that is slow to submit (it waits for the job that announced the output to
    end): the experiment waits for it, then for what it submitted."""
    processes.worker(ws, jobs=2, rescan=0.5)
    evaluations: list[Any] = []
    learn: list[Learn] = []

    def collect_checkpoint(checkpoint: Checkpoint) -> None:
        while learn[0].__xpm__.job.state is not State.DONE:
            time.sleep(0.05)
        time.sleep(0.3)  # the experiment saw every job end meanwhile: it must still wait
        task = Evaluate.C(model=checkpoint.model)
        evaluations.append(task.submit(init_tasks=[CheckpointLoader.C(checkpoint=checkpoint)]))

    with experiment(ws, "dynamic", workers=0):
        learn.append(_learn(collect_checkpoint))
    assert len(evaluations) == 2, f"expected 2 evaluations, got {len(evaluations)}"
    assert all(evaluation.__xpm__.job.state is State.DONE for evaluation in evaluations)


@pytest.mark.timeout(120)
def test_wait_blocks_until_dynamic_tasks_finished(ws: Path, processes: Processes) -> None:
    processes.worker(ws, jobs=2, rescan=0.5)
    evaluations: list[Any] = []

    def collect_checkpoint(checkpoint: Checkpoint) -> None:
        task = Evaluate.C(model=checkpoint.model)
        evaluations.append(task.submit(init_tasks=[CheckpointLoader.C(checkpoint=checkpoint)]))

    with experiment(ws, "dynamic-wait", workers=0) as xp:
        _learn(collect_checkpoint)
        xp.wait()
        assert len(evaluations) == 2, f"expected 2 evaluations, got {len(evaluations)}"
        for i, task in enumerate(evaluations):
            state = task.__xpm__.job.state
            assert state == State.DONE, f"dynamic task {i} has state {state} after xp.wait(), expected DONE"
