"""Benchmarks of xpmfs, against experimaestro 2.7.0 where both can do the same thing (issue 7).

Run it as ``tools/bench/run [--quick] [--only NAME...]``. Every measurement runs in a fresh
subprocess (so imports count as users feel them) and, unless said otherwise, in a fresh temporary
workspace; the two systems are measured in the same run, alternately (xpmfs, experimaestro,
xpmfs, ...), and each figure is the median of ``runs`` runs. Both run the same trivial task, which
writes a small file in its job folder (``xp_xpmfs.py`` and ``xp_experimaestro.py``).

A full run writes ``tools/bench/RESULTS.md``; ``--quick`` (one run, small sizes: for development)
and ``--only`` write ``.bench/RESULTS.md`` instead, so they never overwrite the reference results.
"""

from __future__ import annotations

import argparse
import atexit
import datetime
import itertools
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent.parent
STATE_DIR = ROOT / ".bench"  # git-ignored: the side venv, logs, partial results
LOG_DIR = STATE_DIR / "logs"
SIDE_VENV = STATE_DIR / "venv-experimaestro"
SNAPSHOT_DIR = STATE_DIR / "snapshot"  # the xpmfs sources this run measures (see snapshot_xpmfs)
EXPERIMAESTRO_VERSION = "2.7.0"
XPMFS_PYTHON = Path(sys.executable)  # tools/bench/run starts us with .venv/bin/python
XPMFS_CLI = XPMFS_PYTHON.parent / "xpmfs"
SIDE_PYTHON = SIDE_VENV / "bin" / "python"
SCRIPTS = {"xpmfs": BENCH_DIR / "xp_xpmfs.py", "experimaestro": BENCH_DIR / "xp_experimaestro.py"}

BENCHMARKS = ("e2e", "chain", "rerun", "submit", "ls", "rescan", "idle", "fork")

#: experimaestro runs are skipped when they would take longer than this (seconds, all runs of one size).
EXPERIMAESTRO_BUDGET = 600.0
#: Seconds an embedded worker may take to notice it is idle and exit (it exits after 3 s).
WORKER_EXIT_TIMEOUT = 20.0


@dataclass(frozen=True)
class Sizes:
    runs: int
    e2e: tuple[int, ...]
    chain: int
    rerun: int
    submit: int
    big: int
    queued_fraction: float
    idle_seconds: float
    forks: int
    starts: int


FULL = Sizes(
    runs=3,
    e2e=(20, 200, 1000),
    chain=50,
    rerun=1000,
    submit=10_000,
    big=100_000,
    queued_fraction=0.1,
    idle_seconds=60.0,
    forks=500,
    starts=10,
)
QUICK = Sizes(
    runs=1,
    e2e=(5, 20),
    chain=10,
    rerun=50,
    submit=500,
    big=5_000,
    queued_fraction=0.1,
    idle_seconds=10.0,
    forks=100,
    starts=3,
)


class BenchError(Exception):
    """A measurement that could not be made (its subprocess failed); the message says where to look."""


def say(*parts: object) -> None:
    print(*parts, flush=True)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# -- set-up ----------------------------------------------------------------------------------------


def ensure_experimaestro() -> str | None:
    """The installed experimaestro version in the side venv (tools/side-venv makes it), or None."""
    made = subprocess.run([str(ROOT / "tools" / "side-venv")], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        say(f"cannot install experimaestro; measuring xpmfs alone.\n  {made.stderr.strip()}")
        return None
    version = _side_version()
    if version != EXPERIMAESTRO_VERSION:
        say(f"experimaestro {EXPERIMAESTRO_VERSION} still not importable after installing; measuring xpmfs alone")
        return None
    return version


def _side_version() -> str | None:
    if not SIDE_PYTHON.exists():
        return None
    probe = subprocess.run(
        [str(SIDE_PYTHON), "-c", "import experimaestro, importlib.metadata as m; print(m.version('experimaestro'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.stdout.strip() if probe.returncode == 0 else None


def snapshot_xpmfs() -> str:
    """Copy the xpmfs package as it is now and make every process of the run import that copy.

    Others edit ``xpmfs/`` while a full run takes most of an hour; without a snapshot, runs of one
    benchmark would measure different code. The copy goes first on ``PYTHONPATH`` (ahead of the
    editable install's finder), and we work from its folder so that no process finds the live
    ``xpmfs/`` through its current directory. Returns a digest of the copied sources.
    """
    import compileall
    import hashlib

    shutil.rmtree(SNAPSHOT_DIR, ignore_errors=True)
    shutil.copytree(ROOT / "xpmfs", SNAPSHOT_DIR / "xpmfs", ignore=shutil.ignore_patterns("__pycache__"))
    compileall.compile_dir(SNAPSHOT_DIR / "xpmfs", quiet=1)  # the first run must not pay for compiling
    digest = hashlib.sha256()
    for source in sorted((SNAPSHOT_DIR / "xpmfs").rglob("*.py")):
        digest.update(source.relative_to(SNAPSHOT_DIR).as_posix().encode() + b"\0" + source.read_bytes())
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SNAPSHOT_DIR), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(SNAPSHOT_DIR))
    os.chdir(SNAPSHOT_DIR)
    return digest.hexdigest()[:12]


def machine(experimaestro: str | None, snapshot: str) -> dict[str, str]:
    import xpmfs

    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True, check=False
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--short", "--", "xpmfs"], capture_output=True, text=True, check=False
    ).stdout.split("\n")
    changed = [line.strip() for line in changed if line.strip()]
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "xpmfs": f"{xpmfs.__version__}, commit {commit or '?'}, snapshot of the working tree sha256:{snapshot}"
        + (f" (uncommitted: {', '.join(changed)})" if changed else ""),
        "experimaestro": experimaestro or "not installed",
        "load": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
    }


