"""Progress reported by tasks (issue 8): ``xpmfs.progress``, ``xpmfs.tqdm``, and where it shows.

Also home of the tasks that report progress (the runner imports this module by name, through the
experiment's ``sys.path``, like ``sample_tasks``).
"""

from __future__ import annotations

import importlib
import io
import itertools
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import Processes, wait_until

import xpmfs
from xpmfs import Meta, Param, Task, _atomic, experiment, queue, status
from xpmfs.catalog import job_info, last_log_line, list_jobs
from xpmfs.cli import main
from xpmfs.job import Job, Spec
from xpmfs.queue import JobRef
from xpmfs.status import Reason, State
from xpmfs.workspace import Workspace

# ``xpmfs.progress`` is the exported function; the module is reached through sys.modules.
progress_module: Any = importlib.import_module("xpmfs.progress")
MIN_INTERVAL = progress_module.MIN_INTERVAL


# -- tasks the real-process tests run ------------------------------------------------------------


class ProgressGate(Task):
    """Reports 42% ("epoch 3"), prints a line, then waits for the file ``gate``; ends at 100%."""

    name: Param[str]
    gate: Meta[str]

    def execute(self) -> None:
        xpmfs.progress(0.42, f"epoch 3 of {self.name}")
        print(f"training line of {self.name}", flush=True)
        Path("started.tmp").write_text(str(os.getpid()))  # whole or not at all: tests read it at once
        os.replace("started.tmp", "started")
        while not os.path.exists(self.gate):
            time.sleep(0.02)
        for _step in xpmfs.tqdm(range(10), desc=f"finishing {self.name}"):
            pass


class NestedGate(Task):
    """Two nested tqdm loops; in epoch 3, 4 batches of 10 in, it waits for the file ``gate``."""

    gate: Meta[str]

    def execute(self) -> None:
        for epoch in xpmfs.tqdm(range(10), desc="epochs"):
            with xpmfs.tqdm(total=10, desc="batches") as bar:
                bar.update(4 if epoch == 3 else 10)
                if epoch == 3:
                    while not os.path.exists(self.gate):
                        time.sleep(0.02)
                    bar.update(6)


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def job_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A job folder, named in ``XPMFS_JOB_DIR`` as the runner does for a task."""
    folder = tmp_path / "job"
    (folder / "__xpm__").mkdir(parents=True)
    monkeypatch.setenv("XPMFS_JOB_DIR", str(folder))
    yield folder
    reporter = progress_module._reporter
    if reporter is not None:
        reporter.close()  # stops its thread; the next test's job gets a new reporter
    progress_module._reporter = None


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, dict[str, Any]]]:
    """Every write of a progress file: (time.monotonic(), record)."""
    seen: list[tuple[float, dict[str, Any]]] = []
    real = _atomic.write_json

    def counting(path: Path, value: Any) -> None:
        seen.append((time.monotonic(), dict(value)))
        real(path, value)

    monkeypatch.setattr(progress_module._atomic, "write_json", counting)
    return seen


def on_disk(folder: Path) -> dict[str, Any] | None:
    path = folder / "__xpm__" / "progress.json"
    return json.loads(path.read_text()) if path.exists() else None


def reported(folder: Path, **expected: Any) -> bool:
    record = on_disk(folder)
    return record is not None and all(record.get(key) == value for key, value in expected.items())


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*args: Any) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def make_job(ws: Workspace, state: State | None, jobid: str, *, experiment_name: str = "xp", **running: Any) -> Job:
    """A job left in ``state`` by the library's own writers (``None``: an interrupted submission)."""
    job = Job(ws, JobRef("demo.tasks.Train", (jobid + "0" * 64)[:64]))
    job.write_spec(Spec(typeid=job.ref.typeid, jobid=job.ref.jobid, config={}, submitted=time.time()))
    if state is not None:
        status.transition(job.xpm_dir, State.WAITING if state is State.WAITING else State.READY)
    if state in (State.RUNNING, State.DONE, State.FAILED):
        status.transition(job.xpm_dir, State.RUNNING, **{"pid": os.getpid(), "host": socket.gethostname(), **running})
    if state is State.SUBMITTED:
        status.transition(job.xpm_dir, State.SUBMITTED, cluster_id="1")
    if state is State.DONE:
        status.transition(job.xpm_dir, State.DONE, exit_code=0)
    if state is State.FAILED:
        status.transition(job.xpm_dir, State.FAILED, reason=Reason.ERROR, message="boom", exit_code=1)
    if state is not None and not state.terminal:
        queue.add(ws.queue_dir, job.ref)
    ws.experiment_path(experiment_name).mkdir(parents=True, exist_ok=True)
    with open(ws.experiment_path(experiment_name) / "jobs.jsonl", "ab") as stream:
        line = {"job": job.ref.relpath, "run": "r", "tags": {}, "submitted": time.time()}
        stream.write(json.dumps(line).encode() + b"\n")
    return job


