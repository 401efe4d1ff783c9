"""Job states and the one place where a job moves from one state to another.

``status.json`` in a job's ``__xpm__`` folder holds a :class:`Status`; its ``state`` value is
exactly the :class:`State` value. Terminal states also leave a marker file (``done`` or
``failed``), which is what scanners test for, because a ``stat`` is cheaper than a parse.

Every write of ``status.json`` and of the markers goes through :func:`transition`, which only
:mod:`xpmfs.lifecycle` calls (it decides every outcome), holding the job's lock.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import orjson

from . import _atomic
from ._crash import crash_point
from .errors import CorruptedError, WorkspaceError
from .journal import Journal

STATUS_FILE = "status.json"
DONE_MARKER = "done"
FAILED_MARKER = "failed"
HISTORY_FILE = "history.jsonl"


class State(str, Enum):
    """A job's state; the value is what ``status.json`` records."""

    WAITING = "waiting"  # dependencies unfinished
    READY = "ready"  # may run now
    SUBMITTED = "submitted"  # handed to a cluster scheduler, not yet started
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self in (State.DONE, State.FAILED)

    # experimaestro's JobState predicates (user scripts call job.state.finished()...).
    def notstarted(self) -> bool:
        return self in (State.WAITING, State.READY)

    def running(self) -> bool:
        return self in (State.SUBMITTED, State.RUNNING)

    def finished(self) -> bool:
        return self.terminal

    def is_error(self) -> bool:
        return self is State.FAILED


class Reason(str, Enum):
    """Why a job failed; the value is what ``status.json`` and the ``failed`` marker record."""

    ERROR = "error"  # the task raised, or its process exited non-zero
    TIMEOUT = "timeout"  # GracefulTimeout, or killed at its time limit
    CANCELLED = "cancelled"  # `xpmfs kill`, or SIGTERM from outside
    DEPENDENCY = "dependency"  # a job it depends on failed
    LOST = "lost"  # its process vanished without a trace (node failure, cluster job gone)


# Which state may follow which. ``None`` is a job with no status yet.
_ALLOWED: dict[State | None, frozenset[State]] = {
    None: frozenset({State.WAITING, State.READY}),
    State.WAITING: frozenset({State.READY, State.SUBMITTED, State.RUNNING, State.FAILED}),
    State.READY: frozenset({State.WAITING, State.SUBMITTED, State.RUNNING, State.FAILED}),
    # A worker that stops hands its running job back (RUNNING -> READY); so does a retry.
    State.SUBMITTED: frozenset({State.READY, State.RUNNING, State.DONE, State.FAILED}),
    State.RUNNING: frozenset({State.READY, State.DONE, State.FAILED}),
    # Resubmitting a failed job (re-running its experiment, `xpmfs retry`), or a done one on
    # explicit request (`xpmfs retry --force`).
    State.DONE: frozenset({State.WAITING, State.READY}),
    State.FAILED: frozenset({State.WAITING, State.READY}),
}


@dataclass(frozen=True)
class Status:
    """The content of ``status.json``. Missing fields read as their defaults (older writers)."""

    state: State
    attempt: int = 0  # how many times a run started
    retry_count: int = 0  # how many timeout retries were granted
    host: str | None = None
    pid: int | None = None  # the runner's pid while running
    worker: str | None = None  # the worker that claimed it
    updated: float = 0.0
    claimed: float | None = None  # when a worker took the job's lock for this attempt
    started: float | None = None  # when the runner began
    ended: float | None = None
    exit_code: int | None = None
    reason: Reason | None = None
    message: str | None = None
    cluster_id: str | None = None  # e.g. the SLURM job id

    def to_json(self) -> dict[str, Any]:
        record = dict(self.__dict__)  # the fields, in order; flat: asdict's deep copy is slow
        record["state"] = self.state.value
        record["reason"] = self.reason.value if self.reason else None
        return record

    @classmethod
    def from_json(cls, record: Any, path: Path | str) -> Status:
        try:
            if type(record) is dict and _FIELD_NAMES.issuperset(record):
                values = dict(record)  # the usual case, in C: `xpmfs ls` reads one per job
            else:  # unknown fields (a newer writer) are ignored
                values = {key: value for key, value in record.items() if key in _FIELD_NAMES}
            values["state"] = State(record["state"])
            if values.get("reason") is not None:
                values["reason"] = Reason(values["reason"])
            return cls(**values)
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise CorruptedError(
                Path(path), f"is not a valid job status ({error})", "run `xpmfs check --fix` on the workspace"
            ) from error


def _replace(status: Status, **changes: Any) -> Status:
    # dataclasses.replace() walks the class's fields in Python: a forked job pays for that code.
    return Status(**{**status.__dict__, **changes})


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Status))
_MARKERS = ((DONE_MARKER, State.DONE), (FAILED_MARKER, State.FAILED))