# -- running one experiment script ---------------------------------------------------------------


@dataclass
class Run:
    """One run of an experiment script: times in seconds, memory in bytes."""

    wall: float  # from starting the interpreter to its exit, as a user feels it
    inside: float  # spent inside the ``with experiment`` block
    imports: float
    worker_rss: int = 0  # xpmfs: peak over its workers (embedded or not) during the run
    zygote_rss: int = 0  # xpmfs: peak over the workers' zygotes
    experiment_rss: int = 0  # peak of the experiment process (experimaestro's scheduler lives there)


@contextmanager
def fresh_workspace(tag: str) -> Iterator[Path]:
    """A new, empty workspace path; its folder is deleted at the end of the whole run, not now.

    Deleting tens of thousands of files makes ext4 slow to create new ones for the next minutes
    (its inode allocator skips recently deleted inodes: ``recently_deleted`` tops ``perf`` then),
    which would charge one run's clean-up to the next run's measurement.
    """
    parent = Path(tempfile.mkdtemp(prefix=f"xpmfs-bench-{tag}-"))
    _LEFT.append(parent)
    yield parent / "ws"


_LEFT: list[Path] = []  # workspaces of this run, deleted by delete_workspaces() at its end


def delete_workspaces() -> None:
    for parent in _LEFT:
        shutil.rmtree(parent, ignore_errors=True)
    _LEFT.clear()


class _RssSampler(threading.Thread):
    """Samples peak RSS: the experiment process, the workers registered in a workspace, their zygotes.

    A worker's zygote (``python -m xpmfs.zygote``, the warm process it forks jobs from) is part of
    what a worker costs, so it is sampled too; the jobs forked from it are not.

    The sampler shares the machine with what it measures, so it stays light: a sample reads one
    ``/proc/<pid>/status`` per process. Finding a worker's zygote means listing every process
    (``psutil``'s ``children()`` reads ``/proc/*/stat``): it is done until the zygote is found,
    then once a second (a zygote that exits is replaced). Done on every sample, that listing cost
    a 1000-job run 12 % of its wall time (3.69 s against 3.29 s without the sampler, medians of 3).
    """

    LIST_EVERY = 20  # samples (of 50 ms) between two listings of a worker's children

    def __init__(self, process: subprocess.Popen[bytes], workspace: Path) -> None:
        super().__init__(daemon=True)
        self.process, self.workers_dir = process, workspace / "workers"
        self.worker_peak = self.zygote_peak = self.experiment_peak = 0
        self._done = threading.Event()

    def run(self) -> None:
        workers: dict[int, psutil.Process] = {}
        zygotes: set[int] = set()
        found: set[int] = set()  # workers whose zygote is known
        sample = 0
        while not self._done.wait(0.05):
            sample += 1
            self.experiment_peak = max(self.experiment_peak, _peak_rss(self.process.pid))
            for pid in _worker_pids(self.workers_dir):
                if pid not in workers:
                    try:
                        workers[pid] = psutil.Process(pid)
                    except psutil.Error:
                        continue
            for pid, worker in workers.items():
                self.worker_peak = max(self.worker_peak, _peak_rss(pid))
                if pid in found and sample % self.LIST_EVERY:
                    continue
                try:
                    new = {c.pid for c in worker.children() if "xpmfs.zygote" in " ".join(c.cmdline())}
                except psutil.Error:
                    continue
                if new:
                    found.add(pid)
                    zygotes.update(new)
            for pid in zygotes:
                self.zygote_peak = max(self.zygote_peak, _peak_rss(pid))

    def stop(self) -> None:
        self._done.set()
        self.join()


def _peak_rss(pid: int) -> int:
    """The process's peak RSS so far: the kernel's high-water mark (VmHWM), else psutil's current RSS."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return psutil.Process(pid).memory_info().rss
    except (OSError, ValueError, psutil.Error):
        return 0


def _worker_pids(workers_dir: Path) -> list[int]:
    pids = []
    try:
        names = os.listdir(workers_dir)
    except FileNotFoundError:
        return []
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            try:
                pids.append(int(name[: -len(".json")].rsplit("-", 1)[1]))
            except (IndexError, ValueError):
                continue
    return pids


def wait_for_workers(workspace: Path) -> None:
    """Wait until the workspace's embedded workers have exited, so the next run starts on idle cores."""
    deadline = time.monotonic() + WORKER_EXIT_TIMEOUT
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(pid) for pid in _worker_pids(workspace / "workers")):
            return
        time.sleep(0.1)
    for pid in _worker_pids(workspace / "workers"):
        say(f"  worker {pid} of {workspace} did not exit in {WORKER_EXIT_TIMEOUT:.0f}s; killing it")
        with _suppress_process_errors():
            os.kill(pid, signal.SIGKILL)


@contextmanager
def _suppress_process_errors() -> Iterator[None]:
    try:
        yield
    except (ProcessLookupError, PermissionError, psutil.Error):
        pass


_log_counter = 0


