"""Every error xpmfs raises on purpose.

One root, :class:`Error`; each subclass also derives from the matching builtin so callers can catch
``ValueError`` or ``OSError`` as usual. Fields are attributes, the message is built in ``__str__``
(so it is never stale), and every class pickles, because errors cross process boundaries.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any


class Error(Exception):
    """Root of every xpmfs error."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuild from the keyword fields, not from ``args``: the message is derived.
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type[Error], fields: dict[str, Any]) -> Error:
    error = cls.__new__(cls)
    error.__dict__.update(fields)
    return error


class _Located(Error):
    """An error about a named thing: ``where`` names it, ``problem`` says what, ``fix`` what to do."""

    def __init__(self, where: str, problem: str, fix: str = "") -> None:
        super().__init__(where, problem, fix)
        self.where = where
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        message = f"{self.where}: {self.problem}"
        return f"{message}; {self.fix}" if self.fix else message


class ConfigError(_Located, TypeError, ValueError):
    """A configuration was built or changed with bad input; ``where`` is ``Class.field`` (or ``Class``).

    Both a ``TypeError`` and a ``ValueError``: experimaestro raises either for a bad value, and an
    ``except`` written for experimaestro must catch it.
    """


class ReadOnlyError(ConfigError, AttributeError):
    """A field that cannot take this value here: a ``Constant``, a generated field, or a value holding
    another job's generated paths. Also an ``AttributeError``, as experimaestro raises."""


class OptionError(_Located, ValueError):
    """An option given to an xpmfs function is out of range: ``where`` names it."""


class SealedError(ReadOnlyError):
    """A submitted (sealed) configuration was changed."""


class WorkspaceError(Error, OSError):
    """Something in a workspace is missing, damaged or incompatible.

    ``path`` is the file or folder concerned, ``problem`` what is wrong with it, ``fix`` what to do.
    """

    def __init__(self, path: str | Path, problem: str, fix: str = "", *, errno: int | None = None) -> None:
        super().__init__(str(path), problem, fix)
        self.path = Path(path)
        self.problem = problem
        self.fix = fix
        # As an OSError: the errno of the failure behind it (if any), the message, the file.
        self.errno = errno
        self.strerror = problem
        self.filename = str(path)

    def __str__(self) -> str:
        message = f"{self.path}: {self.problem}"
        return f"{message}; {self.fix}" if self.fix else message


class FormatError(WorkspaceError):
    """The workspace was written by another format version or lock mode."""


class CorruptedError(WorkspaceError, ValueError):
    """A file cannot be parsed, or a job's spec does not hash to its directory."""


class UntrustedError(WorkspaceError, PermissionError):
    """A job's code (its ``spec.json``, its ``<name>.py``) belongs to a user this process does not trust.

    A spec names the modules a runner imports: running it runs its owner's code as the worker's
    user (spec/workspace.md, "Trust"). ``path`` is the file, ``owner`` its owner's uid and
    ``owner_name`` their name (the uid when it has none), ``trusted`` the names of the users trusted.
    """

    def __init__(self, path: str | Path, owner: int, owner_name: str, trusted: tuple[str, ...]) -> None:
        who = f"{owner_name} (uid {owner})" if owner_name != str(owner) else f"uid {owner}"
        super().__init__(
            path,
            f"is owned by {who}, and a worker runs code owned by {' or '.join(trusted)} only",
            f"if you trust {owner_name}, start the worker with `xpmfs worker --trust-user {owner_name}`; "
            "if not, remove the job's folder and have a trusted user submit it again",
            errno=errno.EPERM,
        )
        self.owner = owner
        self.owner_name = owner_name
        self.trusted = trusted


class JobNotFoundError(Error, LookupError):
    """No job matches what the user named."""

    def __init__(self, name: str, workspace: str | Path, problem: str = "no such job") -> None:
        super().__init__(name, str(workspace), problem)
        self.name = name
        self.workspace = Path(workspace)
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.name}: {self.problem} in workspace {self.workspace}; list jobs with `xpmfs ls {self.workspace}`"


class NoExperimentError(Error, RuntimeError):
    """``submit()`` was called outside ``with experiment(...)``."""

    def __init__(self, task: str) -> None:
        super().__init__(task)
        self.task = task

    def __str__(self) -> str:
        return f"{self.task}.submit() needs a running experiment; call it inside `with experiment(workspace, name):`"


class FailedExperiment(Error, RuntimeError):
    """Some jobs of an experiment failed: ``failures`` maps each job's directory to its reason."""

    def __init__(self, name: str, failures: dict[str, str], logs: dict[str, str]) -> None:
        super().__init__(name, failures, logs)
        self.name = name
        self.failures = failures
        self.logs = logs

    def __str__(self) -> str:
        lines = [f"experiment {self.name!r}: {len(self.failures)} job(s) failed"]
        for job, reason in sorted(self.failures.items()):
            log = self.logs.get(job)
            lines.append(f"  {job}: {reason}" + (f" (see {log})" if log else ""))
        return "\n".join(lines)


class GracefulTimeout(Error):
    """Raised by a task that stops early because it would not finish in its time limit.

    The attempt ends ``failed`` with reason ``timeout``; a ``ResumableTask`` is then retried while
    its retry count is below ``max_retries``.
    """

    def __init__(self, message: str = "stopped before the time limit") -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class TaskCancelled(Error):
    """Raised inside a running task when its job is cancelled (SIGTERM: ``xpmfs kill``, ``scancel``).

    An ``Exception``, as in experimaestro: a task may catch it to clean up before it is killed
    (SLURM waits ``KillWait`` seconds after SIGTERM). Catching it does not undo the cancellation:
    the job still ends ``failed`` with reason ``cancelled`` (or ``timeout`` when SLURM's time
    limit sent the signal). ``remaining_time`` is the estimated time before SIGKILL in seconds,
    ``None`` when unknown.
    """

    def __init__(self, message: str = "Task cancelled by signal", remaining_time: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remaining_time = remaining_time

    def __str__(self) -> str:
        return self.message


class SettingsError(WorkspaceError, ValueError):
    """The user's settings file (``settings.yaml``) cannot be read, or one of its fields is wrong.

    ``path`` is the settings file, ``field`` the field concerned (``workspaces[0].max_retries``;
    empty when the whole file is at fault), ``problem`` what is wrong, ``fix`` what to do.
    """

    def __init__(self, path: str | Path, field: str, problem: str, fix: str = "") -> None:
        super().__init__(path, f"{field}: {problem}" if field else problem, fix)
        self.field = field


class CacheError(Error, RuntimeError):
    """A ``@cache`` method cannot run: no cache root is known, or it would wait for itself.

    ``what`` names the method (``Terms.load``) or the cache file, ``problem`` what is wrong and
    ``fix`` what to do.
    """

    def __init__(self, what: str, problem: str, fix: str = "") -> None:
        super().__init__(what, problem, fix)
        self.what = what
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        message = f"{self.what}: {self.problem}"
        return f"{message}; {self.fix}" if self.fix else message
