"""The SLURM launcher: a worker hands the job to ``sbatch``; the runner on the compute node runs it.

Three processes meet here, only through files and SLURM's own commands (``spec/slurm.md``):

- the **worker** that claims a job whose spec says ``{"type": "slurm", ...}`` writes the job's
  ``<name>.sh`` (:meth:`SlurmLauncher.batch_script`), calls ``sbatch --parsable``, records
  ``submitted`` with the SLURM job id (``cluster_id``) and *releases* the job's lock;
- the **runner** (``python <name>.py``, which the batch script ``exec``\\ s, so SLURM's signals reach
  it) takes the lock itself, answers ``remaining_time()`` from ``squeue %L``
  (:class:`RemainingTime`), treats the pre-timeout ``USR1`` as "checkpoint now"
  (:func:`install_warning_handler`) and tells a ``SIGTERM`` at the time limit from a ``scancel``
  (:func:`termination_reason`);
- **any worker** follows ``submitted``/``running`` jobs whose lock nobody holds with one
  :func:`query` per rescan for all of them, and settles those whose SLURM job ended without a
  terminal status (:func:`settlement`): ``timeout``, ``cancelled`` or ``lost``.

Nothing here touches the configuration layer; the runner installs :class:`RemainingTime` there.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from .. import _atomic, lifecycle
from ..errors import Error
from ..job import Job, Spec
from ..lifecycle import ENV_CLAIMED, ENV_LOCK_HELD, ENV_PARENT_PID, ENV_WORKER, Claim
from ..status import Reason, State, Status
from .base import Context

log = logging.getLogger("xpmfs.slurm")

#: Environment variables SLURM sets in a job.
ENV_JOB_ID = "SLURM_JOB_ID"
ENV_JOB_END_TIME = "SLURM_JOB_END_TIME"  # SLURM 23.02 and later; a fallback when squeue fails

#: ``--signal=B:USR1@N`` by default: SLURM may send it up to 60 s earlier than N (tools/SLURM-NOTES.md).
DEFAULT_SIGNAL_BEFORE = 120
#: Seconds for one sbatch/squeue/scancel call (slurmctld's MessageTimeout is 10 s by default).
COMMAND_TIMEOUT = 30.0
#: Seconds for the runner's one squeue call after SIGTERM: SLURM sends SIGKILL KillWait seconds later.
SIGTERM_QUERY_TIMEOUT = 2.0
#: ``remaining_time()`` asks squeue at most this often and counts down in between (an admin may
#: change the limit, so it does ask again).
REMAINING_REFRESH = 60.0
#: Seconds the runner of a SLURM job waits at least for the job's lock (:func:`runner_lock_wait`).
RUNNER_LOCK_WAIT = 60.0

#: Job states after which a SLURM job never runs again (``squeue %T`` / ``sacct State``).
FINAL_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
_TIMEOUT_STATES = frozenset({"TIMEOUT", "DEADLINE"})
_TIMEOUT_REASONS = frozenset({"TimeLimit", "DeadLine"})
#: What sbatch/squeue print when the controller cannot be reached: try again later, do not fail.
_TRANSIENT = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Connection timed out",
    "Transport endpoint",
    "Zero Bytes were transmitted",
    "Resource temporarily unavailable",
    "Slurm backup controller in standby mode",
)
_SBATCH_ID = re.compile(r"^\d+(_\d+)?$")
# ``--time`` as sbatch accepts it: minutes, minutes:seconds, hours:minutes:seconds, days-hours,
# days-hours:minutes, days-hours:minutes:seconds.
_TIME_OPTION = re.compile(r"^(\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}|UNLIMITED|INFINITE)$")
# ``squeue %L``: [days-]hours:minutes:seconds, or minutes:seconds.
_DURATION = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_NOT_A_DURATION = frozenset({"", "UNLIMITED", "INFINITE", "INVALID", "NOT_SET", "N/A"})


class SlurmError(Error, OSError):
    """A SLURM command failed: ``command`` is what ran, ``problem`` its complaint, ``fix`` what to do.

    ``transient`` when the same call may work later (controller unreachable, overloaded):
    callers retry instead of failing the job.
    """

    def __init__(self, command: str, problem: str, fix: str = "", *, transient: bool = False) -> None:
        super().__init__(command, problem, fix)
        self.command = command
        self.problem = problem
        self.fix = fix
        self.transient = transient

    def __str__(self) -> str:
        message = f"`{self.command}`: {self.problem}"
        return f"{message}; {self.fix}" if self.fix else message


# -- the launcher --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SlurmLauncher:
    """Run the job as a SLURM batch job: ``submit(launcher=SlurmLauncher(time="1:00:00", gpus=1))``.

    ``time`` is minutes (an ``int``) or sbatch's ``--time`` text (``"2-00:00:00"``); ``memory`` is
    ``--mem`` (``"16G"``, or MB as an ``int``); ``gpus`` is ``--gpus`` (``2`` or ``"a100:2"``);
    ``cpus`` is ``--cpus-per-task``; ``extra`` are further sbatch flags, each one word
    (``("--exclusive", "--nodes=1")``). ``signal_before``: seconds before the limit at which SLURM
    warns the runner with ``USR1`` (``None``: no warning); SLURM may send it up to 60 s earlier.
    """

    TYPE: ClassVar[str] = "slurm"

    time: int | str | None = None
    partition: str | None = None
    qos: str | None = None
    account: str | None = None
    cpus: int | None = None
    memory: int | str | None = None
    gpus: int | str | None = None
    constraint: str | None = None
    extra: tuple[str, ...] = ()
    signal_before: int | None = DEFAULT_SIGNAL_BEFORE

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra", tuple(self.extra))
        if self.time is not None:
            if isinstance(self.time, bool) or not isinstance(self.time, (int, str)):
                raise ValueError(f"SlurmLauncher(time=...) is minutes or sbatch --time text, not {self.time!r}")
            if isinstance(self.time, int) and self.time <= 0:
                raise ValueError(f"SlurmLauncher(time={self.time}): give a positive number of minutes")
            if isinstance(self.time, str) and not _TIME_OPTION.match(self.time):
                raise ValueError(
                    f"SlurmLauncher(time={self.time!r}) is not sbatch --time text "
                    "(minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S)"
                )
        for name in ("cpus", "signal_before"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise ValueError(f"SlurmLauncher({name}={value!r}): give a positive integer")
        for name in ("partition", "qos", "account", "memory", "gpus", "constraint"):
            value = getattr(self, name)
            if value is not None and (not str(value) or any(c.isspace() for c in str(value))):
                raise ValueError(f"SlurmLauncher({name}={value!r}): give a non-empty value without spaces")
        for flag in self.extra:
            if not isinstance(flag, str) or not flag.startswith("-") or "\n" in flag:
                raise ValueError(
                    f"SlurmLauncher(extra=...): {flag!r} is not an sbatch flag; give each flag as one "
                    "string starting with '-', like '--exclusive' or '--nodes=1'"
                )

    # -- the spec record -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The ``launcher`` record of ``spec.json``: ``{"type": "slurm"}`` plus every option set."""
        record: dict[str, Any] = {"type": self.TYPE}
        for option in fields(self):
            value = getattr(self, option.name)
            if option.name == "extra":
                if value:
                    record["extra"] = list(value)
            elif option.name == "signal_before":
                record["signal_before"] = value  # None (no warning) differs from the default
            elif value is not None:
                record[option.name] = value
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SlurmLauncher:
        """Read a ``launcher`` record; unknown keys are ignored (newer writers)."""
        known = {option.name for option in fields(cls)}
        values = {key: value for key, value in record.items() if key in known}
        if "extra" in values:
            values["extra"] = tuple(values["extra"] or ())
        return cls(**values)

    def cancel(self, cluster_id: str) -> str:
        """Cancel the SLURM job ``cluster_id`` a job was handed to (``xpmfs kill``); say what
        happened, for the user."""
        problem = cancel(cluster_id)
        if problem is None:
            return f"handed to SLURM; scancel'ed SLURM job {cluster_id}"
        return f"handed to SLURM; scancel of SLURM job {cluster_id} failed: {problem}"

    # -- submitting ----------------------------------------------------------------------------

    def sbatch_options(self) -> list[str]:
        """The sbatch flags for this launcher's resources (not those naming the job's files)."""
        options = []
        pairs = (
            ("time", "--time"),
            ("partition", "--partition"),
            ("qos", "--qos"),
            ("account", "--account"),
            ("cpus", "--cpus-per-task"),
            ("memory", "--mem"),
            ("gpus", "--gpus"),
            ("constraint", "--constraint"),
        )
        for name, flag in pairs:
            value = getattr(self, name)
            if value is not None:
                options.append(f"{flag}={value}")
        options.extend(self.extra)
        return options

    def batch_script(self, job: Job, spec: Spec, *, environ: Mapping[str, str | None] | None = None) -> str:
        """The text of the job's ``<name>.sh``.

        ``#SBATCH`` lines name the job, its folder and streams, the pre-timeout signal and the
        resources, so that ``sbatch <name>.sh`` submits it again by hand. ``environ`` is set
        (``None``: unset) before the last line ``exec``\\ s the runner: the runner *is* the batch
        step's main process, so ``USR1`` (``--signal=B:``), and ``SIGTERM`` at the limit or on
        ``scancel``, reach it directly.
        """
        directives = [
            f"--job-name={job.name}-{job.ref.jobid[:8]}",
            f"--chdir={job.path}",
            f"--output={job.stdout_path}",
            f"--error={job.stderr_path}",
            # A resumable job keeps the streams of its earlier attempts, as the direct launcher does.
            "--open-mode=append",  # never truncated (spec/workspace.md, "Files xpmfs did not write")
        ]
        if self.signal_before is not None:
            directives.append(f"--signal=B:USR1@{self.signal_before}")
        directives.extend(self.sbatch_options())
        lines = ["#!/bin/bash"]
        lines += [f"#SBATCH {_directive(directive)}" for directive in directives]
        lines += [
            f"# xpmfs job {job.ref} of workspace {job.workspace.path}",
            "# Submitted by an xpmfs worker, which released the job's lock; the runner takes it.",
            "# `sbatch <this file>` submits it again by hand.",
        ]
        for name, value in sorted((environ or {}).items()):
            lines.append(f"unset {name}" if value is None else f"export {name}={shlex.quote(value)}")
        lines += [
            "# Until the runner installs its handler, the pre-timeout USR1 must not kill it.",
            "trap '' USR1",
            f"exec {shlex.quote(spec.python)} {shlex.quote(str(job.script_path))}",
            "",
        ]
        return "\n".join(lines)

    def submit(self, job: Job, spec: Spec, *, environ: Mapping[str, str | None] | None = None) -> str:
        """Write ``<name>.sh`` and ``sbatch`` it; return the SLURM job id.

        :raises SlurmError: sbatch failed (``transient`` when the controller could not be reached).
        """
        for path in (job.path, job.stdout_path, job.stderr_path):
            if "%" in str(path):
                raise SlurmError(
                    "sbatch",
                    f"the path {path} contains '%', which SLURM expands in --output and --error",
                    "move the workspace to a path without '%'",
                )
        _atomic.write_bytes(job.batch_script_path, self.batch_script(job, spec, environ=environ).encode())
        job.batch_script_path.chmod(0o755)
        result = _run(["sbatch", "--parsable", str(job.batch_script_path)], cwd=str(job.path))
        if result.returncode != 0:
            raise _failure("sbatch", result)
        cluster_id = result.stdout.strip().split(";")[0]  # "<id>[;<cluster>]"
        if not _SBATCH_ID.match(cluster_id):
            raise SlurmError("sbatch --parsable", f"printed {result.stdout.strip()!r}, not a job id")
        return cluster_id


