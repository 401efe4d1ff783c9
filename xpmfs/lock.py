"""The one lock abstraction of xpmfs: a job's ``__xpm__/lock``, an experiment's lock, ``@cache`` locks.

A workspace records one :class:`LockMode` and every process obeys it (DESIGN invariant 3):

``local``
    An OS lock, ``flock(2)`` through filelock's descriptor lock (:func:`filelock.lock_descriptor`)
    on a descriptor of our own. The kernel drops it the moment its holder dies, so a crashed holder
    never blocks anyone. Only holders on one host (and a file system whose locks the kernel
    enforces) are excluded from each other.
``shared``
    A lease over NFS, through :class:`filelock.SoftFileLease`: a marker file created with
    ``O_EXCL`` that names its owner and whose mtime the owner refreshes (heartbeat). A contender
    takes it over only once its owner is *proven* gone: dead on this host (pid gone or recycled, per
    filelock's ``owner_is_stale``), or silent (marker unchanged) for ``lease_duration`` seconds as
    timed on the contender's own monotonic clock.

The exact protocol, precise enough for a compatible worker in another language, is ``spec/locks.md``.

Three things here go beyond calling filelock, each for a reason documented where it is done:

- ``local`` locks open their file themselves and hand the descriptor to filelock's
  :func:`~filelock.lock_descriptor`, the same ``flock`` its :class:`~filelock.UnixFileLock` takes.
  A worker takes a lock per job; the class's bookkeeping (fork tracking, path resolution, parent
  folder creation) cost 110 µs of CPU per lock taken and released, against 27 µs without.

- Expiry is proven by *observation over time*. filelock keeps that observation on the lock object,
  but xpmfs makes a fresh :class:`JobLock` per attempt (``job.lock().try_acquire()`` on every
  rescan), so the observations live in one table per process, keyed by path.
- filelock takes over a breakable marker only with ``renameat2(RENAME_EXCHANGE)``, which NFS and
  FUSE refuse; there it never takes a marker over, not even a dead owner's. Where filelock judged a
  marker breakable and declined, :func:`_evict` moves it aside by ``rename(2)`` and checks what it
  moved, which is filelock's own break where it cannot exchange (its Windows path).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from filelock import (
    LeaseCompromise,
    LeaseSettingsMismatch,
    OwnerRecord,
    SoftFileLease,
    Timeout,
    lock_descriptor,
    unlock_descriptor,
)

# filelock's own verdicts, which its package does not export: xpmfs judges a marker exactly as
# filelock does, never by a rule of its own (see xpmfs._compat for the supported versions).
from ._compat import host_name, owner_is_stale, parse_marker, process_start_token, read_lock_file
from .errors import FormatError, WorkspaceError
from .workspace import DEFAULT_LEASE_DURATION, LockMode

if TYPE_CHECKING:
    from typing import Self

log = logging.getLogger(__name__)

#: Seconds between two attempts of :meth:`JobLock.acquire`.
POLL_INTERVAL = 0.05
#: First line of the holder record a ``local`` lock file carries (informational; the flock is the lock).
LOCAL_RECORD_HEADER = "xpmfs-lock/1"
#: A marker moved aside to be judged is named ``<lock>.break.<pid>.<32 hex>``, as filelock names its own.
BREAK_INFIX = ".break."
_RECORD_LIMIT = 1024
# spec/locks.md, mode local, step 1: never O_TRUNC (a contender must not blank the holder's record);
# O_NONBLOCK keeps a Linux file lease from stalling the open; O_CLOEXEC keeps the lock out of
# exec'd children.
_LOCAL_OPEN_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


class LockStatus(str, Enum):
    """What :func:`inspect` found at a lock path."""

    FREE = "free"  # nobody holds it
    HELD = "held"  # held by a process proven alive (local: the kernel says so; shared: on this host)
    STALE = "stale"  # a marker whose owner is proven dead on this host (shared only)
    REMOTE = "remote"  # a marker this host cannot judge: another host, lease not yet seen to expire
    EXPIRED = "expired"  # a lease this process has seen unrefreshed for lease_duration (shared only)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as its record says: ``host`` as filelock spells it, ``since`` if known."""

    host: str
    pid: int
    since: float | None = None


