"""The experiment context: ``with experiment(ws, "name") as xp:``.

Submitting a task writes its job into the workspace and nothing more: the spec, the job's status,
the queue entry (last), and a line in the experiment's journal. Workers do the running. When no
worker is alive, the experiment starts an embedded one (a detached ``xpmfs worker`` process, so
jobs keep running if the script dies). On leaving the block it waits for its jobs, unless
``wait=False``, and raises :class:`FailedExperiment` naming each failed job and its ``.err``.

::

    WS/experiments/<name>/xpmfs.lock    held while a run of the experiment is alive
    WS/experiments/<name>/jobs.jsonl    one line per submission (single writer: the lock holder)
    WS/experiments/<name>/runs/<run>/   one folder per run: run.json, embedded worker logs
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _atomic, definition, heartbeat, lifecycle, queue, rundata, status
from ._crash import crash_point
from .cache import set_root as set_cache_root
from .config import (
    ResumableTask,
    dependencies,
    reset_submit_handler,
    set_submit_handler,
    submit_hooks,
    tags,
    task_outputs_of,
    typeid,
)
from .display import StatusLine
from .errors import CorruptedError, FailedExperiment, NoExperimentError, OptionError, WorkspaceError
from .job import Job, Spec
from .journal import Journal
from .outputs import OutputFollower
from .queue import JobRef
from .runmode import Listing, RunMode, state_label
from .runmode import effective as effective_run_mode
from .runmode import parse as parse_run_mode
from .serialization import to_dict
from .settings import DEFAULT_MAX_RETRIES, Settings, WorkspaceSettings, resolve_workspace
from .settings import load as load_settings
from .status import State
from .watch import Watcher
from .workspace import EXPERIMENT_JOURNAL, EXPERIMENT_LOCK, EXPERIMENT_RUNS, LockMode, Workspace, refuse_experimaestro

if TYPE_CHECKING:
    from .lock import JobLock

log = logging.getLogger("xpmfs.experiment")

LOCK_FILE = EXPERIMENT_LOCK
JOURNAL_FILE = EXPERIMENT_JOURNAL
RUNS_DIR = EXPERIMENT_RUNS
RUN_FILE = "run.json"
EMBEDDED_IDLE_EXIT = 3.0
WORKER_CHECK_INTERVAL = 1.0  # seconds between looks for a live worker
NO_WORKER_GRACE = 2.0  # seconds a workers=0 run waits for a worker to register before saying none is

# The embedded workers this process started, until they are seen to end, each with the write end
# of its lifeline: a pipe whose other end the worker reads. No experiment waits for them; held here,
# a finished one is reaped (not left a zombie in a long-lived notebook) and a running one is never
# garbage-collected, which subprocess reports as a ResourceWarning. When this process ends, however
# it ends (SIGKILL too), the kernel closes the write ends: each worker then claims no new job, lets
# its running ones finish and be recorded, and exits (xpmfs.worker, `lifeline`).
_embedded_workers: dict[subprocess.Popen[bytes], int] = {}
WAIT_COALESCE = 0.02  # seconds: the least time between two looks at the jobs while waiting
# Counting the jobs by state for the status line reads the status of every unfinished one (25 µs
# each: 0.25 s for 10,000). A count waits this many times as long as the last one took, so that
# counting stays under 5% of the experiment's time, however many jobs it waits for.
COUNT_SPACING = 20
_LOCK_RETRY = 0.01


@dataclass(eq=False)
class JobDependency:
    """experimaestro's ``JobDependency``: ``target``'s job uses an output of ``origin``'s job.

    Compared by identity, as experimaestro's (``job.dependencies`` is a set of them).
    """

    origin: JobHandle  # the job depended on (``origin.config``: its task)
    target: JobHandle  # the job that depends on it


@dataclass
class JobHandle:
    """What an experiment knows of a job it submitted; ``task.__xpm__.job`` points to it.

    The surface experimaestro's ``Job`` offers scripts: ``config``, ``state``, ``dependencies``,
    ``stdout``/``stderr`` (paths) and ``wait()``.
    """

    job: Job
    task: Any = None  # the submitted task object (its callbacks live on it)
    environ: dict[str, str] = field(default_factory=dict)  # filled by submit hooks
    #: The jobs whose outputs this one uses, as of its latest submission (experimaestro's set).
    dependencies: set[JobDependency] = field(default_factory=set)
    #: Whether a submission queued it (not a dry or generate-only one): ``wait()`` may wait then.
    queued: bool = False
    # The experiment that submitted it: wait() starts a worker through it while it runs.
    submitter: experiment | None = field(default=None, repr=False)

    @property
    def ref(self) -> JobRef:
        return self.job.ref

    @property
    def path(self) -> Path:
        return self.job.path

    @property
    def config(self) -> Any:
        """The submitted task (experimaestro's ``job.config``)."""
        return self.task

    @property
    def stdout(self) -> Path:
        """The task's standard output, ``<name>.out`` (experimaestro's ``job.stdout``, a path)."""
        return self._stream(self.job.stdout_path, ".out")

    @property
    def stderr(self) -> Path:
        """The task's standard error, ``<name>.err`` (experimaestro's ``job.stderr``, a path)."""
        return self._stream(self.job.stderr_path, ".err")

    def _stream(self, ours: Path, suffix: str) -> Path:
        # In a folder experimaestro made (adopted), xpmfs's runs write <name>.xpmfs.out and leave
        # experimaestro's <name>.out alone: until xpmfs has run the job, the output is experimaestro's.
        if self.job.adopted and not ours.exists():
            theirs = Path(f"{os.fspath(self.job)}/{self.job.name}{suffix}")
            if theirs.exists():
                return theirs
        return ours

    def wait(self) -> State:
        """Block until the job has ended; return its state, ``done`` or ``failed`` (experimaestro's
        ``job.wait()``, whose ``JobState.ERROR`` is xpmfs's ``State.FAILED``). A failed job does not
        raise here: ``experiment.wait()`` and the end of the ``with`` block do.

        A job that ended before returns at once. One that no submission queued (a dry or
        generate-only run) would never end: that is a :class:`WorkspaceError`. While the experiment
        that submitted it runs, an embedded worker is started if none is alive, as its own wait does.
        """
        marker = self.job.marker()
        if marker is not None:
            return marker
        if not self.queued:
            raise WorkspaceError(
                self.path,
                "is not queued (submitted in a dry or generate-only run): no worker will run it",
                "submit it in a normal run to wait for it",
            )
        submitter = self.submitter
        # A job's queue entry goes only after its terminal marker exists: an event in queue/ (or
        # the rescan timer, for other hosts' writes) is when to look again.
        with Watcher([self.job.workspace.queue_dir], rescan=submitter.rescan if submitter else 2.0) as watcher:
            while (marker := self.job.marker()) is None:
                if submitter is not None and submitter in experiment._stack:
                    submitter._ensure_workers()
                watcher.wait()
        return marker

    @property
    def state(self) -> State:
        """The job's state now, read from the workspace (a property, as experimaestro's ``job.state``).

        A job not written yet (a dry run) is ``waiting``."""
        return self.current_state()

    def current_state(self) -> State:
        marker = self.job.marker()
        if marker is not None:
            return marker
        current = self.job.status()
        return current.state if current else State.WAITING


class experiment:  # noqa: N801 -- named like the seed's (and experimaestro's) context manager
    """Run an experiment in workspace ``workspace`` under ``name``.

    ``workspace``: a folder, the id of a workspace in settings.yaml, or a
    :class:`~xpmfs.settings.WorkspaceSettings` (see :func:`xpmfs.settings.resolve_workspace`);
    experimaestro's name for it, ``env=``, is accepted too.
    ``workers``: job slots of the embedded worker started when no worker is alive
    (``None``: one per core; ``0``: never start one, and say so while waiting if no worker is
    alive after ``NO_WORKER_GRACE`` seconds). ``wait``: wait for the jobs on exit.
    ``launcher``: the launcher of tasks submitted without one (default: the workspace's in
    settings.yaml, else direct). ``run_mode``: :class:`~xpmfs.runmode.RunMode` (normal, generate
    only, dry run). experimaestro 2.7's other options are accepted: see :data:`IGNORED_OPTIONS`.
    """

    _stack: list[experiment] = []

    def __init__(
        self,
        workspace: str | os.PathLike[str] | WorkspaceSettings | None = None,
        name: str | None = None,
        *,
        wait: bool = True,
        workers: int | None = None,
        lock_mode: LockMode | str | None = None,
        rescan: float = 2.0,
        launcher: Any = None,
        run_mode: RunMode | str | None = None,
        env: str | os.PathLike[str] | WorkspaceSettings | None = None,
        host: str | None = None,
        port: int | None = None,
        token: str | None = None,
        wait_for_quit: bool = False,
        register_signals: bool = True,
        project_paths: Any = None,
        dirty_git: Any = "warn",
        no_db: bool = False,
        no_environmental_impact: bool = False,
    ) -> None:
        if workspace is not None and env is not None:
            raise TypeError("experiment() got the workspace twice: as its first argument and as env=")
        workspace = workspace if workspace is not None else env
        if workspace is None or name is None:
            raise TypeError("experiment() needs a workspace and a name: experiment(workspace, name)")
        _warn_ignored(host=host, port=port, token=token, wait_for_quit=wait_for_quit, dirty_git=dirty_git)
        # register_signals, project_paths, no_db, no_environmental_impact: nothing to do (see IGNORED_OPTIONS).
        self.run_mode = parse_run_mode(run_mode, "experiment(run_mode=...)")
        root, self.settings = resolve_workspace(workspace)
        if not name or "/" in name or name.startswith("."):
            raise WorkspaceError(
                root / "experiments" / name,
                f"{name!r} is not a valid experiment name",
                "use a plain name without '/' that does not start with '.'",
            )
        if workers is not None and workers < 0:
            raise OptionError("experiment(workers=...)", f"must be 0 or more, not {workers}", "0 starts no worker")
        opened = _open_workspace(root, lock_mode, self.run_mode)
        self.name = name
        self.wait_on_exit = wait
        self.workers = (os.cpu_count() or 1) if workers is None else workers
        self.rescan = rescan
        entry = self.settings
        self.launcher = launcher if launcher is not None else (entry.launcher if entry is not None else None)
        # Read once, like the launcher: settings edited during a run apply to the next one.
        self.max_retries = entry.max_retries if entry is not None else DEFAULT_MAX_RETRIES
        # The jobs' environment: settings' global env, the workspace's env, then setenv().
        self._environ: dict[str, str] = load_settings().environment_for(entry)
        self.workspace = ExperimentWorkspace.of(opened, self._environ, self.run_mode, WorkspaceLauncher(self.launcher))
        self.path = self.workspace.experiment_path(name)
        self.jobs: dict[JobRef, JobHandle] = {}
        self._lock: JobLock | None = None
        self._journal: Journal | None = None
        self._embedded: subprocess.Popen[bytes] | None = None
        self._next_worker_check = 0.0
        self._jobs_lock = threading.Lock()  # callbacks submit from the outputs thread
        self._outputs = OutputFollower()
        self._listing: Listing | None = None  # the jobs a dry or generate-only submission showed
        self._token: Any = None
        self.run_id = ""

    def setenv(self, name: str, value: str | os.PathLike[str], override: bool = True) -> None:
        """Give ``name=value`` to the environment of the jobs submitted from now on.

        It wins over settings.yaml's ``env`` (global and the workspace's); with ``override=False``
        a variable already set there or by an earlier ``setenv`` keeps its value (experimaestro's
        rule). A job's environment is part of its spec, written when it is first submitted.
        """
        text = _environ_value("experiment.setenv", name, value)
        if override or name not in self._environ:
            self._environ[name] = text

    @property
    def environ(self) -> dict[str, str]:
        """The environment (a copy) that jobs submitted now get, before their submit hooks'."""
        return dict(self._environ)

    # -- context -----------------------------------------------------------------------------

    def __enter__(self) -> experiment:
        from .lock import JobLock  # not at the top: see "No filelock" in xpmfs.zygote

        if self.run_mode is not RunMode.NORMAL:
            # Nothing is queued: no lock, no run folder, no journal (a dry run writes nothing at
            # all; generate-only writes job folders only). The run is named after its mode.
            self.run_id = self.run_mode.value
            self._listing = Listing(self.name, self.run_mode)
            self._token = set_submit_handler(self._submit)
            # A dry run has no cache root: a @cache method called by the script would write.
            self._cache_root = set_cache_root(self.workspace if self.run_mode.writes else None)
            experiment._stack.append(self)
            return self
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = JobLock(
            self.path / LOCK_FILE, self.workspace.lock_mode, lease_duration=self.workspace.lease_duration
        )
        if not self._lock.try_acquire() and not self._wait_for_remote_run():
            holder = self._lock.holder()
            who = f" (pid {holder.pid} on {holder.host})" if holder else ""
            raise WorkspaceError(
                self.path,
                f"experiment {self.name!r} is already running{who}",
                "wait for it to end, or give this run another experiment name",
            )
        self.run_id = self._new_run()
        self._write_run("running")
        self._journal = Journal(self.path / JOURNAL_FILE)
        self._token = set_submit_handler(self._submit)
        self._cache_root = set_cache_root(self.workspace)  # @cache methods called here use WS/config
        experiment._stack.append(self)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if self.run_mode is not RunMode.NORMAL:
            experiment._stack.remove(self)
            reset_submit_handler(self._token)
            set_cache_root(self._cache_root)
            if self._listing is not None and kind is None:
                self._listing.close()
            return
        outcome = _outcome(kind)
        try:
            if kind is None and self.wait_on_exit:
                try:
                    self.wait()
                except BaseException as raised:  # a job failed (FailedExperiment), or a Ctrl-C
                    outcome = _outcome(type(raised))
                    raise
        finally:
            self._outputs.stop()
            experiment._stack.remove(self)
            reset_submit_handler(self._token)
            set_cache_root(self._cache_root)
            try:
                self._write_run(outcome)
            finally:
                # Even when run.json cannot be written (a full disk): never keep the lock.
                if self._journal is not None:
                    self._journal.close()
                if self._lock is not None:
                    self._lock.release()
                if self._listing is not None and kind is None:
                    self._listing.close()  # submissions made with submit(run_mode=DRY_RUN)

    def _wait_for_remote_run(self) -> bool:
        """Shared mode: another host's run (or a marker naming nobody) can only be proven gone by
        watching its lease go unrefreshed; wait that long, then take the lock if it expired."""
        from .lock import LockStatus  # not at the top: see "No filelock" in xpmfs.zygote

        assert self._lock is not None
        state = self._lock.inspect()
        if self.workspace.lock_mode is not LockMode.SHARED or state.status is not LockStatus.REMOTE:
            return False
        wait = self.workspace.lease_duration * 1.5 + 1.0
        log.warning(
            "experiment %r: its lock is held elsewhere (%s); waiting up to %.0fs for that lease to expire",
            self.name,
            state.detail,
            wait,
        )
        return self._lock.acquire(timeout=wait)

    @property
    def run_path(self) -> Path:
        return self.path / RUNS_DIR / self.run_id

    # -- a run's own files (xpmfs.rundata) ---------------------------------------------------

    @property
    def workdir(self) -> Path:
        """This run's folder, ``experiments/<name>/runs/<run>/`` (experimaestro's ``xp.workdir``). In
        a dry run or generate-only mode it is named after the mode, and not created."""
        self._check_entered("xp.workdir")
        return self.run_path

    @property
    def resultspath(self) -> Path:
        """``<run folder>/results``, for the experiment's own files (not created here). Only in a
        normal run, as in experimaestro: the other modes write no file of the experiment's."""
        self._check_entered("xp.resultspath")
        if self.run_mode is not RunMode.NORMAL:
            raise RuntimeError(
                f"xp.resultspath is not available in {self.run_mode.value} mode (it writes no file of the"
                " experiment's); check `xp.run_mode is RunMode.NORMAL` before using it"
            )
        return self.run_path / rundata.RESULTS_DIR

    def save(self, obj: Any, name: str = "default") -> None:
        """Save configurations (anything :func:`xpmfs.save` takes) in this run's folder as ``name``,
        for :meth:`load` in a later experiment. A dry run or generate-only mode writes nothing."""
        self._check_entered("xp.save()")
        folder = self.run_path / rundata.DATA_DIR / rundata.check_name(name, "xp.save(name=...)")
        if self.run_mode is RunMode.NORMAL:
            folder.mkdir(parents=True, exist_ok=True)
            definition.save(obj, folder)

    def load(self, reference: str, name: str = "default", run_id: str | None = None) -> Any:
        """What experiment ``reference`` saved as ``name`` (:meth:`save`): in its run ``run_id``, else
        its latest save of that name. Runs that experimaestro made in this workspace count too."""
        return definition.load(rundata.find(self.workspace.experiments_dir, reference, name, run_id))

    def _check_entered(self, what: str) -> None:
        if not self.run_id:
            raise RuntimeError(f"{what} needs a running experiment: use it inside `with experiment(...) as xp:`")

    def _new_run(self) -> str:
        """Create this run's folder and return its name, unique even for a second run of this
        experiment that the same process starts within the same second (a notebook, a test)."""
        base = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        runs = self.path / RUNS_DIR
        runs.mkdir(parents=True, exist_ok=True)
        name, count = base, 1
        while True:
            try:
                (runs / name).mkdir()
                return name
            except FileExistsError:
                count += 1
                name = f"{base}-{count}"

    def _write_run(self, state: str) -> None:
        record = {
            "experiment": self.name,
            "run": self.run_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "state": state,
            "updated": time.time(),
            "jobs": len(self.jobs),
        }
        _atomic.write_json(self.run_path / RUN_FILE, record)

    @classmethod
    def current(cls) -> experiment:
        if not cls._stack:
            raise RuntimeError("no experiment is running; use `with experiment(workspace, name):`")
        return cls._stack[-1]

    # -- submission --------------------------------------------------------------------------

    def _submit(
        self,
        task: Any,
        *,
        init_tasks: Any = None,
        launcher: Any = None,
        max_retries: int | None = None,
        run_mode: RunMode | str | None = None,
        workspace: Any = None,
        **options: Any,
    ) -> Any:
        if options:
            raise TypeError(f"submit() got unknown option(s): {', '.join(sorted(options))}")
        if workspace is not None:
            run_mode = self._given_workspace(workspace, run_mode)
        mode = effective_run_mode(self.run_mode, run_mode)
        if launcher is None:
            launcher = self.launcher
        ref = JobRef(typeid(task), task.__identifier__())
        job = Job(self.workspace, ref)
        with self._jobs_lock:
            known = self.jobs.get(ref)
        handle = known or JobHandle(job, task, submitter=self)
        task.__xpm__.seal(job.path)
        task.__xpm__.job = handle
        for hook in submit_hooks(task):
            hook.process(handle, launcher)
        used = dependencies(task, init_tasks or ())
        handle.dependencies = {JobDependency(self._handle_of(dep), handle) for dep in used}
        submitted = time.time()
        launcher_record = _launcher_record(launcher)

        def spec() -> Spec:
            # Built where it is written (a new job, a spec to replace, a resubmission, a listing):
            # a re-run of a done job serializes nothing (14 µs of its 99 µs submission, measured
            # in-process over 1000 re-submissions). Not memoized: functools.cache would cost a new
            # job more than that, and only rare paths (a damaged spec of a failed job) build it twice.
            return Spec(
                typeid=ref.typeid,
                jobid=ref.jobid,
                config=to_dict(task),
                dependencies=tuple(sorted({f"{typeid(dep)}/{dep.__identifier__()}" for dep in used})),
                launcher=launcher_record,
                max_retries=self.max_retries if max_retries is None else max_retries,
                resumable=isinstance(task, ResumableTask),
                python=sys.executable,
                sys_path=_import_path(),
                # Submit hooks win over setenv and the settings (experimaestro's order). Not hashed:
                # the environment never changes a job's identifier.
                environ={**self._environ, **self._launcher_environ(launcher), **handle.environ},
                submitted=submitted,
            )

        if not mode.queues:
            self._simulate(job, spec(), mode, tags(task))
            if self.run_mode is not RunMode.NORMAL:
                with self._jobs_lock:
                    self.jobs[ref] = handle  # listed; wait() returns at once in these modes
            return task_outputs_of(task)
        new = None if job.path.exists() else spec()
        if new is not None and job.create(new, status.initial(lifecycle.initial_state(new)), sys.executable):
            crash_point("submit.after-spec")
            queue.add(self.workspace.queue_dir, job.ref)
        else:
            # Known already (a re-run, another experiment, a crash half-way through a submission).
            known_spec = job.has_spec()
            if not known_spec:
                from .adopt import adopt_for_submission  # not at the top: a folder without a spec is rare

                adopt_for_submission(job, spec())  # if experimaestro made this folder (spec/adopt.md)
            if known_spec or not job.write_spec(spec()):
                self._repair_spec(job, spec)
            job.write_script(sys.executable)
            crash_point("submit.after-spec")
            self._enqueue(job, spec)
        crash_point("submit.after-queue")
        handle.queued = True
        assert self._journal is not None
        self._journal.append(
            {"job": ref.relpath, "run": self.run_id, "tags": _jsonable(tags(task)), "submitted": submitted}
        )
        with self._jobs_lock:
            self.jobs[ref] = handle
        if known is None:
            self._outputs.follow(job, task)
        self._ensure_workers()
        return task_outputs_of(task)

    def _given_workspace(self, workspace: Any, run_mode: RunMode | str | None) -> RunMode | str | None:
        """``submit(workspace=ws)`` in an experiment: ``ws`` must be this experiment's workspace
        (jobs are written where the experiment runs them); its run mode applies when the submission
        names none (experimaestro's rule), and still never writes more than the experiment's."""
        path = getattr(workspace, "path", None)
        if path is None or Path(os.path.abspath(path)) != self.workspace.path:
            raise OptionError(
                "submit(workspace=...)",
                f"{path if path is not None else workspace!r} is not the workspace of experiment {self.name!r} "
                f"({self.workspace.path})",
                "submit it without workspace=, or in an experiment of that workspace",
            )
        if run_mode is None:
            return getattr(workspace, "run_mode", None)
        return run_mode

    def _handle_of(self, task: Any) -> JobHandle:
        """The handle of a task this job depends on: its submission's, else one made for it (a task
        used without being submitted here, e.g. loaded from its folder)."""
        known = task.__xpm__.job
        if isinstance(known, JobHandle):
            return known
        return JobHandle(Job(self.workspace, JobRef(typeid(task), task.__identifier__())), task, submitter=self)

    def _launcher_environ(self, launcher: Any) -> dict[str, str]:
        """``xp.workspace.launcher.setenv`` values: for jobs run by the experiment's default launcher."""
        return self.workspace.launcher.environ if launcher is self.launcher else {}

    def _simulate(self, job: Job, spec: Spec, mode: RunMode, job_tags: Any) -> None:
        """A submission in a dry or generate-only run: show the job; generate-only writes its folder."""
        if self._listing is None:
            self._listing = Listing(self.name, mode)
        self._listing.job(job.ref.relpath, state_label(job), _jsonable(job_tags), spec.launcher, spec.dependencies)
        if not mode.writes:
            return
        # As a submission writes it, without the status reset and the queue entry: a job that
        # ended stays as it is, a new one waits (unqueued) for a normal run or `xpmfs retry`.
        if not job.path.exists() and job.create(spec, status.initial(lifecycle.initial_state(spec)), sys.executable):
            return
        if not job.write_spec(spec):
            self._repair_spec(job, lambda: spec)
        job.write_script(sys.executable)

    def _repair_spec(self, job: Job, spec: Callable[[], Spec]) -> None:
        """Replace an existing spec that cannot be read with ``spec()``: this experiment knows its
        right content. So does a spec that `xpmfs adopt` wrote from experimaestro's params.json
        (spec/adopt.md)."""
        try:
            known = job.read_spec()
        except CorruptedError as error:
            log.warning("%s; replacing it with the spec this experiment submits", error)
            job.replace_spec(spec())
            return
        if known.provisional:
            job.replace_spec(spec())

    def _enqueue(self, job: Job, spec: Callable[[], Spec]) -> None:
        """Give the job a status and a queue entry, unless it is done or being run (``spec()``
        only for a resubmission)."""
        if job.marker() is State.DONE:
            return  # done stays done: no need to wait for its lock
        lock = job.lock()
        while not lock.try_acquire():
            marker = job.marker()
            if marker is State.DONE:
                return
            if marker is None:
                # Being claimed or run: its entry exists already (adding it again is harmless).
                queue.add(self.workspace.queue_dir, job.ref)
                return
            # A terminal marker under a held lock: its holder is finishing; it releases in a moment.
            time.sleep(_LOCK_RETRY)
        try:
            if not job.spec_path.exists():
                # `xpmfs clean` removed the folder between our spec write and the lock.
                raise WorkspaceError(job.path, "was removed while being submitted", "submit the task again")
            marker = job.marker()
            if marker is State.DONE:
                return
            current = job.status()
            if marker is State.FAILED or current is None:
                lifecycle.resubmit(job, spec())  # its retries granted again, as `xpmfs retry` does
                crash_point("submit.after-status")
        finally:
            lock.release()
        # After the release, so that the worker the entry wakes finds the lock free. Safe: a
        # worker removes an entry only under the lock and only next to a terminal marker.
        queue.add(self.workspace.queue_dir, job.ref)

    # -- workers -----------------------------------------------------------------------------

    def _ensure_workers(self) -> None:
        """Start an embedded worker if none is alive; looks at most once a second (every submit calls it)."""
        now = time.monotonic()
        if self.workers == 0 or now < self._next_worker_check:
            return
        self._next_worker_check = now + WORKER_CHECK_INTERVAL
        if self._embedded is not None and self._embedded.poll() is None:
            return
        if heartbeat.any_alive(self.workspace.workers_dir):
            return
        log_path = self.run_path / f"worker-{int(time.time() * 1000)}.log"
        command = [
            sys.executable,
            "-m",
            "xpmfs",
            "worker",
            str(self.workspace.path),
            "--jobs",
            str(self.workers),
            "--idle-exit",
            str(EMBEDDED_IDLE_EXIT),
        ]
        lifeline, keep = os.pipe()  # neither end is inherited by other children (PEP 446)
        command += ["--lifeline", str(lifeline)]
        try:
            with open(log_path, "wb") as log_stream:
                # Its own session: a Ctrl-C meant for this script does not reach the worker's jobs.
                self._embedded = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log_stream,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    pass_fds=(lifeline,),
                )
        except BaseException:
            os.close(keep)
            raise
        finally:
            os.close(lifeline)
        for worker, end in list(_embedded_workers.items()):
            if worker.poll() is not None:
                os.close(end)
                del _embedded_workers[worker]
        _embedded_workers[self._embedded] = keep
        log.info("started an embedded worker (pid %d, %d slots), log in %s", self._embedded.pid, self.workers, log_path)

    # -- waiting -----------------------------------------------------------------------------

    def wait(self) -> None:
        """Wait until every job submitted in this run has ended, and every output callback has
        returned (the jobs those submit included); raise if any job failed.

        A dry or generate-only run queues nothing: it returns at once."""
        if self.run_mode is not RunMode.NORMAL:
            return
        with StatusLine(self.name) as line:
            try:
                failures, logs = self._follow(line)
            except KeyboardInterrupt:
                # Ctrl-C: the jobs are the workers' now and go on; say so, and how to get them back.
                line.close()
                with self._jobs_lock:
                    handles = list(self.jobs.values())
                left = sum(1 for handle in handles if handle.job.marker() is None)
                line.say(
                    f"interrupted; {left} unfinished job(s) stay in the workspace. Workers started with "
                    "`xpmfs worker` go on with them; this script's embedded worker finishes the jobs it "
                    "runs and claims no other once the script has ended. Follow them with "
                    f"`xpmfs ls {self.workspace.path} --experiment {self.name}`, run the rest by running this "
                    "experiment again (what ended is not run again) or by starting "
                    f"`xpmfs worker {self.workspace.path}`, stop one with `xpmfs kill`"
                )
                raise KeyboardInterrupt from None  # its traceback from here: the wait loop's would be noise
        if failures:
            raise FailedExperiment(self.name, failures, logs)

    def _follow(self, line: StatusLine) -> tuple[dict[str, str], dict[str, str]]:
        """Show the run's jobs on ``line`` until all have ended; return the failures and their logs."""
        failures: dict[str, str] = {}
        logs: dict[str, str] = {}
        finished: dict[JobRef, str] = {}  # ended jobs and their state (the marker's)
        pending: dict[str, tuple[JobRef, JobHandle]] = {}  # unfinished jobs, by queue entry name
        shown_failures = 0
        next_count = 0.0  # the status line's next count of the jobs by state (see COUNT_SPACING)
        last_pass = time.monotonic()
        # workers=0 starts no worker here: if none is alive either, say how to start one. Looked at
        # once, after a worker started with this script has had time to register.
        look_for_workers = time.monotonic() + NO_WORKER_GRACE if self.workers == 0 else None
        with Watcher([self.workspace.queue_dir], rescan=self.rescan) as watcher:
            while True:
                with self._jobs_lock:
                    jobs = list(self.jobs.items())
                for ref, handle in itertools.islice(jobs, len(finished) + len(pending), None):
                    pending[ref.entry_name] = (ref, handle)
                # A job's queue entry goes only after its terminal marker exists: one listing of
                # queue/ spares a marker lookup per unfinished job on every wake-up.
                for name in pending.keys() - queue.names_in(self.workspace.queue_dir):
                    ref, handle = pending[name]
                    marker = handle.job.marker()
                    if marker is None:
                        continue
                    del pending[name]
                    finished[ref] = marker.value
                    if marker is State.FAILED:
                        failures[str(handle.path)] = status.failure_text(status.read_failure(handle.job.xpm_dir))
                        logs[str(handle.path)] = str(handle.job.failure_log())
                    else:
                        for callback in handle.task.__xpm__.completed_callbacks:
                            callback()
                done = len(finished) == len(jobs)
                if done or len(failures) != shown_failures or (line.due() and time.monotonic() >= next_count):
                    # Counting reads the status of every unfinished job: only when the line will show it.
                    shown_failures = len(failures)
                    began = time.monotonic()
                    counts = Counter(finished.get(ref) or handle.current_state().value for ref, handle in jobs)
                    next_count = time.monotonic() + COUNT_SPACING * (time.monotonic() - began)
                    line.update(counts, [(job, logs[job], reason) for job, reason in failures.items()])
                if done:
                    # Outputs the ended jobs announced may submit more jobs: handle them all first.
                    self._outputs.drain()
                    with self._jobs_lock:
                        if len(self.jobs) == len(jobs):
                            break
                    continue
                self._ensure_workers()
                if look_for_workers is not None and time.monotonic() >= look_for_workers:
                    look_for_workers = None
                    if not heartbeat.any_alive(self.workspace.workers_dir):
                        line.say(
                            f"no worker is alive on this workspace (workers=0 starts none here): start one "
                            f"with `{heartbeat.start_command(self.workspace.path)}`; the jobs wait for it"
                        )
                # Let a burst of queue events (many short jobs ending) coalesce into one pass.
                time.sleep(max(0.0, last_pass + WAIT_COALESCE - time.monotonic()))
                watcher.wait(1.0)
                last_pass = time.monotonic()
        return failures, logs