def _directive(option: str) -> str:
    # sbatch reads #SBATCH lines with its own tokenizer: a value in double quotes may hold spaces.
    flag, equals, value = option.partition("=")
    if '"' in option or "\n" in option:
        raise SlurmError("sbatch", f"cannot write the directive {option!r} into a batch script", "rename the path")
    if equals and any(c.isspace() for c in value):
        return f'{flag}="{value}"'
    return option


def is_slurm(launcher: Mapping[str, Any]) -> bool:
    """Whether a spec's ``launcher`` record names this launcher."""
    return launcher.get("type") == SlurmLauncher.TYPE


def available() -> str | None:
    """``None`` if this host can submit and follow SLURM jobs, else why not."""
    missing = [command for command in ("sbatch", "squeue", "scancel") if shutil.which(command) is None]
    if missing:
        return f"{', '.join(missing)} not found on this host"
    return None


# -- the worker's side -----------------------------------------------------------------------------


class Slurm:
    """The worker's SLURM launcher: submits claimed jobs with ``sbatch`` and releases their lock
    (their runner takes it on the compute node), then follows every job in flight with one
    :func:`query` per full rescan, settling those that ended without a terminal status."""

    holds_slot = False  # the job runs on SLURM's nodes, not as this worker's child

    def __init__(self, context: Context) -> None:
        self.context = context
        self._problem = available()
        if self._problem is not None:
            log.info("worker %s: leaves SLURM jobs to other workers: %s", context.worker, self._problem)
        self._tracked: list[tuple[Job, Spec, Status]] = []

    def problem(self) -> str | None:
        return self._problem

    def start(self, claim: Claim) -> None:
        """Hand the claimed job to sbatch and record ``submitted`` with the SLURM job id; the worker
        then releases the lock (the SLURM job may start before that: its runner waits for it)."""
        job, spec = claim.job, claim.spec
        try:
            launcher = SlurmLauncher.from_json(spec.launcher)
            # The runner takes the job's lock itself: never let it believe a parent holds it for it.
            environ = {
                ENV_LOCK_HELD: None,
                ENV_PARENT_PID: None,
                ENV_WORKER: claim.worker,
                ENV_CLAIMED: repr(claim.claimed),
            }
            cluster_id = launcher.submit(job, spec, environ=environ)
        except SlurmError as error:
            if error.transient:
                log.warning("worker %s: cannot submit %s now, will retry: %s", claim.worker, job.ref, error)
                return
            self._fail(claim, f"cannot submit to SLURM: {error}")
            return
        except ValueError as error:
            self._fail(claim, f"bad SLURM launcher in {job.spec_path}: {error}")
            return
        lifecycle.submitted(claim, cluster_id)
        log.info("worker %s: submitted %s as SLURM job %s", claim.worker, job.ref, cluster_id)

    def _fail(self, claim: Claim, message: str) -> None:
        log.error("worker %s: %s: %s", claim.worker, claim.job.ref, message)
        lifecycle.fail(claim.job, Reason.ERROR, message)

    def track(self, job: Job, spec: Spec, current: Status) -> bool:
        if current.state not in (State.SUBMITTED, State.RUNNING) or not current.cluster_id:
            return False
        if current.state is State.SUBMITTED or not job.lock().probe():
            self._tracked.append((job, spec, current))  # else its runner holds the lock: alive
        return True

    def follow(self, full: bool) -> None:
        tracked, self._tracked = self._tracked, []
        if not tracked or not full:
            return
        try:
            known = query([current.cluster_id for _, _, current in tracked if current.cluster_id])
        except SlurmError as error:
            log.warning("worker %s: cannot follow SLURM jobs now: %s", self.context.worker, error)
            return  # never conclude that a job vanished from a failed call
        for job, spec, seen in tracked:
            assert seen.cluster_id is not None
            settled = settlement(seen.cluster_id, known.get(seen.cluster_id))
            if settled is not None:
                try:
                    self._settle(job, spec, seen, *settled)
                except Error as error:
                    log.error("worker %s: skipping job %s: %s", self.context.worker, job.ref, error)

    def _settle(self, job: Job, spec: Spec, seen: Status, reason: Reason, message: str) -> None:
        """Record the end of a job whose SLURM job ended without its runner recording one."""
        lock = job.lock()
        if not lock.try_acquire():
            return  # its runner holds it: alive (fail closed), or another worker is settling it
        try:
            state = lifecycle.settle_lost(job, spec, seen, reason, message)
        finally:
            lock.release()
        if state is not None:
            log.info("worker %s: %s: %s (%s)", self.context.worker, job.ref, message, state.value)

    def close(self) -> None:
        pass