def _environment(system: str) -> dict[str, str]:
    """The environment of a system's processes: experimaestro's without our xpmfs snapshot on its path."""
    env = dict(os.environ)
    if system != "xpmfs":
        paths = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry and entry != str(SNAPSHOT_DIR)]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_script(system: str, mode: str, workspace: Path, n: int, *, timeout: float = 3600.0) -> Run:
    """Run ``xp_<system>.py MODE WORKSPACE N`` in a fresh interpreter and time it."""
    global _log_counter
    _log_counter += 1
    python = XPMFS_PYTHON if system == "xpmfs" else SIDE_PYTHON
    log = LOG_DIR / f"{_log_counter:03d}-{system}-{mode}-{n}.log"
    command = [str(python), str(SCRIPTS[system]), mode, str(workspace), str(n)]
    with open(log, "wb") as stream:
        begin = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stream, cwd=workspace.parent, env=_environment(system)
        )
        sampler = _RssSampler(process, workspace)
        sampler.start()
        try:
            out, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise BenchError(f"{shlex.join(command)} took more than {timeout:.0f}s; see {log}") from None
        finally:
            wall = time.perf_counter() - begin
            sampler.stop()
            if system == "xpmfs":
                wait_for_workers(workspace)
        stream.write(b"--- stdout ---\n" + out)
    if process.returncode != 0:
        raise BenchError(f"{shlex.join(command)} exited with {process.returncode}; see {log}")
    lines = [line for line in out.decode(errors="replace").splitlines() if line.startswith("{")]
    inner = json.loads(lines[-1]) if lines else {"inside": float("nan"), "import": float("nan")}
    if system == "xpmfs" and not str(inner.get("module", "")).startswith(str(SNAPSHOT_DIR)):
        raise BenchError(f"the experiment imported xpmfs from {inner.get('module')}, not the snapshot {SNAPSHOT_DIR}")
    return Run(
        wall, inner["inside"], inner["import"], sampler.worker_peak, sampler.zygote_peak, sampler.experiment_peak
    )


def count_outputs(workspace: Path) -> int:
    """How many jobs wrote their output file (both systems: ``jobs/<type>/<id>/out.txt``)."""
    return sum(1 for _ in (workspace / "jobs").glob("*/*/out.txt"))


# -- results ---------------------------------------------------------------------------------------


@dataclass
class Results:
    """Samples by benchmark and system, plus notes to print with the table."""

    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, name: str, system: str, value: float) -> None:
        self.samples.setdefault(name, {}).setdefault(system, []).append(value)

    def get(self, name: str, system: str = "xpmfs") -> float | None:
        return median(self.samples.get(name, {}).get(system, []))

    def count(self, name: str, system: str = "xpmfs") -> int:
        return len(self.samples.get(name, {}).get(system, []))

    def note(self, text: str) -> None:
        say(f"  note: {text}")
        self.notes.append(text)

    def error(self, text: str) -> None:
        say(f"  ERROR: {text}")
        self.errors.append(text)


def attempt(results: Results, what: str, action: Callable[..., Any], *args: Any) -> Any:
    """Run ``action(*args)``, one measurement; a failure is recorded and reported, and the benchmark goes on."""
    try:
        return action(*args)
    except BenchError as error:
        results.error(f"{what}: {error}")
        return None


# -- the benchmarks ------------------------------------------------------------------------------


def bench_e2e(sizes: Sizes, systems: list[str], results: Results) -> None:
    """Submit and complete N independent jobs with local workers, for each N."""
    for n in sizes.e2e:
        active = list(systems)
        for run in range(sizes.runs):
            for system in active:
                if system == "experimaestro" and run == 0 and not _experimaestro_affordable(results, n, sizes):
                    continue
                with fresh_workspace(f"e2e{n}") as ws:
                    measured = attempt(results, f"e2e N={n} {system}", run_script, system, "batch", ws, n)
                    if measured is None:
                        continue
                    done = count_outputs(ws)
                if done != n:
                    results.error(f"e2e N={n} {system}: {done} outputs instead of {n}")
                results.add(f"e2e{n}", system, measured.wall)
                results.add(f"e2e{n}.inside", system, measured.inside)
                results.add(f"e2e{n}.import", system, measured.imports)
                results.add(f"e2e{n}.experiment_rss", system, measured.experiment_rss)
                if system == "xpmfs":
                    results.add(f"e2e{n}.worker_rss", system, measured.worker_rss)
                    results.add(f"e2e{n}.zygote_rss", system, measured.zygote_rss)
                    results.add(f"e2e{n}.worker_zygote_rss", system, measured.worker_rss + measured.zygote_rss)
                say(
                    f"  e2e N={n:<5} {system:<13} run {run + 1}/{sizes.runs}: {measured.wall:7.2f}s"
                    f" (import {measured.imports:.2f}s)"
                )
            if "experimaestro" in active and results.count(f"e2e{n}", "experimaestro") == 0:
                active.remove("experimaestro")


def _experimaestro_affordable(results: Results, n: int, sizes: Sizes) -> bool:
    """Whether experimaestro's runs at size ``n`` fit the budget, from its per-job time at a smaller size."""
    smaller = [m for m in sizes.e2e if m < n and results.get(f"e2e{m}", "experimaestro")]
    if not smaller:
        return True
    m = max(smaller)
    per_job = results.get(f"e2e{m}", "experimaestro") / m
    expected = per_job * n * sizes.runs
    if expected <= EXPERIMAESTRO_BUDGET:
        return True
    results.note(
        f"experimaestro e2e N={n} skipped: at {per_job:.2f}s/job (N={m}) its {sizes.runs} run(s) would take "
        f"~{expected / 60:.0f} min (budget {EXPERIMAESTRO_BUDGET / 60:.0f} min); the rerun benchmark's "
        f"preparation gives one N={sizes.rerun} sample instead"
    )
    return False


def bench_chain(sizes: Sizes, systems: list[str], results: Results) -> None:
    """A chain of jobs, each taking the previous one's output: wall time and the gap between links."""
    n = sizes.chain
    for run in range(sizes.runs):
        for system in systems:
            with fresh_workspace("chain") as ws:
                measured = attempt(results, f"chain {system}", run_script, system, "chain", ws, n)
                if measured is None:
                    continue
                links = chain_links(ws, system)
            results.add("chain", system, measured.wall)
            if len(links) != n:
                results.error(f"chain {system}: found {len(links)} finished links instead of {n}")
            for previous, following in itertools.pairwise(links):
                results.add("chain.start_gap", system, following["started"] - previous["ended"])
                if following.get("claimed") is not None:
                    results.add("chain.claim_gap", system, following["claimed"] - previous["ended"])
            say(f"  chain N={n:<4} {system:<13} run {run + 1}/{sizes.runs}: {measured.wall:7.2f}s")


