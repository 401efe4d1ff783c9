"""The direct launcher: the worker that claims a job runs it as its own child, on its own host."""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from .. import _atomic
from ..lifecycle import ENV_PARENT_PID
from ..zygote import ForkedProcess, Zygote
from .base import Context

if TYPE_CHECKING:
    from ..job import Job, Spec
    from ..lifecycle import Claim
    from ..status import Status

log = logging.getLogger("xpmfs.worker")


@dataclass(frozen=True)
class DirectLauncher:
    """Run the job as a child of the worker that claims it (the default).

    The worker holds the job's lock for the whole run and the runner dies with it
    (``spec/workspace.md``, "A worker's loop"). By default the worker forks the job from its warm
    runner (``xpmfs.zygote``), which has imported xpmfs and the task's modules already;
    ``isolate=True`` starts a fresh interpreter instead (``python <name>.py``), for tasks that
    change interpreter-wide state at import or need a clean process.
    """

    TYPE: ClassVar[str] = "direct"
    isolate: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``launcher`` record of ``spec.json``."""
        record: dict[str, Any] = {"type": self.TYPE}
        if self.isolate:
            record["isolate"] = True
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> DirectLauncher:
        """Read a ``launcher`` record; unknown keys are ignored (newer writers)."""
        return cls(isolate=bool(record.get("isolate", False)))

    def cancel(self, cluster_id: str) -> str:
        """A direct job is never handed off: there is no scheduler job to cancel (``xpmfs kill``
        signals its runner)."""
        return ""


class Direct:
    """The worker's direct launcher: forks each job from the warm runner (one per worker, started
    on first use and again when it exits), or starts ``python <name>.py`` when the job must be
    isolated, runs another interpreter, or the warm runner refused it."""

    holds_slot = True

    def __init__(self, context: Context) -> None:
        self.context = context
        self._zygote: Zygote | None = None

    def problem(self) -> str | None:
        return None

    def start(self, claim: Claim) -> Run:
        env = claim.environ()
        return Run(self, claim, env, self._fork_warm(claim, env) or self.start_fresh(claim, env))

    def track(self, job: Job, spec: Spec, current: Status) -> bool:
        return False  # never handed off: its worker holds the lock while it runs

    def follow(self, full: bool) -> None:
        pass

    def close(self) -> None:
        if self._zygote is not None:
            self._zygote.close()

    def start_fresh(self, claim: Claim, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start the job's runner as a new interpreter, ``python <name>.py``, with ``env`` added to
        the worker's environment."""
        job, spec = claim.job, claim.spec
        # Appended, never truncated: a job folder may hold streams of earlier attempts, or of
        # another tool (spec/workspace.md, "Files xpmfs did not write"); the runner heads each
        # attempt that follows others.
        with _open_output(job.stdout_path, "ab") as out, _open_output(job.stderr_path, "ab") as err:
            process = subprocess.Popen(
                [spec.python, str(job.script_path)],
                cwd=job.path,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**self.context.environ, **env},
                start_new_session=True,
            )
        threading.Thread(target=self._await, args=(process,), daemon=True).start()
        return process

    def _fork_warm(self, claim: Claim, env: dict[str, str]) -> ForkedProcess | None:
        """Fork the job from the warm runner; ``None`` when it must (or could not) start fresh."""
        job, spec = claim.job, claim.spec
        if not self.context.warm or DirectLauncher.from_json(spec.launcher).isolate or not _same_python(spec.python):
            return None
        if self._zygote is None or not self._zygote.alive:
            # None yet, or it exited because a task module changed on disk: start a new one.
            self._zygote = Zygote(on_exit=self.context.wake, environ=dict(self.context.environ))
        stdout, stderr = job.output_files
        request = {
            "job": os.fspath(job),
            "env": {**env, ENV_PARENT_PID: str(self._zygote.process.pid)},  # the fork dies with the zygote
            "stdout": stdout,
            "stderr": stderr,
            "sys_path": list(spec.sys_path),
            "preload": [record["type"] for record in spec.config.get("objects", ()) if "type" in record],
        }
        return self._zygote.spawn(request)

    def _await(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self.context.wake()


class Run:
    """A direct job's run: its runner's process, forked or fresh."""

    def __init__(
        self, launcher: Direct, claim: Claim, env: dict[str, str], process: subprocess.Popen[bytes] | ForkedProcess
    ) -> None:
        self._launcher = launcher
        self._claim = claim
        self._env = env
        self._process = process
        self._killed = False  # SIGKILLed to hand the job back: never start it again

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def poll(self) -> int | None:
        code = self._process.poll()
        refused = self._process.refused if isinstance(self._process, ForkedProcess) else None
        if code is None or refused is None or self._killed:
            return code
        # The zygote did not fork it (a task module changed, or does not import): the job never
        # started; start it the fresh way, still under our lock.
        log.info("worker %s: %s starts in a new interpreter (%s)", self._claim.worker, self._claim.job.ref, refused)
        try:
            self._process = self._launcher.start_fresh(self._claim, self._env)
        except OSError as error:
            log.error("worker %s: cannot start %s: %s", self._claim.worker, self._claim.job.ref, error)
            return 1
        return None

    def cancel(self, signum: int) -> None:
        self._killed = self._killed or signum == signal.SIGKILL
        pid = self.pid
        if pid is None:
            return  # a job the zygote refused: it never started
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


@functools.lru_cache(maxsize=16)
def _same_python(python: str) -> bool:
    """Whether ``python`` (a spec's interpreter) is the one running this worker (asked per job)."""
    # Not samefile(): a venv's python is a symlink to the base interpreter, with other packages.
    return os.path.abspath(python) == os.path.abspath(sys.executable)


def _open_output(path: Path, mode: str) -> IO[bytes]:
    """A job's ``.out``/``.err`` opened for its runner; a full or read-only disk names the file."""
    try:
        return open(path, mode)  # the caller's `with` closes it
    except OSError as error:
        raise _atomic.write_error(path, error) from error