# -- running SLURM's commands ------------------------------------------------------------------------


def _run(
    args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = " ".join(args[:3]) + (" ..." if len(args) > 3 else "")
    try:
        return subprocess.run(
            list(args), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd, check=False
        )
    except FileNotFoundError as error:
        raise SlurmError(command, f"{args[0]} not found", "install the SLURM client commands on this host") from error
    except subprocess.TimeoutExpired as error:
        raise SlurmError(command, f"no answer within {timeout:.0f}s", transient=True) from error


def _failure(command: str, result: subprocess.CompletedProcess[str]) -> SlurmError:
    text = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
    problem = " ".join(line.strip() for line in text[:3])
    transient = any(pattern in problem for pattern in _TRANSIENT)
    fix = "" if transient else "check the launcher's options (partition, account, qos, time...)"
    return SlurmError(command, problem, fix, transient=transient)


# -- following jobs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterJob:
    """What SLURM says about one job: ``state`` (``PENDING``, ``RUNNING``, ``TIMEOUT``...) and ``reason``."""

    id: str
    state: str
    reason: str = ""

    @property
    def ended(self) -> bool:
        return self.state in FINAL_STATES


#: Whether ``sacct`` answers here (``None``: not tried yet). Without slurmdbd it never will.
_sacct_works: bool | None = None


def query(ids: Collection[str]) -> dict[str, ClusterJob]:
    """What SLURM knows about the jobs ``ids``: ONE ``squeue`` call for all of them.

    ``squeue -t all`` also lists jobs that ended less than MinJobAge (300 s by default) ago. For
    ids it no longer lists, one ``sacct`` call asks the accounting database, where there is one.
    A job absent from the result is unknown to SLURM.

    :raises SlurmError: SLURM could not be asked. Never conclude from a failed call that a job vanished.
    """
    if not ids:
        return {}
    wanted = sorted(set(ids))
    result = _run(["squeue", "--noheader", "--states=all", f"--jobs={','.join(wanted)}", "--format=%i|%T|%r"])
    if result.returncode != 0:
        # With a single id, squeue fails for a job it does not know; with several, it filters.
        if len(wanted) == 1 and "Invalid job id" in result.stderr:
            return _sacct(wanted)
        raise _failure("squeue", result)
    found = parse_squeue(result.stdout)
    missing = [cluster_id for cluster_id in wanted if cluster_id not in found]
    if missing:
        found.update(_sacct(missing))
    return {cluster_id: job for cluster_id, job in found.items() if cluster_id in wanted}


def parse_squeue(text: str) -> dict[str, ClusterJob]:
    """Parse ``squeue --format=%i|%T|%r`` lines; lines that do not fit are skipped."""
    jobs = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and parts[1]:
            jobs[parts[0]] = ClusterJob(parts[0], parts[1].strip(), parts[2].strip() if len(parts) > 2 else "")
    return jobs


def parse_sacct(text: str) -> dict[str, ClusterJob]:
    """Parse ``sacct -n -P -X -o JobIDRaw,State,Reason`` lines (``CANCELLED by 0`` is ``CANCELLED``)."""
    jobs = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0] and parts[1]:
            state = parts[1].split()[0]
            jobs[parts[0]] = ClusterJob(parts[0], state, parts[2].strip() if len(parts) > 2 else "")
    return jobs


