"""The examples of ``../shared/seed/tasks.md``, adapted to import from xpmfs, for test_seed_examples.py.

Each class is the seed's, in the seed's order; ``...`` bodies and helpers the seed leaves
undefined are filled with the least code that lets a test observe the documented behaviour.
Where the seed's code cannot run as written, the line is fixed and a comment says what the seed
has. Job runners import this module (through the spec's ``sys_path``), so it must stay importable
on its own.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

from xpmfs import (
    Config,
    GracefulTimeout,
    LightweightTask,
    Meta,
    Param,
    PathGenerator,
    ResumableTask,
    SubmitHook,
    Task,
    cache,
    field,
)
from xpmfs.config import set_remaining_time_provider
from xpmfs.experiment import JobHandle as Job  # the seed's experimaestro.scheduler.jobs.Job
from xpmfs.launchers import Launcher  # the seed's experimaestro.launchers.Launcher


def _append(path: str | Path, line: str) -> None:
    # One write of one short line with O_APPEND: atomic on a local file system, so processes may share it.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def _wait_for(path: str) -> None:
    """Block until ``path`` exists: a gate the test opens (no gate given: do not wait)."""
    while path and not os.path.exists(path):
        time.sleep(0.02)


# -- Defining a task -----------------------------------------------------------------------------


class Model(Config):
    name: Param[str] = "model"  # the seed's `...`


class ModelLearn(Task):
    epochs: Param[int] = 100
    model: Param[Model]
    parameters: Meta[Path] = field(default_factory=PathGenerator("parameters.pth"))

    def execute(self) -> None:
        """Called when this task is run"""
        # The seed's body is `pass`; writing the parameters shows that execute ran, where.
        self.parameters.write_text(f"{self.model.name} {self.epochs}")


# -- Task outputs ----------------------------------------------------------------------------------


class Topics(Config):
    path: Param[Path]


class Documents(Config):
    name: Param[str]


class Dataset(Config):
    topics: Param[Topics]
    documents: Param[Documents]


Adhoc = Dataset  # the seed's return annotation names a type it does not define


class RandomFold(Task):
    dataset: Param[Dataset]
    """The source dataset"""

    topics: Param[Path] = field(default_factory=PathGenerator("topics.tsv"))
    """Generated topics"""

    gate: Meta[str] = ""
    """(Not in the seed.) A file to wait for before ending, so a test sees who waits for this task."""

    def task_outputs(self, dep: Any) -> Adhoc:
        return dep(
            Dataset.C(
                topics=dep(Topics.C(path=self.topics)),
                documents=self.dataset.documents,
            )
        )

    def execute(self) -> None:
        # The seed gives no body: sample "topics" from the source's, then wait for the test's gate.
        self.topics.write_text(f"sampled from {self.dataset.topics.path}\n")
        _wait_for(self.gate)


class UseDataset(Task):
    """Uses the whole sampled dataset: depends on RandomFold (the Dataset is marked)."""

    dataset: Param[Dataset]

    def execute(self) -> None:
        Path("seen.txt").write_text(self.dataset.topics.path.read_text())


class UseTopics(Task):
    """Uses only the sampled topics: depends on RandomFold (``topics`` is marked too)."""

    topics: Param[Topics]

    def execute(self) -> None:
        Path("seen.txt").write_text(self.topics.path.read_text())


class UseDocuments(Task):
    """Uses only the documents, which RandomFold passes through unmarked: no dependency."""

    documents: Param[Documents]

    def execute(self) -> None:
        Path("seen.txt").write_text(self.documents.name)


# -- Wrapping a task output ------------------------------------------------------------------------


class TaskA_Output(Config):  # the seed's name
    path: Meta[Path]


class TaskA(Task):
    variant: Param[int] = 0  # the seed's TaskA has no parameter; one shows its output's id follow it

    def task_outputs(self, dep: Any) -> Task:
        # The seed writes `MyTaskOutput.C(...)`, a name it never defines: the wrapper is TaskA_Output.
        return dep(TaskA_Output.C(path=self.jobpath))

    def execute(self) -> None:
        (self.jobpath / "a.txt").write_text(f"variant {self.variant}")


class TaskB(Task):
    task_a: Param[TaskA_Output]

    def execute(self) -> None:
        Path("b.txt").write_text((self.task_a.path / "a.txt").read_text())


# -- Initialization tasks ----------------------------------------------------------------------------

# The seed's `Model(Config): ...` is the Model above.


class ModelLoader(LightweightTask):
    path: Meta[Path]
    model: Param[Model]

    def execute(self) -> None:
        # The seed's `...`: "restore the object state from disk", here into the shared model object.
        self.model.loaded = self.path.read_text()  # type: ignore[attr-defined]
        _append("trace.txt", f"init {os.getpid()}")


class Evaluate(Task):
    model: Param[Model]

    def execute(self) -> None:
        _append("trace.txt", f"execute {os.getpid()}")
        Path("evaluation.txt").write_text(getattr(self.model, "loaded", "NOT LOADED"))


class ModelLearner(Task):
    model: Param[Model]
    parameters: Meta[Path] = field(default_factory=PathGenerator("parameters.pth"))  # not in the seed

    def task_outputs(self, dep: Any) -> ModelLoader:
        # The seed writes `ModelLoader.C(model=model, path=path)` with names it never defines.
        return dep(ModelLoader.C(model=self.model, path=self.parameters))

    def execute(self) -> None:
        self.parameters.write_text(f"parameters of {self.model.name}")


# -- Submit hooks --------------------------------------------------------------------------------------


class needs_java(SubmitHook):  # the seed's name
    def __init__(self, version: int) -> None:
        self.version = version

    def spec(self) -> int:
        """Returns a hashable identifier for this hook (so it is only applied once)"""
        return self.version

    def process(self, job: Job, launcher: Launcher) -> None:
        """Apply the hook for a given job/launcher"""
        job.environ["JAVA_HOME"] = "THE_JAVA_HOME"


@needs_java(11)
class IndexCollection(Config):
    name: Param[str] = "collection"  # the seed's `...`


@needs_java(11)
class OtherCollection(Config):
    """(Not in the seed.) Another class with the same hook: the hook still applies once."""

    name: Param[str] = "other"


@needs_java(17)
class NewerCollection(Config):
    """(Not in the seed.) Another hook spec: applied on its own."""

    name: Param[str] = "newer"


class Index(Task):
    """(Not in the seed.) A task using IndexCollection; writes the JAVA_HOME it runs with."""

    collection: Param[IndexCollection]
    more: Param[list[Config]] = []

    def execute(self) -> None:
        Path("java_home.txt").write_text(os.environ.get("JAVA_HOME", "<unset>"))


# -- Task lifecycle ------------------------------------------------------------------------------------


class Part(Config):
    """A nested configuration: its ``__maintaskdir__`` is the task's folder."""

    size: Param[int] = 1