#: experimaestro 2.7's ``experiment()`` options that xpmfs accepts and does not use, and why.
IGNORED_OPTIONS = {
    "host": "xpmfs has no web monitor yet (experimaestro 2.7 deprecates it too)",
    "port": "xpmfs has no web monitor yet (experimaestro 2.7 deprecates it too); a negative port asks for none",
    "token": "xpmfs has no web monitor yet (experimaestro 2.7 deprecates it too)",
    "wait_for_quit": "xpmfs has no web monitor to wait for (deprecated in experimaestro 2.7)",
    "dirty_git": "xpmfs records no git state, so it checks none",
    "register_signals": "xpmfs installs no signal handler: Ctrl-C leaves the jobs to the workers",
    "project_paths": "xpmfs records no git state",
    "no_db": "xpmfs has no database (a no-op in experimaestro 2.7 too)",
    "no_environmental_impact": "xpmfs tracks no carbon impact",
}


def _warn_ignored(**given: Any) -> None:
    """One warning for each option given that xpmfs cannot honour, naming it (stack: the caller's)."""
    asked = [
        name
        for name, value in given.items()
        if (name == "port" and value is not None and value >= 0)
        or (name in ("host", "token") and value is not None)
        or (name == "wait_for_quit" and value)
        or (name == "dirty_git" and str(getattr(value, "value", value)).lower() == "error")
    ]
    for name in asked:
        warnings.warn(f"experiment({name}=...) is ignored: {IGNORED_OPTIONS[name]}", UserWarning, stacklevel=3)


