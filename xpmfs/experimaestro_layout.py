"""What experimaestro writes in a workspace, read and never written (``spec/adopt.md``).

experimaestro (2.x, and 1.x where the layout agrees) computes the same job identifiers as xpmfs,
so its job folders are xpmfs's: ``WS/jobs/<typeid>/<jobid>/``. This module knows its files, as
facts about a format; ``xpmfs.adopt`` decides what to do with them. Nothing here opens a file for
writing: every file experimaestro wrote must stay byte-identical.

::

    WS/.__experimaestro__                          workspace marker (empty, or a version number)
    WS/jobs/<typeid>/<jobid>/params.json           the configuration (version 1-3)
    WS/jobs/<typeid>/<jobid>/<name>.done|.failed   outcome (.failed: JSON {"code", "reason"}, or an int)
    WS/jobs/<typeid>/<jobid>/<name>.lock           flock(2)-ed by the job's process while it runs
    WS/jobs/<typeid>/<jobid>/<name>.pid            {"type": "local"|"slurm"..., "pid", "host"} while started
    WS/jobs/<typeid>/<jobid>/<name>.py|.out|.err   its script and streams
    WS/experiments/<name>/<run>/jobs.jsonl         2.x: {"job_id", "task_id", "tags", "timestamp"} per job
    WS/experiments/<name>/jobs/<typeid>/<jobid>    1.x: a link per job of the experiment
    WS/experiments/<name>/lock                     flock(2)-ed while a run of the experiment is alive
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .errors import ConfigError

MARKER = ".__experimaestro__"
PARAMS_FILE = "params.json"
EXPERIMENT_LOCK = "lock"
RUN_JOURNAL = "jobs.jsonl"
LEGACY_JOBS_DIR = "jobs"  # 1.x: experiments/<name>/jobs/<typeid>/<jobid> links
#: The ``params.json`` versions this reader understands (1.x wrote 1 and 2, 2.x writes 3).
PARAMS_VERSIONS = (1, 2, 3)
SERIALIZATION_FORMAT = "xpmfs.config/1"  # xpmfs.serialization.FORMAT (not imported: see below)


def is_workspace(root: Path | str) -> bool:
    """Whether ``root`` looks like an experimaestro workspace.

    True when it holds ``.__experimaestro__`` (every experimaestro since 0.20 writes it when an
    experiment starts) or, for a workspace copied without it, when the first job folder found holds
    ``params.json``. Cheap: at most a few ``stat`` and two short listings.
    """
    if os.path.isfile(os.path.join(root, MARKER)):
        return True
    return first_job_folder(Path(root) / "jobs") is not None


def first_job_folder(jobs_dir: Path) -> Path | None:
    """The first ``jobs/<typeid>/<jobid>`` holding a ``params.json``, looking at one job per type."""
    try:
        types = [entry for entry in os.scandir(jobs_dir) if entry.is_dir() and entry.name[:1] != "."]
    except (FileNotFoundError, NotADirectoryError):
        return None
    for type_entry in types[:8]:
        try:
            with os.scandir(type_entry.path) as jobs:
                for job in jobs:
                    if job.name[:1] != "." and job.is_dir():
                        if os.path.isfile(os.path.join(job.path, PARAMS_FILE)):
                            return Path(job.path)
                        break
        except OSError:
            continue
    return None


def task_name(typeid: str) -> str:
    """experimaestro's ``<name>``, the stem of its files in a job folder: the type id's last part."""
    return typeid.rsplit(".", 1)[-1]


# -- a job's outcome -----------------------------------------------------------------------------

#: experimaestro's failure reasons (``JobFailureStatus`` names, lower-cased) → xpmfs's reasons.
FAILURE_REASONS = {
    "failed": "error",
    "memory": "error",
    "rejected_timelimit": "error",
    "timeout": "timeout",
    "cancelled": "cancelled",
    "dependency": "dependency",
}


@dataclass(frozen=True)
class Outcome:
    """How experimaestro says a job ended: ``done``, ``failed`` (with reason and code), or ``None``."""

    state: str | None  # "done", "failed" or None (no marker: unfinished)
    ended: float | None = None  # the marker's mtime
    reason: str = "error"  # an xpmfs reason
    exit_code: int | None = None
    message: str | None = None


def outcome(folder: str, name: str) -> Outcome:
    """The outcome that ``<name>.done`` / ``<name>.failed`` in ``folder`` record.

    ``.done`` wins over ``.failed``, as experimaestro reads them. ``.failed`` holds JSON
    (``{"code": 1, "reason": "failed", "message": ...}``; ``failure_status`` in newer writers) or,
    from 1.x, a bare exit code.
    """
    try:
        return Outcome("done", os.stat(f"{folder}/{name}.done").st_mtime)
    except FileNotFoundError:
        pass
    path = f"{folder}/{name}.failed"
    try:
        ended = os.stat(path).st_mtime
        with open(path, "rb") as stream:
            content = stream.read(65536).strip()
    except FileNotFoundError:
        return Outcome(None)
    code: Any = None
    reason, message = "failed", None
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        reason = str(data.get("failure_status") or data.get("reason") or "failed").lower()
        code, message = data.get("code"), data.get("message")
    elif isinstance(data, int) and not isinstance(data, bool):
        code = data
        if code == 0:  # 1.x: an exit code of 0 in .failed reads as done
            return Outcome("done", ended)
    xpmfs_reason = FAILURE_REASONS.get(reason, "error")
    text = f"experimaestro: {reason}" + (f" (exit code {code})" if code is not None else "")
    if message:
        text += f": {message}"
    return Outcome(
        "failed",
        ended,
        xpmfs_reason,
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        text,
    )


# -- is experimaestro running it? ----------------------------------------------------------------


def lock_held(path: str) -> bool:
    """Whether a process holds ``flock(2)`` on ``path`` (experimaestro's ``<name>.lock``).

    Probed with a shared, non-blocking ``flock`` on a read-only descriptor, released at once:
    the file is neither created nor written. A missing file is held by nobody.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as error:
        # Busy: someone holds it. Any other error (no flock here): nothing to learn from it.
        return error.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    finally:
        os.close(fd)  # closing releases our shared lock, if we got it
    return False


def live_process(folder: str, name: str) -> str | None:
    """Why experimaestro may still be running the job in ``folder``, or ``None`` if it is not.

    1. ``<name>.lock`` is flock-ed: its runner holds it from start to end (the kernel drops it when
       the runner dies, on any host that shares the lock through the file system).
    2. ``<name>.pid`` names a local process on this host that is alive and runs this job's script
       (started, not locked yet), or a cluster job (``type`` other than local), which may be queued:
       only the cluster can tell, and experimaestro removes the file when the job ends.
    """
    if lock_held(f"{folder}/{name}.lock"):
        return f"{name}.lock is locked by a running process"
    try:
        with open(f"{folder}/{name}.pid", "rb") as stream:
            record = orjson.loads(stream.read(4096))
    except (OSError, orjson.JSONDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    kind, pid, host = record.get("type", "local"), record.get("pid"), record.get("host")
    if kind != "local":
        return f"{name}.pid says it was handed to {kind} as job {pid}"
    if not isinstance(pid, int) or (host is not None and host != socket.gethostname()):
        return None  # another host's process: its lock (above) is the only proof we can read
    try:
        import psutil

        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        jobid = os.path.basename(folder)
        if not any(jobid in part for part in process.cmdline()):
            return None  # a recycled pid: the job's process runs <folder>/<name>.py
    except (psutil.Error, OSError):
        return None
    return f"{name}.pid names process {pid}, which is alive"


# -- params.json -> an xpmfs configuration tree ----------------------------------------------------


@dataclass(frozen=True)
class Params:
    """A job's ``params.json``, translated (see :func:`read_params`)."""

    config: dict[str, Any]  # the tree in xpmfs.serialization's format
    dependencies: tuple[str, ...]  # the jobs whose outputs it uses, as "<typeid>/<jobid>"
    version: int  # params.json's version
    experimaestro: str | None  # the experimaestro version that wrote it (2.x only)
    script_files: tuple[str, ...]  # the experiment scripts its __main__ classes come from


def read_params(folder: Path | str, workspace: Path | str, typeids: dict[str, str] | None = None) -> Params:
    """Read ``<folder>/params.json`` into an xpmfs configuration tree (format ``xpmfs.config/1``).

    ``xpmfs.serialization.from_dict`` rebuilds it into the same configuration (same identifier).
    Paths are made absolute: ``base: "job"`` against ``folder``, ``base: "workspace"`` against
    ``workspace`` (so a moved workspace still reads right). ``typeids`` maps job identifiers to
    their type id, to give each task its job folder; missing ones use the type name lower-cased.
    Nothing is imported: this reads JSON only. Raises :class:`ConfigError` for what it cannot read.
    """
    path = Path(folder) / PARAMS_FILE
    try:
        content = path.read_bytes()
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            data = json.loads(content)  # Python's json writes NaN and Infinity, which orjson refuses
    except (OSError, ValueError) as error:
        raise ConfigError(str(path), f"cannot be read ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("objects"), list) or not data["objects"]:
        raise ConfigError(str(path), "holds no 'objects' list")
    version = data.get("version", 1)
    if version not in PARAMS_VERSIONS:
        raise ConfigError(
            str(path),
            f"is params.json version {version!r}; this xpmfs reads versions {PARAMS_VERSIONS}",
            "adopt it with an xpmfs that knows this version",
        )
    return _Translator(path, Path(folder), Path(workspace), typeids or {}).translate(data, version)


class _Translator:
    def __init__(self, path: Path, folder: Path, workspace: Path, typeids: dict[str, str]) -> None:
        self.path = path
        self.folder = folder
        self.workspace = workspace
        self.typeids = typeids
        self.numbers: dict[Any, int] = {}

    def translate(self, data: dict[str, Any], version: int) -> Params:
        objects = data["objects"]
        for record in objects:
            if not isinstance(record, dict) or "id" not in record:
                raise ConfigError(str(self.path), "has an object without 'id'")
            self.numbers.setdefault(record["id"], len(self.numbers))
        by_id = {record["id"]: record for record in objects}
        root = objects[-1]  # experimaestro writes an object after everything it refers to
        records, files, dependencies = [], [], set()
        for record in objects:
            number = self.numbers[record["id"]]
            module, qualname = record.get("module"), record.get("type")
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise ConfigError(str(self.path), f"object {record['id']} has no 'module' and 'type'")
            type_ref: dict[str, str] = {"module": module, "qualname": qualname}
            if module == "__main__":
                file = record.get("file")
                if not isinstance(file, str):
                    raise ConfigError(str(self.path), f"class {qualname} of __main__ has no 'file'")
                type_ref["file"] = file
                if file not in files:
                    files.append(file)
            fields = record.get("fields", {})
            if not isinstance(fields, dict):
                raise ConfigError(str(self.path), f"object {record['id']}: 'fields' is not an object")
            out: dict[str, Any] = {
                "id": number,
                "type": type_ref,
                "fields": {name: self.value(value, f"{qualname}.{name}") for name, value in sorted(fields.items())},
                "sealed": True,  # a submitted job's whole tree was sealed
            }
            producer = record.get("task")
            if producer is not None:
                if producer not in by_id:
                    raise ConfigError(str(self.path), f"object {record['id']} names task {producer}, not in the file")
                if producer == record["id"]:  # a task: it has a job folder of its own
                    out["jobpath"] = str(self._jobpath(record))
                else:  # a task's output
                    out["task"] = self.numbers[producer]
                dependencies.add(self._relpath(by_id[producer]))  # the root itself is removed below
            init_tasks = record.get("init-tasks")
            if init_tasks:
                out["init_tasks"] = [self._number(n) for n in init_tasks]
            if record.get("meta") is not None:
                out["meta"] = bool(record["meta"])
            records.append(out)
        config = {"format": SERIALIZATION_FORMAT, "root": self.numbers[root["id"]], "objects": records}
        dependencies.discard(self._relpath(root))
        return Params(config, tuple(sorted(dependencies)), version, data.get("experimaestro"), tuple(files))

    def _relpath(self, record: dict[str, Any]) -> str:
        """``<typeid>/<jobid>`` of the task ``record``."""
        identifier = _identifier(record)
        if identifier == self.folder.name:
            return f"{self.folder.parent.name}/{identifier}"
        typeid = self.typeids.get(identifier) or str(record.get("typename", record["type"])).lower()
        return f"{typeid}/{identifier}"

    def _jobpath(self, record: dict[str, Any]) -> Path:
        return self.workspace / "jobs" / self._relpath(record)

    def _number(self, value: Any) -> int:
        if value not in self.numbers:
            raise ConfigError(str(self.path), f"refers to object {value!r}, which is not in the file")
        return self.numbers[value]

    def value(self, raw: Any, where: str) -> Any:
        if isinstance(raw, float) and not math.isfinite(raw):  # json writes NaN and Infinity
            return {"$float": "nan" if math.isnan(raw) else ("inf" if raw > 0 else "-inf")}
        if raw is None or isinstance(raw, (bool, int, float, str)):
            return raw
        if isinstance(raw, list):
            return [self.value(item, where) for item in raw]
        if not isinstance(raw, dict):
            raise ConfigError(where, f"{self.path}: unexpected value {raw!r:.80}")
        kind = raw.get("type")
        if kind is None or not isinstance(kind, str):
            # A plain dictionary (experimaestro writes dicts as they are).
            if any(key.startswith("$") for key in raw):
                return {"$dict": [[key, self.value(value, where)] for key, value in raw.items()]}
            return {key: self.value(value, f"{where}[{key!r}]") for key, value in raw.items()}
        if kind == "python":
            return {"$ref": self._number(raw.get("value"))}
        if kind == "path":
            base, value = raw.get("base"), str(raw.get("value"))
            if base == "job":
                return {"$path": str(self.folder / value)}
            if base == "workspace":
                return {"$path": str(self.workspace / value)}
            return {"$path": value}
        if kind == "path.serialized":
            # A DataPath's value (experimaestro's SerializedPath). In a job's params.json it is the
            # path as given (no save directory: nothing was copied), and experimaestro's runner
            # gives the task that path as it is (``data_loader`` None: ``v.path``); so does this.
            return {"$path": str(raw.get("value"))}
        if kind == "enum":
            return {"$enum": {"module": raw.get("module"), "qualname": raw.get("enum"), "name": raw.get("value")}}
        if kind == "set":
            items = [self.value(item, where) for item in raw.get("items", ())]
            items.sort(key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
            return {"$set": items}
        raise ConfigError(
            where,
            f"{self.path}: a value of type {kind!r} cannot be read by xpmfs",
            "the job is adopted without its configuration (its state is kept)",
        )


def _identifier(record: dict[str, Any]) -> str:
    identifier = record.get("identifier")
    if isinstance(identifier, dict):  # an Identifier's state dict
        identifier = identifier.get("main") or identifier.get("identifier")
    if not isinstance(identifier, str):
        raise ConfigError(f"object {record.get('id')}", "has no 'identifier'")
    return identifier


# -- experiments ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    """One job of one run of an experiment, as experimaestro recorded it."""

    experiment: str
    run: str
    job: str  # "<typeid>/<jobid>"
    tags: dict[str, Any]
    submitted: float


def submissions(experiment_dir: Path) -> Iterator[Submission]:
    """The jobs each run of the experiment in ``experiment_dir`` submitted, oldest run first.

    2.x: ``<run>/jobs.jsonl`` lines; 1.x (no run folders): the ``jobs/<typeid>/<jobid>`` links,
    without tags, as run ``"experimaestro-1"``. Torn or unreadable lines are skipped.
    """
    name = experiment_dir.name
    try:
        entries = sorted(os.scandir(experiment_dir), key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name[:1] == "." or entry.is_symlink() or not entry.is_dir():
            continue
        journal = Path(entry.path) / RUN_JOURNAL
        if entry.name == LEGACY_JOBS_DIR and not journal.exists():
            yield from _legacy_links(name, Path(entry.path))
            continue
        try:
            data = journal.read_bytes()
        except OSError:
            continue
        for line in data.split(b"\n"):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            job_id, task_id = record.get("job_id"), record.get("task_id")
            if not isinstance(job_id, str) or not isinstance(task_id, str):
                continue
            tags = record.get("tags")
            when = record.get("timestamp")
            yield Submission(
                name,
                entry.name,
                f"{task_id}/{job_id}",
                tags if isinstance(tags, dict) else {},
                float(when) if isinstance(when, (int, float)) else entry.stat().st_mtime,
            )


def _legacy_links(name: str, jobs_dir: Path) -> Iterator[Submission]:
    try:
        types = sorted(os.listdir(jobs_dir))
    except OSError:
        return
    for typeid in types:
        try:
            ids = sorted(os.listdir(jobs_dir / typeid))
        except OSError:
            continue
        for jobid in ids:
            try:
                when = os.lstat(jobs_dir / typeid / jobid).st_mtime
            except OSError:
                continue
            yield Submission(name, "experimaestro-1", f"{typeid}/{jobid}", {}, when)


def experiment_lock(experiment_dir: Path) -> int | None:
    """Take experimaestro's experiment lock (``lock``, flock) without writing it; return the
    descriptor that holds it, or ``None`` if a run of the experiment holds it. Creates the file,
    empty, only if it does not exist; closing the descriptor releases the lock.

    This keeps a run of experimaestro's out. xpmfs's own runs lock ``xpmfs.lock`` (the
    workspace's lock mode), never this file.
    """
    path = experiment_dir / EXPERIMENT_LOCK
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NONBLOCK, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return None
        raise
    return fd


__all__ = [
    "MARKER",
    "PARAMS_FILE",
    "Outcome",
    "Params",
    "Submission",
    "experiment_lock",
    "is_workspace",
    "live_process",
    "lock_held",
    "outcome",
    "read_params",
    "submissions",
    "task_name",
]
