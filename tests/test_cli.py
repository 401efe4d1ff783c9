"""The ``xpmfs`` command and the library behind it (catalog, control, check).

Workspaces are built directly from files with the library's own writers (spec, status transitions,
markers, queue entries, journals), so each test sets up exactly the state it is about, including
the states a crash leaves behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import ROOT, Processes

from xpmfs import _atomic, cli, control, queue, status
from xpmfs.catalog import find_job, list_jobs, read_log
from xpmfs.check import DAMAGED_SUFFIX, GRACE, check
from xpmfs.cli import main
from xpmfs.control import TRASH_PREFIX, _is_runner
from xpmfs.errors import JobNotFoundError, WorkspaceError
from xpmfs.experiment import JOURNAL_FILE
from xpmfs.heartbeat import WorkerRecord
from xpmfs.job import Job, Spec
from xpmfs.queue import JobRef
from xpmfs.status import Reason, State
from xpmfs.workspace import EXPERIMENT_LOCK, Workspace

TYPE = "demo.tasks.Train"
OTHER_TYPE = "demo.tasks.Eval"


def jid(prefix: str) -> str:
    """A 64-hex job id starting with ``prefix`` (ids are content hashes; their shape is all we need)."""
    return (prefix + "0" * 64)[:64]


# -- building workspaces from files ----------------------------------------------------------


@pytest.fixture(autouse=True)
def short_lock_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    # kill/retry wait this long for a brief lock holder before calling the job running; every
    # holder in these tests holds for good, so a long wait would only slow the tests down.
    monkeypatch.setattr(control, "LOCK_WAIT", 0.05)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.open(tmp_path / "ws", create=True)


def make_job(
    ws: Workspace,
    state: State | None,
    jobid: str,
    *,
    typeid: str = TYPE,
    dependencies: tuple[str, ...] = (),
    tags: dict[str, Any] | None = None,
    experiment: str | None = "xp",
    queued: bool | None = None,
    reason: Reason = Reason.ERROR,
    pid: int | None = None,
    started: float | None = None,
    config: dict[str, Any] | None = None,
    sys_path: tuple[str, ...] = (),
) -> Job:
    """A job in ``state`` exactly as the processes would leave it (``None``: interrupted submission)."""
    job = Job(ws, JobRef(typeid, jobid))
    spec = Spec(
        typeid=typeid,
        jobid=jobid,
        config=config or {},
        dependencies=dependencies,
        sys_path=sys_path,
        submitted=time.time(),
    )
    job.write_spec(spec)
    job.write_script(sys.executable)
    xpm = job.xpm_dir
    if state is not None:
        status.transition(xpm, State.WAITING if state is State.WAITING else State.READY)
    if state in (State.RUNNING, State.DONE):
        status.transition(
            xpm, State.RUNNING, pid=pid or os.getpid(), host=socket.gethostname(), started=started or time.time()
        )
    if state is State.SUBMITTED:
        status.transition(xpm, State.SUBMITTED, cluster_id="4242")
    if state is State.DONE:
        status.transition(xpm, State.DONE, exit_code=0)
    if state is State.FAILED:
        status.transition(xpm, State.FAILED, reason=reason, message="boom", exit_code=1)
    if queued is None:
        queued = state is not None and not state.terminal
    if queued:
        queue.add(ws.queue_dir, job.ref)
    if experiment is not None:
        ws.experiment_path(experiment).mkdir(parents=True, exist_ok=True)
        # One line per submission, as the experiment writes it. (Not through ``Journal``: reopening
        # a journal that has lines fails there, see the report on xpmfs/journal.py.)
        record = {"job": job.ref.relpath, "run": "r1", "tags": tags or {}, "submitted": time.time()}
        with open(ws.experiment_path(experiment) / JOURNAL_FILE, "ab") as stream:
            stream.write(json.dumps(record).encode() + b"\n")
    return job


def age(path: Path, seconds: float = GRACE + 60) -> None:
    """Make ``path`` look ``seconds`` old (leftovers are told from writes in progress by age)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def register_worker(ws: Workspace, pid: int, *, heartbeat_age: float = 0.0, host: str | None = None) -> Path:
    record = WorkerRecord(host or socket.gethostname(), pid, time.time(), 2, 2.0, f"w-{pid}")
    path = ws.workers_dir / record.filename
    _atomic.write_json(path, asdict(record))
    if heartbeat_age:
        age(path, heartbeat_age)
    return path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file (content) and folder (None) under ``root``, except lock files, which probing may create."""
    tree: dict[str, bytes | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            tree[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            if name not in ("lock", EXPERIMENT_LOCK):
                path = os.path.join(folder, name)
                tree[os.path.relpath(path, root)] = Path(path).read_bytes()
    return tree


@pytest.fixture
def held() -> Iterator[Any]:
    """``held(job)`` takes a job's lock for the rest of the test: the job looks run by a live process."""
    locks = []

    def take(job: Job) -> None:
        lock = job.lock()
        assert lock.try_acquire()
        locks.append(lock)

    yield take
    for lock in locks:
        lock.release()


def run(*args: str, **kwargs: Any) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], catch_exceptions=kwargs.pop("catch", True), **kwargs)


def all_states(ws: Workspace) -> dict[str, Job]:
    return {
        "waiting": make_job(ws, State.WAITING, jid("a1"), dependencies=(f"{TYPE}/{jid('a5')}",), tags={"lr": 0.1}),
        "ready": make_job(ws, State.READY, jid("a2"), tags={"lr": 0.01, "model": "bert"}),
        "submitted": make_job(ws, State.SUBMITTED, jid("a3")),
        "running": make_job(ws, State.RUNNING, jid("a4"), experiment="other"),
        "done": make_job(ws, State.DONE, jid("a5"), tags={"model": "bert"}),
        "failed": make_job(ws, State.FAILED, jid("a6"), typeid=OTHER_TYPE, reason=Reason.TIMEOUT),
        "unknown": make_job(ws, None, jid("a7")),
    }


