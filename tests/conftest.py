"""Shared fixtures: workspaces in tmp_path, real worker processes that are always reaped."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from xpmfs.job import Job
from xpmfs.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


def wait_until(
    condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.01, what: str = ""
) -> object:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)


class Processes:
    """Starts real processes for a test and kills every one of them (and their groups) afterwards."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT), env.get("PYTHONPATH", "")])
        return env

    def start(self, args: list[str], *, log: Path | None = None, **kwargs: object) -> subprocess.Popen[bytes]:
        stream = open(log, "ab") if log else subprocess.DEVNULL
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stream,
            stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
            env=kwargs.pop("env", None) or self.env(),
            start_new_session=True,
            **kwargs,  # type: ignore[arg-type]
        )
        if log:
            stream.close()  # type: ignore[union-attr]
        self.started.append(process)
        return process

    def worker(
        self, workspace: Path, *, jobs: int = 1, rescan: float = 5.0, extra: list[str] | None = None
    ) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "xpmfs", "worker", str(workspace), "--jobs", str(jobs), "--rescan", str(rescan)]
        log = self.tmp_path / f"worker-{len(self.started)}.log"
        return self.start(args + (extra or []), log=log)

    def reap(self) -> None:
        for process in self.started:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


#: experimaestro 2.7.0's interpreter in the side venv that tools/side-venv makes (never a dependency).
EXPERIMAESTRO_PYTHON = ROOT / ".bench" / "venv-experimaestro" / "bin" / "python"


@pytest.fixture(scope="session")
def experimaestro_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """experimaestro's interpreter, the side venv made once (tools/test makes it before the tests;
    one xdist worker at a time here otherwise); the test skips, saying why, where it cannot be had."""
    from filelock import FileLock

    with FileLock(tmp_path_factory.getbasetemp().parent / "side-venv.lock"):
        made = subprocess.run(
            [str(ROOT / "tools" / "side-venv")], capture_output=True, text=True, check=False, timeout=900
        )
    if made.returncode != 0:
        pytest.skip(f"no experimaestro side venv: {made.stderr.strip()[-500:]}")
    return EXPERIMAESTRO_PYTHON


def fill_disk(path: Path) -> None:
    """Take every free byte of ``path``'s file system (the last page's too) with the file ``path``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for chunk in (65536, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    finally:
        os.close(fd)


def job_of(ws: Path, output: Any) -> Job:
    """The job of a submitted task (or of an output of one): where ``submit()`` put it."""
    return Job(Workspace.open(ws), output.__xpm__.job.ref)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    manager = Processes(tmp_path)
    try:
        yield manager
    finally:
        manager.reap()


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    """A path for a new workspace (created by whatever opens it first)."""
    return tmp_path / "ws"


@pytest.fixture(autouse=True)
def _no_user_settings(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own settings.yaml (children inherit the variable)."""
    empty = tmp_path_factory.getbasetemp() / "settings.yaml"
    if not empty.exists():
        empty.write_text("workspaces: []\n")
    monkeypatch.setenv("XPMFS_SETTINGS", str(empty))