def chain_links(workspace: Path, system: str) -> list[dict[str, float]]:
    """The chain's jobs in the order they ran, each with ``started``, ``ended`` (and ``claimed``)."""
    links = []
    for job in (workspace / "jobs").glob("*/*"):
        if system == "xpmfs":
            from xpmfs import status as xstatus
            from xpmfs.job import XPM_DIR

            record = json.loads((job / XPM_DIR / xstatus.STATUS_FILE).read_bytes())
            # The done marker's time is when the dependency ended for any scanner (spec/workspace.md).
            done = json.loads((job / XPM_DIR / xstatus.DONE_MARKER).read_bytes())
            links.append({"started": record["started"], "claimed": record.get("claimed"), "ended": done["ended"]})
        else:
            record = json.loads((job / ".experimaestro" / "status.json").read_bytes())
            links.append(
                {
                    "started": datetime.datetime.fromisoformat(record["started_time"]).timestamp(),
                    "ended": datetime.datetime.fromisoformat(record["ended_time"]).timestamp(),
                }
            )
    return sorted(links, key=lambda link: link["started"])


def bench_rerun(sizes: Sizes, systems: list[str], results: Results) -> None:
    """Re-run an experiment whose jobs are all done: the cost of recognising them."""
    n = sizes.rerun
    workspaces: dict[str, Path] = {}
    with fresh_workspace("rerun-xpmfs") as xpmfs_ws, fresh_workspace("rerun-xpm") as xpm_ws:
        for system, ws in (("xpmfs", xpmfs_ws), ("experimaestro", xpm_ws)):
            if system not in systems:
                continue
            say(f"  rerun: preparing {n} done jobs with {system} (one run, not timed for the rerun)")
            measured = attempt(results, f"rerun preparation {system}", run_script, system, "batch", ws, n)
            if measured is None:
                continue
            if count_outputs(ws) != n:
                results.error(f"rerun preparation {system}: {count_outputs(ws)} outputs instead of {n}")
                continue
            workspaces[system] = ws
            say(f"    {system}: {n} jobs in {measured.wall:.1f}s")
            if n in sizes.e2e and results.count(f"e2e{n}", system) == 0:
                results.add(f"e2e{n}", system, measured.wall)
                results.note(f"{system} e2e N={n}: one sample, from the rerun benchmark's preparation")
        for run in range(sizes.runs):
            for system, ws in workspaces.items():
                measured = attempt(results, f"rerun {system}", run_script, system, "batch", ws, n)
                if measured is None:
                    continue
                results.add("rerun", system, measured.wall)
                say(f"  rerun N={n:<4} {system:<13} run {run + 1}/{sizes.runs}: {measured.wall:7.2f}s")


def bench_submit(sizes: Sizes, results: Results) -> None:
    """xpmfs alone: write N job specs with no worker (``workers=0, wait=False``)."""
    n = sizes.submit
    for run in range(sizes.runs):
        with fresh_workspace("submit") as ws:
            measured = attempt(results, "submit", run_script, "xpmfs", "submit", ws, n)
            if measured is None:
                continue
            queued = len(os.listdir(ws / "queue"))
        if queued != n:
            results.error(f"submit: {queued} queue entries instead of {n}")
        results.add("submit", "xpmfs", measured.wall)
        results.add("submit.inside", "xpmfs", measured.inside)
        say(
            f"  submit N={n:<6} xpmfs run {run + 1}/{sizes.runs}: {measured.wall:7.2f}s (inside {measured.inside:.2f}s)"
        )


@contextmanager
def big_workspace(sizes: Sizes, results: Results) -> Iterator[Path]:
    """A workspace of ``sizes.big`` jobs written directly as files (synth.py), shared by ls/rescan/idle."""
    with fresh_workspace("big") as ws:
        say(
            f"  generating a workspace of {sizes.big} jobs ({sizes.queued_fraction:.0%} queued, "
            "waiting on a job that never ends) ..."
        )
        begin = time.perf_counter()
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); from synth import generate; from pathlib import Path; "
            "print(generate(Path(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))"
        )
        made = subprocess.run(
            [str(XPMFS_PYTHON), "-c", code, str(BENCH_DIR), str(ws), str(sizes.big), str(sizes.queued_fraction)],
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            raise BenchError(f"generating the big workspace failed:\n{made.stderr[-2000:]}")
        say(f"    {made.stdout.strip()} in {time.perf_counter() - begin:.0f}s")
        yield ws


def timed(command: list[str], stdout: Any = subprocess.DEVNULL) -> float:
    begin = time.perf_counter()
    finished = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, check=False)
    elapsed = time.perf_counter() - begin
    if finished.returncode != 0:
        raise BenchError(f"{shlex.join(command)} exited with {finished.returncode}: {finished.stderr[-1000:]!r}")
    return elapsed


def bench_ls(sizes: Sizes, ws: Path, results: Results) -> None:
    with tempfile.TemporaryFile() as listing:
        for run in range(sizes.runs):
            listing.seek(0)
            listing.truncate()
            elapsed = attempt(results, "ls", timed, [str(XPMFS_CLI), "ls", str(ws)], listing)
            if elapsed is None:
                continue
            listing.seek(0)
            lines = sum(1 for _ in listing)
            if lines != sizes.big:
                results.error(f"xpmfs ls printed {lines} lines for {sizes.big} jobs")
            results.add("ls", "xpmfs", elapsed)
            say(f"  xpmfs ls ({sizes.big} jobs) run {run + 1}/{sizes.runs}: {elapsed:7.2f}s")