class Lifecycle(Task):
    part: Param[Part]
    lr: Param[float] = 0.1

    def execute(self) -> None:
        record = {
            "tags": self.__tags__,
            "taskdir": str(self.__taskdir__),
            "maintaskdir": str(self.__maintaskdir__),
            "part_maintaskdir": str(self.part.__maintaskdir__),
            "cwd": os.getcwd(),
        }
        Path("lifecycle.json").write_text(json.dumps(record))


# -- Resumable tasks -------------------------------------------------------------------------------------


def load_checkpoint(path: Path) -> int:
    # The epoch to start from: the last one saved. The seed's second example saves the epoch it has
    # *not* trained yet before raising GracefulTimeout, so resuming past it could skip an epoch;
    # resuming at it trains at most one epoch twice (the seed asks tasks to be idempotent).
    return int(path.read_text().split()[0])


def save_checkpoint(path: Path, epoch: int) -> None:
    path.write_text(f"{epoch}\n")
    # Which process saved which epoch: the test reads how the work was split across attempts.
    _append(path.with_name("epochs.log"), f"{epoch} {os.getpid()}")


def train_one_epoch() -> None:
    # A little work, so that a job with a time limit sees its remaining time go down.
    time.sleep(float(os.environ.get("SEED_EPOCH_SECONDS", "0.01")))


class LongTraining(ResumableTask):
    epochs: Param[int] = 1000
    checkpoint: Meta[Path] = field(default_factory=PathGenerator("checkpoint.pth"))

    def execute(self) -> None:
        # Check if we're resuming from a checkpoint
        start_epoch = 0
        if self.checkpoint.exists():
            start_epoch = load_checkpoint(self.checkpoint)

        # Continue training from where we left off
        for epoch in range(start_epoch, self.epochs):
            train_one_epoch()
            save_checkpoint(self.checkpoint, epoch)


class LongTrainingRemaining(ResumableTask):
    """The seed's "Using remaining_time()" example (the seed names it LongTraining too)."""

    epochs: Param[int] = 1000
    checkpoint: Meta[Path] = field(default_factory=PathGenerator("checkpoint.pth"))

    def execute(self) -> None:
        start_epoch = 0
        if self.checkpoint.exists():
            start_epoch = load_checkpoint(self.checkpoint)

        for epoch in range(start_epoch, self.epochs):
            # Check if we have enough time for another epoch
            remaining = self.remaining_time()
            if remaining is not None and remaining < 300:  # 5 min buffer
                save_checkpoint(self.checkpoint, epoch)
                raise GracefulTimeout("Not enough time for another epoch")

            train_one_epoch()
            save_checkpoint(self.checkpoint, epoch)


