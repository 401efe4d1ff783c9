"""Conformance of a worker to spec/ (workspace.md, "A worker's loop"; locks.md; failure-model.md).

Run against any worker: ``XPMFS_WORKER_CMD="my-worker {workspace}" tools/test tests/conformance``
(spec/README.md, "Certifying a worker"). Each test names the rule it checks. A test marked
``xfail(strict=True)`` checks a rule the reference worker does not follow yet; the reason says how.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_until

from xpmfs import experiment

from .conftest import (
    LEASE,
    RESCAN,
    SLACK,
    Site,
    history,
    python_wrapper,
    read_log,
    set_spec_python,
    status_record,
)
from .tasks import Die, Probe, ProbeClaimNames, Run, TimesOutOnce, alive

# -- exclusive claims ------------------------------------------------------------------------------


def test_claims_are_exclusive_against_reference_workers(any_site: Site, tmp_path: Path) -> None:
    """locks.md: the lock is the claim; every job runs exactly once among all the workers."""
    log = tmp_path / "runs.log"
    under_test = any_site.under_test()
    any_site.reference()
    any_site.reference()
    _, record = any_site.registration(under_test)
    jobs = any_site.submit(*(Run.C(n=n, log=str(log), seconds=0.1) for n in range(9)))
    for job in jobs:
        any_site.wait_ended(job, timeout=60)
    lines = read_log(log)
    for n in range(9):
        starts = [line for line in lines if line[0] == str(n) and line[2] == "start"]
        assert len(starts) == 1, f"job {n} started {len(starts)} times:\n{log.read_text()}"
    assert not [line for line in lines if line[2] == "overlap"], log.read_text()
    assert all(job.marker() is not None and job.marker().value == "done" for job in jobs)  # type: ignore[union-attr]
    assert any(status_record(job)["worker"] == record["name"] for job in jobs), (
        f"the worker under test ran none of the jobs:\n{any_site.logs()}"
    )
    assert not os.listdir(any_site.path / "queue")
    for worker in any_site.workers:
        assert worker.stop() == 0
    any_site.check()


# -- dependencies ----------------------------------------------------------------------------------


def test_dependencies_are_respected(any_site: Site, tmp_path: Path) -> None:
    """workspace.md: a job runs only once each dependency has a `done` marker; a dependency's
    `failed` marker fails it with reason `dependency`, without running it."""
    log = tmp_path / "runs.log"
    with experiment(any_site.path, "dependencies", wait=False, workers=0):
        first = Run.C(n=1, log=str(log), seconds=0.3).submit()
        broken = Die.C(name="broken").submit()
        first_job, broken_job = any_site.job(first), any_site.job(broken)
        after = str(first_job.xpm_dir / "done")
        second_job = any_site.job(Run.C(n=2, log=str(log), before=first, after=after).submit())
        orphan_job = any_site.job(Run.C(n=3, log=str(log), before=broken).submit())
    any_site.under_test()
    any_site.wait_ended(second_job)
    any_site.wait_ended(orphan_job)
    assert second_job.marker().value == "done"  # type: ignore[union-attr]
    seen = [line[3] for line in read_log(log) if line[0] == "2" and line[2] == "dependency"]
    assert seen == ["done"], f"the dependent job started before its dependency's done marker:\n{log.read_text()}"

    assert broken_job.marker().value == "failed"  # type: ignore[union-attr]
    failed = json.loads((orphan_job.xpm_dir / "failed").read_bytes())
    assert failed["state"] == "failed" and failed["reason"] == "dependency", failed
    assert not (orphan_job.path / "started").exists(), "a job whose dependency failed was run"
    assert not any(line[0] == "3" for line in read_log(log))
    assert not os.listdir(any_site.path / "queue")
    any_site.workers[0].stop()
    any_site.check()


# -- crash recovery --------------------------------------------------------------------------------


@pytest.mark.parametrize("dies", ["under-test", "reference"])
def test_a_killed_workers_job_runs_again_never_twice_at_once(any_site: Site, tmp_path: Path, dies: str) -> None:
    """failure-model.md: kill -9 of a worker mid-job kills its runner (the runner dies with its
    worker: `XPMFS_PARENT_PID`); another worker hands the job back (`running` → `ready`, the
    attempt in `history.jsonl`) and runs it again; the two runs never overlap."""
    log, gate = tmp_path / "runs.log", tmp_path / "gate"
    [job] = any_site.submit(Run.C(n=1, log=str(log), gate=str(gate)))
    first = any_site.under_test() if dies == "under-test" else any_site.reference()
    wait_until((job.path / "started").exists, timeout=SLACK, what=f"the job to start\n{any_site.logs()}")
    runner = int((job.path / "started").read_text())
    assert status_record(job)["state"] == "running"
    first.kill()
    wait_until(lambda: not alive(runner), timeout=SLACK, what="the runner to die with its worker")
    gate.write_text("")
    survivor = any_site.reference() if dies == "under-test" else any_site.under_test()
    any_site.wait_ended(job, timeout=LEASE + RESCAN + SLACK)
    record = status_record(job)
    assert record["state"] == "done" and record["attempt"] == 2, record
    [crashed] = history(job)
    assert crashed["state"] == "running" and crashed["attempt"] == 1 and crashed["pid"] == runner, crashed
    assert crashed["ended"] is not None, crashed
    starts = [line for line in read_log(log) if line[2] == "start"]
    assert len(starts) == 2 and not [line for line in read_log(log) if line[2] == "overlap"], log.read_text()
    assert survivor.stop() == 0
    any_site.check(allow=("stale-worker",))


# -- how a runner is started -----------------------------------------------------------------------


def test_the_runner_is_started_as_the_spec_says(site: Site, tmp_path: Path) -> None:
    """workspace.md, "Starting the runner": its own session, stdin from /dev/null, the job folder
    as working directory, the worker's environment with the spec's `environ` over it and the
    claim's variables; status.json then names the worker and the claim."""
    gate = tmp_path / "gate"
    [job] = site.submit(Probe.C(name="probe", gate=str(gate)))
    worker = site.under_test(env={"CONFORMANCE_OVERRIDDEN": "from-worker"})
    _, registration = site.registration(worker)
    wait_until((job.path / "probe.json").exists, timeout=SLACK, what=f"the probe to run\n{site.logs()}")
    probe = json.loads((job.path / "probe.json").read_bytes())
    environ = probe["environ"]
    assert probe["pid"] == probe["pgid"] == probe["sid"], f"the runner is not a session leader: {probe}"
    assert probe["stdin"] == "/dev/null", probe
    assert probe["cwd"] == str(job.path), probe
    assert environ["XPMFS_JOB_DIR"] == str(job.path), environ
    assert environ["XPMFS_LOCK_HELD"] is None, "the runner consumes XPMFS_LOCK_HELD; the task must not see it"
    assert environ["XPMFS_WORKER"] == registration["name"], environ
    assert environ["XPMFS_ATTEMPT"] == "1", environ
    assert environ["XPMFS_PARENT_PID"] == str(probe["ppid"]), "XPMFS_PARENT_PID must be the runner's parent"
    assert environ["CONFORMANCE_SPEC_ONLY"] == "from-spec" and environ["CONFORMANCE_OVERRIDDEN"] == "from-spec"
    record = status_record(job)
    assert record["state"] == "running" and record["attempt"] == 1, record
    assert record["worker"] == registration["name"] and record["host"] == socket.gethostname(), record
    assert record["pid"] == probe["pid"], record
    assert record["claimed"] == float(environ["XPMFS_CLAIMED"]) <= record["started"], record
    gate.write_text("")
    site.wait_ended(job)
    assert job.marker().value == "done"  # type: ignore[union-attr]
    assert worker.stop() == 0
    site.check()