def read(xpm_dir: Path | str) -> Status | None:
    """The status in ``xpm_dir`` (a job's ``__xpm__``), or ``None`` if it has none yet."""
    # A string path: workers read this for every job they claim, runners once per run.
    path = f"{xpm_dir}/{STATUS_FILE}"
    try:
        data = _atomic.read_bytes(path)
    except FileNotFoundError:
        return None
    try:
        record = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise CorruptedError(
            Path(path), f"is not valid JSON ({error})", "run `xpmfs check --fix` on the workspace"
        ) from error
    return Status.from_json(record, path)


def terminal_marker(xpm_dir: Path | str) -> State | None:
    """``DONE`` or ``FAILED`` if the job has that marker, else ``None`` (two ``stat`` calls at most)."""
    found = marker_stat(xpm_dir)
    return found[0] if found is not None else None


def marker_stat(xpm_dir: Path | str) -> tuple[State, os.stat_result] | None:
    """The job's terminal marker as its state and its ``stat`` (when it ended), or ``None``."""
    # String paths: a worker asks this of every queue entry it looks at. Only "no such file"
    # means no marker; any other error (NFS...) is raised, never taken for "not finished".
    for name, state in _MARKERS:
        try:
            return state, os.stat(f"{xpm_dir}/{name}")
        except (FileNotFoundError, NotADirectoryError):
            pass
    return None


def read_failure(xpm_dir: Path) -> dict[str, Any]:
    """The content of the ``failed`` marker (``reason``, ``message``, ``ended``...); tolerant of damage."""
    try:
        record = orjson.loads((xpm_dir / FAILED_MARKER).read_bytes())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict):
        return {"reason": Reason.ERROR.value}
    if record.get("reason") is None:
        record["reason"] = Reason.ERROR.value
    return record


def failure_text(failure: dict[str, Any]) -> str:
    """A ``failed`` marker's record (see :func:`read_failure`) in one line: ``reason: message``."""
    reason, message = failure.get("reason", Reason.ERROR.value), failure.get("message")
    return f"{reason}: {message}" if message else str(reason)


class TransitionError(WorkspaceError):
    """A state change that the state machine forbids (a bug, or a job changed under our feet)."""


class Superseded(WorkspaceError):
    """A process's attempt is no longer the job's current one: another attempt started since (a
    frozen node whose lease was taken over). It records nothing (spec/failure-model.md, fencing)."""

    def __init__(self, path: Path | str, mine: int, current: Status | None) -> None:
        self.mine = mine
        self.current = current
        if current is None:
            now = "the job has no status"
        else:
            where = f" on {current.host}" if current.host else ""
            now = f"the job is at attempt {current.attempt} ({current.state.value}{where})"
        super().__init__(
            Path(path),
            f"attempt {mine} is no longer the job's current attempt: {now}",
            "nothing to do: the current attempt's outcome stands, and this one is not recorded",
        )


def initial(to: State) -> Status:
    """The status a new job starts in; :meth:`xpmfs.job.Job.create` writes it with the job's spec.

    The only change of state made without the job's lock, and it needs none: the status is written
    inside a folder that nobody can see, let alone lock, until it is renamed into place.
    """
    if to not in _ALLOWED[None]:
        raise ValueError(f"a new job starts waiting or ready, not {to.value}")
    return Status(state=to, updated=time.time())


class _Unread(Enum):
    UNREAD = "unread"


_UNREAD = _Unread.UNREAD  # ``current`` not given: read it


