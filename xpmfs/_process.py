"""Small process helpers shared by workers and runners (Linux-specific where noted)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import signal
import threading
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(signal.SIGKILL)


def die_with_parent(parent_pid: int) -> None:
    """Make the kernel SIGKILL this process when ``parent_pid`` (our parent) dies.

    A worker holds the lock of every job it runs; if the worker dies, the lock is free and another
    worker may start the job again, so the first run must not outlive it. ``prctl`` arms this
    atomically, but the parent may have died before we armed it: check afterwards.
    """
    prctl = _prctl()
    if prctl is not None:  # else not Linux: the check below only
        prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(128 + signal.SIGKILL)


def when_closed(fd: int, then: Callable[[], None]) -> None:
    """Call ``then`` (from a thread of its own) once the pipe ``fd`` reads its end of file: every
    write end is closed, so the processes that held them are gone (nobody writes on it)."""

    def follow() -> None:
        try:
            while os.read(fd, 512):
                pass
        except OSError:
            pass  # a bad descriptor is as good as a closed one
        then()

    threading.Thread(target=follow, name="xpmfs-lifeline", daemon=True).start()


def kill_job_group(pgid: int, job_dir: str) -> int:
    """SIGKILL what is left of a crashed run: processes of group ``pgid`` working for ``job_dir``.

    A runner dies with its worker, but the processes its task started do not. They keep the
    runner's process group (its pid) and the ``XPMFS_JOB_DIR`` the runner exported, which together
    tell them apart from anything that reused the numbers. Returns how many were killed.
    """
    import psutil

    doomed = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and process.environ().get("XPMFS_JOB_DIR") == job_dir:
                process.kill()
                doomed.append(process)
        except (psutil.Error, OSError):
            continue
    psutil.wait_procs(doomed, timeout=5)
    return len(doomed)


@functools.cache
def _libc() -> ctypes.CDLL:
    # The process's own symbols include libc's: no find_library(), which runs ldconfig (~10 ms,
    # paid by every job otherwise). Cached, so a zygote's forks inherit it loaded.
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, or ``None`` where there is none.

    Resolved once: ctypes makes the function object on first access. The warm runner resolves it
    before it forks, which spares each forked job 46 page copies and 100 µs (xpmfs.zygote).
    """
    try:
        return _libc().prctl
    except (OSError, AttributeError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # PID 1 may reap late in containers: a zombie is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
        return fields[0] != b"Z"
    except (OSError, IndexError):
        return True
