"""Worker registrations: ``WS/workers/<host>-<pid>.json``, one per live worker.

The file says who the worker is; its modification time is the heartbeat, refreshed with
``os.utime`` (no rewrite) every ``heartbeat`` seconds. A worker removes its file when it stops;
one left by a crashed worker goes stale and is ignored (and removed by ``xpmfs check --fix``).
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

from . import _atomic
from ._process import pid_alive

log = logging.getLogger("xpmfs.worker")

SUFFIX = ".json"
STALE_AFTER_BEATS = 3  # a worker is presumed dead after missing this many heartbeats


@dataclass(frozen=True)
class WorkerRecord:
    host: str
    pid: int
    started: float
    jobs: int
    heartbeat: float  # seconds between beats
    name: str

    @property
    def filename(self) -> str:
        return f"{self.host}-{self.pid}{SUFFIX}"


def register(workers_dir: Path, *, jobs: int, heartbeat: float) -> tuple[WorkerRecord, Path]:
    host = socket.gethostname()
    pid = os.getpid()
    record = WorkerRecord(host, pid, time.time(), jobs, heartbeat, f"{host}-{pid}")
    path = workers_dir / record.filename
    _atomic.write_json(path, asdict(record))
    return record, path


def unregister(path: Path) -> None:
    """Remove this worker's own registration ``path`` as it stops.

    A failure (read-only, failing) only leaves it to go stale (`xpmfs check --fix` removes it):
    the error that ends the worker, if one does, is what to report, not this one.
    """
    try:
        remove_registration(path)
    except OSError as error:
        log.warning("cannot remove %s (%s)", path, error.strerror)


def beat(path: Path) -> None:
    """Refresh the heartbeat of the registration ``path`` (``FileNotFoundError`` if it is gone)."""
    try:
        os.utime(path)
    except OSError as error:  # a read-only or failing file system: name the file and the fix
        raise _atomic.write_error(path, error) from error


@dataclass(frozen=True)
class WorkerInfo:
    record: WorkerRecord
    path: Path
    age: float  # seconds since the last heartbeat
    alive: bool


def scan(workers_dir: Path) -> list[WorkerInfo]:
    """Every registered worker, with whether it looks alive."""
    infos = []
    now = time.time()
    host = socket.gethostname()
    try:
        entries = list(os.scandir(workers_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.name.endswith(SUFFIX) or entry.name.startswith("."):
            continue
        try:
            record = WorkerRecord(**orjson.loads(Path(entry.path).read_bytes()))
            age = now - entry.stat().st_mtime
        except (OSError, ValueError, TypeError):
            continue
        alive = age < record.heartbeat * STALE_AFTER_BEATS + 1.0
        if alive and record.host == host:
            alive = pid_alive(record.pid)
        infos.append(WorkerInfo(record, Path(entry.path), age, alive))
    return infos


def start_command(workspace: Path) -> str:
    """The command that starts a worker on ``workspace``, quoted for a shell (for hints)."""
    return f"xpmfs worker {shlex.quote(str(workspace))}"


def any_alive(workers_dir: Path) -> bool:
    return any(info.alive for info in scan(workers_dir))


def remove_registration(path: Path) -> bool:
    """Remove a worker's registration file; ``False`` if it was gone already.

    Safe even if the worker was only paused: a worker that finds its file gone registers again.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
