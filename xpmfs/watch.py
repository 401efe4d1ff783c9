"""Wake up on file-system events, and rescan anyway (DESIGN invariant 5).

Workers, experiments and ``xpmfs top`` all wait the same way: watchdog watches a few folders and
sets a :class:`threading.Event`; the waiter also wakes every ``rescan`` seconds, because inotify
never reports what another NFS client (or a FUSE mount's backing path) changed.

On Linux, a watcher uses watchdog's inotify reader alone (``InotifyFD``, one thread that calls us
back for each event). Its ``Observer`` would pass every event through two more threads (an
emitter and a dispatcher) and build event objects we do not need: with a job's queue entry
created and removed, that cost each worker and each experiment about 0.2 ms of CPU per job.
Elsewhere (no inotify), the ``Observer`` does the same job.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from ._compat import InotifyConstants, InotifyFD  # None where there is no inotify (not Linux)

log = logging.getLogger("xpmfs.watch")

# What a folder of entries (the queue) changes by: names appear, go, or are renamed. Asking
# inotify for these alone spares every watcher the opens, writes and closes of each entry, and
# the opens and closes of every listing of the folder by any process.
_NAME_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]
if InotifyFD is not None:
    _in = InotifyConstants
    _NAMED = _in.IN_CREATE | _in.IN_DELETE | _in.IN_MOVED_FROM | _in.IN_MOVED_TO
    _NAME_MASK = _NAMED | _in.IN_DELETE_SELF | _in.IN_MOVE_SELF | _in.IN_ONLYDIR
    # A heartbeat touches its record (attributes); a record is rewritten in place or replaced.
    _CONTENTS_MASK = _NAME_MASK | _in.IN_MODIFY | _in.IN_ATTRIB | _in.IN_CLOSE_WRITE


_Callback = TypeVar("_Callback", bound=Callable[..., None])


def _never_raises(method: _Callback) -> _Callback:
    """``method`` (of a callback holding ``_watcher``), turned into one that cannot raise.

    An unexpected error is logged (once per watcher) and taken for lost events: the next wait is
    a full rescan, which finds whatever the event was about, and the watcher lives on.
    """

    @functools.wraps(method)
    def guarded(self: Any, *args: Any) -> None:
        try:
            method(self, *args)
        except Exception as error:
            self._watcher._lose(f"error in {method.__name__} ({error!r})", error)

    return guarded  # type: ignore[return-value]


class _Inotify:
    """Watchdog's inotify reader on ``folders``, calling :class:`Watcher` back from its thread."""

    def __init__(self, folders: list[Path], watcher: Watcher, mask: int) -> None:
        self._watcher = watcher
        self._reader = InotifyFD()  # its own: a shared one would keep the first mask of a folder
        self._folders: dict[int, str] = {}  # watch descriptor -> folder
        try:
            for folder in folders:
                path = os.fspath(folder)
                wd = self._reader.add_callback(os.fsencode(path), mask, self, id(self))
                self._folders[wd] = path
        except BaseException:
            self._reader.close()
            raise

    def start(self) -> None:
        self._reader.start()

    def stop(self) -> None:
        self._reader.stop()  # closes the descriptor, which ends the thread

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)

    # -- watchdog's WatchCallback ------------------------------------------------------------
    # Every method of the protocol is here, and none can raise: watchdog calls them from its
    # dispatch thread, and an exception there ends that thread and the reader with it, for the
    # rest of the process (the waiter would then only ever wake at its rescan deadline).

    @_never_raises
    def on_event(self, event: Any) -> None:
        folder = self._folders.get(event.wd)
        if folder is None or not event.name:
            self._watcher._notify(None, lost=True)  # about the folder itself (moved, deleted)
        elif event.mask & _NAMED:
            self._watcher._notify(f"{folder}/{os.fsdecode(event.name)}")
        else:
            self._watcher._notify(None)  # contents: a file written to, or touched

    @_never_raises
    def on_watch_deleted(self, wd: int) -> None:
        # The folder itself went (or was renamed): say so, and let the rescan find what it finds.
        self._watcher._notify(None, lost=True)

    @_never_raises
    def on_queue_overflow(self) -> None:
        # The kernel dropped events (IN_Q_OVERFLOW): names are not enough, list the folders.
        self._watcher._lose("the kernel's inotify queue overflowed (events were lost)")

    @_never_raises
    def on_events_lost(self) -> None:
        # Called after on_queue_overflow, once every watch has recovered: the same loss.
        self._watcher._lose("the kernel's inotify queue overflowed (events were lost)")


