"""Helpers for tests that need the single-node test SLURM cluster started by ``tools/slurm-up``.

Tests needing the cluster use the ``slurm`` fixture (import it: ``from slurm_util import slurm_fixture``)
and are marked ``@pytest.mark.slurm``. The fixture skips the test, with the reason, when ``sbatch``
is missing or the cluster does not answer; otherwise it hands over a :class:`Slurm` that submits
jobs and cancels whatever is still queued or running when the test ends.

Things to know (see tools/SLURM-NOTES.md): a job starts ~0.1-0.5 s after ``sbatch``;
``squeue`` without ``-t all`` stops listing a job as soon as it ends, while ``scontrol show job``
keeps it for MinJobAge (300 s) and then forgets it; time limits are whole minutes and are only
enforced (and ``--signal`` only delivered) on slurmctld's ~30 s background check.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from xpmfs.launchers.slurm import FINAL_STATES  # one list of the states after which SLURM never runs a job

COMMAND_TIMEOUT = 30.0  # seconds for one sbatch/squeue/scontrol call (MessageTimeout is 10 s)


def _run(args: list[str], *, check: bool = True, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} exited with {result.returncode}: {result.stderr.strip() or result.stdout.strip()}"
        )
    return result


def unavailable_reason() -> str | None:
    """Why the test SLURM cluster cannot be used right now, or None if it answers and has a usable node."""
    for command in ("sbatch", "squeue", "scontrol", "sinfo", "scancel"):
        if shutil.which(command) is None:
            return f"`{command}` not found: SLURM is not installed here (run tools/slurm-up as root)"
    try:
        ping = _run(["scontrol", "ping"], check=False, timeout=15)
    except subprocess.TimeoutExpired:
        return "`scontrol ping` timed out: slurmctld is not answering (run tools/slurm-up)"
    if ping.returncode != 0 or "is UP" not in ping.stdout:
        lines = (ping.stdout + ping.stderr).strip().splitlines()
        detail = lines[0].strip() if lines else ""
        return (
            f"SLURM cluster is not up (`scontrol ping`: {detail or 'exit ' + str(ping.returncode)}); run tools/slurm-up"
        )
    try:
        states = _run(["sinfo", "-h", "-o", "%T"], check=False, timeout=15).stdout.split()
    except subprocess.TimeoutExpired:
        return "`sinfo` timed out"
    usable = {"idle", "mixed", "allocated", "completing"}
    if not any(state in usable for state in states):
        return f"SLURM cluster has no usable node (sinfo states: {states or 'none'}); run tools/slurm-up"
    return None


@functools.cache
def _cached_reason() -> str | None:
    return unavailable_reason()


def require_slurm() -> None:
    """Skip the calling test, saying why, unless the test cluster is up (checked once per process)."""
    reason = _cached_reason()
    if reason is not None:
        print(f"SKIP (SLURM): {reason}")
        pytest.skip(reason)


def parse_duration(text: str) -> int:
    """Seconds in a SLURM duration: ``[days-]hours:minutes:seconds``, ``minutes:seconds``, or ``UNLIMITED``."""
    text = text.strip()
    if text in {"UNLIMITED", "INVALID", "NOT_SET", ""}:
        raise ValueError(f"not a finite SLURM duration: {text!r}")
    days = 0
    if "-" in text:
        head, text = text.split("-", 1)
        days = int(head)
    parts = [int(part) for part in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    hours, minutes, seconds = parts
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def job_info(job_id: str) -> dict[str, str] | None:
    """``scontrol show job -o`` as a dict (JobState, Reason, ExitCode, ...); None once SLURM forgot the job."""
    result = _run(["scontrol", "show", "job", "-o", job_id], check=False)
    if result.returncode != 0:
        if "Invalid job id" in result.stderr:
            return None
        raise RuntimeError(f"scontrol show job {job_id}: {result.stderr.strip()}")
    info: dict[str, str] = {}
    # Values never contain spaces except Command/WorkDir/StdOut paths and Comment; good enough for states.
    for match in re.finditer(r"(\S+?)=(\S*)", result.stdout):
        info.setdefault(match.group(1), match.group(2))
    return info


def job_state(job_id: str) -> str | None:
    """Current JobState (``PENDING``, ``RUNNING``, ``COMPLETED``...); None once SLURM forgot the job."""
    info = job_info(job_id)
    return None if info is None else info.get("JobState")


def wait_for_state(
    job_id: str, states: Iterable[str], timeout: float = 60.0, interval: float = 0.1, what: str = ""
) -> str:
    """Poll ``scontrol show job`` until the job is in one of ``states``; fail the test after ``timeout``.

    Also returns (rather than waiting forever) if the job reaches a final state not in ``states``:
    the caller's assertion then says what happened.
    """
    wanted = set(states)
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = job_state(job_id)
        if last in wanted or (last in FINAL_STATES):
            return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            pytest.fail(f"job {job_id} still {last} after {timeout}s, waiting for {what or sorted(wanted)}")
        time.sleep(interval)


def wait_finished(job_id: str, timeout: float = 60.0, interval: float = 0.1) -> str:
    """Wait until the job is in a final state and return it (COMPLETED, FAILED, CANCELLED, TIMEOUT...)."""
    return wait_for_state(job_id, FINAL_STATES, timeout=timeout, interval=interval, what="a final state")


def wait_for_file(path: Path, timeout: float = 30.0, interval: float = 0.05, nonempty: bool = True) -> str:
    """Wait until ``path`` exists (and has content, by default); return its text."""
    deadline = time.monotonic() + timeout
    while True:
        if path.exists() and (not nonempty or path.stat().st_size > 0):
            return path.read_text()
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout}s")
        time.sleep(interval)


def process_alive(pid: int) -> bool:
    """Is ``pid`` a live process? A zombie counts as dead (PID 1 here reaps late)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The state follows the parenthesised command name, which may itself contain spaces or ')'.
    return stat[stat.rindex(")") + 2 :].split()[0] not in {"Z", "X"}