class LongTrainingGraceful(ResumableTask):
    """The seed's "Using GracefulTimeout with remaining_time()" example (also LongTraining there)."""

    epochs: Param[int] = 1000
    checkpoint: Meta[Path] = field(default_factory=PathGenerator("checkpoint.pth"))

    def execute(self) -> None:
        start_epoch = 0
        if self.checkpoint.exists():
            start_epoch = load_checkpoint(self.checkpoint)

        for epoch in range(start_epoch, self.epochs):
            # Check remaining time before starting an epoch
            remaining = self.remaining_time()
            if remaining is not None and remaining < 300:  # 5 min buffer
                raise GracefulTimeout("Not enough time for another epoch")

            train_one_epoch()
            save_checkpoint(self.checkpoint, epoch)


# A stand-in for a launcher with a time limit: the direct launcher has none (remaining_time() is
# None there), so a test gives the runner's environment SEED_WALLTIME (seconds). The job then
# "ends" that many seconds after the task first asks, as a SLURM job ends at its time limit.
if os.environ.get("SEED_WALLTIME"):
    _walltime = float(os.environ["SEED_WALLTIME"])
    _deadline: list[float] = []

    def _remaining() -> float:
        if not _deadline:
            _deadline.append(time.monotonic() + _walltime)
        return _deadline[0] - time.monotonic()

    set_remaining_time_provider(_remaining)


# -- Lightweights tasks using @cache -------------------------------------------------------------------


class Terms(Config):
    vocabulary: Param[str] = "a b c"
    counter: Meta[str] = ""
    """(Not in the seed.) A file where each computation appends a line."""
    gate: Meta[str] = ""
    """(Not in the seed.) A file the computation waits for, so a test can hold it mid-way."""

    @cache("terms.npy")
    def load(self, path: Path) -> Any:
        if path.is_file():
            # The seed has `pickle.load(path)`, which needs an open file, not a path.
            return pickle.loads(path.read_bytes())

        # Value which can be long to compute
        weights = self.compute_weights()

        # The seed saves with `np.save(path, weights)`: numpy is no dependency of xpmfs.
        path.write_bytes(pickle.dumps(weights))
        return weights  # the seed returns `terms`, a name it never defines

    def compute_weights(self) -> dict[str, float]:
        # The seed leaves it undefined. Records each computation, then waits for the test's gate.
        if self.counter:
            _append(self.counter, f"computed {os.getpid()}")
        _wait_for(self.gate)
        words = self.vocabulary.split()
        return {word: 1.0 / len(words) for word in words}


class UseTerms(Task):
    """(Not in the seed.) A task whose execution loads the cached terms."""

    terms: Param[Terms]
    n: Param[int] = 0

    def execute(self) -> None:
        Path("terms.json").write_text(json.dumps(self.terms.load(), sort_keys=True))


# -- Task directory ------------------------------------------------------------------------------------


class FlakyTask(Task):
    """(Not in the seed.) Fails until the file ``fixed`` exists, to be re-run by hand."""

    fixed: Meta[str]

    def execute(self) -> None:
        print(f"attempt in {os.getcwd()}", flush=True)
        if not os.path.exists(self.fixed):
            raise RuntimeError(f"{self.fixed} does not exist yet")
        Path("result.txt").write_text("fixed")


# -- Not from the seed: tasks for test_resumable.py and test_cache.py ------------------------------


class TimesOut(ResumableTask):
    """Raises GracefulTimeout in its first ``timeouts`` attempts, then succeeds.

    It counts attempts in ``attempts.txt`` in its folder: the retry finds it there only if the
    folder is preserved between attempts (the seed's "directory preservation").
    """

    timeouts: Param[int] = 2
    error: Meta[bool] = False
    """Raise a RuntimeError instead of GracefulTimeout."""

    def execute(self) -> None:
        attempts = Path("attempts.txt")
        number = len(attempts.read_text().splitlines()) + 1 if attempts.exists() else 1
        _append(attempts, f"{number} {os.getpid()}")
        print(f"attempt {number}", flush=True)  # .out must keep every attempt's output
        # What this attempt's status says while it runs (the task's folder is its working directory).
        Path(f"status-{number}.json").write_bytes(Path("__xpm__/status.json").read_bytes())
        if number <= self.timeouts:
            if self.error:
                raise RuntimeError(f"attempt {number} broke")
            raise GracefulTimeout(f"attempt {number} out of time")
        Path("result.txt").write_text(f"done at attempt {number}")


class PlainTimesOut(Task):
    """A task that is not resumable, and raises GracefulTimeout: it fails, it is not retried."""

    def execute(self) -> None:
        raise GracefulTimeout("not resumable")


class ReportRemaining(ResumableTask):
    """Writes what ``remaining_time()`` says, twice."""

    def execute(self) -> None:
        Path("remaining.txt").write_text(f"{self.remaining_time()!r} {self.remaining_time()!r}")


class ResumableGate(ResumableTask):
    """Writes its pid to ``started``, then waits for the file ``gate`` (which a test never opens)."""

    gate: Meta[str]

    def execute(self) -> None:
        Path("started.tmp").write_text(str(os.getpid()))  # whole or not at all: tests read it at once
        os.replace("started.tmp", "started")
        _wait_for(self.gate)