def write_progress(job: Job, fraction: float | None, message: str | None, updated: float | None = None) -> None:
    record = {"fraction": fraction, "message": message, "updated": time.time() if updated is None else updated}
    _atomic.write_json(job.xpm_dir / "progress.json", record)


# -- progress() ---------------------------------------------------------------------------------


def test_progress_writes_a_file_cat_can_read(job_dir: Path) -> None:
    xpmfs.progress(0.42, "epoch 3")
    wait_until(lambda: reported(job_dir, fraction=0.42), timeout=5, what="progress.json")
    text = (job_dir / "__xpm__" / "progress.json").read_text()
    record = json.loads(text)
    assert record["message"] == "epoch 3" and abs(record["updated"] - time.time()) < 5
    assert text.endswith("\n") and "\n  " in text  # indented, one field a line: made for `cat`
    assert sorted(os.listdir(job_dir / "__xpm__")) == ["progress.json"]  # no temporary file left


def test_a_fast_loop_writes_a_few_times_a_second_and_the_last_value_lands(
    job_dir: Path, writes: list[tuple[float, dict[str, Any]]]
) -> None:
    calls = 100_000
    began = time.monotonic()
    for step in range(calls):
        xpmfs.progress(step / (calls - 1), "training")
    elapsed = time.monotonic() - began
    # The final 1.0 lands by itself (no more calls, no flush) within MIN_INTERVAL.
    wait_until(lambda: reported(job_dir, fraction=1.0), timeout=2, what="the final 1.0")
    landed = time.monotonic() - began
    assert len(writes) <= 2 + landed / MIN_INTERVAL, (len(writes), elapsed)
    assert len(writes) < 20  # 100k calls: a handful of writes, not thousands
    gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(writes)]
    assert all(gap >= MIN_INTERVAL * 0.95 for gap in gaps), gaps
    # A new message after the loop also lands promptly, with no further call.
    before = len(writes)
    xpmfs.progress(1.0, "evaluating")
    wait_until(lambda: reported(job_dir, message="evaluating"), timeout=2, what="the new message")
    assert len(writes) == before + 1


def test_message_rules_and_experimaestro_keywords(job_dir: Path) -> None:
    xpmfs.progress(0.1, "loading")
    xpmfs.progress(0.2)  # None keeps the message
    progress_module.flush()
    assert reported(job_dir, fraction=0.2, message="loading")
    xpmfs.progress(0.3, desc="training")  # experimaestro's name for the message
    xpmfs.progress(0.9, level=1, desc="inner loop")  # a nested level: level 0 stays as it was
    progress_module.flush()
    assert reported(job_dir, fraction=0.3, message="training", nested=[{"fraction": 0.9, "message": "inner loop"}])
    xpmfs.progress(1.5, "")  # clamped; "" clears the message
    progress_module.flush()
    assert reported(job_dir, fraction=1.0, message="")
    with pytest.raises(ValueError, match="NaN"):
        xpmfs.progress(float("nan"))
    with pytest.raises(TypeError, match="between 0 and 1"):
        xpmfs.progress("half")  # type: ignore[arg-type]


