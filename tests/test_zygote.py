"""The warm runner: jobs fork from a process that has imported xpmfs and the task's modules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
from conftest import Processes, wait_until

from xpmfs.workspace import Workspace

SCRIPT = """
import os, sys
from pathlib import Path
from xpmfs import DirectLauncher, Param, Task, experiment
from versioned import Probe

with experiment(sys.argv[1], sys.argv[2], workers=0):
    for n in range(int(sys.argv[3])):
        launcher = DirectLauncher(isolate=True) if sys.argv[4] == "isolate" else None
        Probe.C(n=n, tag=sys.argv[2]).submit(launcher=launcher)
"""

MODULE = """
import json
import os
import signal
from pathlib import Path
from xpmfs import Param, Task

VERSION = {version}

class Probe(Task):
    n: Param[int]
    tag: Param[str]

    def execute(self):
        Path("probe.txt").write_text(f"{{VERSION}} {{os.getpid()}} {{os.getppid()}}")
"""


def _run(tmp_path: Path, ws: Path, name: str, count: int, mode: str, env: dict[str, str]) -> list[tuple[int, int, int]]:
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    command = [sys.executable, str(script), str(ws), name, str(count), mode]
    result = subprocess.run(command, env=env, capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr.decode()
    probes = []
    for job in (ws / "jobs" / "versioned.probe").iterdir():
        spec = (job / "__xpm__" / "spec.json").read_text()
        if f'"{name}"' in spec:
            version, pid, ppid = (job / "probe.txt").read_text().split()
            probes.append((int(version), int(pid), int(ppid)))
    assert len(probes) == count
    return probes


def _cmdline(pid: int) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return ""


def _versioned_worker(
    tmp_path: Path, ws: Path, processes: Processes
) -> tuple[Path, dict[str, str], subprocess.Popen[bytes]]:
    """A worker on ``ws`` whose jobs import ``versioned`` (version 1) from the returned folder."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "versioned.py").write_text(textwrap.dedent(MODULE.format(version=1)))
    env = processes.env()
    env["PYTHONPATH"] = os.pathsep.join([str(modules), env["PYTHONPATH"]])
    Workspace.open(ws, create=True)
    worker = processes.start(
        [sys.executable, "-m", "xpmfs", "worker", str(ws), "--rescan", "0.5"], env=env, log=tmp_path / "w.log"
    )
    return modules, env, worker


def test_jobs_fork_from_the_warm_runner_and_see_code_changes(tmp_path: Path, ws: Path, processes: Processes) -> None:
    modules, env, worker = _versioned_worker(tmp_path, ws, processes)
    first = _run(tmp_path, ws, "first", 3, "warm", env)
    parents = {ppid for _, _, ppid in first}
    assert len(parents) == 1, "every job forks from the same warm runner"
    (zygote,) = parents
    assert zygote != worker.pid and "xpmfs.zygote" in _cmdline(zygote)
    assert {version for version, _, _ in first} == {1}

    # Editing a task's module makes the warm runner stale: the next job runs the new code.
    (modules / "versioned.py").write_text(textwrap.dedent(MODULE.format(version=2)))
    os.utime(modules / "versioned.py", (1e9 + 5, 1e9 + 5))  # a different mtime, whatever the clock
    second = _run(tmp_path, ws, "second", 2, "warm", env)
    assert {version for version, _, _ in second} == {2}

    # isolate=True starts a fresh interpreter as the worker's own child.
    isolated = _run(tmp_path, ws, "isolated", 1, "isolate", env)
    assert {ppid for _, _, ppid in isolated} == {worker.pid}


def test_the_warm_runner_forks_ahead_and_survives_losing_that_fork(
    tmp_path: Path, ws: Path, processes: Processes
) -> None:
    """The zygote forks the next job's process while the current one runs, and hands it the next
    request; that waiting fork is no job (nobody hears of its end), and killing it costs nothing."""
    _, env, _ = _versioned_worker(tmp_path, ws, processes)
    first = _run(tmp_path, ws, "first", 3, "warm", env)
    (zygote,) = {ppid for _, _, ppid in first}
    wait_until(lambda: len(psutil.Process(zygote).children()) == 1, what="the zygote's fork made ahead")
    (spare,) = psutil.Process(zygote).children()
    assert spare.pid not in {pid for _, pid, _ in first}
    spare.kill()
    spare.wait(timeout=10)
    second = _run(tmp_path, ws, "second", 3, "warm", env)  # each job done: none took the lost fork
    assert {ppid for _, _, ppid in second} == {zygote}
    assert spare.pid not in {pid for _, pid, _ in second}


def test_a_spare_killed_before_the_zygote_notices_costs_no_job(tmp_path: Path, ws: Path, processes: Processes) -> None:
    """The request for the spare arrives before the zygote has heard of its death: the pipe is
    broken, and the zygote forks the job the ordinary way instead of dying (with its jobs)."""
    _, env, _ = _versioned_worker(tmp_path, ws, processes)
    first = _run(tmp_path, ws, "first", 1, "warm", env)
    (zygote_pid,) = {ppid for _, _, ppid in first}
    zygote = psutil.Process(zygote_pid)
    wait_until(lambda: len(zygote.children()) == 1, what="the zygote's fork made ahead")
    (spare,) = zygote.children()
    log = tmp_path / "w.log"
    started = log.read_text().count("started")
    zygote.suspend()  # it cannot reap the spare, nor read the next request, until resumed
    try:
        spare.kill()
        script = tmp_path / "script.py"
        command = [sys.executable, str(script), str(ws), "second", "1", "warm"]
        second = processes.start(command, env=env, log=tmp_path / "second.log")
        wait_until(lambda: log.read_text().count("started") > started, what="the worker to send the request")
    finally:
        zygote.resume()
    assert second.wait(timeout=60) == 0, (tmp_path / "second.log").read_text()
    (probe,) = (job / "probe.txt" for job in (ws / "jobs" / "versioned.probe").iterdir() if '"second"' in _spec(job))
    _, pid, ppid = (int(part) for part in probe.read_text().split())
    assert ppid == zygote_pid and pid != spare.pid  # forked by the same zygote, which lived on


