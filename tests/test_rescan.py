"""Workers find jobs by rescanning when inotify is blind (another NFS client's writes).

The stand-in for "another host wrote this": a bindfs (FUSE) view of the workspace. inotify on the
FUSE mount does not see changes made through the underlying path, and OS locks taken through one
path do not exclude the other, so the workspace uses the ``shared`` lock mode, as on NFS.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from conftest import Processes, wait_until
from sample_tasks import Add
from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from xpmfs import experiment
from xpmfs.job import Job
from xpmfs.workspace import Workspace


@pytest.fixture
def blind_view(ws: Path, tmp_path: Path) -> Iterator[Path]:
    """A FUSE view of the workspace ``ws`` that inotify cannot see through."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed (tools/test installs it when run as root): cannot make a blind view")
    Workspace.open(ws, create=True, lock_mode="shared")
    mount = tmp_path / "view"
    mount.mkdir()
    result = subprocess.run(["bindfs", "--no-allow-other", str(ws), str(mount)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"bindfs cannot mount here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["fusermount", "-u", "-z", str(mount)], check=False)


def test_the_view_is_really_blind(ws: Path, blind_view: Path) -> None:
    seen = threading.Event()

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: object) -> None:
            seen.set()

    observer = Observer()
    observer.schedule(Handler(), str(blind_view / "queue"))
    observer.start()
    try:
        (ws / "queue" / "probe~x").write_text("")
        # Proving an absence needs a bounded wait; inotify reports local changes within ms.
        assert not seen.wait(1.0)
        (blind_view / "queue" / "probe~y").write_text("")
        assert seen.wait(5.0)  # the same observer does see writes made through the view
    finally:
        observer.stop()
        observer.join()


def test_worker_behind_a_blind_view_finds_jobs_by_rescanning(ws: Path, blind_view: Path, processes: Processes) -> None:
    rescan = 1.0
    processes.worker(blind_view, rescan=rescan)
    with experiment(ws, "blind", wait=False, workers=0):
        output = Add.C(x=5).submit()
    job = Job(Workspace.open(ws), output.__xpm__.job.ref)
    wait_until(job.marker, timeout=30, what="the job to be found by a rescan")
    status = job.status()
    spec = orjson.loads(job.spec_path.read_bytes())
    assert status is not None and status.claimed is not None
    latency = status.claimed - spec["submitted"]
    print(f"claim latency through rescans (every {rescan}s): {latency * 1000:.0f} ms")
    assert latency < rescan + 2.0
    assert (job.path / "result.txt").read_text() == "5"