def test_xpmfs_job_dir_is_the_normalized_job_folder(site: Site, tmp_path: Path) -> None:
    """workspace.md, "Starting the runner": `XPMFS_JOB_DIR` is the job folder made absolute and
    normalized (no `..`), whatever path of the workspace the worker was given."""
    (tmp_path / "elsewhere").mkdir()
    [job] = site.submit(Probe.C(name="normalized"))
    worker = site.under_test(path=tmp_path / "elsewhere" / ".." / "ws")
    site.wait_ended(job)
    environ = json.loads((job.path / "probe.json").read_bytes())["environ"]
    assert environ["XPMFS_JOB_DIR"] == str(job.path), environ
    assert worker.stop() == 0


def test_the_runner_is_the_specs_python_running_the_jobs_script(site: Site, tmp_path: Path) -> None:
    """workspace.md: the runner is `<spec.python> <job folder>/<name>.py`."""
    log, used = tmp_path / "runs.log", tmp_path / "python-used"
    [job] = site.submit(Run.C(n=1, log=str(log)))
    set_spec_python(job, python_wrapper(tmp_path / "python", f'echo "$@" >> {used}\nexec {sys.executable} "$@"'))
    worker = site.under_test()
    site.wait_ended(job)
    assert job.marker().value == "done", site.logs()  # type: ignore[union-attr]
    assert used.read_text().split() == [str(job.path / "run.py")]
    assert worker.stop() == 0