@dataclass(frozen=True)
class LockState:
    """The verdict of :func:`inspect`; ``holder`` is whoever the record names, ``detail`` says why."""

    path: Path
    status: LockStatus
    holder: Holder | None = None
    detail: str = ""

    @property
    def breakable(self) -> bool:
        """Whether :func:`break_stale` may evict this holder (proven dead, or lease expired)."""
        return self.status in (LockStatus.STALE, LockStatus.EXPIRED)


# -- observation of markers over time (shared mode) --------------------------------------------

# path -> (marker identity, monotonic time it was first seen with that identity). The identity is
# filelock's: mtime (a heartbeat moves it), inode and ctime (a new marker never inherits an old age,
# even when ext4 reuses the inode number). Only ever compared on this process's monotonic clock: the
# mtime is the writer's or the server's clock, and clock skew must not expire a live lease.
_SEEN: dict[str, tuple[tuple[float, int, int], float]] = {}
_SEEN_LOCK = threading.Lock()


def _unchanged_for(key: str, marker: os.stat_result) -> float:
    """Seconds this process has seen the marker at ``key`` without change (0 on first sight)."""
    identity = (marker.st_mtime, marker.st_ino, marker.st_ctime_ns)
    now = time.monotonic()
    with _SEEN_LOCK:
        seen = _SEEN.get(key)
        if seen is None or seen[0] != identity:
            _SEEN[key] = (identity, now)
            return 0.0
        return now - seen[1]


def _forget(key: str) -> None:
    with _SEEN_LOCK:
        _SEEN.pop(key, None)


class _Lease(SoftFileLease):
    """filelock's lease, with its expiry observations shared by every lease of this process."""

    def _marker_unchanged_for(self, marker: os.stat_result) -> float:
        return _unchanged_for(self.lock_file, marker)


# -- reading records ---------------------------------------------------------------------------


def _encode_local_record(since: float) -> bytes:
    return _own_record_head(os.getpid()) + f"since={since!r}\n".encode()


@functools.lru_cache(maxsize=4)
def _own_record_head(pid: int) -> bytes:
    # Per pid (a fork gets its own): the start token reads /proc several times; once per claim,
    # that was 4% of a busy worker's time.
    lines = [LOCAL_RECORD_HEADER, f"pid={pid}", f"host={host_name()}"]
    if (start := process_start_token(pid)) is not None:
        lines.append(f"start={start}")
    return "".join(f"{line}\n" for line in lines).encode()


def _parse_local_record(data: bytes) -> Holder | None:
    # A record read while its writer rewrites it may be torn: then it is unknown, never a guess.
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if not text.endswith("\n") or lines[0] != LOCAL_RECORD_HEADER:
        return None
    fields = dict(line.partition("=")[::2] for line in lines[1:-1])
    try:
        since = float(fields["since"]) if "since" in fields else None
        return Holder(host=fields["host"], pid=int(fields["pid"]), since=since)
    except (KeyError, ValueError):
        return None


def _holder_of(owner: OwnerRecord) -> Holder:
    # filelock's marker records no acquisition time: a heartbeat rewrites the mtime, ctime moves too.
    return Holder(host=owner.hostname, pid=owner.pid, since=None)


def _mismatch(path: Path, detail: str) -> FormatError:
    return FormatError(
        path,
        f"lease_duration mismatch: {detail}",
        "every process of a workspace must use the lease_duration its .xpmfs/format records; "
        "open the workspace without overriding lease_duration",
    )


# -- verdicts ------------------------------------------------------------------------------------


def _judge_local(path: Path) -> LockState:
    # Take the lock on a descriptor of our own and give it back: only the kernel knows whether a
    # flock is held. O_RDONLY suffices for flock; O_NONBLOCK keeps a Linux file lease from stalling
    # the open. A contender trying in the same microseconds loses one attempt to this probe.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return LockState(path, LockStatus.FREE, detail="no lock file")
    try:
        if lock_descriptor(fd, blocking=False):
            unlock_descriptor(fd)
            return LockState(path, LockStatus.FREE)
        holder = _parse_local_record(os.pread(fd, _RECORD_LIMIT, 0))
    finally:
        os.close(fd)
    if holder is None:
        return LockState(
            path,
            LockStatus.HELD,
            detail="held; its holder record is being written or unreadable",
        )
    detail = f"held by pid {holder.pid} on {holder.host}"
    if holder.host == host_name() and owner_is_stale(holder.pid, holder.host, None):
        # The recorded process is gone but the flock is not: a child forked without exec keeps the
        # open file description, and with it the lock. Still held; the kernel is the authority.
        detail += " (that pid is gone: a process that inherited its descriptor holds it)"
    return LockState(path, LockStatus.HELD, holder, detail)


