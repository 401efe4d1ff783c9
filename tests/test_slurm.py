"""The SLURM launcher (issue 5): spec/slurm.md.

Three kinds of tests:

- pure units: squeue/sacct/``%L`` parsing, the settlement rules, the launcher record, the batch
  script text, the remaining-time provider;
- a real worker against *fake* ``sbatch``/``squeue``/``scancel`` (shell scripts first on PATH): the
  follower's rules (lost, cancelled, timeout, retry) and its ONE squeue call per rescan, with no
  cluster and no waiting for SLURM;
- the real single-node test cluster (``tools/slurm-up``), marked ``slurm``: they skip, saying why,
  when it is down.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from conftest import ROOT, Processes, job_of, wait_until
from sample_tasks import Add, After, Gate
from slurm_tasks import Remaining, Resume, WhereAmI
from slurm_util import (
    Slurm,
    job_state,
    slurm_fixture,  # noqa: F401  (the ``slurm`` fixture)
    wait_finished,
)

from xpmfs import SlurmLauncher, experiment
from xpmfs.control import kill
from xpmfs.errors import FailedExperiment
from xpmfs.job import Job, Spec
from xpmfs.launchers import DirectLauncher, from_json, slurm
from xpmfs.launchers.slurm import ClusterJob, RemainingTime, SlurmError
from xpmfs.queue import JobRef
from xpmfs.status import Reason, State
from xpmfs.workspace import Workspace

RESCAN = 0.3  # worker rescan for these tests: one squeue call per rescan while SLURM jobs are in flight


def _status(job: Job) -> dict:
    return orjson.loads((job.xpm_dir / "status.json").read_bytes())


def _failure(job: Job) -> dict:
    return orjson.loads((job.xpm_dir / "failed").read_bytes())


# == units =========================================================================================


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1-02:03:04", ((24 + 2) * 60 + 3) * 60 + 4),
        ("365-00:00:00", 365 * 86400),
        ("02:03:04", 2 * 3600 + 3 * 60 + 4),
        ("2:03:04", 2 * 3600 + 3 * 60 + 4),
        ("1:00", 60),
        ("0:49", 49),
        ("59:59", 3599),
        ("0:00", 0),
        (" 3:00\n", 180),
        ("UNLIMITED", None),
        ("INVALID", None),
        ("NOT_SET", None),
        ("", None),
    ],
)
def test_parse_duration(text: str, seconds: int | None) -> None:
    assert slurm.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5", "1-5", "a:bc", "1:2:3:4", "-1:00"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="SLURM duration"):
        slurm.parse_duration(text)


def test_parse_squeue_and_sacct() -> None:
    text = "92|COMPLETING|TimeLimit\n93|CANCELLED|None\nnot a line\n94|PENDING|BeginTime\n"
    jobs = slurm.parse_squeue(text)
    assert jobs == {
        "92": ClusterJob("92", "COMPLETING", "TimeLimit"),
        "93": ClusterJob("93", "CANCELLED", "None"),
        "94": ClusterJob("94", "PENDING", "BeginTime"),
    }
    assert [job.ended for job in jobs.values()] == [False, True, False]
    accounted = slurm.parse_sacct("95|CANCELLED by 0|None\n96|TIMEOUT|TimeLimit\n")
    assert accounted["95"].state == "CANCELLED" and accounted["96"].ended


@pytest.mark.parametrize(
    ("cluster", "reason"),
    [
        (ClusterJob("7", "PENDING", "Priority"), None),
        (ClusterJob("7", "RUNNING", "None"), None),
        (ClusterJob("7", "COMPLETING", "TimeLimit"), None),  # the runner may still record its end
        (ClusterJob("7", "TIMEOUT", "TimeLimit"), Reason.TIMEOUT),
        (ClusterJob("7", "DEADLINE", ""), Reason.TIMEOUT),
        (ClusterJob("7", "CANCELLED", "None"), Reason.CANCELLED),
        (ClusterJob("7", "NODE_FAIL", ""), Reason.LOST),
        (ClusterJob("7", "COMPLETED", ""), Reason.LOST),
        (ClusterJob("7", "FAILED", "NonZeroExitCode"), Reason.LOST),
        (None, Reason.LOST),
    ],
)
def test_settlement_rules(cluster: ClusterJob | None, reason: Reason | None) -> None:
    settled = slurm.settlement("7", cluster)
    assert (settled[0] if settled else None) is reason
    if settled:
        assert "SLURM job 7" in settled[1]


def test_launcher_record_round_trip_and_validation() -> None:
    launcher = SlurmLauncher(
        time="1-00:00:00", partition="gpu", qos="high", account="lab", cpus=4, memory="16G", gpus="a100:2",
        constraint="v100", extra=["--exclusive"],
    )  # fmt: skip
    record = launcher.to_json()
    assert record == {
        "type": "slurm", "time": "1-00:00:00", "partition": "gpu", "qos": "high", "account": "lab", "cpus": 4,
        "memory": "16G", "gpus": "a100:2", "constraint": "v100", "extra": ["--exclusive"], "signal_before": 120,
    }  # fmt: skip
    assert from_json(record) == launcher and from_json(json.loads(json.dumps(record))) == launcher
    assert from_json({"type": "slurm", "time": 5, "future_option": 1}) == SlurmLauncher(time=5)
    assert from_json(None) == DirectLauncher() and from_json({"type": "direct"}).to_json() == {"type": "direct"}
    assert SlurmLauncher(signal_before=None).to_json()["signal_before"] is None
    with pytest.raises(ValueError, match="unknown launcher type 'pbs'"):
        from_json({"type": "pbs"})
    for bad in ({"time": "1 hour"}, {"time": 0}, {"cpus": 0}, {"partition": "a b"}, {"extra": ("exclusive",)}):
        with pytest.raises(ValueError, match="SlurmLauncher"):
            SlurmLauncher(**bad)  # type: ignore[arg-type]


def test_batch_script_text(tmp_path: Path) -> None:
    workspace = Workspace.open(tmp_path / "my ws", create=True)
    job = Job(workspace, JobRef("pkg.train", "ab" * 32))
    spec = Spec(typeid="pkg.train", jobid="ab" * 32, config={}, resumable=True, python="/opt/venv/bin/python")
    launcher = SlurmLauncher(time=90, partition="short", cpus=2, gpus=1, extra=("--exclusive",), signal_before=300)
    text = launcher.batch_script(job, spec, environ={"XPMFS_WORKER": "node1-42", "XPMFS_LOCK_HELD": None})
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    directives = [line.removeprefix("#SBATCH ") for line in lines if line.startswith("#SBATCH ")]
    assert directives == [
        "--job-name=train-abababab",
        f'--chdir="{job.path}"',  # quoted: the workspace path has a space
        f'--output="{job.stdout_path}"',
        f'--error="{job.stderr_path}"',
        "--open-mode=append",  # streams are never truncated (spec/workspace.md)
        "--signal=B:USR1@300",
        "--time=90",
        "--partition=short",
        "--cpus-per-task=2",
        "--gpus=1",
        "--exclusive",
    ]
    # Directives come first: sbatch stops reading them at the first command.
    assert all(line.startswith("#") for line in lines[: len(directives) + 1])
    assert "unset XPMFS_LOCK_HELD" in lines and "export XPMFS_WORKER=node1-42" in lines
    assert lines.index("trap '' USR1") == len(lines) - 2
    assert lines[-1] == f"exec /opt/venv/bin/python '{job.script_path}'"
    assert "--open-mode=append" in SlurmLauncher().batch_script(job, Spec("pkg.train", "ab" * 32, {}))  # not resumable
    assert "--signal" not in SlurmLauncher(signal_before=None).batch_script(job, spec)
    assert subprocess.run(["bash", "-n"], input=text, text=True, check=False).returncode == 0


def test_remaining_time_counts_down_between_queries_and_answers_zero_after_usr1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    asked: list[str] = []

    def ask(cluster_id: str) -> float | None:
        asked.append(cluster_id)
        return 600.0

    provider = RemainingTime("42", refresh=60.0, ask=ask, clock=lambda: now[0])
    assert provider() == 600.0
    now[0] += 10
    assert provider() == 590.0 and asked == ["42"]  # cached, counted down
    now[0] += 60
    assert provider() == 600.0 and asked == ["42", "42"]  # asked again after `refresh`
    monkeypatch.setattr(slurm, "_end_announced", None)
    previous = signal.getsignal(signal.SIGUSR1)
    try:
        slurm.install_warning_handler()
        os.kill(os.getpid(), signal.SIGUSR1)  # SLURM's pre-timeout warning: a flag, not an exception
        wait_until(slurm.end_announced, timeout=5)
        assert provider() == 0.0
    finally:
        signal.signal(signal.SIGUSR1, previous)

    def unlimited(cluster_id: str) -> float | None:
        return None

    monkeypatch.setattr(slurm, "_end_announced", None)
    assert RemainingTime("42", ask=unlimited)() is None

    def broken(cluster_id: str) -> float | None:
        raise SlurmError("squeue", "Unable to contact slurm controller", transient=True)

    monkeypatch.setenv(slurm.ENV_JOB_END_TIME, str(time.time() + 100))
    assert 95 < RemainingTime("42", ask=broken)() <= 100  # type: ignore[operator]


# == a real worker, fake SLURM commands ==============================================================

_FAKE_SBATCH = """#!/bin/bash
# Fake sbatch: records the script, prints a new job id, runs nothing.
dir=$(dirname "$0")
exec 9>>"$dir/lock"; flock 9
script="${@: -1}"
if grep -q -- '--partition=nope' "$script"; then
    echo "sbatch: error: invalid partition specified: nope" >&2; exit 1