def _environ_value(where: str, name: Any, value: Any) -> str:
    """``value`` as the text of environment variable ``name``; an ``OptionError`` if either is wrong."""
    if not isinstance(name, str) or not name or "=" in name:
        raise OptionError(f"{where}(name=...)", f"{name!r} is not an environment variable name")
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str):
        raise OptionError(f"{where}({name!r}, ...)", f"the value must be a string, not {value!r}")
    return text


class WorkspaceLauncher:
    """``xp.workspace.launcher``: the experiment's default launcher, with experimaestro's ``setenv``.

    ``setenv(name, value)`` gives ``name=value`` to the jobs submitted from now on that run with
    the default launcher (none given to ``submit``), as experimaestro's launcher environment: over
    ``xp.workspace.env``, under submit hooks. Like every environment value it is written in the
    job's spec (``environ``) and never hashed.
    """

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher
        """The experiment's launcher (``None``: the direct launcher)."""
        self.environ: dict[str, str] = {}

    def setenv(self, key: str, value: str | os.PathLike[str]) -> None:
        self.environ[key] = _environ_value("workspace.launcher.setenv", key, value)


@dataclass(frozen=True, init=False)
class ExperimentWorkspace(Workspace):
    """``xp.workspace``: the workspace, with what experimaestro's ``Workspace`` gives an experiment.

    ``env`` is the jobs' environment before submit hooks (settings.yaml's global and workspace
    ``env``, then ``xp.setenv``; assigning to it is ``setenv``), ``run_mode`` the experiment's, and
    ``launcher`` a :class:`WorkspaceLauncher`.

    Built by hand, it is experimaestro's ``Workspace(settings, workspace_settings, launcher=None,
    run_mode=None)``: the workspace that ``workspace_settings`` names, with ``settings``' and
    ``workspace_settings``' ``env``. Building one writes nothing (an existing workspace's format is
    read). Outside an experiment, ``task.submit(workspace=ws)`` then does what a dry run does
    (:meth:`submit_alone`): the task is sealed for its job folder in this workspace and listed;
    submissions that write need ``with experiment(...)``.
    """

    # Set by __init__ or of() (their defaults only keep the inherited fields' order valid).
    env: dict[str, str] = field(default_factory=dict, compare=False)
    run_mode: RunMode = field(default=RunMode.NORMAL, compare=False)
    launcher: WorkspaceLauncher = field(default_factory=lambda: WorkspaceLauncher(None), compare=False)

    def __init__(
        self,
        settings: Settings,
        workspace_settings: WorkspaceSettings,
        launcher: Any = None,
        run_mode: RunMode | str | None = None,
    ) -> None:
        mode = parse_run_mode(run_mode, "Workspace(run_mode=...)")
        # Opened as a dry run opens it: read if it exists, never created here.
        opened = _open_workspace(workspace_settings.path, None, RunMode.DRY_RUN)
        chosen = launcher if launcher is not None else workspace_settings.launcher
        self._fill(opened, settings.environment_for(workspace_settings), mode, WorkspaceLauncher(chosen))

    @classmethod
    def of(
        cls, workspace: Workspace, env: dict[str, str], run_mode: RunMode, launcher: WorkspaceLauncher
    ) -> ExperimentWorkspace:
        made = cls.__new__(cls)
        made._fill(workspace, env, run_mode, launcher)
        return made

    def _fill(self, workspace: Workspace, env: dict[str, str], run_mode: RunMode, launcher: WorkspaceLauncher) -> None:
        # A frozen dataclass sets its fields with object.__setattr__ (what its own __init__ does).
        for f in dataclasses.fields(Workspace):
            object.__setattr__(self, f.name, getattr(workspace, f.name))
        object.__setattr__(self, "env", env)
        object.__setattr__(self, "run_mode", run_mode)
        object.__setattr__(self, "launcher", launcher)

    def submit_alone(
        self,
        task: Any,
        *,
        init_tasks: Any = None,
        launcher: Any = None,
        max_retries: int | None = None,
        run_mode: RunMode | str | None = None,
        workspace: Any = None,
        **options: Any,
    ) -> Any:
        """``task.submit(workspace=self)`` outside an experiment (``max_retries`` only matters to a run).

        experimaestro's dry run with a workspace: the task is sealed for its folder
        ``jobs/<typeid>/<jobid>`` here (generated paths are set), listed with its state on standard
        error, and nothing is written. A submission that would write (the workspace's or the
        submission's run mode is normal or generate-only) needs an experiment:
        :class:`~xpmfs.errors.NoExperimentError`.
        """
        if options:
            raise TypeError(f"submit() got unknown option(s): {', '.join(sorted(options))}")
        if workspace is not None and workspace is not self:
            raise OptionError("submit(workspace=...)", "is not the workspace asked to submit", "give one workspace")
        mode = effective_run_mode(self.run_mode, run_mode)
        if mode.writes:
            raise NoExperimentError(type(task).__qualname__)
        if launcher is None:
            launcher = self.launcher.launcher
        ref = JobRef(typeid(task), task.__identifier__())
        job = Job(self, ref)
        task.__xpm__.seal(job.path)
        handle = JobHandle(job, task)
        task.__xpm__.job = handle
        for hook in submit_hooks(task):
            hook.process(handle, launcher)
        used = sorted({f"{typeid(dep)}/{dep.__identifier__()}" for dep in dependencies(task, init_tasks or ())})
        listing = Listing(str(self.path), mode)
        listing.job(ref.relpath, state_label(job), _jsonable(tags(task)), _launcher_record(launcher), used)
        return task_outputs_of(task)