def test_outside_a_job_it_warns_once_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writes: list[Any]
) -> None:
    monkeypatch.delenv("XPMFS_JOB_DIR", raising=False)
    monkeypatch.setattr(progress_module, "_warned", False)
    with pytest.warns(RuntimeWarning, match="not running in an xpmfs job.*XPMFS_JOB_DIR is not set"):
        xpmfs.progress(0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xpmfs.progress(0.6)
        monkeypatch.setenv("XPMFS_JOB_DIR", str(tmp_path / "not-a-job"))
        xpmfs.progress(0.7)
        for _item in xpmfs.tqdm(range(3), file=io.StringIO()):  # a bar outside a job only prints
            pass
    assert caught == [] and writes == []
    assert list(tmp_path.iterdir()) == []


def test_experimaestros_signature(job_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``progress(value, level=0, desc=None, console=False)``, positionally and by keyword."""
    xpmfs.progress(value=0.25, desc="warm-up")
    progress_module.flush()
    assert reported(job_dir, fraction=0.25, message="warm-up")
    xpmfs.progress(0.5, 0, "train", True)  # all four positionally; console also prints
    progress_module.flush()
    assert reported(job_dir, fraction=0.5, message="train")
    assert capsys.readouterr().err == "xpmfs: progress [0] train 50.0%\n"
    xpmfs.progress(0.75, 1, "inner", console=True)  # a nested level prints, and is recorded
    progress_module.flush()
    assert reported(job_dir, fraction=0.5, message="train", nested=[{"fraction": 0.75, "message": "inner"}])
    assert capsys.readouterr().err == "xpmfs: progress [1] inner 75.0%\n"
    xpmfs.progress(fraction=0.8, message="xpmfs keywords")  # the names of xpmfs 0.1
    progress_module.flush()
    assert reported(job_dir, fraction=0.8, message="xpmfs keywords")
    with pytest.raises(TypeError, match="whole number"):
        xpmfs.progress(0.5, -1)
    with pytest.raises(TypeError, match="whole number"):
        xpmfs.progress(0.5, "description", desc="description again")
    with pytest.raises(TypeError, match="not both"):
        xpmfs.progress(0.5, fraction=0.6)


def test_nested_levels_as_experimaestros_reporter(job_dir: Path) -> None:
    """A report at level L keeps the levels above it, drops those below it, and starts missing
    ones at 0 with no message (experimaestro 2.7's Reporter.set_progress / Job.set_progress)."""

    def levels() -> list[tuple[float | None, str | None]]:
        progress_module.flush()
        record = progress_module.read(job_dir)
        return [(level.fraction, level.message) for level in record.levels]

    xpmfs.progress(0.5, level=2, desc="batch")  # levels 0 and 1 never reported: 0, no message
    assert levels() == [(0.0, None), (0.0, None), (0.5, "batch")]
    xpmfs.progress(0.3, level=0, desc="epoch 3/10")  # the outer loop steps: the inner ones are over
    assert levels() == [(0.3, "epoch 3/10")]
    xpmfs.progress(0.1, level=1, desc="train")
    xpmfs.progress(0.4, level=2, desc="batch")
    assert levels() == [(0.3, "epoch 3/10"), (0.1, "train"), (0.4, "batch")]
    xpmfs.progress(0.2, level=1)  # desc=None keeps the level's message; level 2 is dropped
    assert levels() == [(0.3, "epoch 3/10"), (0.2, "train")]
    xpmfs.progress(0.6, level=2)  # a level started afresh has no message
    assert levels() == [(0.3, "epoch 3/10"), (0.2, "train"), (0.6, None)]
    xpmfs.progress(None, level=1, desc="")  # no total; "" clears
    assert levels() == [(0.3, "epoch 3/10"), (None, "")]
    shown = progress_module.read(job_dir)
    assert shown.percent == "30%" and shown.detail == "epoch 3/10"
    xpmfs.progress(0.4, level=1, desc="batch")
    progress_module.flush()
    assert progress_module.read(job_dir).detail == "epoch 3/10 · batch 40%"


def test_readers_default_what_an_older_file_lacks(job_dir: Path) -> None:
    path = job_dir / "__xpm__" / "progress.json"
    path.write_text('{"fraction": 0.42, "message": "epoch 3", "updated": 5.0}')  # before nested levels
    old = progress_module.read(job_dir)
    assert old.nested == () and old.detail == "epoch 3" and old.to_json()["nested"] == []
    path.write_text('{"fraction": 0.4, "nested": [{"fraction": 2, "message": 7}, "odd", {"message": "x"}]}')
    odd = progress_module.read(job_dir)
    assert [(level.fraction, level.message) for level in odd.nested] == [(1.0, None), (None, None), (None, "x")]
    assert odd.detail == "100% · x" and odd.message is None and odd.updated == 0.0
    path.write_text('{"fraction": 0.4, "nested": {"not": "a list"}}')
    assert progress_module.read(job_dir).nested == ()


def test_a_vanished_job_folder_does_not_kill_the_task(job_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xpmfs.progress(0.1)
    progress_module.flush()
    (job_dir / "__xpm__").rename(job_dir / "gone")  # `xpmfs clean` removed it under the task
    for fraction in (0.2, 0.3):
        xpmfs.progress(fraction)
        progress_module.flush()
    assert capsys.readouterr().err.count("cannot write") == 1  # said once, on the task's stderr


# -- tqdm ------------------------------------------------------------------------------------------


def test_tqdm_iterates_and_reports_its_outer_loop(job_dir: Path) -> None:
    log = io.StringIO()
    seen = []
    for _epoch in xpmfs.tqdm(range(4), desc="epochs", file=log):
        for _batch in xpmfs.tqdm(range(100), desc="batches", leave=False, file=log):
            pass
        progress_module.flush()
        seen.append(on_disk(job_dir))
    assert [record["message"] for record in seen] == ["epochs"] * 4
    assert [record["fraction"] for record in seen] == [0.0, 0.25, 0.5, 0.75]
    # The inner bar reports at level 1: here, after its loop, at its end (the outer step drops it).
    assert all(record["nested"] == [{"fraction": 1.0, "message": "batches"}] for record in seen), seen
    wait_until(lambda: reported(job_dir, fraction=1.0, message="epochs", nested=[]), timeout=2, what="the loop's end")
    # Not a terminal (a job's .err): short bars print their final line only, inner ones nothing.
    assert len(log.getvalue().splitlines()) == 1
    assert log.getvalue().startswith("epochs: 100%|####################| 4/4 [")


def test_tqdm_surface(job_dir: Path) -> None:
    log = io.StringIO()
    with xpmfs.tqdm(total=200, desc="steps", file=log) as bar:
        assert len(bar) == 200 and bar.n == 0
        bar.update(50)
        bar.set_description("tuning")
        bar.set_postfix(loss=0.123456, lr=1e-3)
        progress_module.flush()
        assert reported(job_dir, fraction=0.25, message="tuning")
        bar.update(150)
    assert bar.closed
    progress_module.flush()
    assert reported(job_dir, fraction=1.0, message="tuning")
    assert "tuning: 100%" in log.getvalue() and "loss=0.1235" in log.getvalue()
    with pytest.raises(TypeError, match="without an iterable"):
        iter(xpmfs.tqdm(total=3, file=log)).__next__()
    # No total: a count, no fraction.
    for _line in xpmfs.tqdm(iter(["a", "b", "c"]), desc="reading", unit="line", file=log):
        pass
    progress_module.flush()
    assert reported(job_dir, fraction=None, message="reading: 3 line")
    # Unknown keyword arguments of the real tqdm are accepted.
    assert list(xpmfs.tqdm([1, 2], ncols=80, dynamic_ncols=True, position=0, file=log)) == [1, 2]


def test_tqdm_on_a_terminal_redraws_in_place(job_dir: Path) -> None:
    screen = FakeTerminal()
    bar = xpmfs.tqdm(range(1000), desc="fast", file=screen)
    for _item in bar:
        pass
    text = screen.getvalue()
    assert text.startswith("\rfast:   0%")  # drawn at once
    assert text.endswith("\x1b[K\n") and "fast: 100%" in text.splitlines()[-1]
    assert text.count("\r") < 50  # at most every mininterval (0.1 s), not 1000 times
    gone = FakeTerminal()
    for _item in xpmfs.tqdm(range(3), leave=False, file=gone):
        pass
    assert gone.getvalue().endswith("\r\x1b[K")  # leave=False: the bar is wiped


def test_tqdm_in_a_file_prints_at_a_low_rate(job_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module.tqdm, "FILE_INTERVAL", 0.2)
    log = io.StringIO()
    began = time.monotonic()
    with xpmfs.tqdm(total=10**9, file=log) as bar:
        while time.monotonic() - began < 1.0:
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert 3 <= len(lines) <= 7, lines  # ~one a FILE_INTERVAL plus the final one, whole lines
    assert "\r" not in log.getvalue()


# -- where progress shows: catalog, ls, show -------------------------------------------------------


def test_catalog_reads_progress_of_the_current_attempt_only(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    job = make_job(ws, State.RUNNING, "a1")
    assert job_info(job).progress is None
    write_progress(job, 0.5, "half")
    info = job_info(job)
    assert info.progress is not None and (info.progress.fraction, info.progress.message) == (0.5, "half")
    assert info.to_json()["progress"]["fraction"] == 0.5
    # Left by an earlier attempt (older than this attempt's start): not this attempt's progress.
    current = job.status()
    assert current is not None and current.started is not None
    write_progress(job, 0.9, "old", updated=current.started - 10)
    assert job_info(job).progress is None
    # Damaged or hand-edited: ignored, never an error.
    (job.xpm_dir / "progress.json").write_text("{half")
    assert job_info(job).progress is None
    (job.xpm_dir / "progress.json").write_text(f'{{"fraction": 7, "message": 3, "updated": {time.time()}, "new": 1}}')
    odd = job_info(job).progress
    assert odd is not None and odd.fraction == 1.0 and odd.message is None


def test_ls_json_has_progress_for_every_state(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    jobs = {state: make_job(ws, state, f"b{index}") for index, state in enumerate([*State, None])}
    for job in jobs.values():
        if job.xpm_dir.is_dir():
            write_progress(job, 0.25, "a quarter")
    lock = jobs[State.RUNNING].lock()
    assert lock.try_acquire()  # the running job's process is alive
    try:
        result = run("ls", ws.path, "--json")
        assert result.exit_code == 0, result.output
        records = {record["jobid"]: record for record in map(json.loads, result.stdout.splitlines())}
        assert len(records) == len(jobs)
        for state, job in jobs.items():
            record = records[job.ref.jobid]
            assert "progress" in record, state
            if state is State.RUNNING:
                assert record["progress"]["fraction"] == 0.25 and record["progress"]["message"] == "a quarter"
            else:
                assert record["progress"] is None, state  # ls reads progress of running jobs only
        text = run("ls", ws.path).stdout
        running_line = next(line for line in text.splitlines() if line.startswith("running"))
        assert " 25%" in running_line
        assert all("%" not in line for line in text.splitlines() if not line.startswith("running"))
        shown = run("show", "-w", ws.path, jobs[State.FAILED].ref.jobid[:8]).stdout
        assert "progress:" in shown and "25%  a quarter" in shown  # show reads it for any state
    finally:
        lock.release()


def test_last_log_line_reads_the_newest_output_tail(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    job = make_job(ws, State.RUNNING, "c1")
    assert last_log_line(job) is None
    job.stdout_path.write_bytes(b"x" * 100_000 + b"\nepoch 1\n\x1b[1mepoch 2\x1b[0m\n\n")
    assert last_log_line(job) == "epoch 2"
    job.stderr_path.write_bytes(b"step 1\r 50%|#####     |\r 60%|######    |")
    os.utime(job.stdout_path, (time.time() - 10, time.time() - 10))
    assert last_log_line(job) == "60%|######    |"  # .err changed last; \r ends a line


def test_a_task_reporting_progress_shows_in_show_and_ls(ws: Path, processes: Processes, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with experiment(ws, "progress", wait=False, workers=0):
        task = ProgressGate.C(name="a", gate=str(gate))
        task.submit()
    workspace = Workspace.open(ws)
    job = Job(workspace, task.__xpm__.job.ref)
    processes.worker(ws, jobs=1)
    wait_until(lambda: reported(job.path, fraction=0.42), what="the task to report 42%")
    wait_until(lambda: last_log_line(job) == "training line of a", what="the task's first line")
    shown = run("show", "-w", ws, job.ref.jobid[:10])
    assert shown.exit_code == 0, shown.output
    assert "progress:" in shown.stdout and "42%  epoch 3 of a" in shown.stdout
    assert "last line:" in shown.stdout and "training line of a" in shown.stdout
    record = json.loads(run("show", "-w", ws, job.ref.jobid[:10], "--json").stdout)
    assert record["progress"]["fraction"] == 0.42 and record["last_line"] == "training line of a"
    listed = json.loads(run("ls", ws, "--json").stdout)
    assert listed["state"] == "running" and listed["progress"]["message"] == "epoch 3 of a"
    assert " 42%" in run("ls", ws).stdout
    gate.write_text("open")
    wait_until(job.marker, what="the job to end")
    assert job.marker() is State.DONE
    assert "finishing a: 100%|" in job.stderr_path.read_text()  # the bar's line in the .err
    assert list_jobs(workspace)[0].progress is None  # ended: ls does not read it


def test_the_last_progress_is_on_disk_before_the_job_ends(ws: Path, processes: Processes, tmp_path: Path) -> None:
    # A job's last report (here, its tqdm loop ending at 100%) comes microseconds before the task
    # returns, within MIN_INTERVAL of the previous one: the writer thread has not written it yet.
    # The runner flushes it before recording the end; the process may then leave by os._exit
    # (the warm runner's forks do), where no atexit handler runs.
    gate = tmp_path / "gate"
    gate.write_text("open")
    with experiment(ws, "final", wait=False, workers=0):
        task = ProgressGate.C(name="z", gate=str(gate))
        task.submit()
    job = Job(Workspace.open(ws), task.__xpm__.job.ref)
    processes.worker(ws, jobs=1)
    wait_until(job.marker, what="the job to end")
    assert job.marker() is State.DONE
    assert reported(job.path, fraction=1.0, message="finishing z"), on_disk(job.path)
    shown = run("show", "-w", ws, job.ref.jobid[:10]).stdout
    assert "100%  finishing z" in shown


def test_nested_progress_of_a_real_job_in_show_and_top(ws: Path, processes: Processes, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with experiment(ws, "nested", wait=False, workers=0):
        task = NestedGate.C(gate=str(gate))
        task.submit()
    job = Job(Workspace.open(ws), task.__xpm__.job.ref)
    processes.worker(ws, jobs=1)
    batches = [{"fraction": 0.4, "message": "batches"}]
    wait_until(lambda: reported(job.path, fraction=0.3, nested=batches), what="epoch 3, batch 4/10")
    shown = run("show", "-w", ws, job.ref.jobid[:10])
    assert "30%  epochs · batches 40%  (reported" in shown.stdout, shown.output
    record = json.loads(run("show", "-w", ws, job.ref.jobid[:10], "--json").stdout)
    assert record["progress"]["nested"] == batches
    top = CliRunner().invoke(main, ["top", str(ws), "--once"], env={"COLUMNS": "200"})
    row = next(line for line in top.stdout.splitlines() if job.ref.jobid[:12] in line)
    assert " 30%" in row and "epochs · batches 40%" in row, row
    gate.write_text("open")
    wait_until(job.marker, what="the job to end")
    assert job.marker() is State.DONE
    # The last report is level 0's end, which drops the inner loop.
    assert reported(job.path, fraction=1.0, message="epochs", nested=[]), on_disk(job.path)


def test_package_exports() -> None:
    assert xpmfs.progress is progress_module.progress and xpmfs.tqdm is progress_module.tqdm
    assert {"progress", "tqdm"} <= set(xpmfs.__all__)
    # The module stays reachable by its dotted name despite the function of the same name.
    assert sys.modules["xpmfs.progress"] is progress_module
