"""The workspace: a directory that is the whole database.

This module owns the top-level layout and the format file. Every top-level name is declared here
once; the modules for each on-disk concept (job, queue, journal, ...) ask the workspace for their
folder.

::

    WS/.xpmfs/format            {"format": "xpmfs/1", "lock_mode": "local", "lease_duration": 30.0}
    WS/queue/                   one empty entry per submitted, unfinished job
    WS/workers/                 one heartbeat file per live worker
    WS/experiments/<name>/      an experiment's lock (xpmfs.lock), journal and runs
    WS/jobs/<typeid>/<jobid>/   one folder per job
    WS/config/<typeid>/<id>/    @cache folders
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import orjson

from . import _atomic
from .errors import FormatError, OptionError, WorkspaceError

FORMAT = "xpmfs/1"
DOT_DIR = ".xpmfs"
FORMAT_FILE = "format"
QUEUE_DIR = "queue"
WORKERS_DIR = "workers"
EXPERIMENTS_DIR = "experiments"
JOBS_DIR = "jobs"
CONFIG_DIR = "config"
# In an experiment's folder, WS/experiments/<name>/ (read by `xpmfs ls`, `clean` and `check` too):
# Not "lock": in an adopted workspace that name is experimaestro's experiment lock (spec/adopt.md),
# a file xpmfs must not write. Before 2026-12 xpmfs used "lock"; such a file is left alone.
EXPERIMENT_LOCK = "xpmfs.lock"  # held by the running experiment
EXPERIMENT_JOURNAL = "jobs.jsonl"  # one line per submission (single writer: the experiment)
EXPERIMENT_RUNS = "runs"  # one folder per run

DEFAULT_LEASE_DURATION = 30.0  # seconds: a `shared` lock whose lease is older is breakable


class LockMode(str, Enum):
    """How a workspace locks; the value is what ``WS/.xpmfs/format`` records."""

    LOCAL = "local"
    SHARED = "shared"


@dataclass(frozen=True)
class Workspace:
    """An opened workspace: its root, and the lock settings every process must share."""

    path: Path
    lock_mode: LockMode = LockMode.LOCAL
    lease_duration: float = DEFAULT_LEASE_DURATION

    @functools.cached_property  # a frozen dataclass: computed once, kept in __dict__
    def format_file(self) -> Path:
        return self.path / DOT_DIR / FORMAT_FILE

    @functools.cached_property
    def queue_dir(self) -> Path:
        return self.path / QUEUE_DIR

    @functools.cached_property
    def workers_dir(self) -> Path:
        return self.path / WORKERS_DIR

    @functools.cached_property
    def experiments_dir(self) -> Path:
        return self.path / EXPERIMENTS_DIR

    @functools.cached_property
    def jobs_dir(self) -> Path:
        return self.path / JOBS_DIR

    @functools.cached_property
    def config_dir(self) -> Path:
        return self.path / CONFIG_DIR

    def job_path(self, typeid: str, jobid: str) -> Path:
        """The folder of job ``jobid`` of type ``typeid``."""
        return self.jobs_dir.joinpath(typeid, jobid)

    def experiment_path(self, name: str) -> Path:
        return self.experiments_dir / name

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        lock_mode: LockMode | str | None = None,
        lease_duration: float | None = None,
        experimaestro_ok: bool = False,
    ) -> Workspace:
        """Open the workspace at ``path``; with ``create``, make it first if it does not exist.

        ``lock_mode`` (and ``lease_duration``) must match what the workspace records, since every
        process of a workspace has to lock the same way; ``None`` takes what is recorded.

        An experimaestro workspace that was not adopted (spec/adopt.md) is refused, with nothing
        written, naming ``xpmfs adopt``; only the adoption itself (``experimaestro_ok``) creates
        the format file there.
        """
        # Normalised, symbolic links kept (os.path.abspath): every process names a job folder the
        # same way (XPMFS_JOB_DIR, the leftover-process check), whichever way it was given the path.
        root = Path(os.path.abspath(Path(path).expanduser()))
        wanted = LockMode(lock_mode) if lock_mode is not None else None
        if lease_duration is not None and not _valid_lease(lease_duration):
            raise OptionError(
                "lease_duration",
                f"must be a positive, finite number of seconds, not {lease_duration!r}",
                f"omit it (default {DEFAULT_LEASE_DURATION}) or give e.g. 30",
            )
        if root.exists() and not root.is_dir():
            raise WorkspaceError(
                root, "is not a directory", "give the path of a workspace directory (or of a new one to create)"
            )
        format_file = root / DOT_DIR / FORMAT_FILE
        if not format_file.exists():
            if not experimaestro_ok and root.is_dir():
                refuse_experimaestro(root)
            if not create:
                if root.is_dir() and any(root.iterdir()):
                    raise WorkspaceError(
                        root, "is not an xpmfs workspace (no .xpmfs/format)", "check the path, or use an empty folder"
                    )
                raise WorkspaceError(
                    root,
                    "no workspace here",
                    f"run an experiment with this workspace path to create it, or `xpmfs init {root}`",
                )
            cls._create(
                root,
                wanted or LockMode.LOCAL,
                DEFAULT_LEASE_DURATION if lease_duration is None else lease_duration,
            )
        workspace = cls._read(root)
        if wanted is not None and wanted != workspace.lock_mode:
            raise FormatError(
                format_file,
                f"the workspace uses lock mode {workspace.lock_mode.value!r}, not {wanted.value!r}",
                f"open it with lock_mode={workspace.lock_mode.value!r}, or use another workspace "
                "(every process of a workspace must lock the same way)",
            )
        if lease_duration is not None and lease_duration != workspace.lease_duration:
            raise FormatError(
                format_file,
                f"the workspace uses lease_duration={workspace.lease_duration}, not {lease_duration}",
                "omit lease_duration to use the recorded one",
            )
        return workspace

    @classmethod
    def _create(cls, root: Path, lock_mode: LockMode, lease_duration: float) -> None:
        try:
            for name in (DOT_DIR, QUEUE_DIR, WORKERS_DIR, EXPERIMENTS_DIR, JOBS_DIR, CONFIG_DIR):
                (root / name).mkdir(parents=True, exist_ok=True)
        except PermissionError as error:
            raise WorkspaceError(
                root, f"cannot create the workspace ({error.strerror})", "choose a writable path"
            ) from error
        record = {"format": FORMAT, "lock_mode": lock_mode.value, "lease_duration": lease_duration}
        # Two processes creating the same workspace at once: the first format file wins, the
        # second process reads it back and obeys it.
        _atomic.create_bytes(root / DOT_DIR / FORMAT_FILE, _atomic.dumps(record))

    @classmethod
    def _read(cls, root: Path) -> Workspace:
        format_file = root / DOT_DIR / FORMAT_FILE
        try:
            record = orjson.loads(format_file.read_bytes())
            version = record["format"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise FormatError(
                format_file,
                f"cannot be read ({error})",
                f'it must hold {{"format": "{FORMAT}", "lock_mode": "local"}}; restore it or run `xpmfs check {root}`',
            ) from error
        if version != FORMAT:
            raise FormatError(
                format_file,
                f"format {version!r} is not {FORMAT!r}, the only one this xpmfs reads",
                "use the xpmfs version that wrote this workspace, or start a new workspace",
            )
        try:
            mode = LockMode(record.get("lock_mode", LockMode.LOCAL.value))
        except ValueError as error:
            raise FormatError(
                format_file, f"unknown lock_mode {record.get('lock_mode')!r}", "use 'local' or 'shared'"
            ) from error
        lease = record.get("lease_duration", DEFAULT_LEASE_DURATION)
        if not _valid_lease(lease):
            raise FormatError(
                format_file,
                f"lease_duration {lease!r} is not a positive, finite number of seconds",
                f"set it back to the value every process used (the default is {DEFAULT_LEASE_DURATION})",
            )
        return cls(root, mode, float(lease))


def refuse_experimaestro(root: Path) -> None:
    """Raise if ``root`` is an experimaestro workspace: xpmfs must not write there before adopting it."""
    from .experimaestro_layout import is_workspace  # only reached when the format file is missing

    if is_workspace(root):
        raise WorkspaceError(
            root,
            "is an experimaestro workspace, not (yet) an xpmfs one",
            f"adopt it first: `xpmfs adopt {root}` (see what it would do with `xpmfs adopt --dry-run {root}`); "
            "adoption only adds files, and finished jobs are found again",
        )


def _valid_lease(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
