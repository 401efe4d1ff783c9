"""``xpmfs top`` (issue 8): one frame from files, redraws driven by events, and a real terminal."""

from __future__ import annotations

import dataclasses
import fcntl
import os
import pty
import re
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from conftest import Processes, wait_until
from test_progress import ProgressGate, make_job, reported, write_progress

from xpmfs import _atomic, experiment, heartbeat
from xpmfs.catalog import last_log_line
from xpmfs.cli import main
from xpmfs.job import Job
from xpmfs.status import State
from xpmfs.workspace import Workspace


def run(*args: Any, columns: int = 200) -> Result:
    # rich sizes a non-terminal output from COLUMNS (80 otherwise).
    return CliRunner().invoke(main, [str(arg) for arg in args], env={"COLUMNS": str(columns)})


# -- one frame ---------------------------------------------------------------------------------


def test_once_shows_counts_running_jobs_failures_and_workers(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    record, _path = heartbeat.register(ws.workers_dir, jobs=2, heartbeat=2.0)  # alive: our own pid
    running = make_job(ws, State.RUNNING, "a1", worker=record.name, host="node7")
    lock = running.lock()
    assert lock.try_acquire()
    try:
        write_progress(running, 0.42, "epoch 3/10")
        running.stdout_path.write_text("loading\nstep 420 loss 0.31\n")
        make_job(ws, State.RUNNING, "a2")  # its process died: stale
        failed = make_job(ws, State.FAILED, "a3")
        for index, state in enumerate([State.READY, State.READY, State.WAITING, State.DONE]):
            make_job(ws, state, f"b{index}", experiment_name="other")
        result = run("top", ws.path, "--once")
    finally:
        lock.release()
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "7 jobs: running 2 · ready 2 · waiting 1 · done 1 · failed 1" in text
    assert "1 stale" in text and "(stale)" in text
    row = next(line for line in text.splitlines() if running.ref.jobid[:12] in line)
    for cell in ("node7", "42%", "epoch 3/10", "step 420 loss 0.31"):
        assert cell in row, (cell, row)
    assert "boom" in text and str(failed.stderr_path) in text  # what failed, and where to look
    worker = next(line for line in text.splitlines() if record.name in line)
    assert "1/2" in worker and "alive" in worker and "s ago" in worker
    assert "q or Ctrl-C" not in text  # not a live view
    assert "\x1b[" not in text  # not a terminal: no colours

    only = run("top", ws.path, "--once", "--experiment", "other").stdout
    assert "4 jobs: running 0 · ready 2 · waiting 1 · done 1 · failed 0" in only and "experiment other" in only
    assert "no job running" in only
    missing = run("top", ws.path, "--once", "--experiment", "nope")
    assert missing.exit_code == 1 and "no experiment 'nope'" in missing.stderr
    assert run("top", tmp_path / "nowhere", "--once").exit_code == 1
    assert run("top", ws.path, "--rescan", "0").exit_code == 2


def test_once_on_an_empty_workspace(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    text = run("top", ws.path, "--once", columns=80).stdout
    assert "0 jobs: running 0" in text and "no job running" in text and "no worker registered" in text
    # The hint names this workspace, and shows as long as no worker is alive.
    hint = f"(start one: xpmfs worker {shlex.quote(str(ws.path))})"
    assert f"no worker registered {hint}" in run("top", ws.path, "--once", columns=400).stdout
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    record = heartbeat.WorkerRecord(socket.gethostname(), int(gone.stdout), 0.0, 1, 2.0, "w-gone")
    _atomic.write_json(ws.workers_dir / record.filename, dataclasses.asdict(record))
    text = run("top", ws.path, "--once", columns=400).stdout
    assert "w-gone" in text and "dead" in text and f"no worker alive {hint}" in text


def test_redraws_on_queue_and_worker_events_not_on_a_timer(ws: Path, processes: Processes, tmp_path: Path) -> None:
    # --rescan 600: every new frame below is caused by an event in queue/ or workers/.
    workspace = Workspace.open(ws, create=True)
    out = tmp_path / "top.out"
    top = processes.start([sys.executable, "-m", "xpmfs", "top", str(ws), "--rescan", "600"], log=out)
    wait_until(lambda: "0 jobs:" in out.read_text(), what="the first frame")
    with experiment(ws, "events", wait=False, workers=0):
        ProgressGate.C(name="e", gate=str(tmp_path / "gate")).submit()
    wait_until(lambda: "1 job: running 0 · ready 1" in out.read_text(), timeout=10, what="a frame after the submission")
    record, _path = heartbeat.register(workspace.workers_dir, jobs=3, heartbeat=2.0)
    wait_until(lambda: record.name in out.read_text(), timeout=10, what="a frame showing the new worker")
    assert top.poll() is None
    top.send_signal(signal.SIGTERM)
    assert top.wait(timeout=10) == 0  # SIGTERM ends it cleanly (restoring a terminal, if any)
    frames = out.read_text().count("xpmfs top ")
    assert 3 <= frames <= 12, frames  # a few per change (each is a few events), not one per tick


# -- a real terminal ---------------------------------------------------------------------------


class Terminal:
    """A program in a real pseudo-terminal: tmux when installed, else Python's pty module."""

    def __init__(self, tmp_path: Path, command: list[str], env: dict[str, str], size: tuple[int, int] = (200, 50)):
        self.command, self.env, self.size = command, env, size
        self.tmux = shutil.which("tmux")
        if self.tmux:
            self.socket = str(tmp_path / "tmux.sock")
            if len(self.socket) > 100:  # a Unix socket path is limited to ~108 bytes
                self.socket = f"/tmp/xpmfs-test-{os.getpid()}-{id(self)}.sock"
            conf = tmp_path / "tmux.conf"
            conf.write_text("set -g remain-on-exit on\nset -g status off\n")
            # The exit status goes to a file: tmux may reap its pane's process late (seen here: a
            # zombie for over 10 s), so "#{pane_dead}" is not a reliable way to learn it. The
            # shell's trap lets Ctrl-C reach the program while the shell itself survives it.
            self.status_file = tmp_path / "exit-status"
            script = f"trap : INT; {shlex.join(command)}; echo $? > {shlex.quote(str(self.status_file))}"
            columns, lines = size
            self._tmux(
                "-f",
                str(conf),
                "new-session",
                "-d",
                "-x",
                str(columns),
                "-y",
                str(lines),
                "-s",
                "top",
                shlex.join(["sh", "-c", script]),
            )
        else:
            self._spawn()

    # tmux -----------------------------------------------------------------------------------

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(
            [self.tmux or "tmux", "-S", self.socket, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    # pty ------------------------------------------------------------------------------------

    def _spawn(self) -> None:
        try:
            master, slave = pty.openpty()
        except OSError as error:
            pytest.skip(f"neither tmux nor a pseudo-terminal can be had here ({error}): no real terminal to drive")
        columns, lines = self.size
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
        self.process = subprocess.Popen(
            self.command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env={**self.env, "TERM": "xterm-256color"},
            start_new_session=True,
            # The pty becomes the program's controlling terminal, so that Ctrl-C sends SIGINT.
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # noqa: PLW1509 -- only an ioctl before exec
        )
        os.close(slave)
        self.master = master
        self.output = b""
        self.mark_at = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:
                return
            if not data:
                return
            self.output += data

    # both -----------------------------------------------------------------------------------

    def screen(self) -> str:
        """The text on screen (tmux), or everything printed since :meth:`mark` with escapes removed (pty)."""
        if self.tmux:
            return self._tmux("capture-pane", "-p", "-t", "top")
        text = self.output[self.mark_at :].decode("utf-8", errors="replace")
        return re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>]", "", text)

    def mark(self) -> None:
        if not self.tmux:
            self.mark_at = len(self.output)

    def send(self, key: str) -> None:
        if self.tmux:
            self._tmux("send-keys", "-t", "top", key)
        else:
            os.write(self.master, key.encode())

    def exit_status(self) -> int | None:
        """The program's exit status once it has ended, else None."""
        if self.tmux:
            try:
                text = self.status_file.read_text()
            except FileNotFoundError:
                return None
            return int(text) if text.endswith("\n") else None  # a whole line: the shell has written it
        return self.process.poll()

    def restart(self) -> None:
        if self.tmux:
            self.status_file.unlink(missing_ok=True)
            self._tmux("respawn-pane", "-k", "-t", "top")
        else:
            os.close(self.master)
            self._spawn()

    def close(self) -> None:
        if self.tmux:
            subprocess.run([self.tmux, "-S", self.socket, "kill-server"], capture_output=True, timeout=30, check=False)
        else:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            os.close(self.master)


@pytest.fixture
def terminal(tmp_path: Path, processes: Processes) -> Iterator[Any]:
    opened: list[Terminal] = []

    def open_terminal(command: list[str]) -> Terminal:
        if not shutil.which("tmux"):
            print("tmux is not installed: driving `xpmfs top` through Python's pty module instead")
        # No COLUMNS/LINES (pytest-xdist sets 80x24): rich would trust them over the terminal's size.
        env = {key: value for key, value in processes.env().items() if key not in ("COLUMNS", "LINES")}
        opened.append(Terminal(tmp_path, command, env))
        return opened[-1]

    yield open_terminal
    for item in opened:
        item.close()


def test_top_in_a_real_terminal_while_jobs_run(ws: Path, processes: Processes, tmp_path: Path, terminal: Any) -> None:
    gate = tmp_path / "gate"
    with experiment(ws, "live", wait=False, workers=0):
        first = ProgressGate.C(name="first", gate=str(gate))
        first.submit()
        second = ProgressGate.C(name="second", gate=str(gate))
        second.submit()
    workspace = Workspace.open(ws)
    jobs = [Job(workspace, task.__xpm__.job.ref) for task in (first, second)]
    worker = processes.worker(ws, jobs=1)  # one slot: one job runs, the other waits its turn
    running = wait_until(
        lambda: next((job for job in jobs if reported(job.path, fraction=0.42)), None), what="a job to report 42%"
    )
    name = "first" if running is jobs[0] else "second"
    wait_until(lambda: last_log_line(running) == f"training line of {name}", what="its first line")

    screen = terminal([sys.executable, "-m", "xpmfs", "top", str(ws), "--rescan", "0.3"])

    def shows(*parts: str, what: str) -> str:
        """Wait until the screen shows every one of ``parts``; fail showing the screen if it never does."""
        seen: list[str] = []

        def check() -> bool:
            seen[:] = [screen.screen()]
            return all(part in seen[0] for part in parts)

        try:
            wait_until(check, what=what)
        except pytest.fail.Exception:
            pytest.fail(f"timed out waiting for {what}: {parts} not all on the screen:\n{seen[0]}")
        return seen[0]

    text = shows(
        "2 jobs: running 1 · ready 1",
        "42%",
        f"epoch 3 of {name}",
        f"training line of {name}",
        "alive",
        what="the first frame with the running job",
    )
    row = next(line for line in text.splitlines() if running.ref.jobid[:12] in line)
    assert "42%" in row and f"epoch 3 of {name}" in row and f"training line of {name}" in row
    host = os.uname().nodename
    assert host in row
    worker_row = next(line for line in text.splitlines() if f"-{worker.pid}" in line)
    assert "1/1" in worker_row and "alive" in worker_row and "s ago" in worker_row
    assert "q or Ctrl-C quits" in text

    screen.mark()
    gate.write_text("open")  # both jobs run to their end, one after the other
    shows("2 jobs: running 0 · ready 0 · waiting 0 · done 2", "no job running", what="the counts to change")
    assert all(job.marker() is State.DONE for job in jobs)

    screen.send("q")
    assert wait_until(lambda: screen.exit_status() is not None, timeout=10, what="q to quit") is True
    assert screen.exit_status() == 0
    screen.restart()
    screen.mark()
    shows("done 2", what="top to start again")
    screen.send("C-c" if screen.tmux else "\x03")
    wait_until(lambda: screen.exit_status() is not None, timeout=10, what="Ctrl-C to quit")
    assert screen.exit_status() == 0


# -- the command line around it ----------------------------------------------------------------


def test_help_texts_give_examples_exit_codes_and_completion() -> None:
    top = run("top", "--help").stdout
    assert "Example:" in top and "xpmfs top ~/ws" in top and "Exit codes:" in top and "--once" in top
    ls = run("ls", "--help").stdout
    assert "Exit codes:" in ls and "progress" in ls
    group = run("--help").stdout
    assert "_XPMFS_COMPLETE=bash_source xpmfs" in group and "Example:" in group and "top" in group


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers after ``words`` (click's bash_complete protocol)."""
    parts = words.split(" ")
    variables = {"_XPMFS_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    result = CliRunner().invoke(main, [], env={**variables, **(env or {})}, prog_name="xpmfs")
    return [line for line in result.stdout.splitlines() if line]


def test_shell_completion_of_commands_and_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = CliRunner().invoke(main, [], env={"_XPMFS_COMPLETE": "bash_source"}, prog_name="xpmfs").stdout
    assert "_xpmfs_completion" in script and "complete " in script
    assert "plain,top" in complete("xpmfs to")
    ws = Workspace.open(tmp_path / "ws", create=True)
    first = make_job(ws, State.DONE, "c1")
    second = make_job(ws, State.READY, "c2")
    assert complete(f"xpmfs show -w {ws.path} c") == sorted([f"plain,{first.ref.jobid}", f"plain,{second.ref.jobid}"])
    assert complete(f"xpmfs show -w {ws.path} demo") == ["plain,demo.tasks.Train/"]
    assert complete(f"xpmfs show -w {ws.path} demo.tasks.Train/c2") == [f"plain,{second.ref.relpath}"]
    assert complete("xpmfs log c1", env={"XPMFS_WORKSPACE": str(ws.path)}) == [f"plain,{first.ref.jobid}"]
    monkeypatch.chdir(first.path)  # the workspace the current folder is in
    assert complete("xpmfs kill c2") == [f"plain,{second.ref.jobid}"]
    assert complete("xpmfs show ./") == ["file,./"]  # a path: the shell completes files
    monkeypatch.chdir(tmp_path)
    assert complete("xpmfs show c") == []  # no workspace here: nothing, and no error
    assert "plain,running" in complete("xpmfs ls --state r")
