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


class Journal:
    """The writing end of a journal; open it in the one process that writes it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self._repair_torn_tail()
        os.write(self._fd, orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))

    def _repair_torn_tail(self) -> None:
        # A previous writer died mid-line: end that line so the next record starts on its own.
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            os.write(self._fd, b"\n")

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