_SCAN_CODE = """
import json, sys, time
from xpmfs.workspace import Workspace
from xpmfs.worker import Worker
worker = Worker(Workspace.open(sys.argv[1]), jobs=1)
worker.name = "bench"  # set by Worker.run(); only log lines use it
times = []
for _ in range(2):
    begin = time.perf_counter()
    runnable = worker._schedule(True)
    times.append(time.perf_counter() - begin)
    if worker._running:
        raise SystemExit(f"the scan claimed {len(worker._running)} job(s); every queued job should be waiting")
print(json.dumps({"cold": times[0], "warm": times[1], "runnable": runnable}))
"""


def bench_rescan(sizes: Sizes, ws: Path, results: Results) -> None:
    """One full pass of a worker's scan over the queue of the big workspace.

    Two ways: a whole ``xpmfs worker --idle-exit 0`` (start, one pass, exit) minus the same on an
    empty workspace; and ``Worker._schedule`` called directly, the first pass (specs not cached yet,
    as in a worker that just started) and the second (specs cached, as in every later rescan).
    """
    with fresh_workspace("empty") as empty:
        from xpmfs.workspace import Workspace

        Workspace.open(empty, create=True)
        worker = [str(XPMFS_CLI), "worker", "--idle-exit", "0"]
        for run in range(sizes.runs):
            full = attempt(results, "rescan (worker)", timed, [*worker[:2], str(ws), *worker[2:]])
            base = attempt(results, "rescan (empty)", timed, [*worker[:2], str(empty), *worker[2:]])
            direct = subprocess.run(
                [str(XPMFS_PYTHON), "-c", _SCAN_CODE, str(ws)], capture_output=True, text=True, check=False
            )
            if full is not None:
                results.add("rescan.worker", "xpmfs", full)
            if base is not None:
                results.add("rescan.worker_empty", "xpmfs", base)
            if direct.returncode == 0:
                scan = json.loads(direct.stdout.strip().splitlines()[-1])
                results.add("rescan.cold", "xpmfs", scan["cold"])
                results.add("rescan.warm", "xpmfs", scan["warm"])
            else:
                results.error(f"rescan (direct call of Worker._schedule) failed: {direct.stderr[-1500:]}")
            say(
                f"  rescan run {run + 1}/{sizes.runs}: worker {full or float('nan'):.2f}s"
                f" (empty workspace {base or float('nan'):.2f}s);"
                f" direct: cold {results.samples.get('rescan.cold', {}).get('xpmfs', [float('nan')])[-1]:.3f}s,"
                f" warm {results.samples.get('rescan.warm', {}).get('xpmfs', [float('nan')])[-1]:.3f}s"
            )


