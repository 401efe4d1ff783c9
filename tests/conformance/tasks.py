"""Tasks the conformance suite submits. Each one leaves evidence in files that the suite reads: the
suite looks at the worker under test only from the outside (spec/README.md, "Conformance").

Runners import this module (``conformance.tasks``) through the spec's ``sys_path``, the suite's
own import path, which holds ``tests/``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from xpmfs import GracefulTimeout, Meta, Param, ResumableTask, SubmitHook, Task

#: The variables a probe records: every one the worker sets, and the ones the suite's hook sets.
PROBED = (
    "XPMFS_LOCK_HELD",
    "XPMFS_PARENT_PID",
    "XPMFS_WORKER",
    "XPMFS_CLAIMED",
    "XPMFS_ATTEMPT",
    "XPMFS_JOB_DIR",
    "CONFORMANCE_SPEC_ONLY",
    "CONFORMANCE_OVERRIDDEN",
)


def append(path: str, line: str) -> None:
    """One ``write(2)`` of one short line with ``O_APPEND``: whole, on a local file system."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\n".encode())
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def _write_whole(path: str, text: str) -> None:
    with open(f"{path}.tmp", "w") as stream:
        stream.write(text)
    os.replace(f"{path}.tmp", path)


def _wait_for(gate: str) -> None:
    while gate and not os.path.exists(gate):
        time.sleep(0.01)


class Run(Task):
    """One run of a job, told to a shared log: ``start`` and ``end`` lines with its pid.

    At its start it checks that no earlier run of the same job is still alive (``overlap`` line):
    the suite's test of "never twice at once". With ``gate`` it waits for that file before it
    ends; with ``after`` (the path of a dependency's ``done`` marker) it records whether that
    marker existed when it started.
    """

    n: Param[int]
    log: Meta[str]
    before: Param[Task | None] = None  # a dependency: any task's output
    gate: Meta[str] = ""
    after: Meta[str] = ""
    seconds: Meta[float] = 0.0

    def execute(self) -> None:
        me = os.getpid()
        try:
            earlier = Path(self.log).read_text().splitlines()
        except FileNotFoundError:
            earlier = []
        for line in earlier:
            n, pid, what = line.split()[:3]
            if int(n) == self.n and what == "start" and alive(int(pid)):
                append(self.log, f"{self.n} {me} overlap {pid}")
        if self.after:
            append(self.log, f"{self.n} {me} dependency {'done' if os.path.exists(self.after) else 'missing'}")
        append(self.log, f"{self.n} {me} start {time.time()!r}")
        _write_whole("started", str(me))
        _wait_for(self.gate)
        time.sleep(self.seconds)
        append(self.log, f"{self.n} {me} end {time.time()!r}")


class spec_environ(SubmitHook):  # a decorator, named as the seed names its hooks
    """Puts two variables in the spec's ``environ``: one only there, one the worker's environment has too."""

    def spec(self) -> str:
        return "conformance"

    def process(self, job: object, launcher: object) -> None:
        job.environ["CONFORMANCE_SPEC_ONLY"] = "from-spec"  # type: ignore[attr-defined]
        job.environ["CONFORMANCE_OVERRIDDEN"] = "from-spec"  # type: ignore[attr-defined]


class claim_names_in_environ(SubmitHook):
    """Puts the claim's own variable names in the spec's ``environ``: they must not reach the task."""

    def spec(self) -> str:
        return "claim-names"

    def process(self, job: object, launcher: object) -> None:
        for name in ("XPMFS_WORKER", "XPMFS_ATTEMPT", "XPMFS_CLAIMED", "XPMFS_PARENT_PID", "XPMFS_JOB_DIR"):
            job.environ[name] = "from-spec"  # type: ignore[attr-defined]


@spec_environ()
class Probe(Task):
    """Writes ``probe.json`` in its folder: how its runner was started (process group, session,
    parent, stdin, working directory, environment); then waits for ``gate``.

    With ``child``, it first starts a subprocess in its own process group that writes
    ``child-signal`` when it gets SIGTERM (what a cancel must reach) and ``child.pid``.
    """

    name: Param[str]
    gate: Meta[str] = ""
    child: Meta[bool] = False

    def execute(self) -> None:
        if self.child:
            code = (
                "import os, signal, sys, time\n"
                "def on_term(*_):\n"
                "    open('child-signal', 'w').write('SIGTERM')\n"
                "    sys.exit(0)\n"
                "signal.signal(signal.SIGTERM, on_term)\n"
                "open('child.pid.tmp', 'w').write(str(os.getpid()))\n"
                "os.replace('child.pid.tmp', 'child.pid')\n"
                "while True:\n"
                "    time.sleep(0.05)\n"
            )
            subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
            while not os.path.exists("child.pid"):
                time.sleep(0.01)
        try:
            stdin = os.readlink("/proc/self/fd/0")
        except OSError:
            stdin = None
        probe = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "pgid": os.getpgid(0),
            "sid": os.getsid(0),
            "cwd": os.getcwd(),
            "stdin": stdin,
            "executable": sys.executable,
            "environ": {name: os.environ.get(name) for name in PROBED},
            "time": time.time(),
        }
        _write_whole("probe.json", json.dumps(probe))
        _write_whole("started", str(os.getpid()))
        _wait_for(self.gate)


@claim_names_in_environ()
class ProbeClaimNames(Probe):
    """A probe whose spec's ``environ`` names the claim's variables."""


class Die(Task):
    """Writes ``started``, then kills its own process with ``signum`` (no runner record possible
    for SIGKILL), or raises (``signum`` 0)."""

    name: Param[str]
    signum: Meta[int] = 0

    def execute(self) -> None:
        _write_whole("started", str(os.getpid()))
        if self.signum:
            os.kill(os.getpid(), self.signum)
            time.sleep(5)  # a signal that does not kill: let the suite see it
        raise RuntimeError(f"{self.name} fails on purpose")


class TimesOutOnce(ResumableTask):
    """A resumable task whose first attempt stops with a timeout (a retry), then succeeds."""

    name: Param[str]
    log: Meta[str]

    def execute(self) -> None:
        append(self.log, f"{self.name} {os.getpid()} start")
        if not os.path.exists("attempted"):
            Path("attempted").write_text("")
            raise GracefulTimeout("the first attempt stops early")
        append(self.log, f"{self.name} {os.getpid()} end")