def transition(
    xpm_dir: Path | str,
    to: State,
    *,
    current: Status | _Unread | None = _UNREAD,
    fence: int | None = None,
    **fields: Any,
) -> Status:
    """Move the job whose ``__xpm__`` folder is ``xpm_dir`` to state ``to``, and return its new status.

    The caller holds the job's lock. ``fields`` update the status record (``attempt``, ``pid``,
    ``reason``, ...). ``current`` is the job's status if the caller has it already, read or
    written under the same lock (the lock holder is the only writer, so it is still true); by
    default it is read.

    ``fence`` is the attempt the caller acts for (its claim named it). The status is then read
    again just before writing, whatever ``current`` says, and :class:`Superseded` is raised, with
    nothing written, unless the job is still at that attempt: a lease can be taken over from a
    frozen holder, which then must not record over the attempt that replaced it.

    The order of writes is what makes a crash harmless:

    * leaving a terminal state (resubmission): the marker goes first, so a scanner never sees a
      marker that contradicts a live state; the old status is kept in ``history.jsonl``;
    * entering a terminal state: ``status.json`` first, then the marker. A crash in between leaves
      no marker: the job looks unfinished and is run again, which is safe, never lost.
    """
    if current is _UNREAD or fence is not None:
        current = read(xpm_dir)
        if fence is not None and (current.attempt if current is not None else 0) != fence:
            raise Superseded(Path(xpm_dir, STATUS_FILE), fence, current)
    before = current.state if current else None
    if to not in _ALLOWED[before]:
        raise TransitionError(
            Path(xpm_dir, STATUS_FILE),
            f"a job cannot go from {before.value if before else 'no status'} to {to.value}",
            "this is a bug in xpmfs, or another process changed the job; run `xpmfs check` on the workspace",
        )
    if to.terminal and (before is None or not before.terminal):
        # An outcome marked already stands: never write a status that its marker contradicts.
        found = terminal_marker(xpm_dir)
        if found is not None:
            raise _marked_already(xpm_dir, DONE_MARKER if found is State.DONE else FAILED_MARKER, current or Status(to))
    now = time.time()
    base = current if current is not None else Status(state=to)
    if (
        current is not None
        and before is not None
        and (before.terminal or (before is State.RUNNING and not to.terminal))
    ):
        # Keep what the last attempt ended with (a retry or a hand-back leaves RUNNING for READY):
        # a running record does not say how it ended, so complete it with what this call says.
        ended = current
        if before is State.RUNNING:
            ending = {key: fields[key] for key in ("reason", "message", "exit_code") if key in fields}
            if ending.get("reason") is not None:
                ending["reason"] = Reason(ending["reason"])
            ended = _replace(current, ended=fields.get("ended", now), **ending)
        _append_history(xpm_dir, ended)
    if before is not None and before.terminal:
        # Clear the terminal marker first: nobody may see a marker that contradicts the new state.
        for marker in (DONE_MARKER, FAILED_MARKER):
            try:
                os.unlink(f"{xpm_dir}/{marker}")
            except FileNotFoundError:
                pass
            except OSError as error:  # a read-only or failing file system: name the file and the fix
                raise _atomic.write_error(f"{xpm_dir}/{marker}", error) from error
        base = _replace(base, ended=None, exit_code=None, reason=None, message=None)
    if to is State.RUNNING:
        if "host" not in fields:
            fields["host"] = socket.gethostname()
        fields.setdefault("started", now)
        fields.setdefault("attempt", base.attempt + 1)
    if to.terminal:
        fields.setdefault("ended", now)
    if "reason" in fields and fields["reason"] is not None:
        fields["reason"] = Reason(fields["reason"])
    if fields.get("attempt", base.attempt) < base.attempt:
        raise TransitionError(
            Path(xpm_dir, STATUS_FILE),
            f"the attempt cannot go back from {base.attempt} to {fields['attempt']}",
            "this is a bug in xpmfs, or another process changed the job; run `xpmfs check` on the workspace",
        )
    status = _replace(base, state=to, updated=now, **fields)
    _atomic.write_json(f"{xpm_dir}/{STATUS_FILE}", status.to_json())
    if to.terminal:
        crash_point("complete.after-status")
        write_marker(xpm_dir, status)
    return status


def write_marker(xpm_dir: Path | str, status: Status) -> None:
    """Create the terminal marker of ``status`` (just written to ``status.json``).

    The marker is a hard link to that ``status.json``: one ``link`` call, atomic, and its content
    is the final status (``ended``, ``reason``, ``message``...). A later ``status.json`` replaces
    the name, not the file, so the marker keeps this content. Where links fail (a file system
    without them), the marker is written as a copy instead.

    A marker is never replaced, and never created beside the other one: an outcome, once marked,
    stands (only a resubmission, which removes it first, ends it). Finding one raises
    :class:`TransitionError` and leaves both files as they are, for ``xpmfs check`` to report.
    """
    ours, other = (DONE_MARKER, FAILED_MARKER) if status.state is State.DONE else (FAILED_MARKER, DONE_MARKER)
    marker = f"{xpm_dir}/{ours}"
    if os.path.lexists(f"{xpm_dir}/{other}"):
        raise _marked_already(xpm_dir, other, status)
    try:
        os.link(f"{xpm_dir}/{STATUS_FILE}", marker)
    except FileExistsError:
        raise _marked_already(xpm_dir, ours, status) from None
    except OSError:
        if os.path.lexists(marker):
            raise _marked_already(xpm_dir, ours, status) from None
        _atomic.write_json(marker, status.to_json())


def _marked_already(xpm_dir: Path | str, marker: str, status: Status) -> TransitionError:
    return TransitionError(
        Path(xpm_dir, marker),
        f"exists already, so attempt {status.attempt} cannot be marked {status.state.value}",
        "run `xpmfs check --fix` on the workspace: it settles the outcome by the job's history",
    )


def complete_interrupted(xpm_dir: Path | str, current: Status | _Unread | None = _UNREAD) -> State | None:
    """Finish a terminal transition a crash cut short: the status says done/failed, the marker is missing.

    The status was written after the task's outcome was known, so the outcome stands: write the
    marker it lacks and return the state. Returns ``None`` when there is nothing to complete. The
    caller holds the job's lock; ``current`` is the status if it has read it already.
    """
    if current is _UNREAD:
        current = read(xpm_dir)
    if current is None or not current.state.terminal or terminal_marker(xpm_dir) is not None:
        return None
    write_marker(xpm_dir, current)
    return current.state


def _append_history(xpm_dir: Path | str, status: Status) -> None:
    # Single writer: only the lock holder appends here (and the journal ends a torn last line).
    with Journal(Path(xpm_dir, HISTORY_FILE)) as history:
        history.append(status.to_json())


def read_record(path: str) -> Status | None:
    """The status record in the file at ``path`` (status.json or a marker), or ``None`` if unreadable."""
    try:
        return Status.from_json(orjson.loads(_atomic.read_bytes(path)), path)
    except (OSError, ValueError, CorruptedError):
        return None
