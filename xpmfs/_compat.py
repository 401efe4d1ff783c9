"""Every name xpmfs takes from a third-party library's private surface, imported here and only here.

xpmfs judges a lease marker exactly as filelock does (never by a rule of its own), and reads inotify
through watchdog's reader rather than its ``Observer`` (see :mod:`xpmfs.watch`). Neither library
exports what that needs, so the names are imported once, below, and checked at import: when one is
missing, importing xpmfs fails at once with the supported version range, instead of a job failing
later. ``setup.cfg`` bounds both dependencies to these ranges, which are the ones the tests cover;
``tools/test --newest`` runs the suite on the newest releases those bounds allow.

Each half is imported by the first module that names it (PEP 562 for filelock's): a task module
that imports ``xpmfs.experiment`` (whose watcher needs watchdog) must not load filelock into the
zygote, where its fork hooks would run in every forked job; ``importlib.metadata`` (10 ms of
imports: email, zipfile, csv) is read only to say which version is installed.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from ._lazy import lazy_module

metadata = lazy_module("importlib.metadata")

#: The versions whose private names are known to be as used here (keep in step with setup.cfg).
FILELOCK_RANGE = ">=4.2.12,<4.3"
WATCHDOG_RANGE = ">=7.1.1,<7.2"


def _unsupported(package: str, supported: str, missing: str) -> ImportError:
    try:
        found = metadata.version(package)
    except metadata.PackageNotFoundError:
        found = "not installed"
    return ImportError(
        f"xpmfs needs {package}{supported} ({missing} is missing from the installed {package} {found}); "
        f"install a supported version: pip install '{package}{supported}'"
    )


# -- filelock: the owner of a marker, and when it is proven gone ------------------------------------

_FILELOCK_NAMES = ("host_name", "owner_is_stale", "parse_marker", "process_start_token", "read_lock_file")

if TYPE_CHECKING:
    from filelock._identity import host_name, owner_is_stale, process_start_token
    from filelock._marker import parse_marker
    from filelock._soft import read_lock_file


def _import_filelock() -> None:
    try:
        from filelock import SoftFileLease
        from filelock._identity import host_name, owner_is_stale, process_start_token
        from filelock._marker import parse_marker
        from filelock._soft import read_lock_file
    except ImportError as error:  # pragma: no cover - depends on the installed filelock
        raise _unsupported("filelock", FILELOCK_RANGE, getattr(error, "name", None) or str(error)) from error
    # The hook through which every lease of a process shares its observations of a marker over time
    # (xpmfs.lock._Lease): without it expiry would silently never be proven.
    if not callable(getattr(SoftFileLease, "_marker_unchanged_for", None)):  # pragma: no cover
        raise _unsupported("filelock", FILELOCK_RANGE, "SoftFileLease._marker_unchanged_for")
    globals().update(
        host_name=host_name,
        owner_is_stale=owner_is_stale,
        parse_marker=parse_marker,
        process_start_token=process_start_token,
        read_lock_file=read_lock_file,
    )


def __getattr__(name: str) -> Any:
    if name not in _FILELOCK_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _import_filelock()  # binds every filelock name: next time, plain module attributes
    return globals()[name]


# -- watchdog: its inotify reader alone --------------------------------------------------------------

InotifyFD: Any
InotifyConstants: Any
if TYPE_CHECKING or sys.platform.startswith("linux"):
    try:
        from watchdog.observers.inotify_c import InotifyConstants, InotifyFD
    except ImportError as error:  # pragma: no cover - depends on the installed watchdog
        raise _unsupported("watchdog", WATCHDOG_RANGE, f"watchdog.observers.inotify_c ({error})") from error
    for _name in ("add_callback", "start", "stop", "join", "handle_event"):
        if not hasattr(InotifyFD, _name):  # pragma: no cover
            raise _unsupported("watchdog", WATCHDOG_RANGE, f"InotifyFD.{_name}")
else:  # pragma: no cover - elsewhere the watcher uses watchdog's public Observer
    InotifyFD = InotifyConstants = None

__all__ = [
    "FILELOCK_RANGE",
    "WATCHDOG_RANGE",
    "InotifyConstants",
    "InotifyFD",
    "host_name",
    "owner_is_stale",
    "parse_marker",
    "process_start_token",
    "read_lock_file",
]