# -- ls ----------------------------------------------------------------------------------------


def test_ls_lists_every_state_in_aligned_columns(workspace: Workspace, held: Any) -> None:
    jobs = all_states(workspace)
    held(jobs["running"])
    result = run("ls", workspace.path)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 7
    text = result.stdout
    assert f"{TYPE}/{jid('a1')[:12]}" in text and jid("a1") not in text  # ids are cut to 12
    assert (
        "failed (timeout)" in text
        and "running" in text
        and "unknown" in text
        and "submitted" in text
        and "submitted (stale)" not in text
    )
    assert "lr=0.01 model=bert" in text
    # Aligned: the job column starts at the same place on every line.
    starts = {line.index("demo.tasks.") for line in lines}
    assert len(starts) == 1
    assert "\x1b[" not in text  # no colours when not on a terminal


def test_ls_colours_on_request(workspace: Workspace) -> None:
    make_job(workspace, State.DONE, jid("b1"))
    result = CliRunner().invoke(main, ["ls", str(workspace.path)], color=True)
    assert "\x1b[32m" in result.stdout  # done in green


def test_ls_filters(workspace: Workspace) -> None:
    all_states(workspace)
    failed = run("ls", workspace.path, "--state", "failed").stdout.splitlines()
    assert len(failed) == 1 and OTHER_TYPE in failed[0]
    tagged = run("ls", workspace.path, "--tag", "model=bert").stdout
    assert jid("a2")[:12] in tagged and jid("a5")[:12] in tagged and len(tagged.splitlines()) == 2
    both = run("ls", workspace.path, "--tag", "model=bert", "-t", "lr=0.01").stdout.splitlines()
    assert len(both) == 1 and jid("a2")[:12] in both[0]
    assert run("ls", workspace.path, "--tag", "lr=0.1").stdout.count("\n") == 1  # a float tag, as JSON text
    other = run("ls", workspace.path, "--experiment", "other").stdout.splitlines()
    assert len(other) == 1 and jid("a4")[:12] in other[0]
    unknown = run("ls", workspace.path, "--state", "unknown").stdout.splitlines()
    assert len(unknown) == 1 and jid("a7")[:12] in unknown[0]


def test_ls_bad_input(workspace: Workspace, tmp_path: Path) -> None:
    bad_tag = run("ls", workspace.path, "--tag", "novalue")
    assert bad_tag.exit_code == 2 and "KEY=VALUE" in bad_tag.stderr
    bad_state = run("ls", workspace.path, "--state", "sleeping")
    assert bad_state.exit_code == 2
    no_experiment = run("ls", workspace.path, "--experiment", "nope")
    assert no_experiment.exit_code == 1 and "no experiment 'nope'" in no_experiment.stderr
    missing = run("ls", tmp_path / "nowhere")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: ") and "Traceback" not in missing.output
    with pytest.raises(WorkspaceError):
        run("--debug", "ls", tmp_path / "nowhere", catch=False)


def test_ls_json_round_trip_for_every_state(workspace: Workspace, held: Any) -> None:
    jobs = all_states(workspace)
    held(jobs["running"])
    result = run("ls", workspace.path, "--json")
    assert result.exit_code == 0
    records = {record["jobid"]: record for record in map(json.loads, result.stdout.splitlines())}
    expected = {
        "waiting": ("waiting", False),
        "ready": ("ready", False),
        "submitted": ("submitted", False),  # waits in its cluster without the lock: not stale
        "running": ("running", False),
        "done": ("done", False),
        "failed": ("failed", False),
        "unknown": (None, False),
    }
    assert len(records) == len(expected)
    for name, (state, stale) in expected.items():
        job = jobs[name]
        record = records[job.ref.jobid]
        assert (record["state"], record["stale"]) == (state, stale), name
        assert record["job"] == job.ref.relpath and record["typeid"] == job.ref.typeid
        assert Path(record["path"]) == job.path
        assert record["queued"] == (name in ("waiting", "ready", "submitted", "running"))
        assert record["experiments"] == (["other"] if name == "running" else ["xp"])
        assert (record["status"] is None) == (name == "unknown")
        if record["status"] is not None:
            assert record["status"]["state"] == state
    assert records[jid("a6")]["reason"] == "timeout" and records[jid("a6")]["message"] == "boom"
    assert records[jid("a2")]["tags"] == {"lr": 0.01, "model": "bert"}
    assert "interrupted" in records[jid("a7")]["problem"]


def test_marker_wins_and_stale_is_flagged(workspace: Workspace, held: Any) -> None:
    # The marker is what every scanner trusts; a status.json that disagrees with it (damage, a
    # hand edit, an older writer) is shown as recorded but does not decide the state.
    finished = make_job(workspace, State.RUNNING, jid("c1"))
    _atomic.write_json(finished.xpm_dir / status.DONE_MARKER, {"ended": time.time()})
    make_job(workspace, State.RUNNING, jid("c2"))  # its runner died: nobody holds the lock
    alive = make_job(workspace, State.RUNNING, jid("c3"))
    held(alive)
    infos = {info.ref.jobid: info for info in list_jobs(workspace)}
    assert infos[jid("c1")].state is State.DONE and not infos[jid("c1")].stale
    assert infos[jid("c1")].status is not None and infos[jid("c1")].status.state is State.RUNNING
    assert infos[jid("c2")].state is State.RUNNING and infos[jid("c2")].stale
    assert infos[jid("c3")].state is State.RUNNING and not infos[jid("c3")].stale
    assert "running (stale)" in run("ls", workspace.path).stdout


