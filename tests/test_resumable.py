"""How an attempt ends: resumable retries, ``max_retries``, settings, ``remaining_time()``, cancellation.

Jobs run on real worker processes; the task classes are in seed_tasks.py.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import Processes, job_of, wait_until
from sample_tasks import Add, Gate
from seed_tasks import PlainTimesOut, ReportRemaining, ResumableGate, TimesOut

from xpmfs import config, experiment, settings
from xpmfs.errors import FailedExperiment, SettingsError
from xpmfs.job import Job
from xpmfs.queue import JobRef
from xpmfs.status import Reason, State, Status
from xpmfs.workspace import Workspace


def _final(job: Job) -> Status:
    status = job.status()
    assert status is not None
    return status


def _history(job: Job) -> list[dict[str, Any]]:
    path = job.xpm_dir / "history.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


def _queued(ws: Path, job: Job) -> bool:
    return (ws / "queue" / f"{job.ref.typeid}~{job.ref.jobid}").exists()


# -- retries ---------------------------------------------------------------------------------------


def test_two_timeouts_then_success_keeps_the_folder_and_records_the_attempts(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "retry", workers=0):
        task = TimesOut.C(timeouts=2)
        task.submit(max_retries=3)
    job = job_of(ws, task)
    final = _final(job)
    assert final.state is State.DONE and job.marker() is State.DONE
    assert final.retry_count == 2 and final.attempt == 3
    assert final.reason is None and final.exit_code == 0  # the last attempt's ending, not a retry's hint
    # The folder survived both retries: each attempt found the previous ones' file.
    attempts = (job.path / "attempts.txt").read_text().splitlines()
    assert [line.split()[0] for line in attempts] == ["1", "2", "3"]
    assert len({line.split()[1] for line in attempts}) == 3  # three processes
    assert (job.path / "result.txt").read_text() == "done at attempt 3"
    # The streams of a resumable task are appended to, not truncated, on a retry.
    # Appended to, each attempt after the first headed by xpmfs (spec/workspace.md, streams).
    lines = (job.path / "timesout.out").read_text().splitlines()
    assert [line for line in lines if not line.startswith("----- xpmfs: ")] == ["attempt 1", "attempt 2", "attempt 3"]
    assert [line.split(" on ")[0] for line in lines if line.startswith("----- xpmfs: ")] == [
        "----- xpmfs: attempt 2",
        "----- xpmfs: attempt 3",
    ]
    # A retried attempt's running status does not carry the previous attempt's ending.
    running = orjson.loads((job.path / "status-2.json").read_bytes())
    assert running["state"] == "running" and running["attempt"] == 2 and running["retry_count"] == 1
    assert running["reason"] is None and running["exit_code"] is None and running["ended"] is None
    # The attempts that were retried, in history.jsonl, in order.
    history = _history(job)
    assert [record["attempt"] for record in history] == [1, 2]
    assert [record["retry_count"] for record in history] == [0, 1]
    assert not _queued(ws, job)


def test_history_says_how_each_retried_attempt_ended(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "retry-history", workers=0):
        task = TimesOut.C(timeouts=1)
        task.submit(max_retries=3)
    history = _history(job_of(ws, task))
    assert [(record["reason"], record["exit_code"]) for record in history] == [("timeout", 75)]
    assert history[0]["ended"] is not None and "attempt 1 out of time" in history[0]["message"]


def test_an_error_is_not_retried(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    broke = "error: RuntimeError: attempt 1 broke"
    with pytest.raises(FailedExperiment, match=broke), experiment(ws, "error", workers=0):
        task = TimesOut.C(timeouts=1, error=True)
        task.submit(max_retries=3)
    job = job_of(ws, task)
    final = _final(job)
    assert final.state is State.FAILED and final.reason is Reason.ERROR
    assert final.retry_count == 0 and final.attempt == 1
    assert _history(job) == []
    assert len((job.path / "attempts.txt").read_text().splitlines()) == 1


def test_max_retries_per_submit_then_timeout_fails(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with pytest.raises(FailedExperiment, match="timeout: attempt 2 out of time"), experiment(ws, "limit", workers=0):
        task = TimesOut.C(timeouts=5)
        task.submit(max_retries=1)
    job = job_of(ws, task)
    assert orjson.loads(job.spec_path.read_bytes())["max_retries"] == 1
    final = _final(job)
    assert final.state is State.FAILED and final.reason is Reason.TIMEOUT and final.exit_code == 75
    assert final.retry_count == 1 and final.attempt == 2
    assert orjson.loads((job.xpm_dir / "failed").read_bytes())["reason"] == "timeout"
    assert len(_history(job)) == 1


def test_graceful_timeout_of_a_plain_task_fails_without_retry(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with pytest.raises(FailedExperiment, match="timeout: not resumable"), experiment(ws, "plain", workers=0):
        task = PlainTimesOut.C()
        task.submit(max_retries=3)
    final = _final(job_of(ws, task))
    assert final.reason is Reason.TIMEOUT and final.retry_count == 0 and final.attempt == 1


# -- remaining_time() ------------------------------------------------------------------------------


def test_remaining_time_is_none_in_a_direct_job(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "remaining", workers=0):
        task = ReportRemaining.C()
        task.submit()
    assert (job_of(ws, task).path / "remaining.txt").read_text() == "None None"


def test_remaining_time_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[float] = []

    def provider() -> float:
        asked.append(1.0)
        return 1000.0

    config.set_remaining_time_provider(provider)
    try:
        task = ReportRemaining.C()
        first = task.remaining_time()
        second = task.remaining_time()
        assert first == 1000.0 and second is not None and 999.0 < second <= 1000.0  # counted down
        assert len(asked) == 1  # asked once: the launcher's answer (squeue) is slow
        monkeypatch.setattr(config, "_REMAINING_TIME_TTL", 0.0)
        task.remaining_time()
        assert len(asked) == 2  # asked again once the cached answer is too old
    finally:
        config.set_remaining_time_provider(None)
    assert ReportRemaining.C().remaining_time() is None  # the default: no time limit


# -- settings ---------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home folder, and no XPMFS_SETTINGS: the settings files are looked up there."""
    folder = tmp_path / "home"
    folder.mkdir()
    monkeypatch.setenv("HOME", str(folder))
    monkeypatch.delenv(settings.ENV_SETTINGS, raising=False)
    return folder


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_settings_default_without_a_file(home: Path, tmp_path: Path) -> None:
    assert settings.settings_path() is None
    assert settings.max_retries_for(tmp_path / "ws") == settings.DEFAULT_MAX_RETRIES == 3


