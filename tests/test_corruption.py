"""Torn and corrupt files: each gets the behaviour spec/failure-model.md documents, and nothing else breaks.

Every case starts from a copy of one small workspace whose jobs already ran (two ``done``, one
``failed``), adds the jobs it damages and a sentinel job, damages them, takes a snapshot of every
other file, then lets a real worker process, ``xpmfs check`` and ``xpmfs check --fix`` face the
damage. A worker either repairs, ignores with a warning, or refuses with a message naming the path
and the fix (in its log), and keeps working: the sentinel job, queued after the damaged ones, is
run. Afterwards every file outside the damaged jobs is byte for byte what it was.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from conftest import Processes, wait_until
from output_tasks import Learn, Model, Validation
from sample_tasks import Add, Count, Fail

from xpmfs import experiment, journal, tag
from xpmfs._compat import host_name
from xpmfs.cli import main
from xpmfs.job import Job
from xpmfs.queue import JobRef
from xpmfs.status import State, transition
from xpmfs.workspace import EXPERIMENT_LOCK, Workspace

pytestmark = pytest.mark.timeout(120)
RESCAN = "0.3"
LEASE = 3.0


# -- the workspace every case starts from ----------------------------------------------------


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose jobs have run: Add x=1 and x=2 (chained) done, Fail failed."""
    ws = tmp_path_factory.mktemp("template") / "ws"
    with experiment(ws, "base", wait=False, workers=0):
        first = Add.C(x=tag(1)).submit()
        Add.C(x=tag(2), previous=first).submit()
        Fail.C(why="for the template").submit()
    env = Processes(ws.parent).env()
    worker = [sys.executable, "-m", "xpmfs", "worker", str(ws), "--idle-exit", "0.5", "--rescan", RESCAN]
    subprocess.run(worker, env=env, check=True, timeout=90, capture_output=True)
    markers = sorted(status_marker(job) for job in jobs_of(ws))
    assert markers == ["done", "done", "failed"], markers
    return ws


def jobs_of(ws: Path) -> list[Path]:
    return sorted(path for typedir in (ws / "jobs").iterdir() for path in typedir.iterdir())


def status_marker(job: Path) -> str:
    return "done" if (job / "__xpm__" / "done").exists() else "failed" if (job / "__xpm__" / "failed").exists() else ""


@pytest.fixture
def base(template: Path, ws: Path) -> Path:
    shutil.copytree(template, ws, symlinks=True)
    return ws


def make_shared(ws: Path, lease: float = LEASE) -> None:
    """Switch a quiescent workspace (no lock held) to shared lock mode.

    The released local locks stay behind as empty files, which in shared mode would be empty
    markers (held forever): remove them, as nothing holds them.
    """
    record = {"format": "xpmfs/1", "lock_mode": "shared", "lease_duration": lease}
    (ws / ".xpmfs" / "format").write_bytes(orjson.dumps(record))
    for lock in [*ws.rglob("lock"), *ws.rglob(EXPERIMENT_LOCK)]:
        if lock.stat().st_size == 0:
            lock.unlink()


def submit(ws: Path, name: str, tasks: Iterable[Any]) -> list[Job]:
    with experiment(ws, name, wait=False, workers=0):
        outputs = [task.submit() for task in tasks]
    opened = Workspace.open(ws)
    return [Job(opened, output.__xpm__.job.ref) for output in outputs]


def snapshot(ws: Path, *skip: Job) -> dict[str, str]:
    """Every file of the workspace (but worker registrations and the ``skip`` jobs) -> its content's hash."""
    skipped = [job.path for job in skip] + [job.workspace.queue_dir / job.ref.entry_name for job in skip]
    files = {}
    for path in sorted(ws.rglob("*")):
        relative = path.relative_to(ws)
        if relative.parts[0] == "workers" or path.is_dir():
            continue
        if any(path == other or other in path.parents for other in skipped):
            continue
        files[str(relative)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def worker(processes: Processes, ws: Path) -> tuple[subprocess.Popen[bytes], Path]:
    process = processes.worker(ws, rescan=float(RESCAN))
    return process, processes.tmp_path / f"worker-{len(processes.started) - 1}.log"


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def cli(*args: object) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args])


