"""The seed's "Handling task events" and "Dynamic Task Outputs" sections, against real workers."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest
from conftest import Processes
from output_tasks import Checkpoint, Evaluate, Learn, Model, NotResumable, Validation
from sample_tasks import Add, Fail

from xpmfs import experiment
from xpmfs.errors import FailedExperiment
from xpmfs.job import Job
from xpmfs.status import State
from xpmfs.workspace import Workspace


def test_on_completed_runs_in_the_experiment_when_the_job_ends_well(ws: Path, processes: Processes) -> None:
    processes.worker(ws)
    calls: list[tuple[str, int | None]] = []
    with pytest.raises(FailedExperiment), experiment(ws, "events", workers=0):
        good = Add.C(x=1)
        good.on_completed(lambda: calls.append(("good", threading.get_ident())))
        good.submit()
        bad = Fail.C()
        bad.on_completed(lambda: calls.append(("bad", None)))
        bad.submit()
    assert calls == [("good", threading.get_ident())]


def _run_learn(ws: Path) -> tuple[list[int], list[int], list[str]]:
    seen: list[int] = []
    also: list[int] = []
    threads: list[str] = []
    model = Model.C()
    validation = Validation.C(model=model)

    def on_checkpoint(checkpoint: Checkpoint) -> None:
        # Called when a checkpoint is produced
        threads.append(threading.current_thread().name)
        seen.append(checkpoint.step)
        Evaluate.C(checkpoint=checkpoint).submit()

    with experiment(ws, "dynamic", workers=0):
        learn = Learn.C(model=model, validation=validation)
        learn.watch_output(validation.checkpoint, on_checkpoint)
        learn.watch_output(validation.checkpoint, lambda checkpoint: also.append(checkpoint.step))
        learn.submit()
    return seen, also, threads


def test_dynamic_outputs_trigger_callbacks_that_submit_jobs(ws: Path, processes: Processes) -> None:
    processes.worker(ws, jobs=2, rescan=0.5)
    seen, also, threads = _run_learn(ws)
    steps = list(range(0, 100, 10))
    assert sorted(seen) == steps and sorted(also) == steps  # several callbacks per output
    assert set(threads) == {"xpmfs-outputs"}  # a dedicated thread
    learn = Learn.C(model=Model.C(), validation=Validation.C(model=Model.C()))
    job = Job(Workspace.open(ws), _ref(learn))  # type: ignore[arg-type]
    events = [orjson.loads(line) for line in job.task_outputs_path.read_bytes().splitlines()]
    assert [event["kwargs"]["step"] for event in events] == steps
    evaluations = list((ws / "jobs" / "output_tasks.evaluate").iterdir())
    assert len(evaluations) == 10 and all((e / "__xpm__" / "done").exists() for e in evaluations)
    results = sorted(int((e / "result.txt").read_text().split()[0]) for e in evaluations)
    assert results == steps
    # The checkpoint carries its task in its identifier, but evaluating it does not wait for it.
    spec = orjson.loads((evaluations[0] / "__xpm__" / "spec.json").read_bytes())
    assert spec["dependencies"] == []

    # A new run of the experiment replays every earlier output once, and re-runs nothing.
    mtimes = {e: (e / "__xpm__" / "status.json").stat().st_mtime_ns for e in evaluations}
    seen_again, also_again, _ = _run_learn(ws)
    assert sorted(seen_again) == steps and sorted(also_again) == steps
    assert {e: (e / "__xpm__" / "status.json").stat().st_mtime_ns for e in evaluations} == mtimes


def _ref(task: object) -> object:
    from xpmfs.config import typeid
    from xpmfs.queue import JobRef

    return JobRef(typeid(task), task.__identifier__())  # type: ignore[attr-defined]


def test_only_resumable_tasks_register_outputs(ws: Path, processes: Processes) -> None:
    processes.worker(ws)
    task = NotResumable.C(validation=Validation.C(model=Model.C()))
    with pytest.raises(FailedExperiment), experiment(ws, "not-resumable", workers=0):
        task.submit()
    job = Job(Workspace.open(ws), _ref(task))  # type: ignore[arg-type]
    assert job.marker() is State.FAILED
    err = job.stderr_path.read_text()
    assert (
        "only a ResumableTask may register dynamic outputs" in err and "derive NotResumable from ResumableTask" in err
    )


def test_register_outside_a_task_says_where_to_call_it() -> None:
    from xpmfs.errors import ConfigError

    validation = Validation.C(model=Model.C())
    with pytest.raises(ConfigError, match="call it from a task's execute"):
        validation.compute(1)
