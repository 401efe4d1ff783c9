"""Every example of ``../shared/seed/tasks.md`` (sections owned here), run by real workers.

The task classes are in ``seed_tasks.py``, copied from the seed with only their imports adapted
(and ``...`` filled); each test submits them as the seed does and checks what the seed says
happens. The "Handling task events" and "Dynamic Task Outputs" sections are in test_events.py.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Processes, job_of, wait_until
from seed_tasks import (
    Dataset,
    Documents,
    Evaluate,
    FlakyTask,
    Index,
    IndexCollection,
    Lifecycle,
    LongTraining,
    LongTrainingGraceful,
    LongTrainingRemaining,
    Model,
    ModelLearn,
    ModelLearner,
    ModelLoader,
    NewerCollection,
    OtherCollection,
    Part,
    RandomFold,
    TaskA,
    TaskA_Output,
    TaskB,
    Terms,
    Topics,
    UseDataset,
    UseDocuments,
    UseTerms,
    UseTopics,
    needs_java,
)

from xpmfs import experiment, tag
from xpmfs.config import typeid
from xpmfs.errors import FailedExperiment
from xpmfs.job import Job
from xpmfs.queue import JobRef
from xpmfs.status import Reason, State
from xpmfs.workspace import Workspace


def _job_of(ws: Path, task: Any) -> Job:
    """The job a task would have (it need not be submitted): computed from its identifier."""
    return Job(Workspace.open(ws, create=True), JobRef(typeid(task), task.__identifier__()))


def _spec(job: Job) -> dict[str, Any]:
    return orjson.loads(job.spec_path.read_bytes())


def _state(job: Job) -> State | None:
    current = job.status()
    return current.state if current else None


def _timed_worker(processes: Processes, ws: Path, *, walltime: float, epoch: float) -> None:
    """A worker whose jobs see a time limit of ``walltime`` seconds (see seed_tasks.SEED_WALLTIME)."""
    env = processes.env()
    env["SEED_WALLTIME"] = str(walltime)
    env["SEED_EPOCH_SECONDS"] = str(epoch)
    processes.start(
        [sys.executable, "-m", "xpmfs", "worker", str(ws), "--rescan", "0.5"],
        log=processes.tmp_path / "timed-worker.log",
        env=env,
    )


# -- Defining a task -----------------------------------------------------------------------------


def test_defining_a_task(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "define", workers=0):
        learn = ModelLearn.C(model=Model.C(name="m"))
        output = learn.submit()
    # By default a task's output is the task itself (task_outputs returns dep(self)).
    assert output is learn
    job = job_of(ws, learn)
    assert job.marker() is State.DONE
    # The generated Meta path lives in the job folder; execute ran and wrote it there.
    assert learn.parameters == job.path / "parameters.pth"
    assert learn.parameters.read_text() == "m 100"
    # `epochs: Param[int] = 100` is a parameter with a default: giving the default is the same task,
    # another value another one; the generated path is never part of the identifier.
    assert ModelLearn.C(model=Model.C(name="m"), epochs=100).__identifier__() == job.ref.jobid
    assert ModelLearn.C(model=Model.C(name="m"), epochs=10).__identifier__() != job.ref.jobid


# -- Task outputs ----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_task_outputs_only_what_dep_marks_is_a_dependency(ws: Path, tmp_path: Path, processes: Processes) -> None:
    gate = tmp_path / "gate"
    source = Dataset.C(topics=Topics.C(path=tmp_path / "source.tsv"), documents=Documents.C(name="docs"))
    processes.worker(ws, jobs=2, rescan=0.5)
    with experiment(ws, "outputs", workers=0):
        fold = RandomFold.C(dataset=source, gate=str(gate))
        sampled = fold.submit()
        # The returned Dataset and its topics are the task's outputs; the documents are the source's.
        assert isinstance(sampled, Dataset)
        assert sampled.__xpm__.task is fold and sampled.topics.__xpm__.task is fold
        assert sampled.documents is source.documents and sampled.documents.__xpm__.task is None
        assert sampled.topics.path == job_of(ws, fold).path / "topics.tsv"

        use_dataset = UseDataset.C(dataset=sampled)
        use_dataset.submit()
        use_topics = UseTopics.C(topics=sampled.topics)
        use_topics.submit()
        use_documents = UseDocuments.C(documents=sampled.documents)
        use_documents.submit()

        fold_job = job_of(ws, fold)
        assert _spec(job_of(ws, use_dataset))["dependencies"] == [fold_job.ref.relpath]
        assert _spec(job_of(ws, use_topics))["dependencies"] == [fold_job.ref.relpath]
        assert _spec(job_of(ws, use_documents))["dependencies"] == []

        # While RandomFold runs (held at its gate), the documents' user runs to the end, and the
        # users of marked outputs wait, not even started.
        wait_until((fold_job.path / "topics.tsv").exists, what="RandomFold to start")
        wait_until(lambda: job_of(ws, use_documents).marker() is State.DONE, what="UseDocuments to end")
        assert fold_job.marker() is None
        for waiting in (use_dataset, use_topics):
            assert _state(job_of(ws, waiting)) is State.WAITING
            assert not (job_of(ws, waiting).path / "seen.txt").exists()
        gate.write_text("")
    for task in (fold, use_dataset, use_topics, use_documents):
        assert job_of(ws, task).marker() is State.DONE
    sampled_text = f"sampled from {tmp_path / 'source.tsv'}\n"
    assert (job_of(ws, use_topics).path / "seen.txt").read_text() == sampled_text
    assert (job_of(ws, use_dataset).path / "seen.txt").read_text() == sampled_text
    # They started only after RandomFold had ended.
    fold_end = fold_job.status().ended  # type: ignore[union-attr]
    assert fold_end is not None
    for dependent in (use_dataset, use_topics):
        assert job_of(ws, dependent).status().started >= fold_end  # type: ignore[union-attr,operator]


# -- Wrapping a task output ------------------------------------------------------------------------


def test_wrapping_a_task_output(ws: Path, processes: Processes) -> None:
    processes.worker(ws, jobs=2, rescan=0.5)
    with experiment(ws, "wrap", workers=0):
        out1 = TaskA.C(variant=1).submit()
        out2 = TaskA.C(variant=2).submit()
        b1 = TaskB.C(task_a=out1)
        b1.submit()
        b2 = TaskB.C(task_a=out2)
        b2.submit()
    a1 = Job(Workspace.open(ws), JobRef(typeid(TaskA), TaskA.C(variant=1).__identifier__()))
    assert isinstance(out1, TaskA_Output) and out1.path == a1.path
    assert _spec(job_of(ws, b1))["dependencies"] == [a1.ref.relpath]
    assert (job_of(ws, b1).path / "b.txt").read_text() == "variant 1"
    assert (job_of(ws, b2).path / "b.txt").read_text() == "variant 2"
    # The wrapped output carries task A's identity, so B's identifier follows A's configuration...
    assert b1.__identifier__() != b2.__identifier__()
    # ... which a bare path cannot do (the seed's "will not work"): a Meta path is not hashed.
    bare1 = TaskB.C(task_a=TaskA_Output.C(path=out1.path))
    bare2 = TaskB.C(task_a=TaskA_Output.C(path=out2.path))
    assert bare1.__identifier__() == bare2.__identifier__()


# -- Initialization tasks ----------------------------------------------------------------------------


def test_initialization_tasks_run_before_execute_in_the_jobs_process(ws: Path) -> None:
    # The embedded worker (no worker started here): the default set-up.
    with experiment(ws, "init"):
        model = Model.C(name="bert")
        learner = ModelLearner.C(model=model)
        # We learn the model...
        model_loader = learner.submit()
        # ... and evaluate it, using the learned parameters
        evaluate = Evaluate.C(model=model)
        evaluate.submit(init_tasks=[model_loader])
    assert isinstance(model_loader, ModelLoader)
    job = job_of(ws, evaluate)
    assert job.marker() is State.DONE
    # Init tasks are part of the identifier (and the loader, an output of the learner, a dependency).
    assert job.ref.jobid == evaluate.__identifier__() != Evaluate.C(model=Model.C(name="bert")).__identifier__()
    assert _spec(job)["dependencies"] == [job_of(ws, learner).ref.relpath]
    # The loader ran first, in the job's own process, on the very model object execute uses.
    assert (job.path / "evaluation.txt").read_text() == "parameters of bert"
    trace = (job.path / "trace.txt").read_text().split()
    assert trace[0::2] == ["init", "execute"]
    assert trace[1] == trace[3] != str(os.getpid())


# -- Submit hooks --------------------------------------------------------------------------------------


def test_submit_hooks_set_the_jobs_environment_once_per_spec(
    ws: Path, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: list[int] = []
    seed_process: Callable[..., None] = needs_java.process

    def counting(self: needs_java, job: Any, launcher: Any) -> None:
        applied.append(self.spec())
        seed_process(self, job, launcher)

    monkeypatch.setattr(needs_java, "process", counting)
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "hooks", workers=0):
        # Three configurations whose classes carry needs_java(11): one hook spec, applied once.
        index = Index.C(collection=IndexCollection.C(), more=[IndexCollection.C(name="b"), OtherCollection.C()])
        index.submit()
        assert applied == [11]
        applied.clear()
        newer = Index.C(collection=IndexCollection.C(), more=[NewerCollection.C()])
        newer.submit()
        assert sorted(applied) == [11, 17]
    job = job_of(ws, index)
    assert _spec(job)["environ"] == {"JAVA_HOME": "THE_JAVA_HOME"}
    # The task's own process sees it.
    assert (job.path / "java_home.txt").read_text() == "THE_JAVA_HOME"


# -- Task lifecycle ------------------------------------------------------------------------------------


def test_task_lifecycle_tags_and_directories(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "lifecycle", workers=0):
        task = Lifecycle.C(part=Part.C(), lr=tag(0.01)).tag("model", "bert")
        task.submit()
    job = job_of(ws, task)
    record = json.loads((job.path / "lifecycle.json").read_text())
    assert record["tags"] == {"lr": 0.01, "model": "bert"}
    folder = os.path.realpath(job.path)
    assert os.path.realpath(record["cwd"]) == folder  # the working directory is the task directory
    assert os.path.realpath(record["taskdir"]) == folder
    assert os.path.realpath(record["maintaskdir"]) == folder
    assert os.path.realpath(record["part_maintaskdir"]) == folder  # a nested configuration's main task


# -- Resumable tasks -------------------------------------------------------------------------------------


def _epochs_by_attempt(job: Job) -> list[list[int]]:
    """The epochs each attempt saved, in order (epochs.log lines are ``<epoch> <pid>``)."""
    attempts: list[list[int]] = []
    last_pid = None
    for line in (job.path / "epochs.log").read_text().splitlines():
        epoch, pid = line.split()
        if pid != last_pid:
            attempts.append([])
            last_pid = pid
        attempts[-1].append(int(epoch))
    return attempts


def test_resumable_task_starts_from_its_checkpoint(ws: Path, processes: Processes) -> None:
    training = LongTraining.C(epochs=8)
    # An earlier attempt left a checkpoint at epoch 5 in the job folder.
    job = _job_of(ws, training)
    job.path.mkdir(parents=True)
    (job.path / "checkpoint.pth").write_text("5\n")
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "resume", workers=0):
        training.submit()
    assert job.marker() is State.DONE
    assert _epochs_by_attempt(job) == [[5, 6, 7]]
    assert (job.path / "checkpoint.pth").read_text() == "7\n"


@pytest.mark.parametrize("task_class", [LongTrainingRemaining, LongTrainingGraceful])
@pytest.mark.timeout(180)
def test_resumable_examples_checkpoint_time_out_and_resume(
    ws: Path, processes: Processes, task_class: type[Any]
) -> None:
    # Each attempt has 1 s of "walltime" beyond the examples' 300 s buffer; 40 epochs of 0.05 s at
    # least cannot fit in one attempt, so the task times out, is retried, and resumes until it is
    # done. The margin lets an attempt progress even on a loaded machine.
    _timed_worker(processes, ws, walltime=301.0, epoch=0.05)
    with experiment(ws, "timed", workers=0):
        training = task_class.C(epochs=40)
        training.submit(max_retries=50)
    job = job_of(ws, training)
    final = job.status()
    assert final is not None and final.state is State.DONE
    attempts = _epochs_by_attempt(job)
    assert len(attempts) >= 2 and final.retry_count == len(attempts) - 1 and final.attempt == len(attempts)
    assert sorted({epoch for attempt in attempts for epoch in attempt}) == list(range(40))  # all trained
    for before, after in itertools.pairwise(attempts):
        # Each attempt starts at the epoch the previous one checkpointed last: none is skipped.
        assert after[0] == before[-1]
    history = [orjson.loads(line) for line in (job.xpm_dir / "history.jsonl").read_bytes().splitlines()]
    assert len(history) == final.retry_count


def test_remaining_time_is_none_on_the_direct_launcher(ws: Path, processes: Processes) -> None:
    # With no time limit, the example never raises GracefulTimeout: one attempt does everything.
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "untimed", workers=0):
        training = LongTrainingRemaining.C(epochs=3)
        training.submit()
    final = job_of(ws, training).status()
    assert final is not None and final.state is State.DONE and final.retry_count == 0 and final.attempt == 1


# -- Lightweights tasks using @cache -----------------------------------------------------------------


def test_cache_example_computes_once_for_every_job(ws: Path, tmp_path: Path, processes: Processes) -> None:
    counter = tmp_path / "computed"
    terms = Terms.C(vocabulary="x y", counter=str(counter))
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "cache", workers=0):
        first = UseTerms.C(terms=terms, n=1)
        first.submit()
    with experiment(ws, "cache", workers=0):
        second = UseTerms.C(terms=terms, n=2)
        second.submit()
    expected = {"x": 0.5, "y": 0.5}
    for task in (first, second):
        assert json.loads((job_of(ws, task).path / "terms.json").read_text()) == expected
    assert len(counter.read_text().splitlines()) == 1  # the second job reused the file
    folder = ws / "config" / typeid(terms) / terms.__identifier__()
    assert sorted(path.name for path in folder.iterdir()) == ["terms.npy", "terms.npy.lock"]


# -- Task directory ------------------------------------------------------------------------------------


def test_task_directory_layout_and_rerun_by_hand(ws: Path, tmp_path: Path, processes: Processes) -> None:
    fixed = tmp_path / "fixed"
    processes.worker(ws, rescan=0.5)
    with pytest.raises(FailedExperiment), experiment(ws, "layout", workers=0):
        task = FlakyTask.C(fixed=str(fixed))
        task.submit()
    job = job_of(ws, task)
    # [EXPERIMENT_FOLDER]/jobs/[QUALIFIED_NAME]/[JOB_ID], QUALIFIED_NAME the lower-cased module.class
    assert job.path == ws.absolute() / "jobs" / "seed_tasks.flakytask" / task.__identifier__()
    names = {path.name for path in job.path.iterdir()}
    assert {"__xpm__", "flakytask.py", "flakytask.out", "flakytask.err"} <= names
    assert "RuntimeError" in (job.path / "flakytask.err").read_text()
    assert (job.path / "flakytask.out").read_text().startswith("attempt in ")
    assert job.status().reason is Reason.ERROR  # type: ignore[union-attr]

    # Fix the cause, then re-run the job by hand: `python flakytask.py` in its folder.
    fixed.write_text("")
    rerun = subprocess.run(
        [sys.executable, "flakytask.py"],
        cwd=job.path,
        env=processes.env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert job.marker() is State.DONE
    assert (job.path / "result.txt").read_text() == "fixed"
    final = job.status()
    assert final is not None and final.attempt == 2
