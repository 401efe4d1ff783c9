"""Append-only JSON-lines journals with a single writer each (DESIGN invariant 2).

Appends from several hosts over NFS are not atomic, so every journal has exactly one writer: an
experiment for its own journal, a running job for its task-outputs, a lock holder for a job's
history. Each record is one ``write`` of one line. Readers tolerate a torn last line (a writer
that died mid-append) and skip, with a warning, any other line that does not parse.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from . import _atomic


class Journal:
    """The writing end of a journal; open it in the one process that writes it.

    An append that fails (a full disk...) raises a :class:`~xpmfs.errors.WorkspaceError` naming
    the journal, and leaves no part of its line behind for the next append to glue onto: the bytes
    it wrote are cut off again, or, if even that fails, the next append ends that line first.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._torn = False  # the file ends mid-line: end that line before the next record

    def append(self, record: dict[str, Any]) -> None:
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        try:
            if self._fd is None:
                self._open()
            if self._torn:
                self._write(b"\n")
                self._torn = False
            self._write(line)
        except OSError as error:
            raise _atomic.write_error(self.path, error) from error

    def _open(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            # A previous writer died mid-line: end that line so the next record starts on its own.
            size = os.fstat(fd).st_size
            self._torn = bool(size) and os.pread(fd, 1, size - 1) != b"\n"
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def _write(self, data: bytes) -> None:
        # One write(2) for the whole line, but a full disk may take only part of it (and fail at
        # the next call): what this call wrote is then ours alone (single writer), to cut off.
        assert self._fd is not None
        written = 0
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            if written:
                try:
                    os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
                except OSError:
                    self._torn = True  # not even that: the next append ends the line first
            raise

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read(path: Path, *, offset: int = 0) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records from byte ``offset`` on, each with the offset just past it (to resume reading).

    A last line without its newline is a write in progress or a torn write: it is not returned,
    and the offset stays before it so a later read sees it once it is whole.
    """
    try:
        with open(path, "rb") as stream:
            stream.seek(offset)
            data = stream.read()
    except FileNotFoundError:
        return
    position = offset
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            return
        position += len(line)
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            warnings.warn(f"{path}: skipping a damaged line at byte {position - len(line)}", stacklevel=2)
            continue
        if isinstance(record, dict):
            yield position, record