def test_ls_reads_no_status_of_a_done_job_but_json_does(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    # A big workspace is mostly done jobs: the table takes their state and age from the done
    # marker's stat and leaves status.json unread, which a damaged one shows.
    done = make_job(workspace, State.DONE, jid("b1"))
    make_job(workspace, State.READY, jid("b2"))
    make_job(workspace, State.FAILED, jid("b3"))
    (done.xpm_dir / status.STATUS_FILE).write_bytes(b"{not json")
    age(done.xpm_dir / status.DONE_MARKER, 3 * 3600 + 60)
    brief = {info.ref.jobid: info for info in list_jobs(workspace, brief=True)}
    assert brief[jid("b1")].state is State.DONE and brief[jid("b1")].status is None
    assert brief[jid("b1")].problem is None
    assert brief[jid("b1")].updated == (done.xpm_dir / status.DONE_MARKER).stat().st_mtime
    assert brief[jid("b2")].status is not None and brief[jid("b2")].updated == brief[jid("b2")].status.updated
    assert brief[jid("b3")].status is not None  # a failed job keeps its status: ls shows its reason
    full = {info.ref.jobid: info for info in list_jobs(workspace)}
    assert full[jid("b1")].state is State.DONE and "not valid JSON" in full[jid("b1")].problem
    table = run("ls", workspace.path).stdout.splitlines()
    assert table[0].startswith("done") and " 3h" in table[0] and " 3h" not in table[1]
    # The table is written a block of lines at a time; the blocks make the same table.
    monkeypatch.setattr(cli, "_LINES_PER_WRITE", 2)
    assert run("ls", workspace.path).stdout.splitlines() == table


def test_ls_into_a_closed_pipe_exits_quietly(workspace: Workspace) -> None:
    # `xpmfs ls | head -1` on a big workspace: head leaves, and ls must not print an error.
    make_job(workspace, State.DONE, jid("b4"))
    read, write = os.pipe()
    os.close(read)  # before the start: every write of the child fails (EPIPE)
    executable = ROOT / ".venv" / "bin" / "xpmfs"
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "xpmfs"]
    try:
        completed = subprocess.run(
            [*command, "ls", str(workspace.path)], stdout=write, stderr=subprocess.PIPE, timeout=60, check=False
        )
    finally:
        os.close(write)
    assert completed.returncode == 1 and completed.stderr == b""


def test_ls_survives_a_damaged_status_and_journal(workspace: Workspace) -> None:
    job = make_job(workspace, State.READY, jid("d1"), tags={"k": "v"})
    (job.xpm_dir / status.STATUS_FILE).write_bytes(b"{not json")
    with open(workspace.experiment_path("xp") / JOURNAL_FILE, "ab") as stream:
        stream.write(b'{"job": "torn')  # a writer died mid-line
    record = json.loads(run("ls", workspace.path, "--json").stdout)
    assert record["state"] is None and "not valid JSON" in record["problem"] and record["tags"] == {"k": "v"}


# -- naming a job --------------------------------------------------------------------------------


