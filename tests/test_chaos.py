"""A short randomized chaos run (tools/chaos): kill -9 workers, runners and the experiment, converge, check.

The full run is ``tools/chaos`` (20 s by default, ``--trials`` for more); this is a short one, with a
fresh seed each time (printed on failure, so a failing run can be replayed with ``--seed``).
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _chaos_module():
    spec = importlib.util.spec_from_file_location("xpmfs_tools_chaos", ROOT / "tools" / "chaos.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _can_make_nodes() -> str | None:
    """Why the nodes mode cannot run here, or None."""
    if shutil.which("bindfs") is None or shutil.which("unshare") is None:
        return "bindfs or unshare is not installed"
    probe = subprocess.run(
        ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    return None if probe.returncode == 0 else f"unshare cannot make namespaces here: {probe.stderr.decode().strip()}"


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize("mode", ["local", "nodes"])
def test_short_chaos_run_loses_nothing_and_never_runs_a_job_twice_at_once(tmp_path: Path, mode: str) -> None:
    if mode == "nodes" and (why := _can_make_nodes()):
        pytest.skip(why)
    chaos = _chaos_module()
    seed = random.SystemRandom().randrange(1 << 31)
    options: dict[str, object] = {"seconds": 8.0, "jobs": 12}
    if mode == "nodes":
        options = {"seconds": 6.0, "jobs": 8, "lock_mode": "shared"}
    figures, _root = chaos.run(
        workers=3,
        seed=seed,
        slots=2,
        work=0.3,
        runner_kills=True,
        kill_interval=0.5,
        nodes=mode == "nodes",
        converge_timeout=60.0,
        workdir=tmp_path / "chaos",
        keep=True,
        **options,
    )
    line = f"{figures.line()} seed={seed}{' --nodes' if mode == 'nodes' else ''}"
    print(line)
    detail = "\n".join([line, *figures.problems[:20], f"work folder: {tmp_path / 'chaos'}"])
    assert figures.kills > 0, detail
    assert figures.submitted == figures.jobs == options["jobs"], detail
    assert figures.lost == 0, detail
    assert figures.duplicates == 0, detail
    assert figures.order == 0, detail
    assert figures.check == "clean", detail
    assert figures.ok, detail


def test_the_command_line_says_how_to_use_it() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "chaos.py"), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    for option in ("--seconds", "--workers", "--jobs", "--seed"):
        assert option in result.stdout
    bad = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "chaos.py"), "--seconds", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "must be positive" in bad.stderr


def test_the_verdict_catches_overlapping_and_unproven_runs(tmp_path: Path) -> None:
    """The judge itself must be able to fail: feed it a counter file with every kind of bad run."""
    chaos = _chaos_module()
    trial = chaos.Trial(tmp_path, seconds=1, workers=1, jobs=4, seed=0)
    trial.plan = [
        {"n": 0, "work": 0.1, "after": None},
        {"n": 1, "work": 0.1, "after": None},
        {"n": 2, "work": 0.1, "after": None},
        {"n": 3, "work": 0.1, "after": 0},
    ]
    trial.deaths = {("h", 102): 5.0, ("h", 201): 20.0, ("other", 200): 0.5}
    lines = [
        # job 0: a clean run, then a rerun after it ended: fine
        "0 100 1 start 1.0",
        "0 100 1 end 2.0",
        "0 101 1 start 3.0",
        "0 101 1 end 4.0",
        # job 1: killed run seen dead at 5.0, next run starts at 6.0: a proven crash, fine;
        # then two runs that overlap: a duplicate
        "1 102 1 start 4.5",
        "1 103 1 start 6.0",
        "1 104 1 start 6.5",
        "1 103 1 end 7.0",
        "1 104 1 end 8.0",
        # job 2: killed run never seen dead (pid 200 died on another host), then another run: a duplicate
        "2 200 1 start 1.0",
        "2 202 1 start 9.0",
        "2 202 1 end 9.5",
        # job 3: depends on job 0 (first end 2.0) but started at 1.5: out of order
        "3 300 1 start 1.5",
        "3 300 1 end 2.5",
    ]
    # the counter's lines are "<n> <pid> <ppid> <host> start|end <time>"
    trial.counter.write_text(
        "".join(f"{' '.join(line.split()[:3])} h {' '.join(line.split()[3:])}\n" for line in lines)
    )
    trial._judge_runs()
    assert trial.figures.duplicates == 2, trial.figures.problems
    assert trial.figures.order == 1, trial.figures.problems
    assert trial.figures.reruns == 1 + 2 + 1
    assert not trial.figures.ok


SPAWN_TASKS = '''
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from xpmfs import Meta, Param, Task

TICKER = """
import os, sys, time
end = time.time() + float(sys.argv[2])
while time.time() < end:
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, f"{os.getpid()} {time.time()!r}\\\\n".encode())
    os.close(fd)
    time.sleep(0.05)