def _sacct(ids: Sequence[str]) -> dict[str, ClusterJob]:
    global _sacct_works
    if _sacct_works is False or shutil.which("sacct") is None:
        return {}
    result = _run(["sacct", "-n", "-P", "-X", f"--jobs={','.join(ids)}", "--format=JobIDRaw,State,Reason"])
    if result.returncode != 0:
        if "accounting storage is disabled" in (result.stderr + result.stdout):
            _sacct_works = False  # no slurmdbd: it never will
            return {}
        raise _failure("sacct", result)
    _sacct_works = True
    return parse_sacct(result.stdout)


def settlement(cluster_id: str, cluster: ClusterJob | None) -> tuple[Reason, str] | None:
    """How a job whose SLURM job is ``cluster`` (``None``: unknown to SLURM) ended without a terminal
    status, as ``(reason, message)``; ``None`` while the SLURM job may still run.

    ``TIMEOUT``/``DEADLINE`` is ``timeout`` (a resumable job is then retried); ``CANCELLED`` is
    ``cancelled``; any other end (node failure, the runner dying before it wrote anything) and a
    job SLURM has forgotten are ``lost``.
    """
    if cluster is not None and not cluster.ended:
        return None
    if cluster is None:
        return Reason.LOST, f"SLURM job {cluster_id} is gone and its runner recorded no end"
    detail = f"{cluster.state}" + (f", {cluster.reason}" if cluster.reason and cluster.reason != "None" else "")
    if cluster.state in _TIMEOUT_STATES:
        return Reason.TIMEOUT, f"SLURM job {cluster_id} reached its time limit ({detail})"
    if cluster.state == "CANCELLED":
        return Reason.CANCELLED, f"SLURM job {cluster_id} was cancelled ({detail})"
    return Reason.LOST, f"SLURM job {cluster_id} ended {detail} and its runner recorded no end"


