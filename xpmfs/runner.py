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
import time
import traceback
from pathlib import Path
from typing import Any

from . import status
from ._crash import crash_point
from ._process import die_with_parent
from .cache import set_root as set_cache_root  # not `from . import cache`: xpmfs.cache is the decorator
from .config import instantiate_job, set_remaining_time_provider, typeid
from .errors import CorruptedError, GracefulTimeout, TaskCancelled
from .job import Job, Spec
from .launchers import Inside, inside
from .lifecycle import (
    CLAIM_VARIABLES,
    ENV_ATTEMPT,
    ENV_CLAIMED,
    ENV_LOCK_HELD,
    ENV_PARENT_PID,
    ENV_WORKER,
    begin,
    end_attempt,
)
from .outputs import install_writer
from .partial_lock import hold as hold_partials
from .progress import flush as flush_progress
from .queue import JobRef
from .serialization import from_dict
from .status import Reason, State, Status
from .taskglobals import Env
from .workspace import Workspace

# Everything a run needs is imported above, not where it is used: a job forked by the warm runner
# (xpmfs.zygote) would otherwise run importlib's own Python code for each `from .x import y` in a
# function, and pay for copying the pages that code touches.

ENV_JOB_DIR = "XPMFS_JOB_DIR"  # set by the runner for the task (and its subprocesses): its job folder

EXIT_DONE = 0
EXIT_FAILED = 1
EXIT_BUSY = 3  # someone else holds the job's lock
EXIT_SUPERSEDED = 4  # another attempt of the job started meanwhile: this run recorded nothing
EXIT_TIMEOUT = 75  # EX_TEMPFAIL: GracefulTimeout
EXIT_CANCELLED = 143


Cancelled = TaskCancelled  # raised in the task's thread when the runner receives SIGTERM (``xpmfs kill``)

_task_running = False  # SIGTERM interrupts the task only: never our own record-keeping
_cancelled = False  # a task may catch TaskCancelled (an Exception) and return: still cancelled


def _on_sigterm(signum: int, frame: object) -> None:
    global _cancelled
    if _task_running:
        _cancelled = True
        raise TaskCancelled("Job cancelled by SIGTERM")
    # Arrived after the task returned or raised: its outcome stands; nothing to interrupt.


_opened: dict[str, Workspace] = {}  # by the warm runner, before it forks: a fork need not read the format


def job_in(folder: str) -> Job:
    """The job whose folder is ``folder``, an absolute path (the workspace is found from it)."""
    root, typeid, jobid = _parts(folder)
    workspace = _opened.get(root) or Workspace.open(Path(root))
    return Job(workspace, JobRef(typeid, jobid))


def _parts(folder: str) -> tuple[str, str, str]:
    """``(root, typeid, jobid)`` of the absolute job folder ``<root>/jobs/<typeid>/<jobid>``.

    String operations: each function a forked job calls for the first time costs it page copies
    (see xpmfs.zygote).
    """
    type_folder, _, jobid = folder.rpartition("/")
    jobs_dir, _, typeid = type_folder.rpartition("/")
    return jobs_dir.rpartition("/")[0] or "/", typeid, jobid


def open_workspace_of(job_folder: str) -> bool:
    """Open the workspace of the job in ``job_folder`` once, for the jobs forked from this process;
    return whether this call opened it."""
    # The warm runner asks for every job: its folders are absolute (os.fspath of a Job), and abspath is
    # posixpath's Python, which costs the zygote page copies on each fork (xpmfs.zygote).
    root = _parts(job_folder if job_folder.startswith("/") else os.path.abspath(job_folder))[0]
    if root in _opened:
        return False
    workspace = _opened[root] = Workspace.open(Path(root))
    for folder in (workspace.jobs_dir, workspace.queue_dir, workspace.config_dir):
        os.fspath(folder)  # computed and cached here, not again in every fork
    return True


def main(path: str | os.PathLike[str]) -> int:
    """Run the job at ``path`` (its folder, or the ``<name>.py`` in it) in this process and return
    the exit code."""
    where = os.path.abspath(path)
    return run_folder(where if os.path.isdir(where) else os.path.dirname(where))


def run_folder(folder: str) -> int:
    """:func:`main` for the absolute job folder ``folder``, which the warm runner gives as is."""
    parent = os.environ.get(ENV_PARENT_PID)
    if parent:
        die_with_parent(int(parent))
    job = job_in(folder)
    cluster = _enter_cluster(job)
    lock = None
    if os.environ.pop(ENV_LOCK_HELD, None) != "1":
        lock = job.lock()
        # A SLURM job may start before the worker that submitted it has released the lock.
        if not lock.acquire(cluster.lock_wait(job.workspace.lease_duration) if cluster else 0):
            holder = lock.holder()
            who = f" by pid {holder.pid} on {holder.host}" if holder else ""
            print(f"xpmfs: job {job.path} is being run{who}; nothing to do", file=sys.stderr)
            return EXIT_BUSY
    try:
        return _run_locked(job, cluster)
    finally:
        if lock is not None:
            lock.release()


def _enter_cluster(job: Job) -> Inside | None:
    """Inside a scheduler's job (SLURM's): ``remaining_time()`` asks its launcher. Returns it if
    it was submitted for this very job."""
    cluster = inside()
    if cluster is None:
        return None
    set_remaining_time_provider(cluster.remaining_time)
    try:
        return cluster if cluster.runs(job.read_spec().launcher) else None
    except CorruptedError:
        return None  # _run_locked reports it