"""


class Spawn(Task):
    """Does its work in a subprocess, as tasks that launch a training script do."""

    n: Param[int]
    ticks: Meta[str]
    seconds: Meta[float] = 30.0

    def execute(self) -> None:
        child = subprocess.Popen([sys.executable, "-c", TICKER, self.ticks, str(self.seconds)])
        Path(f"child-{child.pid}").write_text("")
        child.wait()
'''

SPAWN_EXPERIMENT = """
import sys
from xpmfs import experiment
from spawn_tasks import Spawn

with experiment(sys.argv[1], "spawn", wait=False, workers=0):
    Spawn.C(n=1, ticks=sys.argv[2]).submit()
"""


@pytest.mark.timeout(90)
def test_a_killed_workers_task_subprocesses_do_not_outlive_the_run(tmp_path: Path) -> None:
    import os
    import signal

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import Processes, wait_until

    (tmp_path / "spawn_tasks.py").write_text(SPAWN_TASKS)
    (tmp_path / "experiment.py").write_text(SPAWN_EXPERIMENT)
    ws, ticks = tmp_path / "ws", tmp_path / "ticks"
    processes = Processes(tmp_path)
    env = processes.env()
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env["PYTHONPATH"]])
    try:
        subprocess.run(
            [sys.executable, str(tmp_path / "experiment.py"), str(ws), str(ticks)], env=env, check=True, timeout=60
        )
        first = processes.start([sys.executable, "-m", "xpmfs", "worker", str(ws), "--rescan", "0.3"], env=env)
        [job] = [path for path in ws.glob("jobs/*/*") if path.is_dir()]
        marker = wait_until(lambda: list(job.glob("child-*")), timeout=60, what="the task's subprocess to start")
        child = int(marker[0].name.split("-")[1])  # type: ignore[index]
        wait_until(ticks.exists, timeout=30, what="the first tick")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        processes.start([sys.executable, "-m", "xpmfs", "worker", str(ws), "--rescan", "0.3"], env=env)
        again = wait_until(
            lambda: [path for path in job.glob("child-*") if int(path.name.split("-")[1]) != child],
            timeout=60,
            what="the second run to start its subprocess",
        )
        second = int(again[0].name.split("-")[1])  # type: ignore[index]

        def ticks_of(pid: int) -> list[float]:
            return [float(line.split()[1]) for line in ticks.read_text().splitlines() if line.split()[0] == str(pid)]

        wait_until(lambda: len(ticks_of(second)) >= 4, timeout=30, what="the second run's subprocess to tick")
        overlap = [when for when in ticks_of(child) if when >= ticks_of(second)[0]]
        assert not overlap, f"the first run's subprocess {child} still worked next to {second}: {len(overlap)} ticks"
    finally:
        processes.reap()
        for line in ticks.read_text().splitlines() if ticks.exists() else []:
            try:
                os.kill(int(line.split()[0]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