def idle_cpu(ws: Path, seconds: float) -> float:
    """Percent of one core used by an ``xpmfs worker`` (and its zygote) with nothing to run, over ``seconds``."""
    log = LOG_DIR / f"idle-worker-{ws.parent.name}.log"
    with open(log, "wb") as stream:
        process = subprocess.Popen([str(XPMFS_CLI), "worker", str(ws)], stdout=stream, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while process.pid not in _worker_pids(ws / "workers"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"the idle worker did not register; see {log}")
            time.sleep(0.05)
        time.sleep(1.0)  # let it finish starting (first scan, watcher thread)
        watched = psutil.Process(process.pid)
        before = _tree_cpu(watched)
        time.sleep(seconds)
        after = _tree_cpu(watched)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return 100.0 * (after - before) / seconds


def _tree_cpu(process: psutil.Process) -> float:
    """CPU seconds (user + system) of a process and its live children (a worker's zygote)."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def bench_idle(sizes: Sizes, results: Results, big: Path | None) -> None:
    with fresh_workspace("idle") as ws:
        from xpmfs.workspace import Workspace

        Workspace.open(ws, create=True)
        percent = attempt(results, "idle worker", idle_cpu, ws, sizes.idle_seconds)
        if percent is not None:
            results.add("idle", "xpmfs", percent)
            say(f"  idle worker, empty workspace, {sizes.idle_seconds:.0f}s: {percent:.2f}% of a core")
    if big is not None:
        percent = attempt(results, "idle worker (big)", idle_cpu, big, sizes.idle_seconds)
        if percent is not None:
            results.add("idle.big", "xpmfs", percent)
            say(f"  idle worker, {sizes.big} jobs workspace, {sizes.idle_seconds:.0f}s: {percent:.2f}% of a core")


# The floor process holds what a worker's warm runner (xpmfs.zygote) holds when it forks a job:
# xpmfs, the runner, and the benchmark's task module; its heap frozen out of GC passes likewise.
_FORK_CODE = """
import gc, json, os, statistics, sys, time
sys.path.insert(0, sys.argv[2])
import xpmfs, xpmfs.runner, xpmfs.serialization, xpmfs.zygote, xp_xpmfs
gc.freeze()
times = []
for _ in range(int(sys.argv[1])):
    begin = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    times.append(time.perf_counter() - begin)
print(json.dumps({"fork": statistics.median(times)}))
"""


def file_system_floor(folder: Path, count: int) -> tuple[float, float]:
    """Median seconds to create an empty file (``O_CREAT|O_EXCL``, close) and a folder, where workspaces live.

    Every job costs a handful of each (spec, script, status, lock, queue entry; its folders), so on
    a file system where they are slow they bound submission and scans, whatever the code does.
    """
    creates, mkdirs = [], []
    for i in range(count):
        begin = time.perf_counter()
        os.close(os.open(folder / f"f{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        middle = time.perf_counter()
        os.mkdir(folder / f"d{i}")
        creates.append(middle - begin)
        mkdirs.append(time.perf_counter() - middle)
    return statistics.median(creates), statistics.median(mkdirs)


def bench_fork(sizes: Sizes, results: Results) -> None:
    """The floor: forking a process as warm as the warm runner, and starting fresh interpreters."""
    forked = subprocess.run(
        [str(XPMFS_PYTHON), "-c", _FORK_CODE, str(sizes.forks), str(BENCH_DIR)],
        capture_output=True,
        text=True,
        check=False,
    )
    if forked.returncode != 0:
        results.error(f"fork floor: {forked.stderr[-1000:]}")
    else:
        results.add("fork", "xpmfs", json.loads(forked.stdout)["fork"])
    with fresh_workspace("fs") as folder:
        folder.mkdir()
        creates, mkdirs = file_system_floor(folder, sizes.forks)
    results.add("fs.create", "xpmfs", creates)
    results.add("fs.mkdir", "xpmfs", mkdirs)
    starts = {"start.pass": "pass", "start.runner": "import xpmfs.runner"}
    for _ in range(sizes.starts):
        for name, code in starts.items():
            results.add(name, "xpmfs", timed([str(XPMFS_PYTHON), "-c", code]))
    say(
        f"  create a file {1000 * creates:.2f}ms, a folder {1000 * mkdirs:.2f}ms;"
        f" warm fork {1000 * (results.get('fork') or float('nan')):.2f}ms;"
        f" python -c pass {1000 * results.get('start.pass'):.0f}ms;"
        f" python -c 'import xpmfs.runner' {1000 * results.get('start.runner'):.0f}ms"
    )


# -- report ----------------------------------------------------------------------------------------


def _s(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 0.1:
        return f"{1000 * value:.1f} ms"
    return f"{value:.2f} s"


def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 2**20:.0f} MB"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} %"


@dataclass
class Target:
    what: str
    value: float | None  # the measured figure, in the unit of ``limit``
    limit: float
    higher_is_better: bool
    shown: str  # how the figure reads
    wanted: str  # how the target reads

    def verdict(self) -> str:
        if self.value is None:
            return "not measured"
        met = self.value >= self.limit if self.higher_is_better else self.value <= self.limit
        if met:
            return "met"
        if self.higher_is_better:
            return (
                f"MISSED: {self.limit / self.value:.1f}× short ({self.shown} vs {self.wanted})"
                if self.value > 0
                else "MISSED"
            )
        return f"MISSED by {self.value / self.limit:.1f}× ({self.shown} vs {self.wanted})"


def report(sizes: Sizes, results: Results) -> tuple[list[list[str]], list[Target]]:
    """The table rows (benchmark, xpmfs, experimaestro, ratio) and the targets."""
    rows: list[list[str]] = []
    get = results.get

    def both(label: str, name: str, fmt: Callable[[float | None], str] = _s, better: str = "faster") -> None:
        mine, theirs = get(name, "xpmfs"), get(name, "experimaestro")
        ratio = f"xpmfs {theirs / mine:.1f}× {better}" if mine and theirs else "—"
        counts = f" ({results.count(name)}/{results.count(name, 'experimaestro')} runs)"
        rows.append([label + counts, fmt(mine), fmt(theirs), ratio])

    for n in sizes.e2e:
        both(f"end-to-end, {n} jobs", f"e2e{n}")
    both(f"chain of {sizes.chain} dependent jobs", "chain")
    both("chain: next start − dependency end (median)", "chain.start_gap")
    rows.append(["chain: next claimed − dependency end (median)", _s(get("chain.claim_gap")), "—", "—"])
    both(f"re-run, {sizes.rerun} jobs all done", "rerun")
    rows.append(
        [
            f"submit {sizes.submit} specs (workers=0, wait=False)",
            _s(get("submit")),
            "—",
            f"inside the block: {_s(get('submit.inside'))}",
        ]
    )
    rows.append([f"`xpmfs ls`, {sizes.big} jobs", _s(get("ls")), "—", "—"])
    rows.append(
        [
            (
                f"rescan, {sizes.big} jobs ({int(sizes.big * sizes.queued_fraction)} queued): "
                "`xpmfs worker --idle-exit 0`"
            ),
            _s(get("rescan.worker")),
            "—",
            f"same on an empty workspace: {_s(get('rescan.worker_empty'))}",
        ]
    )
    rows.append(
        [
            "rescan: one `Worker._schedule` pass, cold / warm spec cache",
            f"{_s(get('rescan.cold'))} / {_s(get('rescan.warm'))}",
            "—",
            "—",
        ]
    )
    rows.append([f"idle worker CPU, empty workspace ({sizes.idle_seconds:.0f} s)", _pct(get("idle")), "—", "—"])
    rows.append(
        [f"idle worker CPU, {sizes.big}-job workspace ({sizes.idle_seconds:.0f} s)", _pct(get("idle.big")), "—", "—"]
    )
    rss_n = 200 if 200 in sizes.e2e else max(sizes.e2e)
    rows.append(
        [
            f"worker peak RSS ({rss_n}-job run): worker / its zygote / sum",
            f"{_mb(get(f'e2e{rss_n}.worker_rss'))} / {_mb(get(f'e2e{rss_n}.zygote_rss'))}"
            f" / {_mb(get(f'e2e{rss_n}.worker_zygote_rss'))}",
            "—",
            "—",
        ]
    )
    both(f"experiment process peak RSS ({rss_n}-job run)", f"e2e{rss_n}.experiment_rss", _mb, "smaller")
    both(f"import time in the experiment script ({rss_n}-job run)", f"e2e{rss_n}.import")
    rows.append(["warm fork + exit + waitpid (floor)", _s(get("fork")), "—", "—"])
    rows.append(
        [
            f"create an empty file / a folder ({tempfile.gettempdir()}, median)",
            f"{_s(get('fs.create'))} / {_s(get('fs.mkdir'))}",
            "—",
            "—",
        ]
    )
    rows.append(["`python -c pass`", _s(get("start.pass")), "—", "—"])
    rows.append(["`python -c 'import xpmfs.runner'`", _s(get("start.runner")), "—", "—"])

    # Per-job overhead: the marginal wall time of one more job, between the two largest sizes
    # measured with xpmfs, which removes the fixed costs (interpreter, worker start, waiting).
    measured = [n for n in sizes.e2e if get(f"e2e{n}")]
    per_job = None
    if len(measured) >= 2:
        small, large = measured[-2], measured[-1]
        per_job = (get(f"e2e{large}") - get(f"e2e{small}")) / (large - small)
        rows.append(
            [
                f"per-job overhead: (T{large} − T{small}) / {large - small}",
                _s(per_job),
                "—",
                f"{per_job / get('fork'):.1f}× the warm-fork floor" if get("fork") and per_job else "—",
            ]
        )
    theirs_measured = [n for n in sizes.e2e if get(f"e2e{n}", "experimaestro")]
    if len(theirs_measured) >= 2:
        small, large = theirs_measured[-2], theirs_measured[-1]
        theirs = (get(f"e2e{large}", "experimaestro") - get(f"e2e{small}", "experimaestro")) / (large - small)
        rows.append([f"experimaestro per-job: (T{large} − T{small}) / {large - small}", "—", _s(theirs), "—"])

    # Leave out what this run did not measure (``--only``).
    rows = [row for row in rows if any(cell.strip("—/ ") for cell in row[1:3])]
    n200 = 200 if 200 in sizes.e2e else max(sizes.e2e)
    speedup = None
    if get(f"e2e{n200}") and get(f"e2e{n200}", "experimaestro"):
        speedup = get(f"e2e{n200}", "experimaestro") / get(f"e2e{n200}")
    fork_ratio = per_job / get("fork") if per_job is not None and get("fork") else None
    gap = get("chain.start_gap")
    rss = get(f"e2e{rss_n}.worker_zygote_rss")
    targets = [
        Target(
            f"{n200} jobs ≥ 20× faster than experimaestro",
            speedup,
            20.0,
            True,
            f"{speedup:.1f}×" if speedup else "",
            "20×",
        ),
        Target(
            "per-job overhead ≤ 2× warm-fork floor",
            fork_ratio,
            2.0,
            False,
            f"{fork_ratio:.1f}× = {_s(per_job)}" if fork_ratio else "",
            f"2× = {_s(2 * get('fork'))}" if get("fork") else "",
        ),
        Target(
            "chain: next job starts ≤ 20 ms after its dependency ends (median)", gap, 0.020, False, _s(gap), "20 ms"
        ),
        Target(f"{sizes.submit} submissions < 5 s", get("submit"), 5.0, False, _s(get("submit")), "5 s"),
        Target(f"rescan of {sizes.big} jobs < 2 s", get("rescan.worker"), 2.0, False, _s(get("rescan.worker")), "2 s"),
        Target("idle worker < 1% of a core", get("idle"), 1.0, False, _pct(get("idle")), "1 %"),
        Target("worker RSS < 80 MB (worker + zygote)", rss, 80 * 2**20, False, _mb(rss), "80 MB"),
    ]
    if get("ls") is not None:
        results.notes.append(f"`xpmfs ls` on {sizes.big} jobs: {_s(get('ls'))} (no target; reported)")
    return rows, targets


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *rows]
    )


def write_results(
    path: Path,
    *,
    command: str,
    info: dict[str, str],
    sizes: Sizes,
    rows: list[list[str]],
    targets: list[Target],
    results: Results,
    elapsed: float,
) -> None:
    header = ["benchmark (runs xpmfs/experimaestro)", "xpmfs", "experimaestro 2.7.0", "ratio / detail"]
    target_rows = [[t.what, t.verdict()] for t in targets]
    text = [
        "# xpmfs benchmarks",
        "",
        f"- date: {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}",
        f"- command: `{command}` ({elapsed / 60:.0f} min)",
        (
            f"- machine: {info['nproc']} cores ({info['cpu']}), {info['ram']} RAM, Python {info['python']}; "
            f"load average at start {info['load']}, at the end {info.get('load_end', '?')} "
            "(the machine is shared: other processes' load shows as noise)"
        ),
        f"- versions: xpmfs {info['xpmfs']}, experimaestro {info['experimaestro']}",
        (
            f"- method: median of {sizes.runs} run(s) each, both systems alternately in the same run, each run "
            "a fresh interpreter (imports included) in a fresh temporary workspace (all deleted at the end, "
            "so that no run pays for the deletion of the one before); the task writes one small "
            "file (`tools/bench/xp_xpmfs.py`, `tools/bench/xp_experimaestro.py`). xpmfs uses its embedded "
            "worker with its default slots (one per core); experimaestro its default scheduler and direct launcher."
        ),
        "",
        markdown_table(header, rows),
        "",
        "## Targets",
        "",
        markdown_table(["target", "verdict"], target_rows),
        "",
    ]
    if results.notes or results.errors:
        text += ["## Notes", ""] + [f"- {note}" for note in results.notes] + [f"- ERROR: {e}" for e in results.errors]
        text.append("")
    text += ["## Every sample", "", "Seconds (RSS in MB, idle in % of a core), in the order measured.", ""]
    for name, by_system in results.samples.items():
        for system, values in by_system.items():
            scale = 2**-20 if name.endswith("_rss") else 1.0
            shown = ", ".join(f"{value * scale:.4g}" for value in values[:12])
            more = f", ... ({len(values)} in all)" if len(values) > 12 else ""
            text.append(f"- `{name}` {system}: {shown}{more}")
    text += [
        "",
        "## How each figure is measured",
        "",
        "- *end-to-end*: wall time of `python xp_<system>.py batch WS N` (submit N jobs, wait for all).",
        (
            "- *chain*: N jobs, each with the previous one as a `Param`; the gaps come from each job's "
            "`status.json` (`started`, `claimed`) and its dependency's `done` marker (`ended`); for "
            "experimaestro from `.experimaestro/status.json` (`started_time`, `ended_time`)."
        ),
        (
            f"- *re-run*: the same batch experiment run again on a workspace where its {sizes.rerun} jobs are "
            "done (prepared once per system, by a real run)."
        ),
        "- *submit*: `workers=0, wait=False`: only specs, statuses and queue entries are written.",
        (
            f"- *ls* and *rescan*: a workspace of {sizes.big} jobs written directly as files by "
            f"`tools/bench/synth.py` ({1 - sizes.queued_fraction:.0%} done; {sizes.queued_fraction:.0%} queued, "
            "all waiting on a job that never ends, so a worker's pass claims nothing). The rescan target is "
            "judged on the whole `xpmfs worker --idle-exit 0` (interpreter start, one pass, exit)."
        ),
        "- *idle*: `psutil` CPU times of an `xpmfs worker` with nothing to run.",
        "- *RSS*: the kernel's high-water mark (VmHWM) of each process, sampled every 50 ms during the run.",
        (
            "- *per-job overhead*: marginal wall time per job between the two largest sizes, all slots "
            "together (a throughput figure: one slot's latency per job is about `slots ×` that)."
        ),
        "",
    ]
    path.write_text("\n".join(text) + _kept_findings(path))


FINDINGS = "## Findings"  # a hand-written section at the end of RESULTS.md, kept across runs


def _kept_findings(path: Path) -> str:
    """The hand-written findings at the end of the results file being replaced (empty if none)."""
    try:
        old = path.read_text()
    except FileNotFoundError:
        return ""
    start = old.find(f"\n{FINDINGS}")
    return "" if start < 0 else old[start:]


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/bench/run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one run, small sizes (for development)")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=BENCHMARKS,
        metavar="NAME",
        help=f"run only these benchmarks: {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    selected = list(args.only or BENCHMARKS)
    command = (
        "tools/bench/run" + (" --quick" if args.quick else "") + (f" --only {' '.join(selected)}" if args.only else "")
    )
    shutil.rmtree(LOG_DIR, ignore_errors=True)  # the logs of this run only
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    atexit.register(delete_workspaces)  # also when a benchmark fails half-way
    started = time.perf_counter()

    needs_experimaestro = {"e2e", "chain", "rerun"} & set(selected)
    experimaestro = ensure_experimaestro() if needs_experimaestro else None
    systems = ["xpmfs"] + (["experimaestro"] if experimaestro else [])
    info = machine(experimaestro, snapshot_xpmfs())
    say(f"machine: {info}")
    say(f"sizes: {sizes}")
    results = Results()

    if "fork" in selected:
        say("== fork floor and interpreter starts")
        bench_fork(sizes, results)
    if "e2e" in selected:
        say(f"== end-to-end: N = {', '.join(map(str, sizes.e2e))}")
        bench_e2e(sizes, systems, results)
    if "chain" in selected:
        say(f"== chain of {sizes.chain}")
        bench_chain(sizes, systems, results)
    if "rerun" in selected:
        say(f"== re-run of {sizes.rerun} done jobs")
        bench_rerun(sizes, systems, results)
    if "submit" in selected:
        say(f"== submitting {sizes.submit} specs")
        bench_submit(sizes, results)
    if {"ls", "rescan"} & set(selected):
        say(f"== a workspace of {sizes.big} jobs")
        try:
            with big_workspace(sizes, results) as big:
                if "ls" in selected:
                    bench_ls(sizes, big, results)
                if "rescan" in selected:
                    bench_rescan(sizes, big, results)
                if "idle" in selected:
                    say(f"== idle worker ({sizes.idle_seconds:.0f}s each)")
                    bench_idle(sizes, results, big)
                    selected.remove("idle")
        except BenchError as error:
            results.error(str(error))
    if "idle" in selected:
        say(f"== idle worker ({sizes.idle_seconds:.0f}s)")
        bench_idle(sizes, results, None)

    delete_workspaces()
    info["load_end"] = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    rows, targets = report(sizes, results)
    header = ["benchmark (runs xpmfs/experimaestro)", "xpmfs", "experimaestro", "ratio / detail"]
    say("\n" + text_table(header, rows) + "\n")
    for target in targets:
        say(f"  {target.what:<70} {target.verdict()}")
    for note in results.notes:
        say(f"  note: {note}")
    for error in results.errors:
        say(f"  ERROR: {error}")
    full = not args.quick and not args.only
    destination = BENCH_DIR / "RESULTS.md" if full else STATE_DIR / "RESULTS.md"
    write_results(
        destination,
        command=command,
        info=info,
        sizes=sizes,
        rows=rows,
        targets=targets,
        results=results,
        elapsed=time.perf_counter() - started,
    )
    say(
        f"\nresults written to {destination}"
        + ("" if full else " (a partial run never overwrites tools/bench/RESULTS.md)")
    )
    return 1 if results.errors else 0


if __name__ == "__main__":
    sys.exit(main())
