"""A job's folder, ``WS/jobs/<typeid>/<jobid>/``: the job's whole record.

::

    __xpm__/spec.json        what to run (immutable once written)
    __xpm__/status.json      state and attempt (see :mod:`xpmfs.status`)
    __xpm__/done|failed      terminal markers
    __xpm__/lock             held by whoever runs or changes the job
    __xpm__/history.jsonl    the status each earlier attempt ended with
    <name>.py                runs the job again by hand: ``python <name>.py``
    <name>.sh                the batch script, for cluster launchers
    <name>.out, <name>.err   the job's output streams
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from . import _atomic, trust
from .errors import CorruptedError, FormatError
from .queue import JobRef
from .status import STATUS_FILE, Reason, State, Status, marker_stat, read_failure, terminal_marker
from .status import read as read_status
from .workspace import FORMAT, Workspace

if TYPE_CHECKING:
    from .lock import JobLock

XPM_DIR = "__xpm__"
SPEC_FILE = "spec.json"
LOCK_FILE = "lock"
CANCEL_FILE = "cancel"
TASK_OUTPUTS = ".experimaestro/task-outputs.jsonl"  # the path the seed documents
#: Prefix of a job folder being removed: renamed first, then deleted, so no half job is visible.
TRASH_PREFIX = ".trash-"
#: How long a command waits for a job's lock held briefly (a worker's claim, an experiment
#: enqueueing) before concluding that the job is being run.
LOCK_WAIT = 1.0
_LOCK_POLL = 0.02
#: Written by ``xpmfs adopt`` in a job folder that experimaestro created (spec/adopt.md). There,
#: ``<name>.py``, ``.out``, ``.err`` (and ``.sh``) are experimaestro's and are never written: xpmfs's
#: own files are named ``<name>.xpmfs.py``, ``<name>.xpmfs.out``...
ADOPTED_FILE = "adopted.json"
ADOPTED_STEM = ".xpmfs"
#: The spec field that marks a spec written by adoption (``"adopted": true``, only when true): the
#: first xpmfs submission of the job replaces it with its own, which knows the interpreter and import path.
PROVISIONAL = "adopted"


def task_name(typeid: str) -> str:
    """The short task name (``[NAME]`` in the seed): the last part of the type id."""
    return typeid.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class Spec:
    """The content of ``spec.json``: everything a runner needs to run the job, on any host."""

    typeid: str
    jobid: str
    config: dict[str, Any]  # the serialized configuration tree (xpmfs.serialization)
    dependencies: tuple[str, ...] = ()  # other jobs, as "<typeid>/<jobid>"
    launcher: dict[str, Any] = field(default_factory=lambda: {"type": "direct"})
    max_retries: int = 3
    resumable: bool = False
    python: str = sys.executable
    sys_path: tuple[str, ...] = ()
    environ: dict[str, str] = field(default_factory=dict)
    submitted: float = 0.0
    format: str = "xpmfs/1"
    provisional: bool = False  # written by `xpmfs adopt` from params.json: the next submission replaces it

    def to_json(self) -> dict[str, Any]:
        record = {
            "format": self.format,
            "typeid": self.typeid,
            "jobid": self.jobid,
            "dependencies": list(self.dependencies),
            "launcher": self.launcher,
            "max_retries": self.max_retries,
            "resumable": self.resumable,
            "python": self.python,
            "sys_path": list(self.sys_path),
            "environ": self.environ,
            "submitted": self.submitted,
            "config": self.config,
        }
        if self.provisional:
            record[PROVISIONAL] = True
        return record

    @classmethod
    def from_json(cls, record: Any, path: Path | str) -> Spec:
        try:
            spec = cls(
                typeid=record["typeid"],
                jobid=record["jobid"],
                config=record["config"],
                dependencies=tuple(record.get("dependencies", ())),
                launcher=record.get("launcher") or {"type": "direct"},
                max_retries=int(record.get("max_retries", 3)),
                resumable=bool(record.get("resumable", False)),
                python=record.get("python") or sys.executable,
                sys_path=tuple(record.get("sys_path", ())),
                environ=dict(record.get("environ", {})),
                submitted=float(record.get("submitted", 0.0)),
                format=record.get("format", "xpmfs/1"),
                provisional=bool(record.get(PROVISIONAL, False)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CorruptedError(
                Path(path),
                f"is not a valid job spec (missing or bad field: {error})",
                "re-run the experiment that submitted the job (it rewrites a damaged spec), or `xpmfs kill` it",
            ) from error
        if spec.format != FORMAT:
            raise FormatError(
                Path(path),
                f"was written in format {spec.format!r}, which this xpmfs ({FORMAT!r}) cannot run",
                "run it with the xpmfs version that submitted it, or upgrade xpmfs",
            )
        return spec


class Job:
    """A job folder in a workspace. Cheap to create: it joins two strings.

    Workers, listings and scans make one for every job they look at, and most only ask for its
    status or marker, which it reads through its folder's text: the ``Path`` objects (:attr:`path`,
    :attr:`xpm_dir`) are made on first use. A job is path-like: ``os.fspath(job)`` is its folder's
    text, for what needs text (an environment variable, a message to the warm runner, a listing).
    """

    __slots__ = ("_folder", "_path", "_stem", "_xpm", "_xpm_dir", "name", "ref", "workspace")

    def __init__(self, workspace: Workspace, ref: JobRef) -> None:
        self.workspace = workspace
        self.ref = ref
        self._folder = f"{workspace.jobs_dir}/{ref.typeid}/{ref.jobid}"
        self._xpm = f"{self._folder}/{XPM_DIR}"
        self._path: Path | None = None
        self._xpm_dir: Path | None = None
        self._stem: str | None = None
        self.name = task_name(ref.typeid)

    def __fspath__(self) -> str:
        return self._folder

    @property
    def path(self) -> Path:
        """The job's folder, ``WS/jobs/<typeid>/<jobid>``."""
        if self._path is None:
            self._path = Path(self._folder)
        return self._path

    @property
    def xpm_dir(self) -> Path:
        """Its ``__xpm__`` folder: spec, status, markers, lock."""
        if self._xpm_dir is None:
            self._xpm_dir = Path(self._xpm)
        return self._xpm_dir

    def __repr__(self) -> str:
        return f"Job({self.path})"

    # -- file names (each declared once, here) ---------------------------------------------

    @property
    def spec_path(self) -> Path:
        return self.xpm_dir / SPEC_FILE

    @property
    def lock_path(self) -> Path:
        return self.xpm_dir / LOCK_FILE

    @property
    def cancel_path(self) -> Path:
        return self.xpm_dir / CANCEL_FILE

    @property
    def adopted(self) -> bool:
        """Whether experimaestro created this folder and xpmfs adopted it (its ``<name>.*`` are not ours)."""
        return os.path.exists(f"{self._xpm}/{ADOPTED_FILE}")

    @property
    def stem(self) -> str:
        """``<folder>/<name>``, which xpmfs's script and streams are named after; in an adopted folder
        ``<folder>/<name>.xpmfs``, so that experimaestro's own ``<name>.py``/``.out``/``.err`` stay as
        they are. Looked up once per object (one ``stat``)."""
        if self._stem is None:
            self._stem = f"{self._folder}/{self.name}" + (ADOPTED_STEM if self.adopted else "")
        return self._stem

    @property
    def script_path(self) -> Path:
        return Path(f"{self.stem}.py")

    @property
    def batch_script_path(self) -> Path:
        return Path(f"{self.stem}.sh")

    @property
    def stdout_path(self) -> Path:
        return Path(self.output_files[0])

    @property
    def stderr_path(self) -> Path:
        return Path(self.output_files[1])

    def failure_log(self) -> Path:
        """Where to read why this failed job failed: its ``.err``, or, when it failed because a
        dependency did (it never ran, and has no ``.err``), that of the job that failed first along
        its failed dependencies."""
        current, seen = self, {self.ref}
        while read_failure(current.xpm_dir).get("reason") == Reason.DEPENDENCY.value:
            try:
                dependencies = current.read_spec().dependencies
            except (OSError, CorruptedError):
                break
            jobs = (Job(self.workspace, JobRef.from_relpath(relpath)) for relpath in dependencies)
            failed = next((job for job in jobs if job.ref not in seen and job.marker() is State.FAILED), None)
            if failed is None:
                break
            current = failed
            seen.add(current.ref)
        return current.stderr_path

    @property
    def output_files(self) -> tuple[str, str]:
        """The job's ``<name>.out`` and ``<name>.err``, as strings (a worker sends them per job)."""
        stem = self.stem
        return f"{stem}.out", f"{stem}.err"

    @property
    def task_outputs_path(self) -> Path:
        return self.path / TASK_OUTPUTS

    # -- reading ---------------------------------------------------------------------------

    def read_spec(self) -> Spec:
        path = f"{self._xpm}/{SPEC_FILE}"
        try:
            data = _atomic.read_bytes(path)
        except FileNotFoundError as error:
            raise _missing_spec(path) from error
        return _parse_spec(path, data)

    def read_owned_spec(self) -> tuple[Spec, int]:
        """The spec and the uid that owns the very file it was read from (see :mod:`xpmfs.trust`)."""
        path = f"{self._xpm}/{SPEC_FILE}"
        try:
            data, owner = trust.read_owned(path)
        except FileNotFoundError as error:
            raise _missing_spec(path) from error
        return _parse_spec(path, data), owner

    def status(self) -> Status | None:
        return read_status(self._xpm)

    def marker(self) -> State | None:
        return terminal_marker(self._xpm)

    def marker_stat(self) -> tuple[State, os.stat_result] | None:
        """Its terminal marker and the marker's ``stat`` (when it ended), or ``None``."""
        return marker_stat(self._xpm)

    def lock(self, on_lost: Callable[[str], None] | None = None) -> JobLock:
        """The job's lock; ``on_lost`` is told (shared mode) when a peer took the lease from us."""
        from .lock import JobLock  # not at the top: see "No filelock" in xpmfs.zygote

        return JobLock(
            f"{self._xpm}/{LOCK_FILE}",
            self.workspace.lock_mode,
            lease_duration=self.workspace.lease_duration,
            on_lost=on_lost,
        )

    @contextlib.contextmanager
    def locked(self, wait: float = LOCK_WAIT) -> Iterator[JobLock | None]:
        """Hold the job's lock for the block, or yield ``None`` if it stays held ``wait`` seconds.

        Polls ``try_acquire`` rather than blocking: a short wait covers the brief holds (a claim
        that is about to start the job, an experiment enqueueing it); a long one means it runs.
        """
        lock = self.lock()
        deadline = time.monotonic() + wait
        while not lock.try_acquire():
            if time.monotonic() >= deadline:
                yield None
                return
            time.sleep(_LOCK_POLL)
        try:
            yield lock
        finally:
            lock.release()

    # -- writing ---------------------------------------------------------------------------

    def create(self, spec: Spec, first: Status, python: str) -> bool:
        """Create the job's folder whole, unless it exists; return whether this call created it.

        The folder is built under a temporary name next to its final place (``.tmp-<jobid>.*``,
        which scanners skip) and renamed into place, so a job folder that anyone can see always
        holds its spec, its first status and its script. ``rename`` of a folder onto a name that
        exists fails: only one of several concurrent submitters creates the job. One ``mkdir`` and
        three plain file creations in a folder nobody reads replace three atomic writes and a lock.
        """
        path = str(self.path)
        parent, _, jobid = path.rpartition("/")
        temp = f"{parent}/{_atomic.TMP_PREFIX}{jobid}.{os.getpid()}.{os.urandom(4).hex()}"
        try:
            os.mkdir(temp)
        except FileNotFoundError:
            os.makedirs(parent, exist_ok=True)  # the type's first job
            os.mkdir(temp)
        try:
            os.mkdir(f"{temp}/{XPM_DIR}")
            _atomic.write_new(f"{temp}/{XPM_DIR}/{SPEC_FILE}", _atomic.dumps(spec.to_json()))
            _atomic.write_new(f"{temp}/{XPM_DIR}/{STATUS_FILE}", _atomic.dumps(first.to_json()))
            _atomic.write_new(f"{temp}/{self.name}.py", self._script(python), mode=0o755)
            os.rename(temp, path)
        except OSError as error:
            shutil.rmtree(temp, ignore_errors=True)
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY):
                return False
            raise _atomic.write_error(path, error) from error
        return True

    def has_spec(self) -> bool:
        return os.path.exists(f"{self._xpm}/{SPEC_FILE}")

    def write_spec(self, spec: Spec) -> bool:
        """Write the spec unless one exists (specs are immutable); return whether this call wrote it."""
        if self.has_spec():
            return False  # the common case (a re-run): no temporary file to write and throw away
        try:
            # The common case first: the type's folder exists, the job's does not (two mkdir
            # calls, where mkdir(parents=True) makes four: submitting is mostly file creation).
            os.mkdir(self.path)
            os.mkdir(self.xpm_dir)
        except OSError:
            self.xpm_dir.mkdir(parents=True, exist_ok=True)
        return _atomic.create_bytes(self.spec_path, _atomic.dumps(spec.to_json()))

    def replace_spec(self, spec: Spec) -> None:
        """Overwrite a damaged spec (atomically). Only for one that cannot be read at all."""
        _atomic.write_bytes(self.spec_path, _atomic.dumps(spec.to_json()))

    def clear_cancel(self) -> None:
        """Forget a cancel request (the job ended, or is being resubmitted)."""
        try:
            os.unlink(f"{self._xpm}/{CANCEL_FILE}")
        except FileNotFoundError:
            pass

    def write_script(self, python: str) -> None:
        """Write ``<name>.py``, which runs the job again when started by hand, unless it exists."""
        if not self.script_path.exists():
            _atomic.write_bytes(self.script_path, self._script(python))
            self.script_path.chmod(0o755)

    def _script(self, python: str) -> bytes:
        return (
            f"#!{python}\n"
            f"# Runs job {self.ref} of the xpmfs workspace {self.workspace.path}.\n"
            "# Started by hand (`python <this file>`), it takes the job's lock and runs it here.\n"
            "import os, sys\n"
            "# `python <this file>` puts this folder first on the import path, where this very file\n"
            "# would shadow a task module of the same name: the task's modules come from its spec.\n"
            "if sys.path and sys.path[0] == os.path.dirname(os.path.realpath(__file__)):\n"
            "    del sys.path[0]\n"
            "from xpmfs.runner import main\n"
            "sys.exit(main(__file__))\n"
        ).encode()


_SPEC_FIX = "re-run the experiment that submitted this job (it rewrites a damaged spec), or `xpmfs kill` it"


def _missing_spec(path: str) -> CorruptedError:
    return CorruptedError(Path(path), "is missing", _SPEC_FIX)


def _parse_spec(path: str, data: bytes) -> Spec:
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise CorruptedError(Path(path), f"is not valid JSON ({error})" if data else "is empty", _SPEC_FIX) from error
    return Spec.from_json(record, path)
