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


def _temp_name(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}.{os.urandom(4).hex()}")


def _write_temp(path: Path, data: bytes, *, fsync: bool) -> Path:
    temp = _temp_name(path)
    try:
        return _write_new(temp, data, fsync=fsync)
    except OSError as error:
        if isinstance(error, WorkspaceError) or error.errno not in _SPACE_ERRORS:
            raise
        # os.write's error names no file: say which, and what to do. Nothing was replaced.
        raise WorkspaceError(
            path,
            f"cannot be written ({error.strerror})",
            "free space on that file system (or raise its quota)",
            errno=error.errno,
        ) from error


def _write_new(temp: Path, data: bytes, *, fsync: bool) -> Path:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
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
    return temp


def write_bytes(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically."""
    temp = _write_temp(path, data, fsync=fsync)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def create_bytes(path: Path, data: bytes) -> bool:
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


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` with ``value`` as JSON, atomically."""
    write_bytes(path, dumps(value))


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json` (raises ``orjson.JSONDecodeError`` if damaged)."""
    return orjson.loads(path.read_bytes())