def _run_locked(job: Job, cluster: Inside | None = None) -> int:
    spec = job.read_spec()
    claimed = os.environ.get(ENV_CLAIMED)
    attempt = os.environ.get(ENV_ATTEMPT)
    try:
        running = begin(
            job,
            claimed_attempt=int(attempt) if attempt is not None else None,
            cluster_id=cluster.cluster_id if cluster is not None else None,
            worker=os.environ.get(ENV_WORKER),
            claimed=float(claimed) if claimed is not None else None,
        )
    except status.Superseded as superseded:
        return _superseded(job, superseded)
    if running is State.DONE:
        print(f"xpmfs: job {job.path} is done already; use `xpmfs retry --force` to run it again", file=sys.stderr)
        return EXIT_DONE
    if not isinstance(running, Status):
        # Cancelled (`xpmfs kill`) or failed while its SLURM job was pending: not ours to revive.
        where = cluster.name if cluster is not None else "its cluster job"
        print(f"xpmfs: job {job.path} has failed meanwhile; {where} does not run it", file=sys.stderr)
        return EXIT_FAILED
    crash_point("start.after-running")
    _head_streams(running)
    global _task_running
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        _task_running = True
        try:
            _execute(job, spec)
        finally:
            _task_running = False
        if _cancelled:
            raise TaskCancelled("Job cancelled by SIGTERM")  # the task caught it and returned
    except Cancelled:
        if cluster is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the question short
        if cluster is not None and cluster.timed_out():
            message = f"{cluster.name} reached its time limit (SIGTERM)"
            return _finish(job, spec, running, State.FAILED, Reason.TIMEOUT, message, EXIT_TIMEOUT)
        return _finish(job, spec, running, State.FAILED, Reason.CANCELLED, "cancelled (SIGTERM)", EXIT_CANCELLED)
    except GracefulTimeout as error:
        return _finish(job, spec, running, State.FAILED, Reason.TIMEOUT, str(error), EXIT_TIMEOUT)
    except BaseException as error:  # the task's own failure, whatever it is
        traceback.print_exc()
        sys.stderr.flush()
        return _finish(job, spec, running, State.FAILED, Reason.ERROR, f"{type(error).__name__}: {error}", EXIT_FAILED)
    return _finish(job, spec, running, State.DONE, None, None, EXIT_DONE)


def _head_streams(running: Status) -> None:
    """Head this attempt's output in ``<name>.out`` and ``<name>.err`` when they hold something
    already (an earlier attempt's, or another tool's: streams are appended to, never truncated)."""
    for fd in (1, 2):
        try:
            if os.fstat(fd).st_size > 0:
                os.write(fd, _header(running))
        except OSError:
            pass  # a stream that cannot take a line of ours cannot take the task's either: it says so


def _header(running: Status) -> bytes:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(running.started))
    return f"----- xpmfs: attempt {running.attempt} on {running.host}, pid {running.pid}, {started} -----\n".encode()


def _execute(job: Job, spec: Spec) -> None:
    for entry in reversed(spec.sys_path):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    # The claim's own variables have the last say (spec/workspace.md, the runner's environment).
    os.environ.update({name: value for name, value in spec.environ.items() if name not in CLAIM_VARIABLES})
    os.environ[ENV_JOB_DIR] = os.fspath(job)
    os.chdir(job)
    set_cache_root(job.workspace)  # @cache methods of the task (and its init tasks) use WS/config
    task: Any = from_dict(spec.config)
    _verify(job, spec, task)
    task.__xpm__.set_jobpath(job.path)
    config = task
    # The job works with objects of the task's class, as in experimaestro: each built once, its
    # own __init__ then fields then __post_init__ (children first).
    task, init_tasks = instantiate_job(task)
    env = Env.instance()  # experimaestro's taskglobals, for tasks written for it
    env.wspath, env.taskpath, env.current_task = job.workspace.path, job.path, task
    install_writer(job, task)
    with hold_partials(config, job.path, job.workspace):  # one job at a time per partial folder
        for init_task in init_tasks:
            init_task.execute()
        task.execute()


def _verify(job: Job, spec: Spec, task: Any) -> None:
    """Refuse a spec that does not describe this job (edited, damaged, or copied into the folder)."""
    found = (typeid(task), task.__identifier__())
    if (spec.typeid, spec.jobid) != (job.ref.typeid, job.ref.jobid) or found != (job.ref.typeid, job.ref.jobid):
        raise CorruptedError(
            job.spec_path,
            f"describes {found[0]}/{found[1]}, not the job of this folder ({job.ref})",
            "re-run the experiment that submitted the job (it rewrites a damaged spec), "
            "or remove the folder with `xpmfs clean`",
        )


def _finish(
    job: Job, spec: Spec, running: Status, to: State, reason: Reason | None, message: str | None, code: int
) -> int:
    flush_progress()  # the task's last progress report, on disk before its end is recorded
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the record must be written whole
    try:
        end_attempt(job, spec, running, to, reason, message, code)
    except status.Superseded as superseded:
        return _superseded(job, superseded, to)
    return code


def _superseded(job: Job, superseded: status.Superseded, outcome: State | None = None) -> int:
    """Say, in the job's ``.err``, that this run lost the job and records nothing; its exit code."""
    ended = f" ended {outcome.value} but" if outcome is not None else ""
    print(
        f"xpmfs: this run of {job.path} (pid {os.getpid()} on {socket.gethostname()}){ended} is not recorded: "
        f"{superseded.problem}",
        file=sys.stderr,
        flush=True,
    )
    return EXIT_SUPERSEDED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
