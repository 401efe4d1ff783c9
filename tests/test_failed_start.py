"""A runner that dies before it records `running` (issue 17, part 4): never re-claimed forever."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Processes, job_of, wait_until
from sample_tasks import Count

from xpmfs import experiment
from xpmfs.job import Job
from xpmfs.status import Reason, State
from xpmfs.worker import MAX_FAILED_STARTS

pytestmark = pytest.mark.timeout(120)


def broken_python(tmp_path: Path) -> Path:
    """An interpreter that cannot start the runner while ``tmp_path/broken`` exists (it says why on
    stderr and exits 1), and is this Python otherwise; each start adds a line to ``tmp_path/starts``."""
    path = tmp_path / "python"
    path.write_text(
        "#!/bin/sh\n"
        f"echo start >> {tmp_path / 'starts'}\n"
        f'if [ -e {tmp_path / "broken"} ]; then echo "cannot start: simulated failure" >&2; exit 1; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "broken").touch()
    return path


def submit_broken(ws: Path, tmp_path: Path, counter: Path, n: int) -> Job:
    with experiment(ws, "broken", workers=0, wait=False):
        job = job_of(ws, Count.C(n=n, counter=str(counter)).submit())
    # The spec names the interpreter its runner starts with (as if its venv were broken).
    spec = json.loads(job.spec_path.read_text())
    spec["python"] = str(broken_python(tmp_path))
    job.spec_path.write_text(json.dumps(spec))
    return job


def test_a_runner_that_never_starts_fails_its_job_after_a_few_tries_and_the_worker_goes_idle(
    ws: Path, tmp_path: Path, processes: Processes
) -> None:
    counter = tmp_path / "counter"
    broken = submit_broken(ws, tmp_path, counter, 1)
    with experiment(ws, "fine", workers=0, wait=False):
        fine = job_of(ws, Count.C(n=2, counter=str(counter)).submit())

    worker = processes.worker(ws, extra=["--idle-exit", "6"])
    # Before: re-claimed every ~0.1 s, forever, and --idle-exit never came.
    assert worker.wait(timeout=60) == 0
    assert fine.marker() is State.DONE
    final = broken.status()
    assert final is not None and final.state is State.FAILED and final.reason is Reason.ERROR, final
    assert final.attempt == 0  # no attempt ever started
    assert final.message is not None and "the runner never started (3 tries" in final.message, final.message
    assert "cannot start: simulated failure" in final.message and str(broken.stderr_path) in final.message
    assert (tmp_path / "starts").read_text().count("start") == MAX_FAILED_STARTS
    log = next(tmp_path.glob("worker-*.log")).read_text()
    assert log.count("did not start") == MAX_FAILED_STARTS - 1, log
    assert "its stderr ends with:\ncannot start: simulated failure" in log, log
    assert not (ws / "queue" / broken.ref.entry_name).exists()


def test_a_job_that_never_started_runs_once_retried(ws: Path, tmp_path: Path, processes: Processes) -> None:
    counter = tmp_path / "counter"
    broken = submit_broken(ws, tmp_path, counter, 1)
    processes.worker(ws, extra=["--idle-exit", "30"])
    wait_until(broken.marker, timeout=60, what="the job to fail")
    (tmp_path / "broken").unlink()  # the interpreter is repaired
    retried = subprocess.run(
        [sys.executable, "-m", "xpmfs", "retry", str(broken.path)],
        env=processes.env(),
        capture_output=True,
        check=False,
    )
    assert retried.returncode == 0, retried.stderr
    wait_until(lambda: broken.marker() is State.DONE, timeout=60, what="the retried job to run")
    assert counter.read_text().split()[0] == "1"
    assert broken.status().attempt == 1  # type: ignore[union-attr]
