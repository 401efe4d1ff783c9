"""``@cache("name")``: a file computed once per configuration, shared by every job of a workspace.

A method of a configuration decorated with ``@cache("terms.npy")`` is called with one more
argument, ``path``: a file in the configuration's cache folder, which the method reads if it is
there and writes otherwise (the seed's lightweight alternative to a task)::

    class Terms(Config):
        @cache("terms.npy")
        def load(self, path: Path):
            if path.is_file():
                return read(path)
            value = compute()
            write(path, value)
            return value

    terms.load()   # no path: the decorator gives it

::

    WS/config/<typeid>/<config identifier>/<name>        the cached file (written by the method)
    WS/config/<typeid>/<config identifier>/<name>.lock   held while the method runs

The folder is the configuration's (its type id and identifier, as for a job), so the same
configuration finds the same file in any job and any experiment of the workspace. The lock is a
:class:`xpmfs.lock.JobLock` in the workspace's lock mode: while one process (or thread) runs the
method, another one calling it for the same configuration waits, then runs it in turn and finds
the file written (what "one computes, the others reuse" rests on). Workspace commands
(``xpmfs clean``, ``xpmfs check``) never touch ``config/``.

``xpmfs`` exports the decorator as ``xpmfs.cache``, which hides this module's name as an attribute
of the package: import the functions with ``from xpmfs.cache import set_root``.

The cache root is the ``config`` folder of the workspace the process works for: the job runner
sets it before running a task (:func:`set_root`), and so does a running experiment. A cached
method called anywhere else raises :class:`~xpmfs.errors.CacheError`.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import CacheError, ConfigError
from .workspace import DEFAULT_LEASE_DURATION, LockMode, Workspace

LOCK_SUFFIX = ".lock"
"""The lock of cache file ``<name>`` is ``<name>.lock``, next to it (experimaestro's name)."""

R = TypeVar("R")


@dataclass(frozen=True)
class CacheRoot:
    """Where cache folders go (``WS/config``) and how to lock them (the workspace's lock mode)."""

    path: Path
    lock_mode: LockMode = LockMode.LOCAL
    lease_duration: float = DEFAULT_LEASE_DURATION

    @classmethod
    def of(cls, workspace: Workspace) -> CacheRoot:
        """The cache root of ``workspace``: its ``config`` folder, locked as the workspace says."""
        return cls(workspace.config_dir, workspace.lock_mode, workspace.lease_duration)


# Process-wide, not a context variable: a task's own threads (data loaders...) use its cache too.
_root: CacheRoot | None = None
_root_guard = threading.Lock()
# The lock paths each thread holds, to refuse waiting on itself (a JobLock is not reentrant).
_held = threading.local()


def set_root(root: Workspace | CacheRoot | str | os.PathLike[str] | None) -> CacheRoot | None:
    """Use ``root`` for ``@cache`` methods from now on in this process; return the previous root.

    ``root`` is a :class:`~xpmfs.workspace.Workspace` (its ``config`` folder and lock mode: what
    the runner and the experiment give), a :class:`CacheRoot`, a folder (locked in mode
    ``local``), or ``None`` to forget it. Give the returned value back to restore the previous
    root (an experiment does so when it ends).
    """
    global _root
    if isinstance(root, Workspace):
        new: CacheRoot | None = CacheRoot.of(root)
    elif isinstance(root, CacheRoot) or root is None:
        new = root
    else:
        new = CacheRoot(Path(root).absolute())
    with _root_guard:
        previous, _root = _root, new
    return previous


def current_root() -> CacheRoot | None:
    """The cache root in use in this process, or ``None``."""
    return _root


def folder_for(config: Any, root: CacheRoot | None = None) -> Path:
    """The cache folder of ``config``: ``<root>/<typeid>/<identifier>`` (nothing is created).

    ``root`` defaults to the one in use (:func:`set_root`); with none, :class:`CacheError`.
    """
    return _locate(config, root)[1]


def _locate(config: Any, root: CacheRoot | None) -> tuple[CacheRoot, Path]:
    from .config import Config, _qualname, typeid

    if not isinstance(config, Config):
        raise ConfigError(
            f"{_qualname(config)}",
            f"@cache decorates methods of configurations, and {config!r} is not one",
            "derive the class from xpmfs.Config",
        )
    where = root if root is not None else _root  # read once: another thread may change it
    if where is None:
        raise CacheError(
            _qualname(config),
            "no cache root is set in this process, so its @cache folder is unknown",
            "call @cache methods inside a running job or a `with experiment(...)` block "
            "(or give one to `from xpmfs.cache import set_root`)",
        )
    return where, where.path / typeid(config) / config.__identifier__()


class cache:  # noqa: N801 -- the seed's (and experimaestro's) name
    """Decorate a configuration method to give it a cache file: ``@cache("terms.npy")``.

    The method is called as ``method(self, path, *args, **kwargs)`` while ``path``'s lock is held;
    callers do not pass ``path``. ``name`` is a file name (no ``/``), the same for every instance.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name or name in (".", "..") or "\0" in name:
            raise ValueError(f"@cache({name!r}): the name must be a plain file name, such as 'terms.npy'")
        self.name = name

    def __call__(self, method: Callable[..., R]) -> Callable[..., R]:
        name = self.name

        @functools.wraps(method)
        def cached(config: Any, *args: Any, **kwargs: Any) -> R:
            from .config import _qualname
            from .lock import JobLock  # not at the top: see "No filelock" in xpmfs.zygote

            root, folder = _locate(config, None)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            lock = JobLock(folder / f"{name}{LOCK_SUFFIX}", root.lock_mode, lease_duration=root.lease_duration)
            held: set[Path] = _held.__dict__.setdefault("paths", set())
            if lock.path in held:
                # Waiting for a lock this very thread holds would never end.
                raise CacheError(
                    str(path),
                    f"{_qualname(config)}.{method.__name__} is already computing this file in this thread",
                    "a @cache method must not call itself (directly or not) for the same configuration",
                )
            lock.acquire(math.inf)
            held.add(lock.path)
            try:
                return method(config, path, *args, **kwargs)
            finally:
                held.discard(lock.path)
                lock.release()

        cached.__xpm_cache__ = name  # type: ignore[attr-defined]
        return cached


__all__ = ["LOCK_SUFFIX", "CacheRoot", "cache", "current_root", "folder_for", "set_root"]