def _judge_shared(path: Path, lease_duration: float) -> tuple[LockState, os.stat_result | None]:
    """filelock's verdict on the marker at ``path``, with the stat it judged (for :func:`_evict`)."""
    key = str(path)
    try:
        content, marker = read_lock_file(key)
    except FileNotFoundError:
        _forget(key)
        return LockState(path, LockStatus.FREE), None
    except OSError as error:  # unreadable: fail closed, someone may hold it
        return LockState(path, LockStatus.REMOTE, detail=f"marker unreadable: {error}"), None
    owner = parse_marker(content)
    if owner is None and content == "":
        # Empty: its creator died between creating and writing it, or writes right now. filelock
        # never evicts one, which would block the job forever (seen in tools/chaos --nodes).
        # A live creator's record lands within a heartbeat and changes the marker, so an empty
        # marker seen unchanged for a whole lease is as dead as an expired lease.
        seen = _unchanged_for(key, marker)
        if seen >= lease_duration:
            return LockState(path, LockStatus.EXPIRED, detail=f"an empty marker, unchanged for {seen:.1f}s"), marker
        return LockState(path, LockStatus.REMOTE, detail=f"an empty marker, unchanged for {seen:.1f}s here"), marker
    if owner is None:
        # Torn, or not filelock/2: filelock ages a malformed marker out after 2 s.
        what = "a marker with no readable owner record"
        return LockState(
            path,
            LockStatus.REMOTE,
            detail=f"{what}; remove it by hand if no process holds it",
        ), marker
    holder = _holder_of(owner)
    who = f"pid {owner.pid} on {owner.hostname}"
    if owner.mode == "unknown":
        return LockState(
            path,
            LockStatus.REMOTE,
            holder,
            f"{who}, under a lock contract unknown here",
        ), marker
    # The same order as filelock: a dead owner first (it has no lease left to disagree with).
    if owner_is_stale(owner.pid, owner.hostname, owner.start):
        return LockState(path, LockStatus.STALE, holder, f"{who} is dead"), marker
    if owner.mode == "lease":
        if owner.lease_duration != lease_duration:
            raise _mismatch(
                path,
                f"the marker holds a lease of {owner.lease_duration!r}s, this process uses {lease_duration!r}s",
            )
        seen = _unchanged_for(key, marker)
        if seen >= lease_duration:
            return LockState(
                path,
                LockStatus.EXPIRED,
                holder,
                f"{who} has not refreshed its lease for {seen:.1f}s",
            ), marker
        if owner.hostname != host_name():
            return LockState(
                path,
                LockStatus.REMOTE,
                holder,
                f"{who}, lease seen unchanged for {seen:.1f}s here",
            ), marker
    elif owner.hostname != host_name():
        return LockState(path, LockStatus.REMOTE, holder, f"{who}, exclusive: never expires"), marker
    return LockState(path, LockStatus.HELD, holder, f"held by {who}"), marker


def inspect(
    path: str | os.PathLike[str],
    mode: LockMode | str,
    *,
    lease_duration: float = DEFAULT_LEASE_DURATION,
) -> LockState:
    """Report who holds the lock at ``path`` and whether that holder may be evicted; changes nothing.

    In ``shared`` mode an expired lease is only proven by watching the marker stay unchanged for
    ``lease_duration`` seconds: the first call sees a remote holder as :attr:`LockStatus.REMOTE`,
    and a call ``lease_duration`` later in the same process reports :attr:`LockStatus.EXPIRED` if
    no heartbeat came. (``xpmfs check`` inspects every lock, waits, and inspects again.)

    :raises FormatError: the marker holds a lease of another duration than ``lease_duration``.
    """
    where = Path(os.path.abspath(path))
    if LockMode(mode) is LockMode.LOCAL:
        return _judge_local(where)
    return _judge_shared(where, _check_lease_duration(lease_duration))[0]