def test_a_specs_environ_cannot_change_the_claims_variables(site: Site, tmp_path: Path) -> None:
    """workspace.md, "Starting the runner": the claim's variables are set last; a spec's `environ`
    naming them is ignored, for the runner and for the task."""
    gate = tmp_path / "gate"
    [job] = site.submit(ProbeClaimNames.C(name="claim-names", gate=str(gate)))
    worker = site.under_test()
    _, registration = site.registration(worker)
    wait_until((job.path / "probe.json").exists, timeout=SLACK, what=f"the probe to run\n{site.logs()}")
    gate.write_text("")
    environ = json.loads((job.path / "probe.json").read_bytes())["environ"]
    assert status_record(job)["worker"] == registration["name"]
    assert environ["XPMFS_WORKER"] == registration["name"], environ
    assert environ["XPMFS_ATTEMPT"] == "1" and environ["XPMFS_JOB_DIR"] == str(job.path), environ


# -- how attempts end ------------------------------------------------------------------------------


def test_failure_records(site: Site) -> None:
    """tasks.md / workspace.md: a task that raises ends `failed`/`error`, exit code 1 (the
    runner's record); a runner killed by signal N gets the worker's record: `failed`/`error`,
    `exit_code` −N, the attempt's fields kept, no history line; the queue entry goes last."""
    raised, killed, aborted = site.submit(
        Die.C(name="raises"), Die.C(name="sigkill", signum=signal.SIGKILL), Die.C(name="sigabrt", signum=signal.SIGABRT)
    )
    worker = site.under_test()
    _, registration = site.registration(worker)
    for job in (raised, killed, aborted):
        site.wait_ended(job)
    record = json.loads((raised.xpm_dir / "failed").read_bytes())
    assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "error", 1), record
    for job, signum in ((killed, signal.SIGKILL), (aborted, signal.SIGABRT)):
        runner = int((job.path / "started").read_text())
        record = json.loads((job.xpm_dir / "failed").read_bytes())
        assert record == status_record(job), "the marker is the final status record"
        assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "error", -signum), record
        assert record["attempt"] == 1 and record["pid"] == runner and record["host"] == socket.gethostname(), record
        assert record["worker"] == registration["name"] and record["started"] is not None, record
        assert record["ended"] >= record["started"], record
        assert not history(job), "leaving `running` for `failed` writes no history line"
    for job in (raised, killed, aborted):
        assert not site.queued(job)
    assert worker.stop() == 0
    site.check()


def test_a_runner_that_never_starts_fails_after_three_tries(site: Site, tmp_path: Path) -> None:
    """workspace.md, worker loop step 1: a runner that dies before recording `running` is a failed
    start: no record, back-off 1 s then 2 s, and after 3 tries `failed`/`error` at the same
    attempt, with the runner's exit code and a message beginning "the runner never started"."""
    [job] = site.submit(Run.C(n=1, log=str(tmp_path / "runs.log")))
    set_spec_python(job, python_wrapper(tmp_path / "python", "echo 'no interpreter here' >&2\nexit 7"))
    started = time.monotonic()
    worker = site.under_test()
    site.wait_ended(job, timeout=3 + RESCAN + SLACK)
    assert time.monotonic() - started >= 3.0, "three tries need 1 + 2 seconds of back-off"
    record = status_record(job)
    assert (record["state"], record["reason"], record["exit_code"], record["attempt"]) == ("failed", "error", 7, 0)
    assert record["message"].startswith("the runner never started"), record
    assert not site.queued(job)
    assert worker.stop() == 0
    site.check()


