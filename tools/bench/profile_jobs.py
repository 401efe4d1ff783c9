"""Where a job's cost goes: four diagnostics behind the findings in RESULTS.md.

Usage (with the venv's python)::

    python tools/bench/profile_jobs.py cpu [N]      # CPU per job of each process, N jobs (1000)
    python tools/bench/profile_jobs.py faults [N]   # page faults of a forked job, first and second run
    python tools/bench/profile_jobs.py latency [N]  # one slot: a job's end to the next one's start (300)
    python tools/bench/profile_jobs.py first-call STATEMENT [N] [--setup CODE]  # its cost in a fresh fork (100)

To compare two versions, run it from a directory that holds no xpmfs checkout, with
``PYTHONPATH=<tree>``: ``python -m xpmfs worker`` puts the current directory first on the import
path, so from inside a checkout the worker would import that checkout's xpmfs.

``cpu`` starts a 2-slot worker by hand, runs ``xp_xpmfs.py batch`` with N jobs against it, and
prints the CPU time per job of the experiment, the worker, its zygote and the jobs the zygote
forked (their own time and their children's, from ``/proc``), split into user and kernel time,
with the page faults of the zygote and of its jobs. The figures move ±15 % with the machine's
state: compare two versions side by side (``PYTHONPATH=<other tree>``), not against an old
printout.

``cpu``, ``latency`` and ``faults`` leave their workspace in the temporary folder and say where:
after a mass deletion, ext4 creates files slowly for minutes, which would skew the next
measurement (see RESULTS.md). Delete them when you are done measuring.

``latency`` runs N jobs on a one-slot worker started by hand and prints medians from the jobs'
status records: from a job's end to the next one's start (the slot's idle time), from the
worker's claim to the runner's ``running`` write, and a job's own run.

``first-call`` runs a Python statement in fresh forks of a process as warm as the zygote (after
``--setup``, run once before forking, whose names the statement sees) and prints the median page
faults and time it took there, next to an empty statement's: what a job forked by the warm runner
pays for code it runs. For instance, with ``--setup "import signal, _signal"``,
``signal.signal(15, signal.SIG_IGN)`` against ``_signal.signal(15, _signal.SIG_IGN)``.

``faults`` forks, from a process as warm as the zygote, children that each run the runner on
three jobs in a row, and prints the page faults of each run. The first run pays for writing to
every page it shares with its parent (CPython writes the reference count of every object it
uses); the later ones show what the work itself costs.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))


def _proc_stat(pid: int) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (field 3 is index 0)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _cpu(fields: list[str], *, children: bool = False) -> tuple[float, float]:
    """(user, system) seconds of a process (``children``: of its reaped children) from its stat fields."""
    ticks = os.sysconf("SC_CLK_TCK")
    first = 13 if children else 11  # cutime, cstime / utime, stime
    return int(fields[first]) / ticks, int(fields[first + 1]) / ticks


def _workspace() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="xpmfs-profile-"))
    print(f"workspace: {folder / 'ws'} (left in place; delete it when done measuring)", file=sys.stderr)
    return folder / "ws"


@contextlib.contextmanager
def _worker(slots: int) -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    """A workspace in the temporary folder, and a worker on it started by hand (stopped after)."""
    from xpmfs.workspace import Workspace

    ws = _workspace()
    Workspace.open(ws, create=True)
    command = [sys.executable, "-m", "xpmfs", "worker", str(ws), "--jobs", str(slots)]
    worker = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # registered: the experiment then starts no embedded worker
        yield ws, worker
    finally:
        worker.terminate()
        worker.wait()


def _batch(ws: Path, count: int) -> None:
    """Submit ``count`` jobs and wait for them (``xp_xpmfs.py batch``, the benchmark's experiment)."""
    command = [sys.executable, str(BENCH_DIR / "xp_xpmfs.py"), "batch", str(ws), str(count)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def cpu_by_process(count: int) -> None:
    """Run ``count`` jobs against a worker started here; print each process's CPU per job."""
    with _worker(2) as (ws, worker):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        _batch(ws, count)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        zygotes = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        if len(zygotes) != 1:
            raise SystemExit(f"expected the worker to have one child (its zygote), found {zygotes}")
        worker_fields, zygote_fields = _proc_stat(worker.pid), _proc_stat(int(zygotes[0]))
    rows = {
        "experiment": (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime),
        "worker": _cpu(worker_fields),
        "zygote": _cpu(zygote_fields),
        "forked jobs": _cpu(zygote_fields, children=True),
    }
    rows["total"] = (sum(user for user, _ in rows.values()), sum(system for _, system in rows.values()))
    print(f"{'ms CPU per job':14s} {'all':>6s} {'user':>6s} {'kernel':>6s}")
    for name, (user, system) in rows.items():
        per_job = [1000 * seconds / count for seconds in (user + system, user, system)]
        print(f"{name:14s} " + " ".join(f"{value:6.2f}" for value in per_job))
    zygote_faults, job_faults = int(zygote_fields[7]) / count, int(zygote_fields[8]) / count
    print(f"page faults per job: zygote {zygote_faults:.0f}, forked jobs {job_faults:.0f}")


def latency(count: int) -> None:
    """Run ``count`` jobs on a one-slot worker started here; print the median gaps between them."""
    import orjson

    with _worker(1) as (ws, _):
        begin = time.perf_counter()
        _batch(ws, count)
        wall = time.perf_counter() - begin
    records = [orjson.loads(path.read_bytes()) for path in ws.glob("jobs/*/*/__xpm__/status.json")]
    records.sort(key=lambda record: record["started"])
    ends = sorted(record["ended"] for record in records)
    idle = [nxt["started"] - end for nxt, end in zip(records[1:], ends[:-1], strict=True)]
    claim = [record["started"] - record["claimed"] for record in records]
    run = [record["ended"] - record["started"] for record in records]
    for name, values in (("end -> next start", idle), ("claim -> start", claim), ("start -> end", run)):
        print(f"{name:18s} {1000 * statistics.median(values):6.2f} ms (median of {len(values)})")
    print(f"{'wall per job':18s} {1000 * wall / count:6.2f} ms (the experiment's start-up included)")


def faults_per_run(count: int) -> None:
    """Fork children from a warm process; each runs the runner on three jobs; print faults per run."""
    import xp_xpmfs

    from xpmfs import experiment, runner
    from xpmfs.runner import ENV_LOCK_HELD
    from xpmfs.workspace import Workspace

    ws = _workspace()
    with experiment(ws, "faults", workers=0, wait=False):
        for x in range(3 * count):
            xp_xpmfs.Touch.C(x=x).submit()
    jobs = sorted(str(path) for path in Workspace.open(ws).jobs_dir.glob("*/*"))
    runner.open_workspace_of(jobs[0])  # warm as the zygote is: workspace open, fields resolved
    _warm_as_the_zygote()
    read, write = os.pipe()
    totals = [0, 0, 0]
    for first in range(0, 3 * count, 3):
        pid = os.fork()
        if pid == 0:
            faults = []
            for job in jobs[first : first + 3]:
                os.environ[ENV_LOCK_HELD] = "1"  # nobody holds the lock: no worker here
                start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                runner.run_folder(job)  # as the zygote calls it
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
            os.write(write, " ".join(map(str, faults)).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        for index, value in enumerate(os.read(read, 1000).split()):
            totals[index] += int(value)
    print(
        "page faults of the runner, per run in a fresh fork: first {:.0f}, second {:.0f}, third {:.0f}".format(
            *(total / count for total in totals)
        )
    )


def _warm_as_the_zygote() -> None:
    """Hold what a worker's zygote holds when it forks a job: the runner, the task's module, libc."""
    import xp_xpmfs

    from xpmfs import _process, runner, zygote

    assert runner.run_folder  # imported, as the zygote imports it before anything else
    zygote._resolve_fields(xp_xpmfs.Touch)
    _process._prctl()
    gc.freeze()


def first_call(statement: str, count: int, setup: str) -> None:
    """Run ``statement`` in ``count`` fresh forks of a warm process; print its median cost there."""
    namespace: dict[str, object] = {}
    exec(setup, namespace)
    _warm_as_the_zygote()
    read, write = os.pipe()
    for label, code in (
        ("empty statement", compile("pass", "<empty>", "exec")),
        (statement, compile(statement, "<statement>", "exec")),
    ):
        faults, micros = [], []
        for _ in range(count):
            pid = os.fork()
            if pid == 0:
                before, begin = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
                exec(code, namespace)
                elapsed, after = time.perf_counter() - begin, resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                os.write(write, f"{after - before} {elapsed * 1e6:.1f}".encode())
                os._exit(0)
            os.waitpid(pid, 0)
            fault, micro = os.read(read, 100).split()
            faults.append(int(fault))
            micros.append(float(micro))
        print(f"{statistics.median(faults):5.0f} page faults {statistics.median(micros):7.1f} µs  {label}")
    print(f"(medians of {count} fresh forks of a process as warm as the zygote)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["cpu", "faults", "latency", "first-call"])
    parser.add_argument("rest", nargs="*", help="first-call: the Python statement to run; then, for all, the count")
    parser.add_argument("--setup", default="", help="first-call: code run once before forking")
    arguments = parser.parse_args()
    rest = list(arguments.rest)
    statement = rest.pop(0) if arguments.what == "first-call" and rest else None
    if arguments.what == "first-call" and statement is None:
        parser.error("first-call needs a statement")
    if len(rest) > 1 or (rest and not rest[0].isdigit()):
        parser.error(f"expected at most a count (jobs or forks), got {rest}")
    count = int(rest[0]) if rest else None
    if statement is not None:
        first_call(statement, count or 100, arguments.setup)
    elif arguments.what == "cpu":
        cpu_by_process(count or 1000)
    elif arguments.what == "latency":
        latency(count or 300)
    else:
        faults_per_run(count or 100)


if __name__ == "__main__":
    main()
