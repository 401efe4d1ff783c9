"""Fixtures of the conformance suite: a workspace, the worker under test, reference workers beside it.

The worker under test is started from ``XPMFS_WORKER_CMD``, a shell command in which ``{workspace}``
stands for the workspace's path (quoted for the shell); by default the reference worker,
``<this python> -m xpmfs worker {workspace}``. It is run as ``/bin/sh -c 'exec <command>'`` in a
session of its own, with the suite's environment (``PYTHONPATH`` holds ``tests/``, where the
suite's tasks are). Everything else is the reference xpmfs: submissions (the submitting side is not
under test), the workers beside it, ``xpmfs check``. The suite looks at the worker under test from
the outside only: files in the workspace, its processes' signals, and ``xpmfs check``.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner
from conftest import Processes, wait_until

from xpmfs import experiment
from xpmfs.cli import main as xpmfs_cli
from xpmfs.job import Job
from xpmfs.workspace import Workspace

WORKER_CMD_VARIABLE = "XPMFS_WORKER_CMD"
REFERENCE_CMD = f"{shlex.quote(sys.executable)} -m xpmfs worker {{workspace}}"
LEASE = 3.0  # the lease of the suite's `shared` workspaces (`xpmfs init --lock-mode shared --lease 3`)
#: How long a worker may take to notice a change it gets no event for: spec/workspace.md's default
#: `rescan` (5 s), plus a margin for a busy machine.
RESCAN = 5.0
SLACK = 10.0  # margin for process start-up and scheduling on a loaded 2-core machine


def worker_command() -> str:
    return os.environ.get(WORKER_CMD_VARIABLE) or REFERENCE_CMD


#: Whether the worker under test is the reference worker: an ``xfail`` for a rule the reference
#: *worker* does not follow yet applies to it only (a rule of the reference *runner*, which every
#: worker starts, applies to all).
REFERENCE_UNDER_TEST = not os.environ.get(WORKER_CMD_VARIABLE)


@dataclass
class Worker:
    """A worker process the suite started."""

    process: subprocess.Popen[bytes]
    log: Path
    label: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def pids(self) -> set[int]:
        """Its pid and its descendants' (the worker may be a wrapper's child)."""
        try:
            return {self.pid} | {child.pid for child in psutil.Process(self.pid).children(recursive=True)}
        except psutil.Error:
            return {self.pid}

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL its process group (the worker and what it did not put in a session of its own)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)

    def tail(self) -> str:
        try:
            return f"--- {self.label} ({self.log}):\n" + self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return f"--- {self.label}: no log"


class Site:
    """One workspace and the workers the test started on it."""

    def __init__(self, root: Path, processes: Processes, mode: str) -> None:
        self.root = root
        self.path = root / "ws"
        self.mode = mode
        self.processes = processes
        self.workers: list[Worker] = []
        args = ["init", str(self.path), "--lock-mode", mode] + (["--lease", str(LEASE)] if mode == "shared" else [])
        result = CliRunner().invoke(xpmfs_cli, args)
        assert result.exit_code == 0, result.output
        self.workspace = Workspace.open(self.path)

    # -- workers ---------------------------------------------------------------------------------

    def under_test(self, env: dict[str, str] | None = None, path: Path | None = None) -> Worker:
        """Start the worker under test on this workspace (``env``: added to its environment;
        ``path``: another path of the workspace to give it)."""
        command = worker_command().replace("{workspace}", shlex.quote(str(path or self.path)))
        return self._start(["/bin/sh", "-c", f"exec {command}"], "worker under test", env)

    def reference(self, jobs: int = 1) -> Worker:
        """Start a reference worker beside it."""
        args = [sys.executable, "-m", "xpmfs", "worker", str(self.path), "--jobs", str(jobs), "--rescan", "0.5"]
        return self._start(args, "reference worker", None)

    def _start(self, args: list[str], label: str, env: dict[str, str] | None) -> Worker:
        log = self.root / f"worker-{len(self.workers)}.log"
        environ = {**self.processes.env(), **(env or {})}
        worker = Worker(self.processes.start(args, log=log, env=environ), log, label)
        self.workers.append(worker)
        return worker

    def registration(self, worker: Worker, timeout: float = SLACK) -> tuple[Path, dict[str, Any]]:
        """The registration file of ``worker`` (``WS/workers/*.json`` naming its pid) and its record."""

        def find() -> tuple[Path, dict[str, Any]] | None:
            pids = worker.pids()
            for path in sorted((self.path / "workers").glob("*.json")):
                try:
                    record = json.loads(path.read_bytes())
                except (OSError, ValueError):
                    continue
                if isinstance(record, dict) and record.get("pid") in pids:
                    return path, record
            return None

        found = wait_until(find, timeout=timeout, what=f"{worker.label} to register\n{worker.tail()}")
        return found  # type: ignore[return-value]

    def logs(self) -> str:
        return "\n".join(worker.tail() for worker in self.workers)

    # -- jobs --------------------------------------------------------------------------------------

    def submit(self, *configs: Any) -> list[Job]:
        """Submit ``configs`` (in this order) with the reference library; nobody runs them yet."""
        jobs = []
        with experiment(self.path, f"conformance-{time.monotonic_ns()}", wait=False, workers=0):
            for config in configs:
                jobs.append(self.job(config.submit()))
        return jobs

    def job(self, output: Any) -> Job:
        """The job of a submitted task (or of an output of one)."""
        return Job(self.workspace, output.__xpm__.job.ref)

    def queued(self, job: Job) -> bool:
        return (self.path / "queue" / job.ref.entry_name).exists()

    def wait_ended(self, job: Job, timeout: float = 30.0) -> None:
        wait_until(job.marker, timeout=timeout, what=f"{job.ref} to end\n{self.logs()}")

    def check(self, allow: tuple[str, ...] = ()) -> None:
        """``xpmfs check`` (reference) finds nothing but problems of the ``allow``ed kinds."""
        result = subprocess.run(
            [sys.executable, "-m", "xpmfs", "check", str(self.path), "--no-verify"],
            capture_output=True,
            text=True,
            env=self.processes.env(),
            timeout=60,
            check=False,
        )
        problems = [line for line in result.stdout.splitlines() if line.strip()]
        unexpected = [line for line in problems if line.split(": ")[1:2] and line.split(": ")[1] not in allow]
        assert not unexpected, f"xpmfs check: {result.stdout}{result.stderr}\n{self.logs()}"


@pytest.fixture
def site(tmp_path: Path, processes: Processes) -> Iterator[Site]:
    """A `local` workspace."""
    yield Site(tmp_path, processes, "local")


@pytest.fixture(params=["local", "shared"])
def any_site(request: pytest.FixtureRequest, tmp_path: Path, processes: Processes) -> Iterator[Site]:
    """A workspace in each lock mode (`shared`: leases of 3 s)."""
    yield Site(tmp_path, processes, request.param)


@pytest.fixture
def shared_site(tmp_path: Path, processes: Processes) -> Iterator[Site]:
    yield Site(tmp_path, processes, "shared")


def read_log(path: Path) -> list[list[str]]:
    """The lines of a :class:`conformance.tasks.Run` log, split."""
    try:
        return [line.split() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def history(job: Job) -> list[dict[str, Any]]:
    path = job.xpm_dir / "history.jsonl"
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def status_record(job: Job) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((job.xpm_dir / "status.json").read_bytes())
    return record


def python_wrapper(path: Path, body: str) -> Path:
    """An executable shell script at ``path``: ``body``, to name as a spec's ``python``."""
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def set_spec_python(job: Job, python: Path) -> None:
    """Give a job (not claimed yet) another interpreter. A spec is immutable for xpmfs; the suite
    rewrites it before any worker sees the job, as a submitter with that interpreter would have."""
    spec = json.loads(job.spec_path.read_bytes())
    spec["python"] = str(python)
    temporary = job.spec_path.with_name(".tmp-spec.json.suite")
    temporary.write_text(json.dumps(spec, indent=2) + "\n")
    os.replace(temporary, job.spec_path)
