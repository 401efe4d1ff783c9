"""Worker behaviour in both lock modes: the same contract on a local disk and on NFS-style leases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from conftest import Processes, job_of, wait_until
from sample_tasks import Add, After, Count, Fail, Gate, Linger

from xpmfs import DirectLauncher, experiment
from xpmfs._process import pid_alive
from xpmfs.status import State
from xpmfs.workspace import Workspace


@pytest.fixture(params=["local", "shared"])
def mode_ws(request: pytest.FixtureRequest, ws: Path) -> Path:
    Workspace.open(ws, create=True, lock_mode=request.param)
    return ws


def test_chain_in_both_lock_modes(mode_ws: Path, processes: Processes) -> None:
    processes.worker(mode_ws, jobs=2, rescan=0.5)
    with experiment(mode_ws, "chain", workers=0):
        output = Add.C(x=3, previous=Add.C(x=2, previous=Add.C(x=1).submit()).submit()).submit()
    assert (job_of(mode_ws, output).path / "result.txt").read_text() == "6"


def test_sigterm_hands_the_running_job_back(mode_ws: Path, tmp_path: Path, processes: Processes) -> None:
    gate = tmp_path / "gate"
    counter = tmp_path / "counter"
    with experiment(mode_ws, "handback", wait=False, workers=0):
        output = Gate.C(name="h", gate=str(gate), counter=str(counter)).submit()
    job = job_of(mode_ws, output)
    first = processes.worker(mode_ws, rescan=0.5)
    wait_until((job.path / "started").exists, what="the job to start")
    runner = int((job.path / "started").read_text())
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    assert not os.listdir(mode_ws / "workers")  # it unregistered

    wait_until(lambda: not pid_alive(runner), timeout=10, what="the handed-back runner to end")
    status = job.status()
    assert status is not None and status.state is State.READY and "handed back" in (status.message or "")
    assert (mode_ws / "queue" / job.ref.entry_name).exists()  # never lost
    gate.write_text("")
    processes.worker(mode_ws, rescan=0.5)
    wait_until(job.marker, timeout=60, what="another worker to finish the job")
    assert job.marker() is State.DONE and job.status().attempt == 2  # type: ignore[union-attr]


def test_a_slot_is_free_once_its_runner_has_recorded_the_end(ws: Path, tmp_path: Path, processes: Processes) -> None:
    """A runner's process may take a while to go after it recorded its job's end (here an atexit
    handler sleeps; on a busy machine, the exit itself): the next job must not wait for it."""
    counter = tmp_path / "counter"
    processes.worker(ws, jobs=1, rescan=60)
    with experiment(ws, "linger", wait=False, workers=0):
        lingering = job_of(ws, Linger.C(seconds=120).submit(launcher=DirectLauncher(isolate=True)))
        after = job_of(ws, Count.C(n=1, counter=str(counter)).submit())
    wait_until((lingering.path / "started").exists, what="the lingering job to start")
    pid = int((lingering.path / "started").read_text())
    try:
        wait_until(after.marker, timeout=60, what="the second job to run on the slot the first one left")
        assert after.marker() is State.DONE and lingering.marker() is State.DONE
        assert pid_alive(pid)  # the first job's process was still there: the slot did not wait for it
    finally:
        os.kill(pid, signal.SIGKILL)


def test_drain_lets_the_running_job_finish(ws: Path, tmp_path: Path, processes: Processes) -> None:
    gate = tmp_path / "gate"
    with experiment(ws, "drain", wait=False, workers=0):
        output = Gate.C(name="d", gate=str(gate)).submit()
    job = job_of(ws, output)
    worker = processes.worker(ws, rescan=0.5, extra=["--drain"])
    wait_until((job.path / "started").exists, what="the job to start")
    worker.send_signal(signal.SIGTERM)
    gate.write_text("")
    assert worker.wait(timeout=30) == 0
    assert job.marker() is State.DONE


def test_kill_9_of_a_worker_in_shared_mode(ws: Path, tmp_path: Path, processes: Processes) -> None:
    Workspace.open(ws, create=True, lock_mode="shared")
    gate = tmp_path / "gate"
    with experiment(ws, "crash", wait=False, workers=0):
        output = Gate.C(name="s", gate=str(gate)).submit()
    job = job_of(ws, output)
    first = processes.worker(ws, rescan=0.5)
    wait_until((job.path / "started").exists, what="the job to start")
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    gate.write_text("")
    # Same host: the dead owner is proven dead at once, no need to wait for the lease to expire.
    processes.worker(ws, rescan=0.5)
    wait_until(job.marker, timeout=20, what="the job to be taken over")
    assert job.status().attempt == 2  # type: ignore[union-attr]


def test_idle_exit(ws: Path, processes: Processes) -> None:
    Workspace.open(ws, create=True)
    worker = processes.worker(ws, extra=["--idle-exit", "0.5"])
    assert worker.wait(timeout=30) == 0


def test_every_state_reads_the_same_with_cat_and_show(ws: Path, tmp_path: Path, processes: Processes) -> None:
    gate = tmp_path / "gate"
    with experiment(ws, "states", wait=False, workers=0):
        done = Add.C(x=1).submit()
    processes.worker(ws, jobs=1, rescan=0.5)
    wait_until(job_of(ws, done).marker, what="the first job")
    with experiment(ws, "states2", wait=False, workers=0):
        from sample_tasks import Fail

        failed = Fail.C(why="for the states test").submit()
    wait_until(job_of(ws, failed).marker, what="the failing job")
    with experiment(ws, "states3", wait=False, workers=0):
        running = Gate.C(name="r", gate=str(gate)).submit()
        waiting = After.C(before=running).submit()
    wait_until((job_of(ws, running).path / "started").exists, what="the gate job to start")
    with experiment(ws, "states4", wait=False, workers=0):
        ready = Count.C(n=1, counter=str(tmp_path / "c")).submit()  # the only slot is busy
    expected = {done: "done", failed: "failed", running: "running", waiting: "waiting", ready: "ready"}
    for output, state in expected.items():
        job = job_of(ws, output)
        cat = subprocess.run(["cat", str(job.xpm_dir / "status.json")], capture_output=True, check=True).stdout
        shown = subprocess.run(
            [sys.executable, "-m", "xpmfs", "show", "--json", str(job.path)],
            capture_output=True,
            check=True,
            env=processes.env(),
        ).stdout
        assert orjson.loads(cat)["state"] == state
        assert orjson.loads(shown)["state"] == state
        assert orjson.loads(shown)["status"] == orjson.loads(cat)
    gate.write_text("")


@pytest.mark.parametrize("isolate", [False, True], ids=["forked", "fresh"])
def test_a_job_folders_existing_streams_are_appended_to_never_truncated(
    ws: Path, tmp_path: Path, processes: Processes, isolate: bool
) -> None:
    """spec/workspace.md, "Files xpmfs did not write": streams another tool (or an earlier attempt)
    left in a job folder are kept; this attempt's output follows a header line."""
    with experiment(ws, "streams", workers=0, wait=False):
        job = job_of(ws, Fail.C(why=f"streams {isolate}").submit(launcher=DirectLauncher(isolate=isolate)))
    job.stdout_path.write_text("written by someone else\n")
    job.stderr_path.write_text("an earlier traceback\n")
    processes.worker(ws, extra=["--idle-exit", "1"]).wait(timeout=60)
    assert job.marker() is State.FAILED
    err = job.stderr_path.read_text().splitlines()
    assert err[0] == "an earlier traceback" and err[1].startswith("----- xpmfs: attempt 1 on "), err
    assert any("RuntimeError" in line for line in err[2:]), err
    out = job.stdout_path.read_text().splitlines()
    assert out[0] == "written by someone else" and out[1].startswith("----- xpmfs: attempt 1 on "), out