def xpmfs(processes: Processes, *args: object) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process (lease observations must start afresh, as in real use)."""
    command = [sys.executable, "-m", "xpmfs", *map(str, args)]
    return subprocess.run(command, env=processes.env(), capture_output=True, text=True, timeout=60, check=False)


def problems(output: str, kind: str) -> list[str]:
    return [line for line in output.splitlines() if f": {kind}: " in line]


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def lease_marker(pid: int, host: str, duration: float) -> bytes:
    lines = [
        "filelock/2",
        f"pid={pid}",
        f"host={host}",
        "mode=lease",
        f"token={secrets.token_hex(16)}",
        f"duration={duration!r}",
    ]
    return "".join(f"{line}\n" for line in lines).encode()


def crashed_run(job: Job, pid: int = 999_999, host: str = "vm") -> None:
    """Make ``job`` look like a run that crashed: status ``running``, queue entry kept, lock free."""
    transition(job.xpm_dir, State.RUNNING, pid=pid, host=host)


# -- status.json -----------------------------------------------------------------------------

DAMAGED_STATUS = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"\x00\xffthis is not json\n",
    "empty": lambda data: b"",
    "not-an-object": lambda data: b"[1, 2, 3]\n",
    "unknown-state": lambda data: orjson.dumps({**orjson.loads(data), "state": "exploded"}),
}


def test_damaged_status_is_refused_by_workers_reported_by_check_and_rebuilt_by_fix(
    base: Path, processes: Processes
) -> None:
    targets = submit(base, "damage", [Add.C(x=10 + i) for i in range(len(DAMAGED_STATUS))])
    [sentinel] = submit(base, "sentinel", [Add.C(x=99)])
    for job, damage in zip(targets, DAMAGED_STATUS.values(), strict=True):
        path = job.xpm_dir / "status.json"
        path.write_bytes(damage(path.read_bytes()))
    done_job = next(
        Job(Workspace.open(base), JobRef(p.parent.name, p.name)) for p in jobs_of(base) if status_marker(p) == "done"
    )
    (done_job.xpm_dir / "status.json").write_bytes(b'{"state": "do')
    done_result = (done_job.path / "result.txt").read_bytes()
    before = snapshot(base, *targets, sentinel, done_job)

    _process, log = worker(processes, base)
    wait_until(sentinel.marker, timeout=60, what="the sentinel job, queued after the damaged ones")
    for job in targets:
        status_path = str(job.xpm_dir / "status.json")
        wait_until(lambda path=status_path: path in text(log), timeout=30, what=f"the worker to name {status_path}")
        assert text(log).count(status_path) == 1, "said once, not at every rescan"
        assert job.marker() is None and not (job.path / "result.txt").exists()
        assert (base / "queue" / job.ref.entry_name).exists()
    assert "xpmfs check --fix" in text(log)
    assert "Traceback" not in text(log)

    listing = cli("ls", base, "--json")
    assert listing.exit_code == 0, listing.output
    states = {orjson.loads(line)["jobid"]: orjson.loads(line) for line in listing.stdout.splitlines()}
    for job in targets:
        assert states[job.ref.jobid]["state"] is None and "status.json" in states[job.ref.jobid]["problem"]
    assert states[done_job.ref.jobid]["state"] == "done"  # the marker is the truth

    checked = cli("check", base, "--no-verify")
    assert checked.exit_code == 1
    reported = problems(checked.stdout, "damaged-status")
    assert sorted(line.split(":")[0] for line in reported) == sorted(
        str(job.xpm_dir / "status.json") for job in [*targets, done_job]
    )

    fixed = cli("check", base, "--fix", "--no-verify")
    assert fixed.exit_code == 0, fixed.output
    assert len(problems(fixed.stdout, "damaged-status")) == len(targets) + 1
    for job in [*targets, done_job]:
        assert (job.xpm_dir / "status.json.damaged").exists(), "the damaged file is kept for a person to read"
    assert done_job.status().state is State.DONE and done_job.marker() is State.DONE  # type: ignore[union-attr]
    assert (done_job.path / "result.txt").read_bytes() == done_result
    # Rebuilt as ready (queued): the running worker now runs them.
    wait_until(lambda: all(job.marker() is State.DONE for job in targets), timeout=60, what="the repaired jobs to run")
    assert cli("check", base, "--no-verify").exit_code == 0
    assert snapshot(base, *targets, sentinel, done_job) == before


# -- torn JSON lines ---------------------------------------------------------------------------


def test_torn_last_line_of_an_experiment_journal_is_skipped_then_ended_by_the_next_writer(base: Path) -> None:
    path = base / "experiments" / "base" / "jobs.jsonl"
    with open(path, "ab") as stream:
        stream.write(
            b'{"job": "sample_tasks.add/00',
        )  # the writer died mid-line
    before = snapshot(base)
    listing = cli("ls", base, "--json")
    assert listing.exit_code == 0, listing.output
    assert "Traceback" not in listing.output
    tagged = [orjson.loads(line) for line in listing.stdout.splitlines()]
    assert sorted(record["tags"].get("x") for record in tagged if record["tags"]) == [1, 2]
    assert snapshot(base) == before, "reading changed nothing"
    assert cli("check", base, "--no-verify").exit_code == 0

    # The next run of the experiment (the journal's next single writer) ends the torn line first.
    [job] = submit(base, "base", [Add.C(x=tag(3))])
    lines = path.read_bytes().splitlines(keepends=True)
    assert lines[-2] == b'{"job": "sample_tasks.add/00\n'
    assert orjson.loads(lines[-1])["job"] == job.ref.relpath
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        records = [record for _offset, record in journal.read(path)]
    assert [record["tags"] for record in records][-1] == {"x": 3}
    # Ended, the torn line is damage inside the journal: skipped with a warning that names it.
    with pytest.warns(UserWarning, match=re.escape(f"{path}: skipping a damaged line")):
        listing = cli("ls", base, "--tag", "x=3")
    assert listing.exit_code == 0 and job.ref.jobid[:12] in listing.stdout


def test_torn_last_line_of_task_outputs_is_ended_before_the_task_appends(base: Path, processes: Processes) -> None:
    model = Model.C()
    [job] = submit(base, "outputs", [Learn.C(model=model, validation=Validation.C(model=model))])
    outputs = job.task_outputs_path
    outputs.parent.mkdir(parents=True, exist_ok=True)
    outputs.write_bytes(b'{"config": "abc", "method": "checkp')  # an earlier attempt died mid-line
    before = snapshot(base, job)
    worker(processes, base)
    wait_until(job.marker, timeout=60, what="the resumable job to run")
    assert job.marker() is State.DONE
    lines = outputs.read_bytes().splitlines(keepends=True)
    assert lines[0] == b'{"config": "abc", "method": "checkp\n'
    with pytest.warns(UserWarning, match="damaged line"):
        records = [record for _offset, record in journal.read(outputs)]
    assert [record["kwargs"]["step"] for record in records] == list(range(0, 100, 10))
    assert snapshot(base, job) == before


def test_torn_last_line_of_history_is_ended_before_the_next_record(base: Path, processes: Processes) -> None:
    [job] = submit(base, "history", [Add.C(x=20)])
    crashed_run(job)
    history = job.xpm_dir / "history.jsonl"
    history.write_bytes(b'{"state": "ready", "atte')  # the lock holder died mid-append
    worker(processes, base)
    wait_until(job.marker, timeout=60, what="the crashed job to be run again")
    assert job.marker() is State.DONE
    lines = history.read_bytes().splitlines()
    assert lines[0] == b'{"state": "ready", "atte'
    assert [orjson.loads(line)["state"] for line in lines[1:]] == ["running"]


# -- spec.json ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content", [b"", b"{not json", b'{"typeid": "sample_tasks.add"}\n'], ids=["empty", "garbage", "incomplete"]
)
def test_unreadable_spec_is_refused_by_workers_and_reported_by_check(
    base: Path, processes: Processes, content: bytes
) -> None:
    [job] = submit(base, "spec", [Add.C(x=30)])
    [sentinel] = submit(base, "sentinel", [Add.C(x=98)])
    job.spec_path.write_bytes(content)
    before = snapshot(base, sentinel)

    _process, log = worker(processes, base)
    wait_until(sentinel.marker, timeout=60, what="the sentinel job")
    wait_until(lambda: str(job.spec_path) in text(log), timeout=30, what="the worker to name the spec")
    assert text(log).count(str(job.spec_path)) == 1 and "Traceback" not in text(log)
    assert job.marker() is None and not (job.path / "result.txt").exists()

    shown = cli("show", job.path)
    assert shown.exit_code == 0 and "spec.json" in shown.stdout, shown.output
    assert cli("ls", base).exit_code == 0
    for args in (["check", base], ["check", base, "--fix"]):
        checked = cli(*args)
        assert checked.exit_code == 1, checked.output
        [line] = problems(checked.stdout, "damaged-spec")
        assert line.startswith(str(job.spec_path)) and "remove the job folder" in line and "[fixed]" not in line
    assert job.spec_path.read_bytes() == content, "a damaged spec is never rewritten by check"
    assert snapshot(base, sentinel) == before


def test_rerunning_the_experiment_replaces_an_unreadable_spec(base: Path) -> None:
    [job] = submit(base, "respec", [Add.C(x=31)])
    job.spec_path.write_bytes(b"")
    submit(base, "respec", [Add.C(x=31)])
    assert job.read_spec().jobid == job.ref.jobid


def _edit_spec(job: Job, **fields: Any) -> None:
    record = orjson.loads(job.spec_path.read_bytes())
    record["config"]["objects"][0]["fields"].update(fields.pop("config", {}))
    record.update(fields)
    job.spec_path.write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))


def test_spec_that_does_not_hash_to_its_folder_is_reported_and_never_touched(base: Path) -> None:
    edited, renamed = submit(base, "mismatch", [Add.C(x=40), Add.C(x=41)])
    _edit_spec(edited, config={"x": 400})
    _edit_spec(renamed, jobid="0" * 64)
    specs = {job: job.spec_path.read_bytes() for job in (edited, renamed)}
    before = snapshot(base)
    for args in (["check", base], ["check", base, "--fix"]):
        checked = cli(*args)
        assert checked.exit_code == 1, checked.output
        lines = problems(checked.stdout, "spec-mismatch")
        assert sorted(line.split(":")[0] for line in lines) == sorted(str(job.spec_path) for job in specs)
        assert not any("[fixed]" in line for line in lines)
    assert {job: job.spec_path.read_bytes() for job in specs} == specs
    assert snapshot(base) == before


def test_a_spec_that_does_not_hash_to_its_folder_is_not_run(base: Path, processes: Processes) -> None:
    [job] = submit(base, "mismatch-run", [Add.C(x=42)])
    _edit_spec(job, config={"x": 420})
    worker(processes, base)
    wait_until(job.marker, timeout=60, what="the worker to end the job")
    assert not (job.path / "result.txt").exists(), "the edited configuration ran"
    assert job.marker() is State.FAILED
    assert str(job.spec_path) in (job.status().message or "")  # type: ignore[union-attr]


def test_a_spec_of_an_unknown_format_version_is_refused(base: Path, processes: Processes) -> None:
    [job] = submit(base, "newer", [Add.C(x=43)])
    [sentinel] = submit(base, "sentinel", [Add.C(x=97)])
    _edit_spec(job, format="xpmfs/2")
    _process, log = worker(processes, base)
    wait_until(sentinel.marker, timeout=60, what="the sentinel job")
    wait_until(lambda: job.marker() is not None or str(job.spec_path) in text(log), timeout=30, what="a verdict")
    assert not (job.path / "result.txt").exists(), "a spec of an unknown format ran"
    assert str(job.spec_path) in text(log) and "xpmfs/2" in text(log)


# -- .xpmfs/format -----------------------------------------------------------------------------

BAD_FORMATS = {
    "newer-version": (b'{"format": "xpmfs/2", "lock_mode": "local"}\n', "xpmfs/2"),
    "torn": (b'{"format": "xpm', "cannot be read"),
    "empty": (b"", "cannot be read"),
    "unknown-lock-mode": (b'{"format": "xpmfs/1", "lock_mode": "carrier-pigeon"}\n', "carrier-pigeon"),
    "null-lease": (b'{"format": "xpmfs/1", "lock_mode": "shared", "lease_duration": null}\n', "lease_duration"),
    "text-lease": (b'{"format": "xpmfs/1", "lock_mode": "shared", "lease_duration": "long"}\n', "lease_duration"),
}


@pytest.mark.parametrize("case", list(BAD_FORMATS))
def test_a_workspace_of_an_unknown_format_is_refused_by_every_process(
    base: Path, processes: Processes, case: str
) -> None:
    content, words = BAD_FORMATS[case]
    format_file = base / ".xpmfs" / "format"
    format_file.write_bytes(content)
    before = snapshot(base)
    started = processes.worker(base)
    assert started.wait(timeout=60) == 1
    log = text(processes.tmp_path / f"worker-{len(processes.started) - 1}.log")
    for output in (log, xpmfs(processes, "check", base).stderr, xpmfs(processes, "ls", base).stderr):
        assert f"Error: {format_file}" in output and words in output, output
        assert "Traceback" not in output
    for args in (["check", base], ["ls", base], ["workers", base]):
        assert cli(*args).exit_code == 1
    with pytest.raises(OSError, match=re.escape(str(format_file))), experiment(base, "refused", wait=False, workers=0):
        pass
    assert snapshot(base) == before


# -- lock files ----------------------------------------------------------------------------------


def test_a_local_lock_left_by_a_dead_process_is_free(base: Path, processes: Processes) -> None:
    queued, crashed = submit(base, "locks", [Add.C(x=50), Add.C(x=51)])
    crashed_run(crashed)
    for job in (queued, crashed):
        record = f"xpmfs-lock/1\npid={dead_pid()}\nhost={host_name()}\nsince={time.time() - 60!r}\n"
        job.lock_path.write_text(record)  # what a holder killed by SIGKILL leaves: its record, no flock
    before = snapshot(base, queued, crashed)
    checked = cli("check", base, "--no-verify")
    assert [line.split(":")[0] for line in problems(checked.stdout, "stale-lock")] == [str(crashed.lock_path)]
    assert str(queued.lock_path) not in checked.stdout, "a free lock is no problem, whatever its stale record says"
    worker(processes, base)
    wait_until(lambda: queued.marker() and crashed.marker(), timeout=60, what="both jobs to run")
    assert queued.marker() is State.DONE and crashed.marker() is State.DONE
    assert crashed.status().attempt == 2  # type: ignore[union-attr]
    assert cli("check", base, "--no-verify").exit_code == 0
    assert snapshot(base, queued, crashed) == before


def test_a_shared_lease_left_by_a_dead_process_on_this_host_is_taken_over_at_once(
    base: Path, processes: Processes
) -> None:
    make_shared(base, lease=60.0)  # long: a takeover now can only come from proving the owner dead
    queued, crashed = submit(base, "dead-owner", [Add.C(x=52), Add.C(x=53)])
    crashed_run(crashed)
    for job in (queued, crashed):
        job.lock_path.write_bytes(lease_marker(dead_pid(), host_name(), 60.0))
    before = snapshot(base, queued, crashed)
    checked = xpmfs(processes, "check", base, "--no-verify", "--no-wait")
    [line] = problems(checked.stdout, "stale-lock")
    assert line.startswith(str(crashed.lock_path)) and "is dead" in line, checked.stdout
    started = time.monotonic()
    worker(processes, base)
    wait_until(lambda: queued.marker() and crashed.marker(), timeout=60, what="both jobs to be taken over")
    assert time.monotonic() - started < 40.0, "taken over by proving the owner dead, not by waiting out the lease"
    assert queued.marker() is State.DONE and crashed.marker() is State.DONE
    assert xpmfs(processes, "check", base, "--no-verify", "--no-wait").returncode == 0
    assert snapshot(base, queued, crashed) == before


def test_a_shared_lease_of_a_remote_host_is_taken_over_only_after_it_expires(base: Path, processes: Processes) -> None:
    make_shared(base)
    [job] = submit(base, "remote-owner", [Add.C(x=54)])
    crashed_run(job, pid=4242, host="node-far")
    job.lock_path.write_bytes(lease_marker(4242, "node-far", LEASE))
    written = job.lock_path.stat().st_mtime
    before = snapshot(base, job)
    quick = xpmfs(processes, "check", base, "--no-verify", "--no-wait")
    assert quick.returncode == 0 and str(job.lock_path) not in quick.stdout, "another host's lease counts as alive"
    patient = xpmfs(processes, "check", base, "--no-verify")
    assert "waiting" in patient.stderr and patient.returncode == 1
    [line] = problems(patient.stdout, "stale-lock")
    assert line.startswith(str(job.lock_path)) and "not refreshed its lease" in line
    worker(processes, base)
    wait_until(job.marker, timeout=60, what="the job to be taken over")
    claimed = job.status().claimed  # type: ignore[union-attr]
    assert claimed is not None and claimed >= written + LEASE - 0.05, "taken over before the lease expired"
    assert job.marker() is State.DONE and job.status().attempt == 2  # type: ignore[union-attr]
    assert snapshot(base, job) == before


def test_a_lease_of_another_duration_is_refused_with_the_path_and_the_fix(base: Path, processes: Processes) -> None:
    make_shared(base)
    [job] = submit(base, "other-lease", [Add.C(x=55)])
    [sentinel] = submit(base, "sentinel", [Add.C(x=96)])
    job.lock_path.write_bytes(lease_marker(4242, "node-far", 30.0))
    before = snapshot(base, sentinel)
    _process, log = worker(processes, base)
    wait_until(sentinel.marker, timeout=60, what="the sentinel job")
    wait_until(lambda: str(job.lock_path) in text(log), timeout=30, what="the worker to name the lock")
    assert "lease_duration" in text(log) and "Traceback" not in text(log)
    assert job.marker() is None
    assert snapshot(base, sentinel) == before


@pytest.mark.parametrize("marker", ["empty", "other-duration"])
def test_a_lease_marker_that_blocks_a_job_forever_is_reported_by_check(
    base: Path, processes: Processes, marker: str
) -> None:
    make_shared(base)
    [job] = submit(base, "blocked", [Add.C(x=56)])
    job.lock_path.write_bytes(b"" if marker == "empty" else lease_marker(4242, "node-far", 30.0))
    os.utime(job.lock_path, (time.time() - 120, time.time() - 120))
    checked = xpmfs(processes, "check", base, "--no-verify", "--no-wait")
    assert "Traceback" not in checked.stderr
    assert checked.returncode == 1 and str(job.lock_path) in checked.stdout, checked.stdout


def test_an_empty_lease_marker_expires_like_a_lease(base: Path, processes: Processes) -> None:
    make_shared(base)
    [job] = submit(base, "empty-lease", [Add.C(x=57)])
    job.lock_path.write_bytes(b"")  # what a SIGKILL between create and write leaves
    written = job.lock_path.stat().st_mtime
    worker(processes, base)
    wait_until(job.marker, timeout=LEASE + 8.0, what="the job blocked by an empty marker to run")
    claimed = job.status().claimed  # type: ignore[union-attr]
    assert claimed is not None and claimed >= written + LEASE - 0.05, "an empty marker broken before it expired"
    assert job.marker() is State.DONE


@pytest.mark.parametrize("marker", ["remote", "empty"])
def test_an_experiment_killed_elsewhere_can_run_again_once_its_lease_expires(base: Path, marker: str) -> None:
    make_shared(base)
    lock = base / "experiments" / "left-behind" / EXPERIMENT_LOCK
    lock.parent.mkdir(parents=True)
    lock.write_bytes(lease_marker(4242, "node-far", LEASE) if marker == "remote" else b"")
    started = time.monotonic()
    with experiment(base, "left-behind", wait=False, workers=0):
        Add.C(x=58).submit()
    assert time.monotonic() - started >= LEASE - 0.05, "another host's lease was broken before it expired"


# -- leftovers of interrupted writes ---------------------------------------------------------


def test_temp_files_are_ignored_by_workers_and_removed_by_fix(base: Path, processes: Processes) -> None:
    [job] = submit(base, "debris", [Count.C(n=1, counter=str(base.parent / "counter"))])
    old = time.time() - 3600
    debris = [
        job.xpm_dir / ".tmp-status.json.4242.0badf00d",
        base / "queue" / ".tmp-x~y.4242.0badf00d",
        base / "experiments" / "debris" / ".tmp-run.json.4242.0badf00d",
    ]
    for path in debris:
        path.write_bytes(b'{"state": "runn')
        os.utime(path, (old, old))
    worker(processes, base)
    wait_until(job.marker, timeout=60, what="the job next to the debris to run")
    assert job.marker() is State.DONE
    before = snapshot(base, job)
    checked = cli("check", base, "--no-verify")
    assert checked.exit_code == 1
    assert sorted(line.split(":")[0] for line in problems(checked.stdout, "temp-file")) == sorted(map(str, debris))
    fixed = cli("check", base, "--fix", "--no-verify")
    assert fixed.exit_code == 0 and not any(path.exists() for path in debris)
    assert cli("check", base, "--no-verify").exit_code == 0
    after = snapshot(base, job)
    assert after == {name: digest for name, digest in before.items() if ".tmp-" not in name}