def _spec(job: Path) -> str:
    return (job / "__xpm__" / "spec.json").read_text()


ENV_MODULE = """
import json, os, sys
from pathlib import Path
from xpmfs import Param, SubmitHook, Task

os.environ.setdefault("PROBE_SET_BY_IMPORT", "import")  # as numerical libraries do (OMP_NUM_THREADS...)


class with_env(SubmitHook):
    def spec(self):
        return "env"

    def process(self, job, launcher):
        job.environ["PROBE_FROM_SPEC"] = "spec"
        job.environ["PROBE_SHADOWED"] = "spec"


@with_env()
class EnvProbe(Task):
    n: Param[int]

    def execute(self):
        Path("env.json").write_text(json.dumps(dict(os.environ)))
        Path("filelock.txt").write_text(str("filelock" in sys.modules))
"""

ENV_SCRIPT = """
import sys
from xpmfs import DirectLauncher, experiment
from envprobe import EnvProbe

with experiment(sys.argv[1], "env", workers=0):
    for n in range(3):
        EnvProbe.C(n=n).submit(launcher=DirectLauncher(isolate=True) if n == 2 else None)
"""


def test_a_forked_job_sees_the_environment_a_fresh_one_sees(tmp_path: Path, ws: Path, processes: Processes) -> None:
    """Requests carry the job's environment as a change to the zygote's: the result must be the
    same as a fresh runner's, minus nothing and plus nothing (the zygote's own variables).

    The module is named like the task (``envprobe.EnvProbe``), and so like the job's script
    ``envprobe.py``: the script must not shadow it."""
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "envprobe.py").write_text(ENV_MODULE)
    env = processes.env()
    env["PYTHONPATH"] = os.pathsep.join([str(modules), env["PYTHONPATH"]])
    env["PROBE_FROM_WORKER"] = "worker"
    env["PROBE_SHADOWED"] = "worker"
    Workspace.open(ws, create=True)
    processes.start([sys.executable, "-m", "xpmfs", "worker", str(ws)], env=env, log=tmp_path / "w.log")
    script = tmp_path / "script.py"
    script.write_text(ENV_SCRIPT)
    result = subprocess.run(
        [sys.executable, str(script), str(ws)], env=env, capture_output=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr.decode()

    seen = {}
    for job in (ws / "jobs" / "envprobe.envprobe").iterdir():
        n = json.loads((job / "__xpm__" / "spec.json").read_text())["config"]["objects"][0]["fields"]["n"]
        seen[n] = json.loads((job / "env.json").read_text())
    warm, fresh = seen[0], seen[2]

    def differ(one: dict[str, str], other: dict[str, str]) -> set[str]:
        return {name for name in one.keys() | other.keys() if one.get(name) != other.get(name)}

    assert differ(warm, seen[1]) <= {"XPMFS_CLAIMED", "XPMFS_JOB_DIR"}
    for name, value in [
        ("PROBE_FROM_WORKER", "worker"),
        ("PROBE_FROM_SPEC", "spec"),
        ("PROBE_SHADOWED", "spec"),
        ("PROBE_SET_BY_IMPORT", "import"),
    ]:
        assert warm.get(name) == value == fresh.get(name), name
    assert not [name for name in warm if name.startswith("XPMFS_ZYGOTE")]
    # filelock's fork hooks cost every fork 0.5 ms: neither the zygote nor a job whose worker
    # holds its lock may import it.
    filelock = {(job / "filelock.txt").read_text() for job in (ws / "jobs" / "envprobe.envprobe").iterdir()}
    assert filelock == {"False"}
    # Only what names this very run may differ: its folder, when it was claimed, whom it dies with.
    assert differ(warm, fresh) <= {"XPMFS_CLAIMED", "XPMFS_JOB_DIR", "XPMFS_PARENT_PID"}


def test_ctrl_c_stops_the_worker_and_its_warm_runner_quietly(tmp_path: Path, ws: Path, processes: Processes) -> None:
    """A terminal's Ctrl-C sends SIGINT to the worker's whole process group: the worker stops as
    on SIGTERM, and its zygote, which would die with a KeyboardInterrupt traceback in the
    worker's log, is not in that group (the worker ends it)."""
    _, env, worker = _versioned_worker(tmp_path, ws, processes)
    (zygote_pid,) = {ppid for _, _, ppid in _run(tmp_path, ws, "before", 1, "warm", env)}
    zygote = psutil.Process(zygote_pid)
    os.killpg(worker.pid, signal.SIGINT)  # the worker leads its group (Processes starts a session)
    assert worker.wait(timeout=60) == 0
    zygote.wait(timeout=30)
    log = (tmp_path / "w.log").read_text()
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log