def break_stale(
    path: str | os.PathLike[str],
    mode: LockMode | str,
    *,
    lease_duration: float = DEFAULT_LEASE_DURATION,
) -> bool:
    """Evict the lock's holder if, and only if, it is proven dead or its lease expired; return whether.

    ``local`` locks are never broken: the kernel already dropped a dead holder's lock, and a held
    flock has a live holder. ``shared``: filelock's takeover first (atomic, by exchanging names);
    where the file system refuses that, :func:`_evict`. Fails closed: an unreadable marker, another
    host's marker whose lease this process has not yet seen expire, a live owner stay.
    """
    where = Path(os.path.abspath(path))
    if LockMode(mode) is LockMode.LOCAL:
        return False
    lock = JobLock(where, LockMode.SHARED, lease_duration=lease_duration)
    state = lock._breakable_state()
    if state is None:
        return False
    if lock.try_acquire():  # takes the breakable marker over, by filelock's exchange or _evict
        lock.release()
        return True
    return False


def _same_marker(a: os.stat_result, b: os.stat_result) -> bool:
    # filelock's identity check: inode and mtime (ctime moves on rename, so it cannot be compared here).
    return (a.st_dev, a.st_ino, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_mtime_ns)


def _evict(path: Path, judged: os.stat_result) -> bool:
    """Remove the marker ``judged`` breakable, unless it changed since; return whether it was removed.

    Where ``renameat2(RENAME_EXCHANGE)`` works, filelock takes a marker over itself and this never
    runs. Elsewhere (NFS, FUSE) this is filelock's own break for file systems without an exchange:
    rename the marker aside, then look at what was moved.

    Races, and why each is safe or bounded:
    - Pinning the judged inode with an ``O_PATH`` descriptor keeps its number from being reused, so
      an inode+mtime match means "the very file judged".
    - If a peer took the lock over between our verdict and our rename, the rename moves the peer's
      live marker: we see it is not the judged one and link it back (``link`` never overwrites).
      The holder's heartbeat tolerates one miss, so it does not notice.
    - If, in the microseconds the path stood empty, a third process created a marker, the link
      fails and the displaced holder's heartbeat reports the loss (``on_lost``) within two beats.
      That window is the only overlap this adds, and only on file systems without an exchange.
    """
    pin_flags = getattr(os, "O_PATH", os.O_RDONLY | os.O_NONBLOCK) | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        pin = os.open(path, pin_flags)
    except FileNotFoundError:
        return False  # gone already: released, or a peer evicted it
    try:
        if not _same_marker(os.fstat(pin), judged):
            return False  # refreshed or replaced since judged: alive after all, or not ours to judge
        aside = path.with_name(f"{path.name}{BREAK_INFIX}{os.getpid()}.{secrets.token_hex(16)}")
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        # Judge what was moved through a real open (read_lock_file): on NFS that revalidates the
        # attributes (close-to-open), where an lstat could answer from the client's cache.
        if _same_marker(read_lock_file(str(aside))[1], judged):
            os.unlink(aside)
            log.info(
                "lock %s: evicted a marker judged breakable (no rename exchange on this file system)",
                path,
            )
            return True
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(aside)
        return False
    finally:
        os.close(pin)


def _check_lease_duration(value: float) -> float:
    duration = float(value)
    if not math.isfinite(duration) or duration <= 0:
        raise ValueError(f"lease_duration must be a positive number of seconds, not {value!r}")
    return duration


# -- the lock ----------------------------------------------------------------------------------


