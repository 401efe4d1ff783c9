"""A/B of xpmfs's own figures between two source trees, alternating their runs on this machine.

Usage: .venv/bin/python tools/bench/ab.py BASE [HEAD] [--runs N] [--only FIGURE ...]

BASE and HEAD are commits (checked out into temporary worktrees) or source folders; HEAD is the
working tree by default. A full run (``tools/bench/run``) moves by more than 10 % between two runs
of one commit on a shared machine (RESULTS.md, "Issue 18's 10 % check"); running the two trees
alternately, in one process tree, is what tells the code from the machine. Figures:

- ``resubmit``: µs per submission of 1000 done jobs, in-process (best of 9 passes);
- ``submit``: µs per submission of 2000 new jobs, in-process, on tmpfs when there is one (best of 5);
- ``rerun``: the whole ``xp_xpmfs.py batch WS 1000`` on a workspace where all are done: CPU and
  wall of the process (medians of ``--runs`` alternating runs), imports included;
- ``scan``: ``Worker._schedule``, first (cold) and second (warm) pass, on a workspace written by
  that tree's ``synth.py`` (``--big`` jobs, 10 % queued behind a job that never ends).

Each tree's sources are compiled first: with ``PYTHONDONTWRITEBYTECODE`` set, an uncompiled tree
pays for compiling at every import, which would skew the comparison.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ("resubmit", "submit", "rerun", "scan")
SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())

# Run inside a tree (its tools/bench on sys.path): one JSON line of µs per job, best pass.
_IN_PROCESS = """
import json, shutil, sys, time
mode, ws, n, passes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import xp_xpmfs as X
from xpmfs import experiment
best = float("inf")
for index in range(passes):
    if mode == "submit":
        shutil.rmtree(ws, ignore_errors=True)
        options = {"workers": 0, "wait": False}
    else:
        options = {}  # resubmit: the first pass runs the jobs, the later ones find them done
    with experiment(ws, "ab", **options):
        configs = [X.Touch.C(x=x) for x in range(n)]
        begin = time.perf_counter()
        for config in configs:
            config.submit()
        elapsed = time.perf_counter() - begin
    if mode == "submit" or index > 0:
        best = min(best, elapsed)
shutil.rmtree(ws, ignore_errors=True)
print(json.dumps({"us_per_job": best * 1e6 / n}))
"""

_SCAN = """
import json, sys, time
from xpmfs.workspace import Workspace
from xpmfs.worker import Worker
worker = Worker(Workspace.open(sys.argv[1]), jobs=1)
worker.name = "ab"
times = []
for _ in range(2):
    begin = time.perf_counter()
    worker._schedule(True)
    times.append(time.perf_counter() - begin)
print(json.dumps({"cold_ms": times[0] * 1e3, "warm_ms": times[1] * 1e3}))
"""


@contextlib.contextmanager
def source_tree(spec: str) -> Iterator[Path]:
    """A folder of xpmfs sources: ``spec`` itself if it is one, else a worktree of commit ``spec``."""
    if (Path(spec) / "xpmfs").is_dir():
        yield Path(spec).resolve()
        return
    folder = Path(tempfile.mkdtemp(prefix="xpmfs-ab-"))
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), spec], check=True,
                   capture_output=True)  # fmt: skip
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=False)


def python(tree: Path, *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "tools" / "bench")])}
    return subprocess.run([sys.executable, *args], env=env, cwd=SCRATCH, capture_output=capture, text=True,
                          check=True)  # fmt: skip


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, float]:
    return json.loads(result.stdout.strip().splitlines()[-1])


def rerun(tree: Path, ws: Path) -> dict[str, float]:
    """CPU (user + system) and wall of one whole re-run process, in ms."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    command = [sys.executable, str(tree / "tools/bench/xp_xpmfs.py"), "batch", str(ws), "1000"]
    before, begin = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, env=env, cwd=SCRATCH, capture_output=True, check=True)
    wall, after = time.perf_counter() - begin, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu_ms": cpu * 1e3, "wall_ms": wall * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("head", nargs="?", default=str(ROOT))
    parser.add_argument("--runs", type=int, default=8, help="alternating runs of each tree (default 8)")
    parser.add_argument("--only", nargs="+", choices=FIGURES, default=list(FIGURES))
    parser.add_argument("--big", type=int, default=20000, help="jobs in the scan's workspace (default 20000)")
    args = parser.parse_args()
    with source_tree(args.base) as base, source_tree(args.head) as head:
        trees = {"base": base, "head": head}
        for tree in trees.values():
            compileall.compile_dir(tree / "xpmfs", quiet=1)
        samples: dict[str, dict[str, list[float]]] = {}
        with tempfile.TemporaryDirectory(dir=SCRATCH, prefix="xpmfs-ab-") as scratch:
            work = Path(scratch)
            if "rerun" in args.only:
                for name, tree in trees.items():  # one real run each makes the done jobs
                    rerun(tree, work / f"rerun-{name}")
            if "scan" in args.only:
                code = "import sys, pathlib, synth; synth.generate(pathlib.Path(sys.argv[1]), int(sys.argv[2]), 0.1)"
                for name, tree in trees.items():
                    python(tree, "-c", code, str(work / f"scan-{name}"), str(args.big))
            for _ in range(args.runs):
                for name, tree in trees.items():
                    figures: dict[str, float] = {}
                    if "resubmit" in args.only:
                        result = python(tree, "-c", _IN_PROCESS, "resubmit", str(work / f"re-{name}"), "1000", "9")
                        figures["resubmit µs/job"] = last_json(result)["us_per_job"]
                    if "submit" in args.only:
                        result = python(tree, "-c", _IN_PROCESS, "submit", str(work / f"new-{name}"), "2000", "5")
                        figures["submit µs/job"] = last_json(result)["us_per_job"]
                    if "rerun" in args.only:
                        for key, value in rerun(tree, work / f"rerun-{name}").items():
                            figures[f"rerun {key}"] = value
                    if "scan" in args.only:
                        for key, value in last_json(python(tree, "-c", _SCAN, str(work / f"scan-{name}"))).items():
                            figures[f"scan {key}"] = value
                    for key, value in figures.items():
                        samples.setdefault(key, {}).setdefault(name, []).append(value)
        print(f"A/B, {args.runs} alternating runs, medians: base {args.base}, head {args.head}")
        for key, by_tree in samples.items():
            b, h = statistics.median(by_tree["base"]), statistics.median(by_tree["head"])
            print(f"  {key:22s} base {b:9.1f}  head {h:9.1f}  head/base {h / b:6.3f}")


if __name__ == "__main__":
    main()