class Slurm:
    """Submits batch jobs for one test; cancels the ones still alive at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.jobs: list[str] = []

    def script(self, name: str, body: str, directives: Iterable[str] = ()) -> Path:
        """Write an executable bash batch script ``name`` with ``#SBATCH`` ``directives`` then ``body``."""
        lines = ["#!/bin/bash"] + [f"#SBATCH {directive}" for directive in directives] + [body.rstrip("\n"), ""]
        path = self.directory / name
        path.write_text("\n".join(lines))
        path.chmod(0o755)
        return path

    def sbatch(self, script: Path, *options: str, output: Path | None = None) -> str:
        """Submit ``script`` with ``sbatch --parsable``; returns the job id.

        Output (stdout and stderr) goes to ``output``, by default ``<script>.out`` next to the script.
        """
        output = output or script.with_suffix(".out")
        args = ["sbatch", "--parsable", f"--chdir={self.directory}", f"--output={output}", *options, str(script)]
        result = _run(args)
        job_id = result.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise RuntimeError(f"sbatch printed {result.stdout!r}, not a job id")
        self.jobs.append(job_id)
        return job_id

    def cancel(self, job_id: str, *options: str) -> None:
        _run(["scancel", *options, job_id])

    def squeue(self, job_id: str, fmt: str) -> str:
        """``squeue -h -t all -j ID -o FMT`` (all states: a plain squeue drops a job as soon as it ends)."""
        return _run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", fmt], check=False).stdout.strip()

    def cleanup(self) -> None:
        alive = [job for job in self.jobs if job_state(job) not in FINAL_STATES | {None}]
        if alive:
            _run(["scancel", *alive], check=False)


@pytest.fixture(name="slurm")
def slurm_fixture(tmp_path: Path) -> Iterator[Slurm]:
    """A :class:`Slurm` working in ``tmp_path``; skips the test (saying why) if the cluster is not up."""
    require_slurm()
    manager = Slurm(tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()