def test_a_retry_asked_by_the_runner_is_run_again(site: Site, tmp_path: Path) -> None:
    """tasks.md: a resumable task's timeout leaves `ready` at attempt N (a retry, not a failed
    start); the next attempt runs it."""
    log = tmp_path / "runs.log"
    [job] = site.submit(TimesOutOnce.C(name="again", log=str(log)))
    worker = site.under_test()
    site.wait_ended(job)
    record = status_record(job)
    assert (record["state"], record["attempt"], record["retry_count"]) == ("done", 2, 1), record
    [retried] = history(job)
    assert (retried["attempt"], retried["reason"], retried["exit_code"]) == (1, "timeout", 75), retried
    assert [line[2] for line in read_log(log)] == ["start", "start", "end"]
    assert worker.stop() == 0
    site.check()


@pytest.mark.parametrize("outcome", ["done", "failed"])
def test_an_outcome_without_its_marker_is_completed_not_run_again(site: Site, tmp_path: Path, outcome: str) -> None:
    """workspace.md, "Recovery": `status.json` says `done`/`failed` but the marker is missing (a
    crash between the two writes): the outcome stands; the next claim writes the marker and
    removes the queue entry, and the task does not run again."""
    log = tmp_path / "runs.log"
    [job] = site.submit(Run.C(n=1, log=str(log)))
    record = {**status_record(job), "state": outcome, "attempt": 1, "ended": time.time(), "exit_code": 0}
    if outcome == "failed":
        record.update(reason="error", exit_code=1, message="the task raised")
    temporary = job.xpm_dir / ".tmp-status.json.suite"
    temporary.write_text(json.dumps(record))
    os.replace(temporary, job.xpm_dir / "status.json")
    worker = site.under_test()
    wait_until(lambda: not site.queued(job), timeout=SLACK, what=f"the entry to go\n{site.logs()}")
    assert job.marker().value == outcome  # type: ignore[union-attr]
    assert json.loads((job.xpm_dir / outcome).read_bytes()) == record
    assert not read_log(log), "the task ran again"
    assert worker.stop() == 0
    site.check()


# -- cancellation ----------------------------------------------------------------------------------


def test_xpmfs_kill_cancels_a_running_job(site: Site, tmp_path: Path) -> None:
    """cli.md, `kill`: a running job ends `failed`/`cancelled` (exit code 143)."""
    [job] = site.submit(Probe.C(name="killed", gate=str(tmp_path / "never")))
    worker = site.under_test()
    wait_until((job.path / "started").exists, timeout=SLACK, what=f"the job to start\n{site.logs()}")
    killed = subprocess.run(
        [sys.executable, "-m", "xpmfs", "kill", str(job.path)], capture_output=True, text=True, check=False
    )
    assert killed.returncode == 0, killed.stderr
    site.wait_ended(job)
    record = status_record(job)
    assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "cancelled", 143), record
    assert not site.queued(job) and not job.cancel_path.exists()
    assert worker.stop() == 0
    site.check()


def test_a_cancel_request_reaches_the_runners_process_group(site: Site, tmp_path: Path) -> None:
    """workspace.md, worker loop step 3: within a heartbeat of `__xpm__/cancel` appearing (written
    from another host: no signal from the CLI), the worker sends SIGTERM to the runner's process
    group; the runner records `failed`/`cancelled` and removes the request."""
    [job] = site.submit(Probe.C(name="cancelled", gate=str(tmp_path / "never"), child=True))
    worker = site.under_test()
    _, registration = site.registration(worker)
    wait_until((job.path / "started").exists, timeout=SLACK, what=f"the job to start\n{site.logs()}")
    requested = time.monotonic()
    job.cancel_path.write_text(json.dumps({"requested": time.time(), "by": "pid 1 on another-host"}))
    site.wait_ended(job, timeout=registration["heartbeat"] + SLACK)
    assert time.monotonic() - requested <= registration["heartbeat"] + 2.0, "not stopped within a heartbeat"
    wait_until((job.path / "child-signal").exists, timeout=5, what="the task's subprocess to get SIGTERM")
    record = status_record(job)
    assert (record["state"], record["reason"], record["exit_code"]) == ("failed", "cancelled", 143), record
    assert not job.cancel_path.exists() and not site.queued(job)
    assert worker.stop() == 0
    site.check()