def _open_workspace(root: Path, lock_mode: LockMode | str | None, run_mode: RunMode) -> Workspace:
    """The workspace at ``root``; created unless the run writes nothing.

    A dry run opens an existing workspace to read its jobs' states; where there is none, it sees
    the workspace a normal run would create (every job new) and creates nothing. An experimaestro
    workspace not adopted yet is refused as a normal run refuses it (its jobs are not new: a normal
    run would not run them, it would not start at all), naming `xpmfs adopt --dry-run`.
    """
    if run_mode.writes:
        return Workspace.open(root, create=True, lock_mode=lock_mode)
    if Workspace(root).format_file.exists():
        return Workspace.open(root, lock_mode=lock_mode)
    if root.exists() and not root.is_dir():
        return Workspace.open(root)  # raises: not a directory
    if root.is_dir():
        refuse_experimaestro(root)
    return Workspace(root, LockMode(lock_mode) if lock_mode is not None else LockMode.LOCAL)


def _outcome(raised: type[BaseException] | None) -> str:
    """What run.json says of a run that ended raising ``raised``: a Ctrl-C is "interrupted"."""
    if raised is None:
        return "done"
    return "interrupted" if issubclass(raised, KeyboardInterrupt) else "failed"


def _launcher_record(launcher: Any) -> dict[str, Any]:
    if launcher is None:
        return {"type": "direct"}
    to_json = getattr(launcher, "to_json", None)
    if to_json is None:
        raise TypeError(f"submit(launcher=...) expects an xpmfs launcher, not {type(launcher).__name__}")
    return to_json()


def _import_path() -> tuple[str, ...]:
    """Where the runner must look for the task's modules: this process's import path."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return _absolute_import_path(tuple(sys.path), main_file, os.getcwd())


@functools.lru_cache(maxsize=8)
def _absolute_import_path(entries: tuple[str, ...], main_file: str | None, cwd: str) -> tuple[str, ...]:
    # Cached: it is the same for every submission of a script (the benchmark saw 5% of submit here).
    paths = [str(Path(cwd, entry)) if entry else cwd for entry in entries]
    if main_file:
        paths.insert(0, str(Path(cwd, main_file).parent))
    return tuple(dict.fromkeys(paths))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(item) for item in value]
    return str(value)
