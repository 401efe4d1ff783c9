"""One job at a time writes a partial folder (spec/workspace.md, "partials/...").

A task class that declares partials (``checkpoints = partial(exclude_groups=[...])``) shares their
folders ``WS/partials/<type id>/<name>/<partial id>`` with the tasks of the same partial
identifier; experimaestro 2.7 lets one job at a time use each, and so does xpmfs: the runner holds
:func:`hold` around the task (its init tasks included). The lock is a :class:`~xpmfs.lock.JobLock`
in the workspace's lock mode, on ``<partial>/.experimaestro/locks/xpmfs.lock``: beside
experimaestro's own files in that folder, which it does not share (see spec/workspace.md).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .partial import Partial, partial_path, workspace_of_job

if TYPE_CHECKING:
    from .lock import JobLock
    from .workspace import Workspace

LOCKS_DIR = Path(".experimaestro") / "locks"
"""In the partial folder: experimaestro's lock folder, where xpmfs's lock file lives too."""

LOCK_FILE = "xpmfs.lock"

WAIT_REPORT = 30.0  # seconds between two "still waiting" lines on the job's stderr


def declared_partials(task: Any) -> dict[str, Partial]:
    """The partials the task's class declares itself (experimaestro's ``_partials``: not inherited)."""
    cls = task.__xpm__.cls_info.cls
    return {name: value for name, value in vars(cls).items() if isinstance(value, Partial)}


def partial_folders(task: Any, jobpath: Path) -> list[Path]:
    """The partial folders the job in ``jobpath`` locks, sorted (a fixed order: no deadlock)."""
    declared = declared_partials(task)
    if not declared:
        return []  # most tasks: no path computed (pathlib costs a forked job page copies)
    info = task.__xpm__
    workspace = workspace_of_job(jobpath)
    return sorted(
        partial_path(workspace, info.cls_info.typeid, name, info.partial_identifier(spec).hex())
        for name, spec in declared.items()
    )


def lock_path(folder: Path) -> Path:
    return folder / LOCKS_DIR / LOCK_FILE


@contextlib.contextmanager
def hold(task: Any, jobpath: Path, workspace: Workspace) -> Iterator[list[Path]]:
    """Hold the lock of each partial folder of ``task`` while in the block, waiting for each in turn.

    A wait says once, then every :data:`WAIT_REPORT` seconds, on stderr which folder it waits for and
    who holds it. The locks are released on the way out, whatever happens.
    """
    folders = partial_folders(task, jobpath)
    if not folders:
        yield []
        return
    # Here, not at the top: a job without partials never loads filelock, whose fork hooks would
    # cost every job forked from the warm runner about 0.5 ms.
    from .lock import JobLock

    held: list[JobLock] = []
    try:
        for folder in folders:
            path = lock_path(folder)
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = JobLock(path, workspace.lock_mode, lease_duration=workspace.lease_duration)
            _wait_for(lock, folder)
            held.append(lock)
        yield folders
    finally:
        for lock in reversed(held):
            lock.release()


def _wait_for(lock: JobLock, folder: Path) -> None:
    reported = -WAIT_REPORT
    started = time.monotonic()
    while not lock.acquire(1.0):
        waited = time.monotonic() - started
        if waited - reported >= WAIT_REPORT:
            holder = lock.holder()
            who = f" (held by pid {holder.pid} on {holder.host})" if holder is not None else ""
            print(f"xpmfs: waiting for partial folder {folder}{who}", file=sys.stderr, flush=True)
            reported = waited


__all__ = ["LOCKS_DIR", "LOCK_FILE", "declared_partials", "hold", "lock_path", "partial_folders"]
