"""Every write that the file system refuses names its file and the fix, and leaves nothing half-written.

Real small tmpfs mounts stand in for a full disk (``ENOSPC``) and a read-only one (``EROFS``):
mounting needs root (CAP_SYS_ADMIN); elsewhere these tests skip and say why.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from conftest import Processes, fill_disk, job_of, wait_until
from sample_tasks import Add

from xpmfs import _atomic, experiment, heartbeat, queue, status
from xpmfs.errors import WorkspaceError
from xpmfs.journal import Journal, read
from xpmfs.queue import JobRef
from xpmfs.status import State

Mount = Callable[[Path], Path]


@pytest.fixture
def mount() -> Iterator[Mount]:
    """Mounts a 2 MiB tmpfs on a folder (made if missing); each is unmounted after the test, failed or not."""
    mounted: list[Path] = []

    def mount_on(path: Path) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs (a disk that fills up) needs root")
        path.mkdir(exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(path)], capture_output=True, check=False
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs CAP_SYS_ADMIN): {result.stderr.decode().strip()}")
        mounted.append(path)
        return path

    try:
        yield mount_on
    finally:
        for path in reversed(mounted):
            # Lazily: a process of the test may still hold a file there while it is reaped.
            subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def _remount_read_only(path: Path) -> None:
    result = subprocess.run(["mount", "-o", "remount,ro", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot remount {path} read-only: {result.stderr.decode().strip()}")


def _temp_files(folder: Path) -> list[Path]:
    return list(folder.rglob(f"{_atomic.TMP_PREFIX}*"))


# -- the writing modules ---------------------------------------------------------------------------


def test_a_journal_append_on_a_full_disk_names_the_file_and_leaves_no_part_of_its_line(
    tmp_path: Path, mount: Mount
) -> None:
    disk = mount(tmp_path / "disk")
    path = disk / "history.jsonl"
    with Journal(path) as journal:
        # Most of a page: the next record needs a page the full disk does not have, so the
        # kernel takes the part that fits and refuses the rest (a short write, then ENOSPC).
        journal.append({"pad": "x" * 4000})
        fill_disk(disk / "filler")
        before = path.read_bytes()
        with pytest.raises(WorkspaceError) as raised:
            journal.append({"pad": "y" * 300})
        assert raised.value.errno == errno.ENOSPC and raised.value.path == path
        assert str(raised.value).startswith(f"{path}: cannot be written (No space left on device); free space")
        assert path.read_bytes() == before, "part of the refused line is left for the next one to glue onto"
        (disk / "filler").unlink()
        journal.append({"n": 2})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a damaged line would warn
        assert [list(record) for _, record in read(path)] == [["pad"], ["n"]]


def test_writes_on_a_read_only_disk_name_the_file_and_the_fix(tmp_path: Path, mount: Mount) -> None:
    disk = mount(tmp_path / "disk")
    (disk / "workers").mkdir()
    (disk / "queue").mkdir()
    _, record = heartbeat.register(disk / "workers", jobs=1, heartbeat=2.0)
    (disk / "status.json").write_bytes(b"{}\n")
    _remount_read_only(disk)
    ref = JobRef("some.task", "0" * 64)
    attempts: list[tuple[Path, Callable[[], object]]] = [
        (disk / "status.json", lambda: _atomic.write_json(disk / "status.json", {"state": "ready"})),
        (disk / "new.json", lambda: _atomic.create_bytes(disk / "new.json", b"{}\n")),
        (disk / "history.jsonl", lambda: Journal(disk / "history.jsonl").append({"n": 1})),
        (record, lambda: heartbeat.beat(record)),
        (disk / "queue" / ref.entry_name, lambda: queue.add(disk / "queue", ref)),
    ]
    for path, attempt in attempts:
        with pytest.raises(WorkspaceError) as raised:
            attempt()
        assert raised.value.errno == errno.EROFS, path
        assert str(raised.value) == (
            f"{path}: cannot be written (Read-only file system); "
            "remount that file system read-write (or check its export/mount permissions)"
        )
    assert (disk / "status.json").read_bytes() == b"{}\n" and not _temp_files(disk)


def test_an_atomic_write_on_a_full_disk_leaves_the_old_file_and_no_temporary_one(tmp_path: Path, mount: Mount) -> None:
    disk = mount(tmp_path / "disk")
    target = disk / "status.json"
    _atomic.write_json(target, {"state": "ready"})
    fill_disk(disk / "filler")
    with pytest.raises(WorkspaceError) as raised:
        _atomic.write_json(target, {"state": "running", "pad": "x" * 8192})
    assert raised.value.errno == errno.ENOSPC and raised.value.path == target
    assert "free space on that file system" in str(raised.value)
    assert orjson.loads(target.read_bytes()) == {"state": "ready"} and not _temp_files(disk)


# -- a worker on a disk that fills up ----------------------------------------------------------------


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _log(processes: Processes, worker: subprocess.Popen[bytes]) -> str:
    number = processes.started.index(worker)
    return (processes.tmp_path / f"worker-{number}.log").read_text(errors="replace")


def test_a_worker_that_cannot_write_one_jobs_files_names_them_and_serves_the_others(
    ws: Path, mount: Mount, processes: Processes
) -> None:
    """The disk of one job is full as a worker finds it abandoned (status ``running``, lock free):
    putting it back to ``ready`` cannot be recorded. The worker says which file and what to do,
    and goes on: it runs the other job, and the full one once there is room again."""
    with experiment(ws, "full", wait=False, workers=0):
        stale, other = Add.C(x=1).submit(), Add.C(x=2).submit()
    stale_job, other_job = job_of(ws, stale), job_of(ws, other)
    with stale_job.lock():
        status.transition(stale_job.xpm_dir, State.RUNNING, pid=_dead_pid(), host=socket.gethostname())
    # That job's folder moves onto a small disk of its own, which then fills up.
    aside = stale_job.path.with_name(stale_job.path.name + ".aside")
    stale_job.path.rename(aside)
    mount(stale_job.path)
    shutil.copytree(aside, stale_job.path, dirs_exist_ok=True)
    shutil.rmtree(aside)
    filler = stale_job.path / ".filler"
    fill_disk(filler)

    worker = processes.worker(ws, rescan=0.3)
    history = stale_job.xpm_dir / status.HISTORY_FILE
    wait_until(
        lambda: worker.poll() is not None or other_job.marker() is State.DONE,
        what="the other job to be done",
    )
    wait_until(lambda: worker.poll() is not None or str(history) in _log(processes, worker), what="the report")
    log = _log(processes, worker)
    assert worker.poll() is None, f"the worker died:\n{log}"
    assert f"{history}: cannot be written (No space left on device); free space on that file system" in log, log
    assert log.count(str(history)) == 1, log  # said once, though tried at every rescan
    assert "[Errno" not in log and "Traceback" not in log, log
    # Nothing half-written: the status is as it was, no history line is torn, no temporary file.
    current = status.read(stale_job.xpm_dir)
    assert current is not None and current.state is State.RUNNING
    written = history.read_bytes() if history.exists() else b""
    assert written == b"" or written.endswith(b"\n"), written
    assert not _temp_files(stale_job.path)

    filler.unlink()  # room again: the next rescan puts the job back to ready and runs it
    wait_until(lambda: stale_job.marker() is State.DONE, what="the job to run once there is room")
    assert [record["state"] for _, record in read(history)] == ["running"]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0


@pytest.mark.parametrize("refusal", ["full", "read-only"])
def test_a_worker_that_cannot_write_its_own_registration_exits_with_the_file_and_the_fix(
    tmp_path: Path, mount: Mount, processes: Processes, refusal: str
) -> None:
    disk = mount(tmp_path / "disk")
    ws = disk / "ws"
    with experiment(ws, "setup", wait=False, workers=0):
        pass
    worker = processes.worker(ws, rescan=0.3)
    registered = wait_until(lambda: list((ws / "workers").glob("*.json")), what="the worker to register")
    (record,) = registered  # type: ignore[misc]
    if refusal == "full":
        fill_disk(disk / "filler")
        # Gone, as when `xpmfs check --fix` takes a worker for dead: it registers again. (Renamed,
        # not removed: that would free the page the new registration needs.)
        record.rename(disk / "gone")
        problem = "No space left on device); free space on that file system"
    else:
        _remount_read_only(disk)  # its next heartbeat cannot be written
        problem = "Read-only file system); remount that file system read-write"
    assert worker.wait(timeout=30) == 1
    log = _log(processes, worker)
    assert f"Error: {record}: cannot be written ({problem}" in log, log
    assert "[Errno" not in log and "Traceback" not in log, log