def cancel(cluster_id: str) -> str | None:
    """``scancel`` the SLURM job; ``None`` if done, else why not (it had ended, scancel missing...)."""
    try:
        result = _run(["scancel", cluster_id])
    except SlurmError as error:
        return str(error)
    if result.returncode != 0:
        return str(_failure("scancel", result))
    return None


# -- inside the SLURM job (the runner's side) ------------------------------------------------------

#: When USR1 came (``time.time()``), or ``None``.
_end_announced: float | None = None


def cluster_job_id() -> str | None:
    """The SLURM job this process runs in, or ``None`` outside SLURM."""
    return os.environ.get(ENV_JOB_ID) or None


def runner_lock_wait(lease_duration: float) -> float:
    """How long the runner of a SLURM job waits for the job's lock before giving up (exit 3).

    Brief holders are normal: the worker that submitted the job (until it has recorded
    ``submitted``), the previous attempt's runner finishing a retry, a worker following the job.
    In ``shared`` mode a dead previous runner on another node is only seen expired after
    ``lease_duration`` of watching.
    """
    return max(RUNNER_LOCK_WAIT, 2 * lease_duration + 5)


def _on_warning(signum: int, frame: object) -> None:
    global _end_announced
    if _end_announced is None:
        _end_announced = time.time()


