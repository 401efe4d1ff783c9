"""Whose code a worker runs: a job's spec is code, and its owner is who asks for it to run.

A spec names the modules, the interpreter and the environment a runner uses, and ``<name>.py`` is
run as a script. In a workspace several users can write (a group folder on NFS), anyone who can
write ``queue/`` and a job folder could otherwise have every worker run their code as the worker's
user. So a process that runs a job's code (a worker) first checks who owns those files: its own
user, or a user it was told to trust (``xpmfs worker --trust-user NAME``). Root is no exception: a
worker run by root trusts root alone unless told otherwise. The rule, and the window it leaves,
are in spec/workspace.md, "Trust".
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import UntrustedError


def resolve_user(user: str | int) -> int:
    """The uid of ``user``: a login name, or a uid (an ``int``, or a string of digits).

    Raises ``LookupError`` naming ``user`` for a name no account has; a number is taken as is
    (files may belong to a uid that has no name on this host).
    """
    if isinstance(user, int):
        return user
    if user.isdigit():
        return int(user)
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise LookupError(f"no user named {user!r} on this host") from None


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number itself when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def owner(path: str | os.PathLike[str]) -> int | None:
    """The uid that owns ``path``, or ``None`` if it does not exist."""
    try:
        return os.stat(path).st_uid
    except FileNotFoundError:
        return None


def read_owned(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """The content of the file ``path`` and the uid that owns it, both of the same open file.

    Asking for the owner by name after reading would let someone who can rename files in the
    folder show one file to the read and another to the check.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        uid = os.fstat(fd).st_uid
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks), uid


@dataclass(frozen=True)
class Trust:
    """The users whose jobs a process runs: ``uids``, its own effective uid always among them."""

    uids: frozenset[int]

    @classmethod
    def of(cls, users: Iterable[str | int] = ()) -> Trust:
        """This process's own user and ``users`` (names or uids; ``LookupError`` for an unknown name)."""
        return cls(frozenset({os.geteuid(), *(resolve_user(user) for user in users)}))

    def trusts(self, uid: int | None) -> bool:
        """Whether a file owned by ``uid`` may be run (``None``: there is no such file)."""
        return uid is None or uid in self.uids

    def refusal(self, path: str | os.PathLike[str], uid: int | None) -> UntrustedError | None:
        """Why the file ``path``, owned by ``uid``, must not be run; ``None`` if it may (or is absent)."""
        return None if uid is None or self.trusts(uid) else self.untrusted(path, uid)

    def untrusted(self, path: str | os.PathLike[str], uid: int) -> UntrustedError:
        """The refusal of the file ``path``, owned by ``uid``, which this process does not trust."""
        trusted = tuple(sorted(user_name(trusted) for trusted in self.uids))
        return UntrustedError(Path(path), uid, user_name(uid), trusted)

    def check(self, path: str | os.PathLike[str]) -> UntrustedError | None:
        """:meth:`refusal` for the file at ``path`` as it is now (``None`` if there is none)."""
        return self.refusal(path, owner(path))