# -- registration, heartbeat, stopping --------------------------------------------------------------


def test_registration_and_heartbeat(site: Site) -> None:
    """workspace.md, `workers/<host>-<pid>.json`: the record's fields and name; its mtime is
    refreshed at least every `heartbeat` seconds; the file goes when the worker stops (SIGTERM,
    exit code 0)."""
    worker = site.under_test()
    path, record = site.registration(worker)
    host = socket.gethostname()
    assert record["host"] == host and record["pid"] in worker.pids(), record
    assert record["name"] == f"{host}-{record['pid']}" and path.name == f"{record['name']}.json", (path, record)
    assert isinstance(record["jobs"], int) and record["jobs"] >= 1, record
    assert isinstance(record["heartbeat"], (int, float)) and record["heartbeat"] > 0, record
    assert isinstance(record["started"], (int, float)) and record["started"] <= time.time(), record
    period = float(record["heartbeat"])
    beats, last = [], path.stat().st_mtime
    deadline = time.monotonic() + 3 * period + SLACK
    while len(beats) < 3 and time.monotonic() < deadline:
        mtime = path.stat().st_mtime
        if mtime != last:
            beats.append(mtime)
            last = mtime
        time.sleep(0.02)
    assert len(beats) == 3, f"the heartbeat moved {len(beats)} times in {3 * period + SLACK:.0f}s"
    gaps = [later - earlier for earlier, later in itertools.pairwise(beats)]
    assert max(gaps) <= period + 1.0, f"heartbeats {gaps} apart, every {period}s promised"
    assert worker.stop() == 0
    assert not path.exists(), "a stopped worker removes its registration"
    site.check()


def test_sigterm_hands_running_jobs_back(any_site: Site, tmp_path: Path) -> None:
    """workspace.md: on SIGTERM a worker stops claiming, kills its runners' process groups with
    SIGKILL (SIGTERM would make them record `cancelled`), records `ready` at the same attempt
    (the attempt in `history.jsonl`), keeps the queue entry, unregisters and exits 0."""
    gate = tmp_path / "gate"
    [job] = any_site.submit(Probe.C(name="handed-back", gate=str(gate)))
    worker = any_site.under_test()
    path, _ = any_site.registration(worker)
    wait_until((job.path / "started").exists, timeout=SLACK, what=f"the job to start\n{any_site.logs()}")
    runner = int((job.path / "started").read_text())
    assert worker.stop() == 0
    assert not alive(runner), "the runner outlived its worker's hand-back"
    record = status_record(job)
    assert (record["state"], record["attempt"]) == ("ready", 1), record
    assert job.marker() is None and any_site.queued(job) and not path.exists()
    [handed] = history(job)
    assert (handed["state"], handed["attempt"], handed["pid"]) == ("running", 1, runner), handed
    assert handed["ended"] is not None, handed
    gate.write_text("")
    reference = any_site.reference()
    any_site.wait_ended(job, timeout=LEASE + SLACK)
    assert (status_record(job)["state"], status_record(job)["attempt"]) == ("done", 2)
    assert reference.stop() == 0
    any_site.check()


# -- leases ----------------------------------------------------------------------------------------


def test_an_empty_lease_marker_is_broken_once_it_expired(shared_site: Site, tmp_path: Path) -> None:
    """locks.md, "Acquiring and taking over": an empty marker (its creator died between create and
    write) is held until seen unchanged for `lease_duration`, then broken like an expired lease."""
    log = tmp_path / "runs.log"
    [job] = shared_site.submit(Run.C(n=1, log=str(log)))
    job.lock_path.write_bytes(b"")
    written = job.lock_path.stat().st_mtime
    worker = shared_site.under_test()
    shared_site.wait_ended(job, timeout=LEASE + RESCAN + SLACK)
    record = status_record(job)
    assert record["state"] == "done" and record["claimed"] >= written + LEASE - 0.05, record
    assert worker.stop() == 0
    shared_site.check()
