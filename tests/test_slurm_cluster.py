"""The test SLURM cluster (tools/slurm-up) does what the SLURM launcher will rely on.

Every test skips, saying why, when sbatch is missing or the cluster does not answer.
"""

from __future__ import annotations

import time

import pytest
from slurm_util import (
    Slurm,
    parse_duration,
    process_alive,
    slurm_fixture,  # noqa: F401  (the ``slurm`` fixture)
    wait_finished,
    wait_for_file,
    wait_for_state,
)

pytestmark = pytest.mark.slurm


@pytest.mark.parametrize("partition", [None, "short"])
def test_sbatch_runs_script_and_writes_output(slurm: Slurm, partition: str | None) -> None:
    script = slurm.script("hello.sh", 'echo "hello from $SLURM_JOB_ID on $SLURM_JOB_PARTITION"\necho done > marker.txt')
    options = [f"--partition={partition}"] if partition else []
    submitted = time.monotonic()
    job = slurm.sbatch(script, *options)
    assert wait_finished(job, timeout=60) == "COMPLETED"
    finished = time.monotonic() - submitted
    text = wait_for_file(script.with_suffix(".out"))
    assert text.strip() == f"hello from {job} on {partition or 'debug'}"
    assert (slurm.directory / "marker.txt").read_text() == "done\n"  # --chdir was honoured
    print(f"job {job}: sbatch -> COMPLETED seen in {finished:.2f}s")


def test_squeue_reports_remaining_time_inside_job(slurm: Slurm) -> None:
    script = slurm.script("remaining.sh", 'squeue -h -j "$SLURM_JOB_ID" -o %L > remaining.txt')
    job = slurm.sbatch(script, "--time=2")
    assert wait_finished(job, timeout=60) == "COMPLETED", script.with_suffix(".out").read_text()
    remaining = (slurm.directory / "remaining.txt").read_text().strip()
    seconds = parse_duration(remaining)
    assert 0 < seconds <= 120, remaining


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_signal_option_warns_batch_shell_before_time_limit(slurm: Slurm) -> None:
    # "When a job is within sig_time seconds of its end time" -- but, says sbatch(1), "due to the
    # resolution of event handling by Slurm, the signal may be sent up to 60 seconds earlier than
    # specified": slurmctld checks every ~30 s and sends once the job is within sig_time + ~30 s. With
    # --time=1 and @50 that is the first check after the start, so USR1 comes 0-30 s after the start.
    body = """
trap 'date +%s.%N > usr1.txt; echo "got USR1"; exit 0' USR1
date +%s.%N > started.txt
while true; do sleep 1 & wait $!; done
"""
    script = slurm.script("signal.sh", body)
    job = slurm.sbatch(script, "--time=1", "--signal=B:USR1@50")
    started = float(wait_for_file(slurm.directory / "started.txt", timeout=30))
    received = float(wait_for_file(slurm.directory / "usr1.txt", timeout=120))
    delay = received - started
    print(f"job {job}: USR1 reached the batch shell {delay:.1f}s after it started")
    assert delay < 55, "USR1 came too late: the job was about to reach its time limit"
    assert wait_finished(job, timeout=30) == "COMPLETED"
    assert "got USR1" in script.with_suffix(".out").read_text()


def test_scancel_ends_running_job(slurm: Slurm) -> None:
    body = """
echo $$ > shell.pid
sleep 300 &
echo $! > sleep.pid
wait
"""
    script = slurm.script("sleeper.sh", body)
    job = slurm.sbatch(script)
    assert wait_for_state(job, {"RUNNING"}, timeout=30) == "RUNNING"
    shell_pid = int(wait_for_file(slurm.directory / "shell.pid"))
    sleep_pid = int(wait_for_file(slurm.directory / "sleep.pid"))
    assert process_alive(shell_pid) and process_alive(sleep_pid)

    cancelled = time.monotonic()
    slurm.cancel(job)
    assert wait_finished(job, timeout=30) == "CANCELLED"
    state_seen = time.monotonic() - cancelled
    deadline = time.monotonic() + 20  # SIGTERM, then SIGKILL after KillWait=5
    while process_alive(shell_pid) or process_alive(sleep_pid):
        assert time.monotonic() < deadline, "job processes survived scancel"
        time.sleep(0.05)
    print(
        f"job {job}: CANCELLED seen {state_seen:.2f}s, processes gone {time.monotonic() - cancelled:.2f}s after scancel"
    )