class JobLock:
    """An exclusive, non-reentrant lock on ``path`` in the workspace's :class:`LockMode`.

    Exclusive across processes and hosts (per mode), and within one process: two ``JobLock``
    objects on one path exclude each other, and a second :meth:`try_acquire` on the object that
    holds it returns ``False``. It may be released from any thread. Keep a reference while you hold
    it: a lock that is garbage-collected is released.

    ``on_lost(reason)`` (``shared`` only) is called from filelock's heartbeat thread when the lease
    is no longer ours: ``"marker-missing"`` (someone deleted it), ``"owner-changed"`` (a peer took
    it over after our lease expired), ``"refresh-failed"`` (the heartbeat kept failing for about
    ``lease_duration``). The holder must stop what the lock protects; :attr:`held` is then
    ``False``, :attr:`lost` says why, and :meth:`release` stays safe (it never removes a
    successor's marker); call it before trying to take the lock again.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: LockMode | str,
        *,
        lease_duration: float = DEFAULT_LEASE_DURATION,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        # Absolute once: a chdir while waiting or holding must not move the lock to another file.
        # A string: a worker makes one lock per job, and filelock wants a string anyway.
        self._file = os.path.abspath(path)
        self.mode = mode if isinstance(mode, LockMode) else LockMode(mode)
        self.lease_duration = _check_lease_duration(lease_duration)
        self._on_lost = on_lost
        self._guard = threading.Lock()  # serializes this object's own acquire/release
        self._backend: _Lease | None = None  # shared: built on first use (probes need none)
        self._held = False
        self._lost: str | None = None
        self._holder_pid = 0  # the process that took the current hold
        self._record_fd: int | None = None  # local: the descriptor that holds the flock

    @property
    def path(self) -> Path:
        """The lock file (absolute)."""
        return Path(self._file)

    def __repr__(self) -> str:
        return f"JobLock({self._file!r}, {self.mode.value!r}, held={self.held})"

    # -- acquiring -------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it (or its holder is proven gone); never waits.

        :raises FormatError: ``shared``: the holder uses another ``lease_duration``.
        :raises WorkspaceError: ``local``: the file system has no ``flock``.
        """
        with self._guard:
            if self._held:
                return False  # not reentrant: a second claim by the same holder is a second claim
            if self.mode is LockMode.LOCAL:
                acquired = self._take_local()
            else:
                backend = self._backend or self._build_lease()
                acquired = self._attempt(backend) or self._take_over_breakable(backend)
            if acquired:
                self._held, self._lost, self._holder_pid = True, None, os.getpid()
                if self.mode is LockMode.SHARED:
                    _forget(self._file)
            return acquired

    def acquire(self, timeout: float) -> bool:
        """Try for up to ``timeout`` seconds (``0``: once, ``math.inf``: forever); return whether held."""
        deadline = time.monotonic() + timeout
        while True:
            if self.try_acquire():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._held:
                return False  # timed out, or this object holds it already (waiting would never end)
            time.sleep(min(POLL_INTERVAL, remaining))

    def _take_local(self) -> bool:
        """spec/locks.md, mode ``local``: open, filelock's ``flock`` on that descriptor, record."""
        try:
            fd = os.open(self._file, _LOCAL_OPEN_FLAGS, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(self._file), exist_ok=True)  # a lock may be its folder's first file
            fd = os.open(self._file, _LOCAL_OPEN_FLAGS, 0o666)
        except BlockingIOError:
            return False  # a Linux file lease on it is being broken: busy, for now
        try:
            locked = lock_descriptor(fd, blocking=False)
            # Unlinked between our open and our lock (`xpmfs clean`): that lock guards no name.
            if locked and os.fstat(fd).st_nlink == 0:
                unlock_descriptor(fd)
                locked = False
        except OSError as error:
            os.close(fd)
            if error.errno == errno.ENOSYS:
                raise WorkspaceError(
                    self.path,
                    "this file system has no flock(2), which lock mode 'local' needs",
                    "use lock mode 'shared' for a workspace on this file system",
                ) from error
            raise
        except BaseException:
            os.close(fd)
            raise
        if not locked:
            os.close(fd)
            return False
        self._record_fd = fd
        self._write_record(fd)
        return True

    def _build_lease(self) -> _Lease:
        # thread_local=False: a worker claims a job in one thread and may release it from another;
        # a thread-local filelock would make that release a silent no-op and leak the lock.
        self._backend = _Lease(
            self._file,
            thread_local=False,
            lease_duration=self.lease_duration,
            on_compromise=self._compromised,
        )
        return self._backend

    def _attempt(self, backend: _Lease) -> bool:
        try:
            backend.acquire(blocking=False)
        except Timeout:
            return False
        except LeaseSettingsMismatch as error:
            raise _mismatch(self.path, str(error)) from None
        return True

    def _breakable_state(self) -> tuple[LockState, os.stat_result] | None:
        state, marker = _judge_shared(self.path, self.lease_duration)
        return (state, marker) if state.breakable and marker is not None else None

    def _take_over_breakable(self, backend: _Lease) -> bool:
        # filelock declined. Either the holder is alive (then so is our verdict), or filelock judged
        # the marker breakable but the file system refused its exchange (NFS, FUSE), or our verdict
        # just crossed lease_duration. Judge by filelock's rules; try its takeover again, then evict.
        found = self._breakable_state()
        if found is None:
            return False
        if self._attempt(backend):
            return True
        return _evict(self.path, found[1]) and self._attempt(backend)

    def _write_record(self, fd: int) -> None:
        # With the flock held. The record is for people and `xpmfs show`; the flock is the lock,
        # so failing to write it must not fail the claim.
        data = _encode_local_record(time.time())
        with contextlib.suppress(OSError):
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))

    def _compromised(self, compromise: LeaseCompromise) -> None:
        # From filelock's heartbeat thread. A report about an earlier claim of this object (released
        # meanwhile) must not mark the current one lost.
        reason = compromise.reason
        if not isinstance(self._backend, _Lease) or compromise.token != self._backend.token:
            return
        self._lost = reason
        log.warning("lock %s lost: %s", self.path, reason)
        if self._on_lost is not None:
            try:
                self._on_lost(reason)
            except Exception:  # a callback failing must not kill the heartbeat thread silently
                log.exception("lock %s: on_lost callback failed", self.path)

    # -- releasing -------------------------------------------------------------------------

    def release(self) -> None:
        """Give the lock up; does nothing if this object does not hold it. Any thread may call it."""
        with self._guard:
            if not self._held:
                return
            if self._holder_pid != os.getpid():
                # A child forked (without exec) from the holder: the hold is the parent's, which keeps
                # it; the child must neither blank the parent's record nor touch its lock.
                self._held, self._record_fd = False, None
                return
            fd = self._record_fd
            if fd is not None:
                # Still under our flock, so nobody else writes the file now: leave no stale record.
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                unlock_descriptor(fd)  # if this fails, the hold stays and a later release retries
                self._record_fd = None
                self._held = False
                with contextlib.suppress(OSError):  # the flock is gone already; EIO on some mounts
                    os.close(fd)
                return
            backend = self._backend
            assert backend is not None
            try:
                backend.release(force=True)
            finally:
                # filelock keeps the hold if the unlock itself failed, so a later release can retry.
                self._held = backend.is_locked

    def __enter__(self) -> Self:
        """Wait, without limit, until the lock is ours."""
        if not self.acquire(math.inf):
            raise RuntimeError(f"{self.path}: this JobLock is already held (locks are not reentrant)")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    # -- looking ---------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (``False`` once ``shared`` reported it lost)."""
        return self._held and self._lost is None

    @property
    def lost(self) -> str | None:
        """Why the lease of the current hold was lost, or ``None``."""
        return self._lost if self._held else None

    def inspect(self) -> LockState:
        """:func:`inspect` with this lock's path, mode and lease duration."""
        return inspect(self.path, self.mode, lease_duration=self.lease_duration)

    def probe(self) -> bool:
        """Whether someone (this object included) holds the lock right now, as far as can be proven.

        ``local``: the kernel's answer (a try-lock and unlock on a descriptor of our own).
        ``shared``: a marker exists and its owner is not proven dead nor its lease seen expired;
        an unreadable marker counts as held (fail closed).
        """
        return self.inspect().status in (LockStatus.HELD, LockStatus.REMOTE)

    def holder(self) -> Holder | None:
        """Who holds the lock, from its record, or ``None`` if it is free (or breakable) or unknown."""
        state = self.inspect()
        return state.holder if state.status in (LockStatus.HELD, LockStatus.REMOTE) else None


__all__ = [
    "DEFAULT_LEASE_DURATION",
    "Holder",
    "JobLock",
    "LockMode",
    "LockState",
    "LockStatus",
    "break_stale",
    "inspect",
]