class _Wake(FileSystemEventHandler):
    """The ``Observer``'s handler, where watchdog's inotify reader is not to be had."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher

    @_never_raises  # an exception would end the Observer's dispatch thread just the same
    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        notify = self._watcher._notify
        if event.event_type in ("created", "deleted", "moved"):
            notify(os.fsdecode(event.src_path))
            if event.event_type == "moved":
                notify(os.fsdecode(event.dest_path))
        else:
            notify(None)


class Watcher:
    """Wakes :meth:`wait` when something changes in ``folders`` or ``rescan`` seconds have passed.

    By default a change is a name created, removed or renamed; with ``contents=True``, a file
    written to (or its attributes changed) is one too.
    """

    def __init__(self, folders: Iterable[Path], *, rescan: float, track: bool = False, contents: bool = False) -> None:
        self.rescan = rescan
        self.event = threading.Event()
        self._guard = threading.Lock()
        self._changed: set[str] | None = set() if track else None
        self._lost = False  # events were lost (or a folder went): the next wait is a full rescan
        folders = list(folders)
        self._folders = folders
        self._told: set[str] = set()  # what _lose has logged already (once each per watcher)
        self._backend: _Inotify | Any
        if InotifyFD is not None:
            self._backend = _Inotify(folders, self, _CONTENTS_MASK if contents else _NAME_MASK)
        else:
            self._backend = Observer()
            handler = _Wake(self)
            event_filter = None if contents else _NAME_EVENTS
            for folder in folders:
                self._backend.schedule(handler, str(folder), recursive=False, event_filter=event_filter)
        self._next_rescan = 0.0
        self.woken = False
        """Whether the last :meth:`wait` ended by an event or a :meth:`wake` (not a timeout)."""

    def start(self) -> Watcher:
        self._backend.start()
        return self

    def stop(self) -> None:
        self._backend.stop()
        self._backend.join(timeout=5)

    def _notify(self, path: str | None, *, lost: bool = False) -> None:
        """From the watching thread: ``path`` changed (``None``: something did); wake the waiter."""
        if path is not None and self._changed is not None:
            with self._guard:
                self._changed.add(path)
        if lost:
            self._lost = True
        self.event.set()

    def _lose(self, why: str, error: BaseException | None = None) -> None:
        """From the watching thread: events were lost (``why``); the next wait is a full rescan.

        Logged once per watcher and kind of loss: an overloaded watcher overflows again and
        again, and each full rescan recovers. Touches nothing that can fail, so that it can be
        the last resort of a callback that failed.
        """
        self._lost = True
        self.event.set()
        kind = why if error is None else type(error).__name__
        if kind not in self._told:
            self._told.add(kind)
            folders = ", ".join(map(str, self._folders))
            log.warning("watching %s: %s; rescanning in full (logged once)", folders, why, exc_info=error)

    def __enter__(self) -> Watcher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def take_changed(self) -> set[str]:
        """Paths created, removed or renamed in the folders since the last call (``track=True``).

        Only what inotify reported: a change another NFS client made is not in it, which is why
        callers list their folders anyway when :meth:`wait` says a full rescan is due.
        """
        if self._changed is None:
            raise RuntimeError("this Watcher was created without track=True")
        with self._guard:
            changed = set(self._changed)
            self._changed.clear()
        return changed

    def wake(self) -> None:
        """Wake the waiter now (from another thread, or a signal handler)."""
        self.event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until an event, a :meth:`wake`, the rescan deadline or ``timeout``.

        Returns ``True`` when a full rescan is due (the rescan deadline passed, or inotify lost
        events or a watched folder), ``False`` when woken by an event: callers may then look only
        at what can have changed.
        """
        now = time.monotonic()
        if self._lost:  # what was lost, a full rescan finds (it lists the folders after this)
            self._lost = False
            self.event.clear()
            self._next_rescan = now + self.rescan
            self.woken = True
            return True
        if self._next_rescan <= now:
            self._next_rescan = now + self.rescan
            self.woken = False
            return True
        limit = self._next_rescan - now
        if timeout is not None:
            limit = min(limit, timeout)
        self.woken = self.event.wait(limit)
        self.event.clear()
        if self._lost or time.monotonic() >= self._next_rescan:
            self._lost = False
            self._next_rescan = time.monotonic() + self.rescan
            return True
        return False