def install_warning_handler() -> None:
    """Make ``USR1`` (``sbatch --signal=B:USR1@N``) set a flag instead of killing the process.

    The handler only sets the flag; it never interrupts the task. From then on
    :class:`RemainingTime` answers ``0``, so a task checking ``remaining_time()`` checkpoints and
    raises ``GracefulTimeout`` at its next check. Main thread only (signals are delivered there).
    """
    signal.signal(signal.SIGUSR1, _on_warning)


def end_announced() -> float | None:
    """When SLURM's pre-timeout warning (USR1) came, or ``None``."""
    return _end_announced


def parse_duration(text: str) -> int | None:
    """Seconds in ``squeue %L`` text (``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``); ``None`` for no limit.

    ``UNLIMITED``, ``INFINITE``, ``INVALID`` (a job that is ending) and ``NOT_SET`` are ``None``.

    :raises ValueError: anything else.
    """
    text = text.strip()
    if text.upper() in _NOT_A_DURATION:
        return None
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a SLURM duration: {text!r}")
    days, first, second, third = match.groups()
    if second is None:
        raise ValueError(f"not a SLURM duration (one field): {text!r}")
    if third is None:
        hours, minutes, seconds = 0, int(first), int(second)  # MM:SS
        if days is not None:
            raise ValueError(f"not a SLURM duration: {text!r}")
    else:
        hours, minutes, seconds = int(first), int(second), int(third)
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds


def query_remaining(cluster_id: str) -> float | None:
    """Seconds left before the SLURM job's time limit (``squeue -h -j ID -o %L``); ``None``: no limit.

    :raises SlurmError: squeue failed or printed something else than a duration.
    """
    result = _run(["squeue", "-h", "-j", cluster_id, "-o", "%L"])
    if result.returncode != 0:
        raise _failure("squeue", result)
    try:
        value = parse_duration(result.stdout.strip().splitlines()[0] if result.stdout.strip() else "")
    except ValueError as error:
        raise SlurmError("squeue -o %L", str(error)) from error
    return None if value is None else float(value)


