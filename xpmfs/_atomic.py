"""Atomic file writes: a reader never sees half a file (DESIGN invariant 1).

Every state file is written to a temporary name in the same folder, flushed, then renamed over its
final name with ``os.replace``. The temporary name starts with ``.tmp-`` so scanners skip it and
``xpmfs check`` can report one that a crash left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any

import orjson

from .errors import WorkspaceError

TMP_PREFIX = ".tmp-"
_SPACE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})


def _temp_name(path: Path | str) -> str:
    # String operations: a runner writes two statuses per job, in a fork where every pathlib
    # function it calls for the first time costs it page copies (see xpmfs.zygote).
    folder, _, name = os.fspath(path).rpartition("/")
    return f"{folder}/{TMP_PREFIX}{name}.{os.getpid()}.{os.urandom(4).hex()}"


def _write_temp(path: Path | str, data: bytes, *, fsync: bool) -> str:
    temp = _temp_name(path)
    try:
        write_new(temp, data, fsync=fsync)
    except OSError as error:
        raise space_error(path, error) from error
    return temp


def space_error(path: Path | str, error: OSError) -> OSError:
    """``error`` as a :class:`WorkspaceError` naming ``path`` when the disk is full, else ``error``.

    ``os.write``'s error names no file: this says which one, and what to do.
    """
    if isinstance(error, WorkspaceError) or error.errno not in _SPACE_ERRORS:
        return error
    return WorkspaceError(
        Path(path),
        f"cannot be written ({error.strerror})",
        "free space on that file system (or raise its quota)",
        errno=error.errno,
    )


def write_new(temp: Path | str, data: bytes, *, fsync: bool = False, mode: int = 0o644) -> None:
    """Create the file ``temp`` (which must not exist) holding ``data``; on failure, leave no file.

    Not atomic by itself: only for a name nobody reads yet (a temporary file, or a file in a
    folder that is renamed into place once complete).
    """
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    os.close(fd)


def write_bytes(path: Path | str, data: bytes, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically."""
    temp = _write_temp(path, data, fsync=fsync)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def create_bytes(path: Path | str, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; return whether this call created it.

    The content appears whole: it is written under a temporary name and hard-linked into place,
    and ``link`` fails if the name is taken (atomic on local file systems and on NFS).
    """
    temp = _write_temp(path, data, fsync=False)
    try:
        os.link(temp, path)
    except FileExistsError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
    return True


def dumps(value: Any) -> bytes:
    """The one JSON encoding xpmfs writes: orjson, indented so ``cat`` reads well, newline-ended."""
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def write_json(path: Path | str, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON, atomically."""
    write_bytes(path, dumps(value))


def read_bytes(path: Path | str) -> bytes:
    """The whole content of the file ``path``.

    ``open().read()`` makes eight system calls for a small file (it stats it twice, asks whether it
    is a terminal and where it stands); this makes four. Status files and specs are read this way.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_json(path: Path | str) -> Any:
    """Read a JSON file written by :func:`write_json` (raises ``orjson.JSONDecodeError`` if damaged)."""
    return orjson.loads(read_bytes(path))