def test_settings_from_the_xpmfs_file_match_the_resolved_path(home: Path, tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "link").symlink_to(workspace)
    _write(
        home / ".config" / "xpmfs" / "settings.yaml",
        f"""
        server: {{port: 12345}}      # experimaestro's other settings are ignored
        workspaces:
          - id: other
            path: {tmp_path / "elsewhere"}
            max_retries: 9
          - id: mine
            path: {tmp_path / "link"}
            max_retries: 5
          - id: defaulted
            path: ~/ws
        """.replace("\n        ", "\n"),
    )
    assert settings.max_retries_for(workspace) == 5
    assert settings.max_retries_for(tmp_path / "link" / ".." / "ws") == 5
    assert settings.max_retries_for(home / "ws") == 3  # listed without max_retries
    assert settings.max_retries_for(tmp_path / "unlisted") == 3
    loaded = settings.load()
    assert [entry.id for entry in loaded.workspaces] == ["other", "mine", "defaulted"]


def test_settings_fall_back_to_experimaestro_and_env_overrides(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = tmp_path / "ws"
    seed_file = _write(
        home / ".config" / "experimaestro" / "settings.yaml",
        f"workspaces:\n  - id: my_workspace\n    path: {workspace}\n    max_retries: 5\n",
    )
    assert settings.settings_path() == seed_file
    assert settings.max_retries_for(workspace) == 5
    # The xpmfs file, when it exists, wins over experimaestro's.
    own = _write(
        home / ".config" / "xpmfs" / "settings.yaml", f"workspaces: [{{id: w, path: {workspace}, max_retries: 7}}]\n"
    )
    assert settings.settings_path() == own
    assert settings.max_retries_for(workspace) == 7
    # XPMFS_SETTINGS wins over both.
    chosen = _write(tmp_path / "chosen.yaml", f"workspaces: [{{id: w, path: {workspace}, max_retries: 0}}]\n")
    monkeypatch.setenv(settings.ENV_SETTINGS, str(chosen))
    assert settings.max_retries_for(workspace) == 0
    # A file named by XPMFS_SETTINGS must exist: the user asked for it.
    monkeypatch.setenv(settings.ENV_SETTINGS, str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match=r"missing\.yaml: does not exist.*unset XPMFS_SETTINGS"):
        settings.max_retries_for(workspace)


def test_settings_are_read_again_when_the_file_changes(home: Path, tmp_path: Path) -> None:
    path = home / ".config" / "xpmfs" / "settings.yaml"
    _write(path, f"workspaces: [{{id: w, path: {tmp_path}, max_retries: 4}}]\n")
    assert settings.max_retries_for(tmp_path) == 4
    _write(path, f"workspaces: [{{id: w, path: {tmp_path}, max_retries: 12}}]\n")
    assert settings.max_retries_for(tmp_path) == 12


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("workspaces: [{id: w, path: /x, max_retries: five}]", "workspaces[0].max_retries", "whole number"),
        ("workspaces: [{id: w, path: /x, max_retries: -1}]", "workspaces[0].max_retries", "whole number"),
        ("workspaces: [{id: w, path: /x, max_retries: yes}]", "workspaces[0].max_retries", "whole number"),
        ("workspaces:\n  - {id: w, path: /x}\n  - {id: v}", "workspaces[1].path", "is missing"),
        ("workspaces: [{id: 3, path: /x}]", "workspaces[0].id", "non-empty string"),
        ("workspaces: [just-a-string]", "workspaces[0]", "must be a mapping"),
        ("workspaces: {id: w}", "workspaces", "must be a list"),
        ("- a list", "", "must be a mapping of settings"),
        ("workspaces: [{id: w, path: /x\n", "", "is not valid YAML at line"),
    ],
)
def test_bad_settings_name_the_file_the_field_and_the_fix(
    home: Path, monkeypatch: pytest.MonkeyPatch, text: str, field: str, problem: str
) -> None:
    path = _write(home / "bad.yaml", text)
    monkeypatch.setenv(settings.ENV_SETTINGS, str(path))
    with pytest.raises(SettingsError) as caught:
        settings.max_retries_for("/x")
    error = caught.value
    message = str(error)
    assert error.path == path and error.field == field
    assert message.startswith(f"{path}: {field + ': ' if field else ''}")
    assert problem in message and "correct the file" in message
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))  # errors cross process boundaries
    assert str(copy) == message and copy.field == field


