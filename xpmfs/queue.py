"""The queue: one empty file ``WS/queue/<typeid>~<jobid>`` per submitted, unfinished job.

Workers watch this folder (inotify through watchdog) and list it on every rescan. An entry is
created last when a job is submitted and removed last when it ends (after its terminal marker
exists), so a crash between steps leaves an entry whose job a rescan finishes or cleans.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterable, Iterator, KeysView
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import NamedTuple

from . import _atomic

SEPARATOR = "~"


class JobRef(NamedTuple):
    """A job's address in the workspace: its type id and identifier.

    A named tuple: workers hash and compare these on every pass, and a tuple does that in C.
    """

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
    path = queue_dir / ref.entry_name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    except OSError as error:  # a full, read-only or failing file system: name the file and the fix
        raise _atomic.write_error(path, error) from error
    os.close(fd)


def remove(queue_dir: Path, ref: JobRef) -> None:
    """Remove the entry for ``ref``; no-op if it is gone already."""
    path = queue_dir / ref.entry_name
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        raise _atomic.write_error(path, error) from error


def names_in(queue_dir: Path) -> set[str]:
    """The names in the queue folder (temporary files included): one listing, no ``stat``."""
    try:
        return set(os.listdir(queue_dir))
    except FileNotFoundError:
        return set()


def contains(queue_dir: Path, ref: JobRef) -> bool:
    return (queue_dir / ref.entry_name).exists()


def refs(queue_dir: Path) -> Iterator[JobRef]:
    """Every job that has an entry, in no particular order (one listing, no ``stat``)."""
    for name in names_in(queue_dir):
        ref = JobRef.from_entry_name(name)
        if ref is not None:
            yield ref


class Entries:
    """The entries of a queue folder, oldest first, kept up to date with one listing per refresh.

    A worker looks at the queue on every wake-up; re-reading and re-sorting a thousand entries
    each time cost more than running the jobs. Entries are never modified, only created and
    removed, so each new name costs one ``stat`` (its time, the submission order) once.
    """

    def __init__(self, queue_dir: Path) -> None:
        self._dir = queue_dir
        self._refs: dict[str, JobRef] = {}  # entry name -> job
        self._mtimes: dict[str, float] = {}  # entry name -> its time (the submission order)
        # (mtime, entry name), sorted. Removed names stay until they are half of it (iterations
        # skip them): rebuilding a thousand-item list on every job's end cost more than the job.
        self._order: list[tuple[float, str]] = []
        self._removed: set[str] = set()  # names in _order that are gone
        self._ignored: set[str] = set()  # names that are not entries (temporary files...)
        self._unsettled: set[str] = set()  # entries the caller has not settled (see settle())

    def refresh(self, changed: Iterable[str] | None = None) -> None:
        """List the folder again; or, given the names ``changed`` since the last refresh (from
        inotify), look at those alone: one ``stat`` each instead of a listing of the whole queue."""
        if changed is None:
            names = names_in(self._dir)
            gone = self._refs.keys() - names
            self._ignored &= names
            new = names - self._refs.keys() - self._ignored
        else:
            reported = set(changed)
            known = reported & self._refs.keys()
            gone = {name for name in known if not os.path.exists(os.path.join(self._dir, name))}
            new = reported - known - self._ignored  # the stat below skips those gone again
        for name in gone:
            del self._refs[name]
            del self._mtimes[name]
        self._removed |= gone
        self._unsettled -= gone
        if new & self._removed or len(self._removed) > len(self._order) // 2:
            # A name that comes back must not be listed twice (at its old time, and its new one).
            self._order = [item for item in self._order if item[1] in self._refs]
            self._removed.clear()
        added = []
        for name in new:
            ref = JobRef.from_entry_name(name)
            if ref is None:
                self._ignored.add(name)
                continue
            try:
                mtime = os.stat(os.path.join(self._dir, name)).st_mtime
            except FileNotFoundError:  # removed since the listing
                continue
            self._refs[name] = ref
            self._mtimes[name] = mtime
            self._unsettled.add(name)
            added.append((mtime, name))
        if len(added) > 8:
            self._order.extend(added)
            self._order.sort()
        else:
            for item in added:
                bisect.insort(self._order, item)

    def __iter__(self) -> Iterator[tuple[str, JobRef]]:
        """``(entry name, job)``, oldest entry first, as of the last :meth:`refresh`."""
        refs = self._refs
        return ((name, refs[name]) for _mtime, name in self._order if name in refs)

    def settle(self, name: str) -> None:
        """Leave entry ``name`` out of :meth:`unsettled` from now on (until it is removed and comes back)."""
        self._unsettled.discard(name)

    def unsettled(self, excluding: AbstractSet[str] = frozenset()) -> list[tuple[str, JobRef]]:
        """Like iterating, but only the entries not settled (nor named in ``excluding``).

        A busy worker asks this on every pass, and settles each entry it runs itself once it has
        looked at it: the set kept here holds the few left, where a difference with every entry
        on every pass made each job cost in proportion to the length of the queue.
        """
        rest = self._unsettled - excluding if excluding else self._unsettled
        mtimes, refs = self._mtimes, self._refs
        return [(name, refs[name]) for name in sorted(rest, key=lambda name: (mtimes[name], name))]

    def __len__(self) -> int:
        return len(self._refs)

    def names(self) -> KeysView[str]:
        return self._refs.keys()
