"""Wake up on file-system events, and rescan anyway (DESIGN invariant 5).

Workers, experiments and ``xpmfs top`` all wait the same way: a watchdog observer on a few
folders sets a :class:`threading.Event`; the waiter also wakes every ``rescan`` seconds, because
inotify never reports what another NFS client (or a FUSE mount's backing path) changed.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path

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

# What a folder of entries (the queue) changes by: names appear, go, or are renamed. Asking
# inotify for these alone spares every watcher the opens, writes and closes of each entry, and
# the opens and closes of every listing of the folder by any process: each went through two
# watchdog threads in each watching process, for nothing.
_NAME_EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    DirCreatedEvent,
    FileDeletedEvent,
    DirDeletedEvent,
    FileMovedEvent,
    DirMovedEvent,
]


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event, changed: set[str] | None, guard: threading.Lock) -> None:
        self._event = event
        self._changed = changed
        self._guard = guard

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if self._changed is not None and event.event_type in ("created", "deleted", "moved"):
            with self._guard:
                self._changed.add(os.fsdecode(event.src_path))
                if event.event_type == "moved":
                    self._changed.add(os.fsdecode(event.dest_path))
        self._event.set()


class Watcher:
    """Wakes :meth:`wait` when something changes in ``folders`` or ``rescan`` seconds have passed.

    By default a change is a name created, removed or renamed; with ``contents=True``, a file
    written to (or its attributes changed) is one too.
    """

    def __init__(self, folders: Iterable[Path], *, rescan: float, track: bool = False, contents: bool = False) -> None:
        self.rescan = rescan
        self.event = threading.Event()
        self._observer = Observer()
        self._guard = threading.Lock()
        self._changed: set[str] | None = set() if track else None
        handler = _Wake(self.event, self._changed, self._guard)
        event_filter = None if contents else _NAME_EVENTS
        for folder in folders:
            self._observer.schedule(handler, str(folder), recursive=False, event_filter=event_filter)
        self._next_rescan = 0.0
        self.woken = False
        """Whether the last :meth:`wait` ended by an event or a :meth:`wake` (not a timeout)."""

    def start(self) -> Watcher:
        self._observer.start()
        return self

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

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

        Returns ``True`` when a full rescan is due (the rescan deadline passed), ``False`` when
        woken by an event: callers may then look only at what can have changed.
        """
        now = time.monotonic()
        if self._next_rescan <= now:
            self._next_rescan = now + self.rescan
            self.woken = False
            return True
        limit = self._next_rescan - now
        if timeout is not None:
            limit = min(limit, timeout)
        self.woken = self.event.wait(limit)
        self.event.clear()
        if time.monotonic() >= self._next_rescan:
            self._next_rescan = time.monotonic() + self.rescan
            return True
        return False
