"""The job runner: the process that runs one job (``python jobs/<typeid>/<jobid>/<name>.py``).

A worker starts it with the job's lock already held (``XPMFS_LOCK_HELD=1``; the worker keeps the
lock and this process dies with the worker). Started by hand or by a cluster scheduler, it takes
the lock itself. Either way, the runner writes ``running`` when it starts and the terminal state
when the task ends; the worker only writes for a runner that died without saying how.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import traceback
from pathlib import Path
from typing import Any

from . import queue, status
from ._process import die_with_parent
from .errors import GracefulTimeout
from .job import Job, Spec
from .queue import JobRef
from .status import Reason, State
from .workspace import Workspace

ENV_LOCK_HELD = "XPMFS_LOCK_HELD"  # "1": the parent (a worker) holds the job's lock for us
ENV_PARENT_PID = "XPMFS_PARENT_PID"  # die when this process dies
ENV_WORKER = "XPMFS_WORKER"  # the name of the worker that started us
ENV_CLAIMED = "XPMFS_CLAIMED"  # when that worker claimed the job (time.time())
ENV_JOB_DIR = "XPMFS_JOB_DIR"  # set by the runner for the task (and its subprocesses): its job folder

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_BUSY = 3  # someone else holds the job's lock
EXIT_TIMEOUT = 75  # EX_TEMPFAIL: GracefulTimeout
EXIT_CANCELLED = 143


class Cancelled(BaseException):
    """Raised in the task's thread when the runner receives SIGTERM (``xpmfs kill``)."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Cancelled()


def job_from_path(path: str | os.PathLike[str]) -> Job:
    """The job whose folder is ``path``, or holds the file ``path`` (its ``<name>.py``)."""
    where = Path(path).absolute()
    folder = where if where.is_dir() else where.parent
    jobs_dir = folder.parent.parent
    workspace = Workspace.open(jobs_dir.parent)
    return Job(workspace, JobRef(folder.parent.name, folder.name))


def main(path: str | os.PathLike[str]) -> int:
    """Run the job at ``path`` in this process and return the exit code."""
    parent = os.environ.get(ENV_PARENT_PID)
    if parent:
        die_with_parent(int(parent))
    job = job_from_path(path)
    lock = None
    if os.environ.pop(ENV_LOCK_HELD, None) != "1":
        lock = job.lock()
        if not lock.try_acquire():
            holder = lock.holder()
            who = f" by pid {holder.pid} on {holder.host}" if holder else ""
            print(f"xpmfs: job {job.path} is being run{who}; nothing to do", file=sys.stderr)
            return EXIT_BUSY
    try:
        return _run_locked(job)
    finally:
        if lock is not None:
            lock.release()


def _run_locked(job: Job) -> int:
    spec = job.read_spec()
    current = job.status()
    if job.marker() is State.DONE:
        print(f"xpmfs: job {job.path} is done already; use `xpmfs retry --force` to run it again", file=sys.stderr)
        return EXIT_DONE
    if current is not None and current.state in (State.RUNNING, State.FAILED):
        # A previous attempt died (RUNNING with nobody holding the lock) or failed: start afresh.
        status.transition(job.xpm_dir, State.READY, message=f"previous attempt ended {current.state.value}")
    status.transition(
        job.xpm_dir,
        State.RUNNING,
        pid=os.getpid(),
        host=socket.gethostname(),
        worker=os.environ.get(ENV_WORKER),
        claimed=float(os.environ[ENV_CLAIMED]) if ENV_CLAIMED in os.environ else None,
    )
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _execute(job, spec)
    except Cancelled:
        return _finish(job, spec, State.FAILED, Reason.CANCELLED, "cancelled (SIGTERM)", EXIT_CANCELLED)
    except GracefulTimeout as error:
        return _finish(job, spec, State.FAILED, Reason.TIMEOUT, str(error), EXIT_TIMEOUT)
    except BaseException as error:  # the task's own failure, whatever it is
        traceback.print_exc()
        sys.stderr.flush()
        return _finish(job, spec, State.FAILED, Reason.ERROR, f"{type(error).__name__}: {error}", EXIT_FAILED)
    return _finish(job, spec, State.DONE, None, None, EXIT_DONE)


def _execute(job: Job, spec: Spec) -> None:
    # The configuration layer, imported late so that a busy or finished job exits fast.
    from .outputs import install_writer
    from .serialization import from_dict

    for entry in reversed(spec.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    os.environ.update(spec.environ)
    os.environ[ENV_JOB_DIR] = str(job.path)
    os.chdir(job.path)
    task: Any = from_dict(spec.config)
    task.__xpm__.set_jobpath(job.path)
    install_writer(job, task)
    for init_task in task.__xpm__.init_tasks:
        init_task.execute()
    task.execute()


def _finish(job: Job, spec: Spec, to: State, reason: Reason | None, message: str | None, code: int) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the record must be written whole
    if reason is Reason.TIMEOUT and spec.resumable:
        current = job.status()
        retries = current.retry_count if current else 0
        if retries < spec.max_retries:
            status.transition(
                job.xpm_dir, State.READY, retry_count=retries + 1, message=f"timeout, retry {retries + 1}: {message}"
            )
            return code
    status.transition(job.xpm_dir, to, reason=reason, message=message, exit_code=code)
    job.clear_cancel()
    queue.remove(job.workspace.queue_dir, job.ref)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