# -- cancellation ------------------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_xpmfs_kill_of_a_running_job_cancels_it_without_retry(ws: Path, tmp_path: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "kill", wait=False, workers=0):
        task = ResumableGate.C(gate=str(tmp_path / "never"))
        task.submit(max_retries=3)
    job = job_of(ws, task)
    wait_until((job.path / "started").exists, what="the job to start")
    killed = subprocess.run(
        [sys.executable, "-m", "xpmfs", "kill", "-w", str(ws), job.ref.jobid[:12]],
        env=processes.env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert killed.returncode == 0, killed.stderr.decode()
    assert b"asked to stop" in killed.stdout
    wait_until(job.marker, what="the job to end")
    final = _final(job)
    assert job.marker() is State.FAILED and final.reason is Reason.CANCELLED
    assert final.exit_code == 143  # recorded by the runner itself, on SIGTERM
    assert orjson.loads((job.xpm_dir / "failed").read_bytes())["reason"] == "cancelled"
    assert final.retry_count == 0 and final.attempt == 1  # a cancelled resumable task is not retried
    assert not job.cancel_path.exists() and not _queued(ws, job)


@pytest.mark.timeout(90)
def test_sigterm_to_the_runner_cancels_the_job(ws: Path, tmp_path: Path, processes: Processes) -> None:
    worker = processes.worker(ws, rescan=0.5)
    with experiment(ws, "sigterm", wait=False, workers=0):
        task = Gate.C(name="term", gate=str(tmp_path / "never"))
        task.submit()
    job = job_of(ws, task)
    wait_until((job.path / "started").exists, what="the job to start")
    runner = int((job.path / "started").read_text())
    assert runner == _final(job).pid and runner != worker.pid
    os.kill(runner, signal.SIGTERM)
    wait_until(job.marker, what="the job to end")
    final = _final(job)
    assert job.marker() is State.FAILED and final.reason is Reason.CANCELLED
    assert final.exit_code == 143 and final.message == "cancelled (SIGTERM)"
    assert not _queued(ws, job)
    assert worker.poll() is None  # the worker goes on


# -- the lead wires settings into submit() ------------------------------------------------------------


def test_submit_without_max_retries_takes_the_workspace_setting(
    ws: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workspace.open(ws, create=True)
    path = _write(home / "settings.yaml", f"workspaces: [{{id: test, path: {ws}, max_retries: 7}}]\n")
    monkeypatch.setenv(settings.ENV_SETTINGS, str(path))
    with experiment(ws, "settings", wait=False, workers=0):
        task = TimesOut.C(timeouts=0)
        task.submit()
    job = Job(Workspace.open(ws), JobRef("seed_tasks.timesout", task.__identifier__()))
    assert orjson.loads(job.spec_path.read_bytes())["max_retries"] == 7


def test_resubmitting_a_timed_out_job_grants_its_retries_again(ws: Path, processes: Processes) -> None:
    processes.worker(ws, rescan=0.5)
    for run in range(2):
        with pytest.raises(FailedExperiment, match="timeout"), experiment(ws, f"again-{run}", workers=0):
            task = TimesOut.C(timeouts=5)
            task.submit(max_retries=1)
    job = job_of(ws, task)
    # Each submission ran an attempt and its one retry: four attempts in all.
    assert len((job.path / "attempts.txt").read_text().splitlines()) == 4
    assert _final(job).retry_count == 1


def test_settings_give_a_workspace_its_default_launcher(
    ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`workspaces[].launcher` is the launcher of tasks submitted without one (issue: SLURM)."""
    import orjson

    from xpmfs import DirectLauncher, SlurmLauncher, experiment
    from xpmfs.errors import SettingsError
    from xpmfs.settings import load

    settings = tmp_path / "settings.yaml"
    settings.write_text(f"workspaces:\n  - id: w\n    path: {ws}\n    launcher: {{type: slurm, time: 7}}\n")
    monkeypatch.setenv("XPMFS_SETTINGS", str(settings))
    assert load().workspace(ws).launcher == SlurmLauncher(time=7)  # type: ignore[union-attr]
    with experiment(ws, "defaults", wait=False, workers=0):
        default = Add.C(x=70).submit()
        own = Add.C(x=71).submit(launcher=DirectLauncher())
    record = orjson.loads((default.__xpm__.job.path / "__xpm__" / "spec.json").read_bytes())
    assert record["launcher"]["type"] == "slurm" and record["launcher"]["time"] == 7
    record = orjson.loads((own.__xpm__.job.path / "__xpm__" / "spec.json").read_bytes())
    assert record["launcher"] == {"type": "direct"}

    settings.write_text(f"workspaces:\n  - id: w\n    path: {ws}\n    launcher: {{type: teleport}}\n")
    with pytest.raises(SettingsError, match=r"workspaces\[0\]\.launcher: unknown launcher type 'teleport'"):
        load()