def test_job_by_prefix_typeid_prefix_and_path(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    train = make_job(workspace, State.DONE, jid("e1f"))
    other = make_job(workspace, State.DONE, jid("e1a"), typeid=OTHER_TYPE)
    assert find_job(workspace, "e1f").ref == train.ref
    assert find_job(workspace, f"{OTHER_TYPE}/e1").ref == other.ref  # the type makes "e1" unique
    for path in (train.path, train.xpm_dir / status.STATUS_FILE, train.script_path, train.xpm_dir):
        found = find_job(None, str(path))
        assert found.ref == train.ref and found.workspace.path == workspace.path
    queue.add(workspace.queue_dir, other.ref)
    assert find_job(None, str(workspace.queue_dir / other.ref.entry_name)).ref == other.ref
    monkeypatch.chdir(workspace.jobs_dir)  # inside a workspace, no --workspace needed
    assert find_job(None, "e1f").ref == train.ref
    result = run("show", "e1f")
    assert result.exit_code == 0 and train.ref.relpath in result.stdout


def test_job_naming_errors(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_job(workspace, State.DONE, jid("f1a"))
    make_job(workspace, State.DONE, jid("f1b"), typeid=OTHER_TYPE)
    ambiguous = run("show", "-w", workspace.path, "f1")
    assert ambiguous.exit_code == 1
    assert "ambiguous" in ambiguous.stderr and jid("f1a") in ambiguous.stderr and jid("f1b") in ambiguous.stderr
    unknown = run("show", "-w", workspace.path, "ffff")
    assert unknown.exit_code == 1 and "no such job" in unknown.stderr and "xpmfs ls" in unknown.stderr
    assert "Traceback" not in unknown.output
    missing_path = run("show", str(workspace.jobs_dir / TYPE / jid("99")))
    assert missing_path.exit_code == 1 and "no such file" in missing_path.stderr
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    with pytest.raises(JobNotFoundError, match="is not a job"):
        find_job(None, str(outside))
    with pytest.raises(JobNotFoundError, match="is not a job"):
        find_job(None, str(workspace.jobs_dir / TYPE))  # a type folder is no job
    monkeypatch.chdir(tmp_path)
    nowhere = run("show", "f1a")
    assert nowhere.exit_code == 1 and "--workspace" in nowhere.stderr
    via_env = run("show", "f1a", env={"XPMFS_WORKSPACE": str(workspace.path)})
    assert via_env.exit_code == 0 and jid("f1a") in via_env.stdout
    assert run("show", "-w", workspace.path, "").exit_code == 1


# -- show and log --------------------------------------------------------------------------------


def test_show_prints_every_field(workspace: Workspace, held: Any) -> None:
    dependency = make_job(workspace, State.DONE, jid("10"))
    job = make_job(workspace, State.RUNNING, jid("11"), dependencies=(dependency.ref.relpath,), tags={"seed": 3})
    held(job)
    result = run("show", "-w", workspace.path, "11")
    assert result.exit_code == 0, result.output
    text = result.stdout
    for key in (
        "job:",
        "path:",
        "state:",
        "attempt:",
        "retry count:",
        "host:",
        "pid:",
        "started:",
        "exit code:",
        "lock:",
        "stdout:",
        "stderr:",
    ):
        assert key in text, key
    assert f"{dependency.ref.relpath} (done)" in text
    assert str(job.stdout_path) in text and str(job.stderr_path) in text
    assert f"held by pid {os.getpid()}" in text
    assert "seed=3" in text and "xp" in text
    record = json.loads(run("show", "-w", workspace.path, "11", "--json").stdout)
    assert record["state"] == "running" and record["dependencies"] == [{"job": dependency.ref.relpath, "state": "done"}]
    assert record["lock_holder"]["pid"] == os.getpid() and record["stderr"] == str(job.stderr_path)
    assert record["status"]["attempt"] == 1 and record["cancel_requested"] is False


def test_show_a_failed_job_and_a_missing_spec(workspace: Workspace) -> None:
    job = make_job(workspace, State.FAILED, jid("12"), reason=Reason.CANCELLED)
    text = run("show", job.path).stdout
    assert "reason:" in text and "cancelled" in text and "boom" in text and "lock:" in text and "free" in text
    job.spec_path.unlink()
    result = run("show", job.path)
    assert result.exit_code == 0 and "is missing" in result.stdout


def test_log_prints_out_or_err(workspace: Workspace) -> None:
    job = make_job(workspace, State.DONE, jid("20"))
    job.stdout_path.write_bytes(b"epoch 1\nepoch 2\n")
    job.stderr_path.write_bytes(b"warning\n")
    assert run("log", job.path).stdout == "epoch 1\nepoch 2\n"
    assert run("log", "--err", job.path).stdout == "warning\n"
    assert run("log", "-f", job.path).stdout == "epoch 1\nepoch 2\n"  # ended: follow returns at once
    waiting = make_job(workspace, State.WAITING, jid("21"))
    result = run("log", waiting.path)
    assert result.exit_code == 1 and "has not started" in result.stderr and "log -f" in result.stderr


def test_log_follow_stops_when_the_job_ends(workspace: Workspace) -> None:
    job = make_job(workspace, State.RUNNING, jid("22"))
    job.stdout_path.write_bytes(b"start\n")
    chunks: list[bytes] = []
    first = threading.Event()

    def job_runs() -> None:
        first.wait(30)
        with open(job.stdout_path, "ab") as stream:
            stream.write(b"more\n")
        status.transition(job.xpm_dir, State.DONE, exit_code=0)

    writer = threading.Thread(target=job_runs)
    writer.start()
    for chunk in read_log(job, follow=True, poll=0.01):
        chunks.append(chunk)
        first.set()
    writer.join()
    assert b"".join(chunks) == b"start\nmore\n"


def test_log_follow_restarts_on_a_truncated_file(workspace: Workspace) -> None:
    job = make_job(workspace, State.RUNNING, jid("23"))
    job.stdout_path.write_bytes(b"attempt one, long output\n")
    stream = read_log(job, follow=True, poll=0.01)
    assert next(stream) == b"attempt one, long output\n"
    job.stdout_path.write_bytes(b"two\n")  # a new attempt truncates the file
    status.transition(job.xpm_dir, State.DONE, exit_code=0)
    assert b"".join(stream) == b"two\n"


# -- kill and retry ------------------------------------------------------------------------------


def test_kill_a_queued_job(workspace: Workspace) -> None:
    job = make_job(workspace, State.READY, jid("30"))
    result = run("kill", job.path)
    assert result.exit_code == 0 and "cancelled" in result.stdout
    assert job.marker() is State.FAILED
    assert status.read_failure(job.xpm_dir)["reason"] == "cancelled"
    assert not queue.contains(workspace.queue_dir, job.ref)
    assert not job.cancel_path.exists()
    again = run("kill", job.path)
    assert again.exit_code == 0 and "already ended (failed, reason cancelled)" in again.stdout


def test_kill_an_interrupted_submission_and_a_crashed_run(workspace: Workspace) -> None:
    never = make_job(workspace, None, jid("31"))
    crashed = make_job(workspace, State.RUNNING, jid("32"))
    outputs = {}
    for job in (never, crashed):
        result = run("kill", job.path)
        assert result.exit_code == 0
        outputs[job.ref] = result.stdout
        assert job.marker() is State.FAILED and not queue.contains(workspace.queue_dir, job.ref)
        assert status.read_failure(job.xpm_dir)["reason"] == "cancelled"
        assert "xpmfs kill" in (status.read(job.xpm_dir).message or "")
    assert "runner had died" in outputs[crashed.ref] and "runner had died" not in outputs[never.ref]


def test_kill_a_running_job_signals_its_runner(workspace: Workspace, processes: Processes, held: Any) -> None:
    runner = processes.start(["sleep", "60"])
    job = make_job(workspace, State.RUNNING, jid("33"), pid=runner.pid, started=time.time())
    held(job)  # a live worker holds the lock
    result = run("kill", "-w", workspace.path, "33")
    assert result.exit_code == 0 and f"SIGTERM to its runner's process group ({runner.pid})" in result.stdout
    assert job.cancel_path.exists()  # for the worker, which may be on another host
    assert runner.wait(timeout=10) == -signal.SIGTERM
    assert job.marker() is None  # the runner (here: nobody) records the end, not the CLI


def test_kill_does_not_signal_a_reused_pid(processes: Processes) -> None:
    process = processes.start(["sleep", "60"])
    assert _is_runner(process.pid, time.time())
    assert not _is_runner(process.pid, time.time() - 3600)  # the run started before this process existed
    assert not _is_runner(dead_pid(), time.time())


def test_kill_a_done_job_says_so(workspace: Workspace) -> None:
    job = make_job(workspace, State.DONE, jid("34"))
    result = run("kill", job.path)
    assert result.exit_code == 0 and "already ended (done)" in result.stdout
    assert job.marker() is State.DONE


def test_retry_a_failed_job(workspace: Workspace) -> None:
    job = make_job(workspace, State.FAILED, jid("40"), reason=Reason.CANCELLED)
    _atomic.write_json(job.cancel_path, {"requested": 0})
    result = run("retry", job.path)
    assert result.exit_code == 0 and "queued again (ready)" in result.stdout
    assert job.marker() is None and status.read(job.xpm_dir).state is State.READY
    assert queue.contains(workspace.queue_dir, job.ref) and not job.cancel_path.exists()
    assert (job.xpm_dir / status.HISTORY_FILE).exists()  # the failed attempt is kept
    assert f"no worker is alive to run it: start one with `xpmfs worker {workspace.path}`" in result.stdout
    register_worker(workspace, os.getpid())  # a live worker will take it: nothing to add
    again = run("retry", job.path)
    assert again.exit_code == 0 and again.stdout.strip().endswith("is queued already (ready)")


def test_retry_waits_for_unfinished_dependencies(workspace: Workspace) -> None:
    dependency = make_job(workspace, State.FAILED, jid("41"))
    job = make_job(workspace, State.FAILED, jid("42"), dependencies=(dependency.ref.relpath,), reason=Reason.DEPENDENCY)
    result = run("retry", job.path)
    assert result.exit_code == 0 and "(waiting)" in result.stdout and "retry it first" in result.stdout
    assert status.read(job.xpm_dir).state is State.WAITING


def test_retry_refuses_running_and_done_jobs(workspace: Workspace, held: Any) -> None:
    running = make_job(workspace, State.RUNNING, jid("43"))
    held(running)
    busy = run("retry", running.path)
    assert busy.exit_code == 1 and "is running" in busy.stderr and "xpmfs kill" in busy.stderr
    done = make_job(workspace, State.DONE, jid("44"))
    refused = run("retry", done.path)
    assert refused.exit_code == 1 and "--force" in refused.stderr and done.marker() is State.DONE


def test_retry_force_requeues_a_done_job(workspace: Workspace) -> None:
    done = make_job(workspace, State.DONE, jid("45"))
    result = run("retry", "--force", done.path)
    assert result.exit_code == 0, result.output
    assert done.marker() is None and queue.contains(workspace.queue_dir, done.ref)


def test_retry_requeues_an_interrupted_submission(workspace: Workspace) -> None:
    job = make_job(workspace, None, jid("46"))
    assert run("retry", job.path).exit_code == 0
    assert status.read(job.xpm_dir).state is State.READY and queue.contains(workspace.queue_dir, job.ref)


# -- clean ---------------------------------------------------------------------------------------


def test_clean_lists_first_and_removes_only_with_yes(workspace: Workspace) -> None:
    jobs = all_states(workspace)
    before = snapshot(workspace.path)
    dry = run("clean", workspace.path, "--failed")
    assert dry.exit_code == 0 and f"would remove: {jobs['failed'].path}" in dry.stdout
    assert "--yes" in dry.stderr and len(dry.stdout.splitlines()) == 1
    assert snapshot(workspace.path) == before  # nothing touched
    done = run("clean", workspace.path, "--failed", "--yes")
    assert done.exit_code == 0 and f"removed: {jobs['failed'].path}" in done.stdout
    assert not jobs["failed"].path.exists()
    for name, job in jobs.items():
        if name != "failed":
            assert job.path.is_dir(), name
    assert not [path for path in workspace.jobs_dir.rglob(f"{TRASH_PREFIX}*")]
    assert run("clean", workspace.path, "--failed", "--yes").stderr.strip() == "nothing to remove"


def test_clean_done_needs_its_own_flag_and_keeps_what_is_needed(workspace: Workspace, held: Any) -> None:
    needed = make_job(workspace, State.DONE, jid("50"))
    make_job(workspace, State.WAITING, jid("51"), dependencies=(needed.ref.relpath,))
    free = make_job(workspace, State.DONE, jid("52"))
    locked = make_job(workspace, State.FAILED, jid("53"))
    held(locked)  # an experiment resubmitting it right now
    crashed = make_job(workspace, State.READY, jid("54"))
    status.transition(crashed.xpm_dir, State.FAILED)
    (crashed.xpm_dir / status.FAILED_MARKER).unlink()  # failed status but no marker: a worker re-runs it
    dry = run("clean", workspace.path, "--failed").stdout.splitlines()
    assert dry == [f"would remove: {locked.path}  (failed)"]  # no done job, no markerless one
    result = run("clean", workspace.path, "--done", "--failed", "--yes")
    assert result.exit_code == 0
    assert f"kept: {needed.path}" in result.stdout and "depends on it" in result.stdout
    assert f"kept: {locked.path}" in result.stdout and "lock is held" in result.stdout
    assert needed.path.is_dir() and locked.path.is_dir() and crashed.path.is_dir()
    assert not free.path.exists()


def test_clean_keeps_jobs_of_a_running_experiment(workspace: Workspace) -> None:
    from xpmfs.experiment import LOCK_FILE
    from xpmfs.lock import JobLock

    job = make_job(workspace, State.FAILED, jid("55"), experiment="live")
    lock = JobLock(
        workspace.experiment_path("live") / LOCK_FILE, workspace.lock_mode, lease_duration=workspace.lease_duration
    )
    assert lock.try_acquire()
    try:
        result = run("clean", workspace.path, "--failed", "--yes")
    finally:
        lock.release()
    assert "experiment 'live' is running" in result.stdout and job.path.is_dir()
    assert run("clean", workspace.path, "--failed", "--yes", "--experiment", "live").exit_code == 0
    assert not job.path.exists()


def test_clean_workers_and_usage(workspace: Workspace) -> None:
    live = register_worker(workspace, os.getpid())
    dead = register_worker(workspace, dead_pid())
    silent = register_worker(workspace, os.getpid(), heartbeat_age=600, host="elsewhere")
    result = run("clean", workspace.path, "--workers", "--yes")
    assert result.exit_code == 0
    assert live.exists() and not dead.exists() and not silent.exists()
    usage = run("clean", workspace.path)
    assert usage.exit_code == 2 and "--failed" in usage.stderr


# -- workers -------------------------------------------------------------------------------------


def test_workers_lists_alive_and_dead(workspace: Workspace) -> None:
    register_worker(workspace, os.getpid())
    dead = dead_pid()
    register_worker(workspace, dead)
    text = run("workers", workspace.path).stdout
    lines = text.splitlines()
    assert len(lines) == 2
    assert any(str(os.getpid()) in line and "alive" in line for line in lines)
    assert any(str(dead) in line and "dead" in line for line in lines)
    records = [json.loads(line) for line in run("workers", workspace.path, "--json").stdout.splitlines()]
    assert {(record["pid"], record["alive"]) for record in records} == {(os.getpid(), True), (dead, False)}
    assert all(record["slots"] == 2 and record["heartbeat_age"] >= 0 for record in records)


# -- check ---------------------------------------------------------------------------------------


def _by_kind(problems: list[Any]) -> dict[str, list[Any]]:
    kinds: dict[str, list[Any]] = {}
    for problem in problems:
        kinds.setdefault(problem.kind, []).append(problem)
    return kinds


def test_check_clean_workspace(workspace: Workspace, held: Any) -> None:
    held(all_states(workspace)["running"])
    make_job(workspace, State.DONE, jid("60"))
    result = run("check", workspace.path, "--no-verify")
    # The interrupted submission is young: a submission in progress looks the same for a while.
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "no problems" in result.stderr


def test_check_finds_and_fixes_each_problem(workspace: Workspace, held: Any) -> None:
    healthy = [
        make_job(workspace, State.DONE, jid("70")),
        make_job(workspace, State.READY, jid("71")),
        make_job(workspace, State.FAILED, jid("72")),
    ]
    running = make_job(workspace, State.RUNNING, jid("73"))
    held(running)
    healthy.append(running)
    young_temp = workspace.queue_dir / f"{_atomic.TMP_PREFIX}being-written"
    young_temp.write_bytes(b"")
    healthy_before = {job.ref: snapshot(job.path) for job in healthy}

    crashed = make_job(workspace, State.RUNNING, jid("80"))  # status running, nobody holds the lock
    orphan = JobRef(TYPE, jid("81"))
    queue.add(workspace.queue_dir, orphan)  # no job folder at all
    finished = make_job(workspace, State.DONE, jid("82"), queued=True)  # done, entry left behind
    garbage = make_job(workspace, State.READY, jid("83"))
    (garbage.xpm_dir / status.STATUS_FILE).write_bytes(b"\x00garbage")
    garbage_done = make_job(workspace, State.DONE, jid("84"))
    (garbage_done.xpm_dir / status.STATUS_FILE).write_bytes(b"")
    unqueued = make_job(workspace, State.READY, jid("85"), queued=False)
    age(unqueued.spec_path)
    temp = unqueued.xpm_dir / f"{_atomic.TMP_PREFIX}status.json.123.abcd"
    temp.write_bytes(b"{")
    age(temp)
    queue_temp = workspace.queue_dir / f"{_atomic.TMP_PREFIX}x"
    queue_temp.write_bytes(b"")
    age(queue_temp)
    trash = workspace.jobs_dir / TYPE / f"{TRASH_PREFIX}{jid('86')}.1.ab"
    (trash / "__xpm__").mkdir(parents=True)
    age(trash)
    unfinished = workspace.jobs_dir / TYPE / f"{_atomic.TMP_PREFIX}{jid('8b')}.1.ab"  # a submission died
    (unfinished / "__xpm__").mkdir(parents=True)
    age(unfinished)
    misplaced = make_job(workspace, State.DONE, jid("87"))
    spec = misplaced.read_spec()
    misplaced.spec_path.unlink()
    _atomic.write_json(misplaced.spec_path, {**spec.to_json(), "jobid": jid("88")})
    foreign = workspace.queue_dir / "README"
    foreign.write_text("not an entry")
    dead_worker = register_worker(workspace, dead_pid())
    live_worker = register_worker(workspace, os.getpid())
    cancelled = make_job(workspace, State.FAILED, jid("89"), reason=Reason.CANCELLED)
    _atomic.write_json(cancelled.cancel_path, {"requested": 0})  # kill asked; the run ended since
    live_cancel = make_job(workspace, State.RUNNING, jid("8a"))
    held(live_cancel)
    _atomic.write_json(live_cancel.cancel_path, {"requested": 0})  # its worker has not acted yet

    found = run("check", workspace.path, "--no-verify")
    assert found.exit_code == 1
    kinds = _by_kind(check(workspace, verify=False))
    assert {kind: len(problems) for kind, problems in kinds.items()} == {
        "stale-lock": 1,
        "orphan-entry": 1,
        "finished-entry": 1,
        "damaged-status": 2,
        "not-queued": 1,
        "temp-file": 2,
        "trash": 1,
        "temp-folder": 1,
        "spec-mismatch": 1,
        "unknown-entry": 1,
        "stale-worker": 1,
        "stale-cancel": 1,
    }
    assert not any(problem.fix_applied for problems in kinds.values() for problem in problems)
    for line in found.stdout.splitlines():
        path, kind, message = line.split(": ", 2)
        assert Path(path).is_absolute() and kind in kinds and message and not line.endswith("[fixed]")

    fixed = run("check", workspace.path, "--fix", "--no-verify")
    # What cannot be fixed safely remains: the misplaced spec, the foreign file, the unqueued job.
    assert fixed.exit_code == 1
    remaining = [line for line in fixed.stdout.splitlines() if not line.endswith("[fixed]")]
    assert sorted(line.split(": ")[1] for line in remaining) == ["not-queued", "spec-mismatch", "unknown-entry"]
    assert status.read(crashed.xpm_dir).state is State.READY and queue.contains(workspace.queue_dir, crashed.ref)
    assert not queue.contains(workspace.queue_dir, orphan)
    assert not queue.contains(workspace.queue_dir, finished.ref) and finished.marker() is State.DONE
    assert status.read(garbage.xpm_dir).state is State.READY and queue.contains(workspace.queue_dir, garbage.ref)
    assert (garbage.xpm_dir / f"{status.STATUS_FILE}{DAMAGED_SUFFIX}").read_bytes() == b"\x00garbage"
    assert status.read(garbage_done.xpm_dir).state is State.DONE and garbage_done.marker() is State.DONE
    assert not queue.contains(workspace.queue_dir, garbage_done.ref)
    assert not temp.exists() and not queue_temp.exists() and not trash.exists() and not unfinished.exists()
    assert young_temp.exists()  # a write in progress
    assert misplaced.spec_path.exists() and foreign.exists()
    assert not dead_worker.exists() and live_worker.exists()
    assert not cancelled.cancel_path.exists() and live_cancel.cancel_path.exists()
    assert {job.ref: snapshot(job.path) for job in healthy} == healthy_before  # nothing else touched

    again = _by_kind(check(workspace, fix=True, verify=False))
    assert set(again) == {"not-queued", "spec-mismatch", "unknown-entry"}


def test_check_leaves_a_live_run_and_its_ending_alone(workspace: Workspace, held: Any) -> None:
    running = make_job(workspace, State.RUNNING, jid("90"))
    held(running)
    ending = make_job(workspace, State.RUNNING, jid("91"))
    held(ending)
    status.transition(ending.xpm_dir, State.DONE)  # marker written, entry not yet removed, lock held
    before = snapshot(workspace.path)
    assert check(workspace, fix=True, verify=False) == []
    assert snapshot(workspace.path) == before


TINY_MODULE = "xpmfs_cli_test_tiny"
TINY_SOURCE = """
from xpmfs.config import Config, Param


class Tiny(Config):
    __xpmid__ = "test.cli.Tiny"
    x: Param[int]
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[tuple[Any, Path]]:
    """A config class in a module importable only from a folder of its own, like a user's task.

    The spec records that folder in ``sys_path``; check must import from there, as the runner does.
    """
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / f"{TINY_MODULE}.py").write_text(TINY_SOURCE)
    sys.path.insert(0, str(folder))
    try:
        module = __import__(TINY_MODULE)
    finally:
        sys.path.remove(str(folder))
    try:
        yield module.Tiny, folder
    finally:
        sys.modules.pop(TINY_MODULE, None)


def test_check_verifies_identifiers(workspace: Workspace, tiny: tuple[Any, Path]) -> None:
    from xpmfs.config import typeid
    from xpmfs.serialization import to_dict

    tiny_class, folder = tiny
    config = tiny_class.C(x=7)
    good_id = config.__identifier__()
    record = to_dict(config)
    sys.modules.pop(TINY_MODULE)  # as in a fresh process: only the spec's sys_path finds it
    good = make_job(workspace, State.DONE, good_id, typeid=typeid(config), config=record, sys_path=(str(folder),))
    bad = make_job(workspace, State.DONE, jid("ba"), typeid=typeid(config), config=record, sys_path=(str(folder),))
    problems = check(workspace)
    assert [(problem.path, problem.kind) for problem in problems] == [(bad.spec_path, "spec-mismatch")]
    assert f"hashes to {good_id}" in problems[0].message
    assert str(folder) not in sys.path  # the spec's import path was only borrowed
    result = run("check", workspace.path, "--fix")
    assert result.exit_code == 1 and "spec-mismatch" in result.stdout
    assert good.path.is_dir() and bad.path.is_dir() and bad.spec_path.exists()  # reported, never removed


def test_check_cannot_verify_an_unimportable_task(workspace: Workspace, tiny: tuple[Any, Path]) -> None:
    from xpmfs.serialization import to_dict

    tiny_class, _folder = tiny
    config = tiny_class.C(x=7)
    record = to_dict(config)
    sys.modules.pop(TINY_MODULE)  # and no sys_path in the spec: the module cannot be found
    job = make_job(workspace, State.DONE, config.__identifier__(), typeid="test.cli.tiny", config=record)
    problems = check(workspace)
    assert [problem.kind for problem in problems] == ["unverifiable-spec"]
    assert problems[0].severity == "warning" and problems[0].path == job.spec_path
    assert TINY_MODULE in problems[0].message
    result = run("check", workspace.path)
    assert result.exit_code == 0 and "unverifiable-spec" in result.stdout  # a warning, not a failure


def remote_lease(job: Job, duration: float) -> None:
    """Make ``job``'s lock look held by a process on another host (a filelock/2 lease marker)."""
    job.lock_path.write_text(
        f"filelock/2\npid=4242\nhost=elsewhere.example\nmode=lease\ntoken={'ab' * 16}\nduration={duration}\n"
    )


def test_shared_mode_remote_leases(tmp_path: Path) -> None:
    # NFS: another host's lease is alive until this process has watched it go unrefreshed.
    ws = Workspace.open(tmp_path / "ws", create=True, lock_mode="shared", lease_duration=0.3)
    remote = make_job(ws, State.RUNNING, jid("d0"), pid=4242)
    remote_lease(remote, 0.3)
    assert not list_jobs(ws)[0].stale  # fail closed: another host's lease counts as held
    # (The CLI's kill waits up to 1 s for a brief holder: longer than this lease, which would expire.)
    killed = control.kill(remote, wait=0.0)
    assert killed.action == "cancel-requested" and "SIGTERM" not in killed.message  # not on this host
    assert remote.cancel_path.exists()
    assert [p.kind for p in check(ws, verify=False, lease_wait=False)] == []
    result = run("check", ws.path, "--fix", "--no-verify")
    assert "waiting 0s" in result.stderr  # it said why it waits
    assert "stale-lock" in result.stdout and result.stdout.rstrip().endswith("[fixed]")
    assert status.read(remote.xpm_dir).state is State.READY and queue.contains(ws.queue_dir, remote.ref)


HOLD_SHARED_LOCK = """
import sys, time
from xpmfs.lock import JobLock
lock = JobLock(sys.argv[1], "shared")
assert lock.try_acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_shared_mode_dead_holder_on_this_host(tmp_path: Path, processes: Processes) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True, lock_mode="shared", lease_duration=30.0)
    job = make_job(ws, State.RUNNING, jid("d1"))
    runner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_SHARED_LOCK,
            str(job.lock_path),
        ],
        stdout=subprocess.PIPE,
        env=processes.env(),
    )
    processes.started.append(runner)
    assert runner.stdout is not None and runner.stdout.readline() == b"held\n"
    assert not list_jobs(ws)[0].stale
    runner.kill()
    runner.wait()
    runner.stdout.close()
    assert list_jobs(ws)[0].stale  # its owner is proven dead: no need to wait out the lease
    problems = check(ws, fix=True, verify=False)
    assert [(p.kind, p.fix_applied) for p in problems] == [("stale-lock", True)]
    assert status.read(job.xpm_dir).state is State.READY


# -- the command itself --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["ls", "show", "log", "kill", "retry", "clean", "workers", "check", "worker", "init"]
)
def test_every_command_has_an_example(command: str) -> None:
    result = run(command, "--help")
    assert result.exit_code == 0 and "Example:" in result.stdout and "xpmfs " + command in result.stdout


def test_init_creates_a_workspace_before_any_experiment(tmp_path: Path) -> None:
    # Workers on a cluster may start before the first experiment: `init` makes the workspace
    # (and fixes its lock mode) for them.
    path = tmp_path / "shared-ws"
    refused = run("worker", path, "--idle-exit", "0")
    assert refused.exit_code == 1 and f"`xpmfs init {path}`" in refused.stderr
    made = run("init", path, "--lock-mode", "shared", "--lease", "12")
    assert made.exit_code == 0 and made.stdout == f"{path}: workspace ready (lock mode shared, leases of 12s)\n"
    ws = Workspace.open(path)
    assert ws.lock_mode.value == "shared" and ws.lease_duration == 12.0
    before = snapshot(path)
    assert run("init", path).exit_code == 0  # as it is: nothing to change
    mismatch = run("init", path, "--lock-mode", "local")
    assert mismatch.exit_code == 1 and "uses lock mode 'shared', not 'local'" in mismatch.stderr
    assert snapshot(path) == before  # neither call changed a file
    # A real worker takes it as it is (a process of its own: a worker sets signal handlers).
    worker = subprocess.run(
        [sys.executable, "-m", "xpmfs", "worker", str(path), "--idle-exit", "0"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr


def test_real_subprocess_smoke(workspace: Workspace) -> None:
    make_job(workspace, State.FAILED, jid("c0"))
    executable = ROOT / ".venv" / "bin" / "xpmfs"
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "xpmfs"]
    completed = subprocess.run(
        [*command, "ls", str(workspace.path), "--json"], capture_output=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    record = json.loads(completed.stdout)
    assert record["state"] == "failed" and record["jobid"] == jid("c0")
    missing = subprocess.run(
        [*command, "ls", str(workspace.path / "nope")], capture_output=True, timeout=60, check=False
    )
    assert missing.returncode == 1 and missing.stderr.startswith(b"Error: ") and b"Traceback" not in missing.stderr


def test_check_reports_and_settles_contradictory_outcomes_by_the_history(workspace: Workspace) -> None:
    """What an old holder that recorded over a newer attempt left (issue 17's frozen node, before
    fencing): ``check`` says so, and ``--fix`` keeps the newest attempt's outcome."""
    both = make_job(workspace, State.DONE, jid("b1"))  # attempt 1, done
    (both.xpm_dir / status.FAILED_MARKER).write_bytes((both.xpm_dir / status.STATUS_FILE).read_bytes())
    backwards = make_job(workspace, State.RUNNING, jid("b2"), queued=False)
    newer = status.transition(backwards.xpm_dir, State.READY, message="taken over")
    newer = status.transition(backwards.xpm_dir, State.RUNNING, current=newer, host="node-b")  # attempt 2
    newer = status.transition(backwards.xpm_dir, State.DONE, current=newer)
    stale = status.Status(State.DONE, attempt=1, host="node-a", updated=time.time(), ended=time.time())
    _atomic.write_json(backwards.xpm_dir / status.STATUS_FILE, stale.to_json())  # attempt 1 over attempt 2
    unmarked = make_job(workspace, State.FAILED, jid("b3"))
    (unmarked.xpm_dir / status.FAILED_MARKER).unlink()
    _atomic.write_json(unmarked.xpm_dir / status.DONE_MARKER, {**unmarked.status().to_json(), "state": "done"})  # type: ignore[union-attr]

    found = {problem.path.parent.parent.name: problem for problem in check(workspace, verify=False)}
    assert {name: problem.kind for name, problem in found.items()} == dict.fromkeys(
        (jid("b1"), jid("b2"), jid("b3")), "contradictory-outcome"
    )
    assert "both a done and a failed marker" in found[jid("b1")].message
    assert "its done marker (attempt 2) disagrees with status.json (done, attempt 1)" in found[jid("b2")].message
    assert "its done marker (attempt 0) disagrees with status.json (failed, attempt 0)" in found[jid("b3")].message

    fixed = check(workspace, fix=True, verify=False)
    assert all(problem.fix_applied for problem in fixed), fixed
    assert check(workspace, verify=False) == []
    assert both.marker() is State.DONE and not (both.xpm_dir / status.FAILED_MARKER).exists()
    settled = backwards.status()
    assert settled is not None and (settled.state, settled.attempt, settled.host) == (State.DONE, 2, "node-b")
    assert json.loads((backwards.xpm_dir / status.DONE_MARKER).read_bytes())["attempt"] == 2
    assert unmarked.marker() is State.DONE and unmarked.status().state is State.DONE  # type: ignore[union-attr]
