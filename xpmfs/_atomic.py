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

# The write failures that say something about the file system, not about xpmfs: each becomes a
# WorkspaceError naming the file (``os.write``'s error names none) and saying what to do.
_WRITE_FIXES = {
    errno.ENOSPC: "free space on that file system",
    errno.EDQUOT: "raise your quota on that file system, or free space in it",
    errno.EROFS: "remount that file system read-write (or check its export/mount permissions)",
    errno.EIO: "check the disk (kernel log: dmesg) or the NFS server, then run `xpmfs check` on the workspace",
}


def _temp_name(path: Path | str) -> str:
    # String operations: a runner writes two statuses per job, in a fork where every pathlib
    # function it calls for the first time costs it page copies (see xpmfs.zygote).
    folder, _, name = os.fspath(path).rpartition("/")
    return f"{folder}/{TMP_PREFIX}{name}.{os.getpid()}.{os.urandom(4).hex()}"


def _write_temp(path: Path | str, data: bytes, *, fsync: bool) -> str:
    temp = _temp_name(path)
    try:
        _create(temp, data, fsync=fsync, mode=0o644)
    except OSError as error:
        raise write_error(path, error) from error
    return temp


def write_error(path: Path | str, error: OSError) -> OSError:
    """``error``, from writing ``path``, as a :class:`WorkspaceError` naming ``path`` and the fix.

    Only for the errors that say the file system cannot take the write (full, over quota,
    read-only, failing: ``ENOSPC``, ``EDQUOT``, ``EROFS``, ``EIO``); any other error, and one that
    is a :class:`WorkspaceError` already, is returned as it is. Raise the result ``from error``.
    """
    fix = _WRITE_FIXES.get(error.errno or 0) if not isinstance(error, WorkspaceError) else None
    if fix is None:
        return error
    return WorkspaceError(Path(path), f"cannot be written ({error.strerror})", fix, errno=error.errno)


def write_new(temp: Path | str, data: bytes, *, fsync: bool = False, mode: int = 0o644) -> None:
    """Create the file ``temp`` (which must not exist) holding ``data``; on failure, leave no file.

    Not atomic by itself: only for a name nobody reads yet (a temporary file, or a file in a
    folder that is renamed into place once complete). A full or read-only file system raises a
    :class:`WorkspaceError` naming ``temp`` (see :func:`write_error`).
    """
    try:
        _create(temp, data, fsync=fsync, mode=mode)
    except OSError as error:
        raise write_error(temp, error) from error


def _create(temp: Path | str, data: bytes, *, fsync: bool, mode: int) -> None:
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
    try:
        os.close(fd)  # NFS reports a failed write at close
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_bytes(path: Path | str, data: bytes, *, fsync: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically."""
    temp = _write_temp(path, data, fsync=fsync)
    try:
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(error, OSError):
            raise write_error(path, error) from error
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
    except OSError as error:
        raise write_error(path, error) from error
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
