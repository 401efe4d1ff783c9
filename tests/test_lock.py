"""The lock contract (spec/locks.md), run against both lock modes with real processes.

Holders are separate interpreters (``sys.executable -c``) that take the lock, say so on stdout, and
keep it until told to release (a line on stdin) or killed with SIGKILL. A holder on "another host"
runs under ``unshare --uts`` with its own hostname, which is what filelock records in its marker.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock, SoftFileLease, Timeout
from filelock._marker import OwnerRecord, encode_marker

from xpmfs.errors import FormatError, WorkspaceError
from xpmfs.lock import (
    Holder,
    JobLock,
    LockMode,
    LockStatus,
    break_stale,
    inspect,
)

ROOT = Path(__file__).resolve().parent.parent
MODES = [LockMode.LOCAL, LockMode.SHARED]
SHORT_LEASE = 1.5  # seconds; heartbeats every 0.5 s

HOLDER = """
import sys
from filelock._identity import host_name
from xpmfs.lock import JobLock
lock = JobLock(sys.argv[1], sys.argv[2], lease_duration=float(sys.argv[3]))
if not lock.try_acquire():
    print("busy", flush=True)
    sys.exit(3)
print("held", host_name(), flush=True)
sys.stdin.readline()
lock.release()
print("released", flush=True)
"""


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll ``condition`` until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.01)
    return value


def keeps_failing(attempt: Callable[[], bool], seconds: float) -> None:
    """Assert that ``attempt`` returns False on every try for ``seconds`` (a bounded proof of absence)."""
    deadline = time.monotonic() + seconds
    tries = 0
    while time.monotonic() < deadline:
        assert not attempt(), f"succeeded after {tries} tries, {deadline - time.monotonic():.2f}s before the end"
        tries += 1
        time.sleep(0.05)
    assert tries > 5


class Holders:
    """Holder processes of one test, killed (whole session) at its end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self,
        path: Path,
        mode: LockMode,
        lease: float = 30.0,
        *,
        host: str | None = None,
    ) -> tuple[subprocess.Popen[str], str]:
        """Start a holder and wait until it holds the lock; return it and the host name it recorded."""
        argv = [sys.executable, "-c", HOLDER, str(path), mode.value, repr(lease)]
        if host is not None:
            argv = [
                "unshare",
                "--uts",
                "sh",
                "-c",
                'hostname "$0" && exec "$@"',
                host,
                *argv,
            ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.started.append(process)
        assert process.stdout is not None
        line = process.stdout.readline().split()
        assert line[:1] == ["held"], f"holder did not take the lock: {line}"
        return process, line[1]

    def release(self, process: subprocess.Popen[str]) -> None:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write("release\n")
        process.stdin.flush()
        assert process.stdout.readline().strip() == "released"
        assert process.wait(timeout=10) == 0

    @staticmethod
    def kill(process: subprocess.Popen[str]) -> None:
        # Reaped before returning: a zombie's pid still answers kill(pid, 0), so it would look alive.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def reap(self) -> None:
        for process in self.started:
            if process.poll() is None:
                self.kill(process)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


@pytest.fixture
def holders() -> Iterator[Holders]:
    manager = Holders()
    try:
        yield manager
    finally:
        manager.reap()


def can_unshare_uts() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--uts", "hostname", "probe-host"], capture_output=True, check=False)
    return probe.returncode == 0


def foreign_marker(path: Path, lease: float, host: str = "another-node") -> None:
    """Write the marker a lease holder on another host would write, with filelock's own encoder."""
    record = OwnerRecord(
        pid=4242,
        hostname=host,
        mode="lease",
        token="ab" * 16,
        lease_duration=lease,
        start=None,
    )
    path.write_bytes(encode_marker(record))


# -- exclusion -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_exclusive_between_processes(tmp_path: Path, holders: Holders, mode: LockMode) -> None:
    path = tmp_path / "lock"
    child, host = holders.start(path, mode)
    lock = JobLock(path, mode)
    assert not lock.try_acquire()
    assert not lock.held
    started = time.monotonic()
    assert not lock.acquire(timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert lock.probe()
    holder = lock.holder()
    assert holder is not None and holder == Holder(host=host, pid=child.pid, since=holder.since)
    if mode is LockMode.LOCAL:  # the local record says since when; filelock's marker cannot
        assert holder.since is not None and abs(time.time() - holder.since) < 30
    assert inspect(path, mode).status is LockStatus.HELD
    assert not break_stale(path, mode)
    # A second process must also be refused while the first holds it.
    other = subprocess.run(
        [sys.executable, "-c", HOLDER, str(path), mode.value, "30.0"],
        input="",
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert (other.returncode, other.stdout.strip()) == (3, "busy")
    holders.release(child)
    assert lock.acquire(timeout=10)
    assert lock.held and lock.probe()
    lock.release()
    assert not lock.probe() and lock.holder() is None


@pytest.mark.parametrize("mode", MODES)
def test_two_objects_in_one_process_exclude_each_other(tmp_path: Path, mode: LockMode) -> None:
    path = tmp_path / "lock"
    first, second = JobLock(path, mode), JobLock(path, mode)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert not first.try_acquire()  # not reentrant, even for the holder itself
    assert first.held and not second.held
    # Nor from another thread, on either object.
    results: list[bool] = []
    thread = threading.Thread(target=lambda: results.extend([first.try_acquire(), second.try_acquire()]))
    thread.start()
    thread.join()
    assert results == [False, False]
    # Released from another thread (a worker's reaper), it is really free.
    thread = threading.Thread(target=first.release)
    thread.start()
    thread.join()
    assert not first.held
    assert second.try_acquire()
    assert not first.try_acquire()
    second.release()


def test_local_lock_is_filelocks_own_lock(tmp_path: Path) -> None:
    # A local JobLock takes filelock's flock on a descriptor of its own: a filelock.FileLock on the
    # same file (another tool, or an older xpmfs) and a JobLock exclude each other both ways.
    path = tmp_path / "lock"
    theirs = FileLock(path, thread_local=False)
    with theirs.acquire(timeout=0):
        assert not JobLock(path, LockMode.LOCAL).try_acquire()
    ours = JobLock(path, LockMode.LOCAL)
    assert ours.try_acquire()
    with pytest.raises(Timeout):
        theirs.acquire(timeout=0)
    ours.release()
    with theirs.acquire(timeout=0):
        pass


def test_local_lock_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "lock"
    lock = JobLock(path, LockMode.LOCAL)
    assert lock.try_acquire() and lock.probe()
    lock.release()
    assert not lock.probe()


@pytest.mark.parametrize("mode", MODES)
def test_release_is_idempotent(tmp_path: Path, mode: LockMode) -> None:
    path = tmp_path / "lock"
    lock = JobLock(path, mode)
    lock.release()  # never held
    with lock:
        assert lock.held and lock.probe()
        with pytest.raises(RuntimeError, match="not reentrant"):
            lock.__enter__()
    lock.release()
    lock.release()
    assert not lock.held and not lock.probe()
    # In shared mode a free lock is no marker at all; in local mode the file stays, unlocked and blank.
    if mode is LockMode.SHARED:
        assert not path.exists()
    else:
        assert path.read_bytes() == b""
    assert lock.try_acquire()  # usable again
    lock.release()


# -- crashed and live holders --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_killed_holder_is_replaced_at_once(tmp_path: Path, holders: Holders, mode: LockMode) -> None:
    # Default 30 s lease: on its own host a dead owner is proven dead, so nobody waits for expiry.
    path = tmp_path / "lock"
    child, _ = holders.start(path, mode)
    holders.kill(child)
    expected = LockStatus.FREE if mode is LockMode.LOCAL else LockStatus.STALE
    state = inspect(path, mode)
    assert state.status is expected
    assert not JobLock(path, mode).probe()
    lock = JobLock(path, mode)
    assert lock.try_acquire()  # the first attempt, no polling
    holder = lock.holder()
    assert holder is not None and holder.pid == os.getpid()
    lock.release()


@pytest.mark.parametrize("mode", MODES)
def test_live_holder_is_never_evicted(tmp_path: Path, holders: Holders, mode: LockMode) -> None:
    path = tmp_path / "lock"
    holders.start(path, mode, SHORT_LEASE)

    def attempt() -> bool:
        # As a worker does: a fresh JobLock per rescan, and break_stale as `xpmfs check --fix` does.
        if break_stale(path, mode, lease_duration=SHORT_LEASE):
            return True
        lock = JobLock(path, mode, lease_duration=SHORT_LEASE)
        if lock.try_acquire():
            lock.release()
            return True
        return inspect(path, mode, lease_duration=SHORT_LEASE).status is not LockStatus.HELD

    keeps_failing(attempt, 2.2 * SHORT_LEASE)


def test_remote_holder_is_taken_over_only_after_its_lease_expires(tmp_path: Path, holders: Holders) -> None:
    path = tmp_path / "lock"
    mode = LockMode.SHARED
    if can_unshare_uts():
        child, host = holders.start(path, mode, SHORT_LEASE, host="other-node")
        assert host == "other-node"

        def die() -> None:
            holders.kill(child)
    else:  # a marker naming another host, refreshed by a thread: a live remote heartbeat
        foreign_marker(path, SHORT_LEASE, host="other-node")
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(SHORT_LEASE / 3):
                os.utime(path)

        beat = threading.Thread(target=heartbeat)
        beat.start()

        def die() -> None:
            stop.set()
            beat.join()

    # Alive on another host: never proven dead, and its heartbeat keeps the lease fresh.
    def attempt() -> bool:
        lock = JobLock(path, mode, lease_duration=SHORT_LEASE)
        return lock.try_acquire() or inspect(path, mode, lease_duration=SHORT_LEASE).status is not LockStatus.REMOTE

    keeps_failing(attempt, 2.2 * SHORT_LEASE)
    die()
    last_beat = path.stat().st_mtime  # the heartbeat has stopped: this is the marker's final mtime
    state = inspect(path, mode, lease_duration=SHORT_LEASE)
    assert state.status is LockStatus.REMOTE and state.holder is not None and state.holder.host == "other-node"
    # Fresh objects on each try, as a worker's rescans make them: expiry observations are per process.
    taken: list[JobLock] = []

    def take() -> bool:
        contender = JobLock(path, mode, lease_duration=SHORT_LEASE)
        if contender.try_acquire():
            taken.append(contender)
            return True
        return False

    wait_for(take, 5 * SHORT_LEASE, "the expired lease to be taken over")
    silent_for = time.time() - last_beat
    assert silent_for >= SHORT_LEASE, f"taken over after only {silent_for:.2f}s of silence"
    assert silent_for <= SHORT_LEASE + 2.0
    holder = taken[0].holder()
    assert holder is not None and holder.pid == os.getpid() and holder.host != "other-node"
    taken[0].release()


def test_break_stale_evicts_only_a_lease_seen_expired(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    foreign_marker(path, SHORT_LEASE)
    first_seen = time.monotonic()
    assert inspect(path, "shared", lease_duration=SHORT_LEASE).status is LockStatus.REMOTE
    wait_for(lambda: break_stale(path, "shared", lease_duration=SHORT_LEASE), 5 * SHORT_LEASE)
    assert time.monotonic() - first_seen >= SHORT_LEASE
    assert not path.exists()
    assert inspect(path, "shared", lease_duration=SHORT_LEASE).status is LockStatus.FREE
    # The kernel is the only judge of a local lock: nothing to break, ever.
    local = JobLock(tmp_path / "local", "local")
    assert local.try_acquire()
    assert not break_stale(local.path, "local")
    assert local.probe()
    local.release()


# -- leases --------------------------------------------------------------------------------------


def test_on_lost_fires_when_the_marker_is_deleted(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    reasons: list[str] = []
    lost = threading.Event()
    lock = JobLock(
        path,
        "shared",
        lease_duration=SHORT_LEASE,
        on_lost=lambda reason: (reasons.append(reason), lost.set()),
    )
    assert lock.try_acquire()
    path.unlink()
    assert lost.wait(3 * SHORT_LEASE), "on_lost was not called"
    assert reasons == ["marker-missing"]
    assert not lock.held and lock.lost == "marker-missing"
    lock.release()
    lock.release()
    assert lock.lost is None
    assert lock.try_acquire() and lock.held  # a fresh hold after a loss
    lock.release()


def test_a_lease_of_another_duration_is_a_workspace_error(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    holder = JobLock(path, "shared", lease_duration=SHORT_LEASE)
    assert holder.try_acquire()
    contender = JobLock(path, "shared", lease_duration=2.0)
    with pytest.raises(FormatError) as caught:
        contender.try_acquire()
    assert isinstance(caught.value, WorkspaceError)
    assert caught.value.path == path and "lease_duration" in str(caught.value)
    assert "must use the lease_duration" in caught.value.fix
    with pytest.raises(FormatError):
        contender.probe()
    holder.release()


# -- file systems without rename exchange (NFS, FUSE) ---------------------------------------------


@pytest.fixture
def fuse_dir(tmp_path: Path) -> Iterator[Path]:
    """A bindfs (FUSE) view: like NFS, it refuses renameat2(RENAME_EXCHANGE)."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed: cannot make a FUSE view")
    source, mount = tmp_path / "source", tmp_path / "view"
    source.mkdir()
    mount.mkdir()
    result = subprocess.run(
        ["bindfs", "--no-allow-other", str(source), str(mount)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"bindfs cannot mount here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["fusermount", "-u", "-z", str(mount)], check=False)


def test_takeover_where_the_file_system_refuses_rename_exchange(fuse_dir: Path, holders: Holders) -> None:
    dead = fuse_dir / "dead"
    child, _ = holders.start(dead, LockMode.SHARED)
    holders.kill(child)
    # filelock alone never takes over here, not even a dead owner's marker...
    with pytest.raises(Timeout):
        SoftFileLease(str(dead)).acquire(blocking=False)
    assert inspect(dead, "shared").status is LockStatus.STALE
    # ...so JobLock evicts what filelock judged breakable, and takes it on the first attempt.
    lock = JobLock(dead, "shared")
    assert lock.try_acquire()
    assert [p.name for p in fuse_dir.iterdir()] == ["dead"]  # no .break.* debris
    lock.release()

    expired = fuse_dir / "expired"
    foreign_marker(expired, SHORT_LEASE)
    first_seen = time.monotonic()
    assert not JobLock(expired, "shared", lease_duration=SHORT_LEASE).try_acquire()
    wait_for(
        lambda: break_stale(expired, "shared", lease_duration=SHORT_LEASE),
        5 * SHORT_LEASE,
    )
    assert time.monotonic() - first_seen >= SHORT_LEASE
    assert not expired.exists()

    # A live holder on such a file system is still never evicted.
    live = fuse_dir / "live"
    holders.start(live, LockMode.SHARED, SHORT_LEASE)
    keeps_failing(
        lambda: JobLock(live, "shared", lease_duration=SHORT_LEASE).try_acquire(),
        2.2 * SHORT_LEASE,
    )


def test_eviction_never_removes_a_marker_other_than_the_one_judged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fallback break (file systems without rename exchange) races with peers; it must never
    # leave a marker other than the one it judged removed. Both races, made deterministic:
    from xpmfs import lock as lock_module

    path = tmp_path / "lock"
    foreign_marker(path, SHORT_LEASE)
    judged = path.stat()
    # 1. The holder refreshed after the verdict: its mtime moved, so it is alive after all.
    os.utime(path, ns=(judged.st_atime_ns, judged.st_mtime_ns + 1_000_000))
    assert not lock_module._evict(path, judged)
    assert path.exists()

    # 2. A peer took the lock over between our checks and our rename: we move its live marker
    #    aside, see it is not the one judged, and put it back where it was.
    judged = path.stat()
    real_rename = os.rename

    def peer_takes_over_first(source: str | Path, target: str | Path) -> None:
        monkeypatch.setattr(lock_module.os, "rename", real_rename)
        os.unlink(path)
        foreign_marker(path, SHORT_LEASE, host="peer-node")
        real_rename(source, target)

    monkeypatch.setattr(lock_module.os, "rename", peer_takes_over_first)
    assert not lock_module._evict(path, judged)
    state = inspect(path, "shared", lease_duration=SHORT_LEASE)
    assert state.holder is not None and state.holder.host == "peer-node"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lock"]  # no debris left aside