class RemainingTime:
    """``remaining_time()`` inside SLURM job ``cluster_id``: the provider the runner installs.

    Asks ``squeue %L`` on the first call and every ``refresh`` seconds after, counting down in
    between. Once the pre-timeout ``USR1`` came it answers ``0.0``: the end is announced (SLURM
    sends it anywhere between ``signal_before`` and ``signal_before + 60`` s before the limit, and
    enforces the limit up to ~30 s late), so "checkpoint now" is the only honest answer. When
    squeue cannot answer, ``SLURM_JOB_END_TIME`` is used if set, else ``None``.
    """

    def __init__(
        self,
        cluster_id: str,
        *,
        refresh: float = REMAINING_REFRESH,
        ask: Callable[[str], float | None] = query_remaining,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster_id = cluster_id
        self.refresh = refresh
        self._ask = ask
        self._clock = clock
        self._asked: float | None = None
        self._value: float | None = None

    def __call__(self) -> float | None:
        if _end_announced is not None:
            return 0.0
        now = self._clock()
        if self._asked is None or now - self._asked >= self.refresh:
            try:
                self._value = self._ask(self.cluster_id)
            except SlurmError as error:
                log.warning("remaining_time(): %s", error)
                self._value = _from_end_time()
            self._asked = now
        if self._value is None:
            return None
        return max(0.0, self._value - (now - self._asked))


class InSlurm:
    """The runner's side of the SLURM launcher (:class:`~xpmfs.launchers.base.Inside`), in SLURM
    job ``cluster_id``: USR1 announces the end (a flag), ``remaining_time()`` asks squeue."""

    def __init__(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id
        self.name = f"SLURM job {cluster_id}"
        install_warning_handler()
        self.remaining_time = RemainingTime(cluster_id)

    def runs(self, launcher: Mapping[str, Any]) -> bool:
        return is_slurm(launcher)

    def lock_wait(self, lease_duration: float) -> float:
        return runner_lock_wait(lease_duration)

    def timed_out(self) -> bool:
        # SLURM sends SIGTERM both at the time limit and on scancel; only SLURM can tell which.
        return termination_reason(self.cluster_id) is Reason.TIMEOUT


def inside() -> InSlurm | None:
    """The SLURM job this process runs in, or ``None`` outside SLURM."""
    cluster_id = cluster_job_id()
    return InSlurm(cluster_id) if cluster_id is not None else None


def _from_end_time() -> float | None:
    try:
        return max(0.0, float(os.environ[ENV_JOB_END_TIME]) - time.time())
    except (KeyError, ValueError):
        return None


def termination_reason(cluster_id: str) -> Reason:
    """Why SLURM sent this job ``SIGTERM``: ``TIMEOUT`` at its time limit, else ``CANCELLED``.

    At the limit, ``squeue`` already shows reason ``TimeLimit`` (state ``COMPLETING``) when the
    signal arrives; after ``scancel`` the reason is ``None``. One call, within
    :data:`SIGTERM_QUERY_TIMEOUT` (SLURM sends SIGKILL KillWait seconds after SIGTERM). If squeue
    cannot answer, a SIGTERM after the USR1 warning is taken as the time limit.
    """
    try:
        result = _run(
            ["squeue", "--noheader", "--states=all", f"--jobs={cluster_id}", "--format=%i|%T|%r"],
            timeout=SIGTERM_QUERY_TIMEOUT,
        )
        found = parse_squeue(result.stdout) if result.returncode == 0 else {}
    except SlurmError:
        found = {}
    cluster = found.get(cluster_id)
    if cluster is None:
        return Reason.TIMEOUT if _end_announced is not None else Reason.CANCELLED
    if cluster.state in _TIMEOUT_STATES or cluster.reason in _TIMEOUT_REASONS:
        return Reason.TIMEOUT
    return Reason.CANCELLED


__all__ = [
    "DEFAULT_SIGNAL_BEFORE",
    "ClusterJob",
    "InSlurm",
    "RemainingTime",
    "SlurmError",
    "SlurmLauncher",
    "available",
    "cancel",
    "cluster_job_id",
    "end_announced",
    "inside",
    "install_warning_handler",
    "is_slurm",
    "parse_duration",
    "query",
    "query_remaining",
    "settlement",
    "termination_reason",
]