fi
id=$(( $(cat "$dir/next" 2>/dev/null || echo 500) + 1 )); echo "$id" > "$dir/next"
echo "$id $script" >> "$dir/sbatch.log"
echo "$id"
"""
_FAKE_SQUEUE = """#!/bin/bash
# Fake squeue: records its arguments, prints the table in states (id|STATE|reason lines).
dir=$(dirname "$0")
echo "$*" >> "$dir/squeue.log"
cat "$dir/states" 2>/dev/null
"""
_FAKE_SCANCEL = """#!/bin/bash
dir=$(dirname "$0")
echo "$*" >> "$dir/scancel.log"
"""


class FakeSlurm:
    """Fake sbatch/squeue/scancel in ``bin``; :meth:`set_states` decides what squeue answers."""

    def __init__(self, directory: Path) -> None:
        self.bin = directory
        directory.mkdir()
        for name, text in (("sbatch", _FAKE_SBATCH), ("squeue", _FAKE_SQUEUE), ("scancel", _FAKE_SCANCEL)):
            path = directory / name
            path.write_text(text)
            path.chmod(path.stat().st_mode | stat.S_IEXEC)

    def env(self, processes: Processes) -> dict[str, str]:
        env = processes.env()
        env["PATH"] = f"{self.bin}{os.pathsep}{env['PATH']}"
        return env

    def submitted(self) -> list[tuple[str, str]]:
        log = self.bin / "sbatch.log"
        lines = log.read_text().splitlines() if log.exists() else []
        return [tuple(line.split(" ", 1)) for line in lines]  # type: ignore[misc]

    def squeue_calls(self) -> list[str]:
        log = self.bin / "squeue.log"
        return log.read_text().splitlines() if log.exists() else []

    def set_states(self, states: dict[str, str]) -> None:
        text = "".join(f"{cluster_id}|{state}|None\n" for cluster_id, state in states.items())
        temporary = self.bin / "states.tmp"
        temporary.write_text(text)
        os.replace(temporary, self.bin / "states")


@pytest.fixture
def fake_slurm(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path / "fakebin")


def _fake_worker(processes: Processes, ws: Path, fake: FakeSlurm) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "xpmfs", "worker", str(ws), "--rescan", str(RESCAN)]
    return processes.start(args, log=processes.tmp_path / "worker.log", env=fake.env(processes))


def test_follower_settles_vanished_cancelled_and_timed_out_jobs_in_one_squeue_call_per_rescan(
    ws: Path, processes: Processes, fake_slurm: FakeSlurm, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = SlurmLauncher(time=5)
    with experiment(ws, "follow", workers=0, wait=False):
        lost = Add.C(x=1).submit(launcher=launcher)
        cancelled = Add.C(x=2).submit(launcher=launcher)
        timed_out = Add.C(x=3).submit(launcher=launcher)
        resumable = Remaining.C(tag="retried").submit(launcher=launcher)
        dependent = After.C(before=lost).submit(launcher=launcher)
    outputs = {"lost": lost, "cancelled": cancelled, "timed_out": timed_out, "resumable": resumable}
    jobs = {name: job_of(ws, output) for name, output in {**outputs, "dependent": dependent}.items()}
    _fake_worker(processes, ws, fake_slurm)

    wait_until(lambda: all(_status(jobs[name])["state"] == "submitted" for name in outputs), timeout=20)
    ids = {name: _status(jobs[name])["cluster_id"] for name in outputs}
    assert sorted(ids.values()) == sorted(cluster_id for cluster_id, _ in fake_slurm.submitted())
    assert _status(jobs["dependent"])["state"] == "waiting"  # its dependency has not ended
    first_call = len(fake_slurm.squeue_calls())
    started = time.monotonic()
    time.sleep(8 * RESCAN)
    # Pending jobs are followed, never submitted twice; ONE squeue call per rescan names them all.
    calls = fake_slurm.squeue_calls()[first_call:]
    assert len(fake_slurm.submitted()) == 4
    assert 4 <= len(calls) <= (time.monotonic() - started) / RESCAN + 2, calls
    wanted = f"--jobs={','.join(sorted(ids.values()))}"
    assert all(wanted in call.split() for call in calls), calls

    # The SLURM jobs end with no runner ever writing a status: SLURM forgot one, cancelled one,
    # timed out two (one of them resumable: resubmitted, keeping its folder).
    fake_slurm.set_states({ids["cancelled"]: "CANCELLED", ids["timed_out"]: "TIMEOUT", ids["resumable"]: "TIMEOUT"})
    for name in ("lost", "cancelled", "timed_out", "dependent"):
        wait_until(jobs[name].marker, timeout=20, what=f"{name} to end")
    assert {name: _failure(jobs[name])["reason"] for name in ("lost", "cancelled", "timed_out", "dependent")} == {
        "lost": "lost",
        "cancelled": "cancelled",
        "timed_out": "timeout",
        "dependent": "dependency",
    }
    assert f"SLURM job {ids['lost']} is gone" in _failure(jobs["lost"])["message"]
    wait_until(lambda: len(fake_slurm.submitted()) == 5, timeout=20, what="the resumable job resubmitted")
    again = _status(jobs["resumable"])
    assert again["state"] == "submitted" and again["retry_count"] == 1 and again["cluster_id"] != ids["resumable"]
    assert jobs["resumable"].marker() is None
    assert (ws / "queue" / f"{jobs['resumable'].ref.typeid}~{jobs['resumable'].ref.jobid}").exists()
    for name in ("lost", "cancelled", "timed_out", "dependent"):
        assert not (ws / "queue" / f"{jobs[name].ref.typeid}~{jobs[name].ref.jobid}").exists()

    # `xpmfs kill` of a submitted job: scancel, then cancelled at once.
    fake_slurm.set_states({again["cluster_id"]: "PENDING"})
    monkeypatch.setenv("PATH", fake_slurm.env(processes)["PATH"])
    outcome = kill(jobs["resumable"])
    assert outcome.action == "cancelled" and f"scancel'ed SLURM job {again['cluster_id']}" in outcome.message
    assert (fake_slurm.bin / "scancel.log").read_text().split() == [again["cluster_id"]]
    assert _failure(jobs["resumable"])["reason"] == "cancelled"


def test_rejected_submission_fails_the_job_with_sbatch_message(
    ws: Path, processes: Processes, fake_slurm: FakeSlurm
) -> None:
    _fake_worker(processes, ws, fake_slurm)
    with pytest.raises(FailedExperiment) as caught, experiment(ws, "rejected", workers=0):
        Add.C(x=1).submit(launcher=SlurmLauncher(partition="nope"))
    assert "error: cannot submit to SLURM" in str(caught.value)
    assert "invalid partition specified: nope" in str(caught.value)


# == the real test cluster ========================================================================

pytest_slurm = pytest.mark.slurm


def _worker(processes: Processes, ws: Path) -> subprocess.Popen[bytes]:
    return processes.worker(ws, rescan=RESCAN)


@pytest_slurm
@pytest.mark.parametrize("lock_mode", ["local", "shared"])
def test_chain_of_three_through_slurm(slurm: Slurm, ws: Path, processes: Processes, lock_mode: str) -> None:
    launcher = SlurmLauncher(time=2, partition="short")
    started = time.monotonic()
    with experiment(ws, "chain", workers=0, lock_mode=lock_mode):
        _worker(processes, ws)
        a = Add.C(x=1).submit(launcher=launcher)
        b = Add.C(x=2, previous=a).submit(launcher=launcher)
        c = Add.C(x=3, previous=b).submit(launcher=launcher)
    print(f"chain of 3 SLURM jobs ({lock_mode}): {time.monotonic() - started:.1f}s")
    jobs = [job_of(ws, output) for output in (a, b, c)]
    assert (jobs[2].path / "result.txt").read_text() == "6"
    clusters = [_status(job)["cluster_id"] for job in jobs]
    assert len(set(clusters)) == 3
    for job, cluster_id in zip(jobs, clusters, strict=True):
        assert _status(job)["state"] == "done" and _status(job)["attempt"] == 1
        script = job.batch_script_path.read_text()
        assert "#SBATCH --partition=short" in script and script.splitlines()[-1].startswith("exec ")
        final = wait_finished(cluster_id, timeout=30)
        assert final == "COMPLETED", f"SLURM job {cluster_id}: {final}; stderr:\n{job.stderr_path.read_text()}"


@pytest_slurm
def test_remaining_time_inside_a_slurm_job(slurm: Slurm, ws: Path, processes: Processes) -> None:
    with experiment(ws, "remaining", workers=0):
        _worker(processes, ws)
        output = Remaining.C().submit(launcher=SlurmLauncher(time=2))
    answers = json.loads(job_of(ws, output).path.joinpath("remaining.json").read_text())
    print(f"remaining_time() inside a --time=2 job: {answers}")
    assert 60 < answers["remaining"] <= 120
    assert 0 < answers["again"] <= answers["remaining"]


@pytest_slurm
def test_scancel_from_outside_fails_job_and_dependents(slurm: Slurm, ws: Path, processes: Processes) -> None:
    gate = str(ws.parent / "never")  # the Gate tasks wait for this file forever
    with experiment(ws, "cancel", workers=0, wait=False):
        running = Gate.C(name="running", gate=gate).submit(launcher=SlurmLauncher(time=2))
        after = After.C(before=running).submit(launcher=SlurmLauncher(time=2))
        pending = Gate.C(name="pending", gate=gate).submit(launcher=SlurmLauncher(time=2, extra=("--begin=now+3600",)))
        killed = Gate.C(name="killed", gate=gate).submit(launcher=SlurmLauncher(time=2))
    jobs = {"running": job_of(ws, running), "after": job_of(ws, after), "pending": job_of(ws, pending)}
    jobs["killed"] = job_of(ws, killed)
    _worker(processes, ws)
    for name in ("running", "killed"):
        wait_until((jobs[name].path / "started").exists, timeout=30, what=f"{name} to start on the node")
    wait_until(lambda: _status(jobs["pending"])["state"] == "submitted", timeout=30)
    ids = {name: _status(jobs[name])["cluster_id"] for name in ("running", "pending", "killed")}
    assert job_state(ids["pending"]) == "PENDING"

    cancelled = time.monotonic()
    subprocess.run(["scancel", ids["running"], ids["pending"]], check=True)
    outcome = kill(jobs["killed"])  # `xpmfs kill` of a running SLURM job: scancel
    assert f"scancel'ed SLURM job {ids['killed']}" in outcome.message
    for name in ("running", "after", "pending", "killed"):
        wait_until(jobs[name].marker, timeout=30, what=f"{name} to end")
    print(f"scancel -> all four ended in {time.monotonic() - cancelled:.1f}s")
    reasons = {name: _failure(job)["reason"] for name, job in jobs.items()}
    # Recorded by their runners, on SLURM's SIGTERM, which squeue says is no time limit.
    assert reasons["running"] == reasons["killed"] == "cancelled"
    assert _status(jobs["running"])["exit_code"] == _status(jobs["killed"])["exit_code"] == 143
    assert reasons["pending"] == "cancelled"  # settled by a worker: its runner never started
    assert reasons["after"] == "dependency"
    assert _status(jobs["pending"])["attempt"] == 0
    for cluster_id in ids.values():
        assert wait_finished(cluster_id, timeout=30) == "CANCELLED"


@pytest_slurm
@pytest.mark.slow
@pytest.mark.timeout(330)
def test_resumable_job_timed_out_by_slurm_is_resubmitted_and_completes(
    slurm: Slurm, ws: Path, processes: Processes
) -> None:
    # --time=1: attempt 1 stops itself once USR1 (at SLURM's first check, 0-30 s in) makes
    # remaining_time() 0; attempt 2 ignores it and is killed at the limit (60-90 s in); attempt 3 ends.
    seen: list[tuple[str, str | None, str | None]] = []
    stop = threading.Event()
    launcher = SlurmLauncher(time=1, signal_before=60)
    started = time.monotonic()
    with experiment(ws, "resume", workers=0, wait=False):
        output = Resume.C(steps=200).submit(launcher=launcher, max_retries=3)
    job = job_of(ws, output)

    def watch() -> None:  # for the record: every state the job goes through
        while not stop.is_set():
            try:
                record = _status(job)
            except (OSError, ValueError):
                record = None
            if record and (not seen or seen[-1] != (record["state"], record["cluster_id"], record["message"])):
                seen.append((record["state"], record["cluster_id"], record["message"]))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        _worker(processes, ws)
        wait_until(job.marker, timeout=300, interval=0.2, what="the resumable job to end")
    finally:
        stop.set()
        watcher.join()
    elapsed = time.monotonic() - started
    for state, cluster_id, message in seen:
        print(f"  {state:9} {cluster_id}  {message}")
    print(f"resumable job with 2 SLURM timeouts done in {elapsed:.0f}s")
    final = _status(job)
    assert final["state"] == "done" and final["retry_count"] == 2 and final["attempt"] == 3
    clusters = list(dict.fromkeys(cluster_id for state, cluster_id, _ in seen if state == "running"))
    assert len(clusters) == 3
    # Attempt 1 stopped itself (runner exit 75: FAILED for SLURM); attempt 2 hit the limit. The
    # last one's marker is written before its batch script exits: SLURM may still say RUNNING.
    assert [wait_finished(cluster_id) for cluster_id in clusters] == ["FAILED", "TIMEOUT", "COMPLETED"]
    checkpoint = json.loads(job.path.joinpath("checkpoint.json").read_text())
    assert checkpoint == {"step": 200, "attempts": 3}  # one folder, resumed twice
    out = job.stdout_path.read_text()  # appended across attempts
    assert "attempt 1 stops at step" in out and "remaining_time() = 0.0" in out
    assert "attempt 3 finished all 200 steps" in out
    assert "DUE TO TIME LIMIT" in job.stderr_path.read_text()
    messages = " | ".join(message or "" for _, _, message in seen)
    assert "timeout, retry 1 of 3" in messages and f"SLURM job {clusters[1]} reached its time limit" in messages


@pytest_slurm
def test_workers_started_through_slurm_run_direct_jobs(slurm: Slurm, ws: Path, tmp_path: Path) -> None:
    # The jobs first (direct launcher, no worker anywhere), then the workers: SLURM starts them.
    with experiment(ws, "hosted", workers=0, wait=False):
        outputs = [WhereAmI.C(n=n, seconds=0.5).submit() for n in range(4)]
    env = dict(os.environ)
    env["XPMFS_COMMAND"] = f"{sys.executable} -m xpmfs"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    script = ROOT / "workers" / "xpmfs-workers.sbatch"
    args = ["sbatch", "--parsable", "--array=0-1", "--cpus-per-task=1", "--time=2"]
    args += [f"--output={tmp_path}/worker-%A_%a.log", str(script), str(ws), "--rescan", str(RESCAN), "--idle-exit", "2"]
    array = subprocess.run(args, check=True, capture_output=True, text=True, env=env).stdout.strip()
    slurm.jobs += [f"{array}_0", f"{array}_1"]

    jobs = [job_of(ws, output) for output in outputs]
    wait_until(lambda: all(job.marker() for job in jobs), timeout=60, what="the SLURM-hosted workers to run the jobs")
    assert all(job.marker() is State.DONE for job in jobs)
    records = [json.loads(job.path.joinpath("where.json").read_text()) for job in jobs]
    assert {record["SLURM_ARRAY_JOB_ID"] for record in records} == {array}
    assert all(_status(job)["cluster_id"] is None for job in jobs)  # direct jobs: no SLURM job of their own
    tasks = sorted(record["SLURM_ARRAY_TASK_ID"] for record in records)
    print(f"4 direct jobs run by SLURM-hosted workers: array tasks {tasks}")
    # Idle, the workers exit and free their allocations.
    assert wait_finished(f"{array}_0", timeout=60) == "COMPLETED"
    assert wait_finished(f"{array}_1", timeout=60) == "COMPLETED"
    assert not list((ws / "workers").glob("*.json"))
