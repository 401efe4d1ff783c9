"""The queue: one empty file ``WS/queue/<typeid>~<jobid>`` per submitted, unfinished job.

Workers watch this folder (inotify through watchdog) and list it on every rescan. An entry is
created last when a job is submitted and removed last when it ends (after its terminal marker
exists), so a crash between steps leaves an entry whose job a rescan finishes or cleans.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SEPARATOR = "~"


@dataclass(frozen=True, order=True)
class JobRef:
    """A job's address in the workspace: its type id and identifier."""

    typeid: str
    jobid: str

    @property
    def entry_name(self) -> str:
        return f"{self.typeid}{SEPARATOR}{self.jobid}"

    @property
    def relpath(self) -> str:
        """``<typeid>/<jobid>``, the job's folder relative to ``WS/jobs`` (how specs name dependencies)."""
        return f"{self.typeid}/{self.jobid}"

    @classmethod
    def from_relpath(cls, relpath: str) -> JobRef:
        typeid, _, jobid = relpath.partition("/")
        return cls(typeid, jobid)

    @classmethod
    def from_entry_name(cls, name: str) -> JobRef | None:
        """The job an entry names, or ``None`` for a name that is not an entry (temp files...)."""
        if name.startswith("."):
            return None
        typeid, sep, jobid = name.rpartition(SEPARATOR)
        if not sep or not typeid or not jobid:
            return None
        return cls(typeid, jobid)

    def __str__(self) -> str:
        return self.relpath


def add(queue_dir: Path, ref: JobRef) -> None:
    """Create the entry for ``ref`` (an empty file: creating it is atomic); no-op if it exists."""
    try:
        fd = os.open(queue_dir / ref.entry_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    os.close(fd)


def remove(queue_dir: Path, ref: JobRef) -> None:
    """Remove the entry for ``ref``; no-op if it is gone already."""
    try:
        os.unlink(queue_dir / ref.entry_name)
    except FileNotFoundError:
        pass


def names(queue_dir: Path) -> set[str]:
    """The names of all entries (temporary files included): one listing, no ``stat``."""
    try:
        return set(os.listdir(queue_dir))
    except FileNotFoundError:
        return set()


def contains(queue_dir: Path, ref: JobRef) -> bool:
    return (queue_dir / ref.entry_name).exists()


def scan(queue_dir: Path, mtimes: dict[JobRef, float] | None = None) -> Iterator[tuple[JobRef, float]]:
    """Every entry with its modification time (submission order), in no particular order.

    ``mtimes`` caches the times across scans (an entry is never modified, only created and
    removed), which saves a ``stat`` per entry; entries gone since are dropped from it once the
    scan is read to its end.
    """
    seen: set[JobRef] = set()
    with os.scandir(queue_dir) as entries:
        for entry in entries:
            ref = JobRef.from_entry_name(entry.name)
            if ref is None:
                continue
            mtime = mtimes.get(ref) if mtimes is not None else None
            if mtime is None:
                try:
                    mtime = entry.stat().st_mtime
                except FileNotFoundError:  # removed while we listed
                    continue
                if mtimes is not None:
                    mtimes[ref] = mtime
            seen.add(ref)
            yield ref, mtime
    if mtimes is not None:
        for gone in mtimes.keys() - seen:
            del mtimes[gone]
