"""Several "nodes" sharing one workspace in ``shared`` lock mode: claims, rescans, lease takeover.

A node is a worker started in its own UTS and PID namespaces (``unshare --uts --pid --fork
--mount-proc``) with its own host name: filelock spells its host ``node-X?pidns-<inode>``, so
other nodes, and this test process, cannot probe its pids and must wait for its lease to expire,
exactly as for another machine. Some nodes see the workspace through a bindfs (FUSE) view, where
inotify is blind to writes made through the real path, as with another NFS client: they find
jobs by rescanning. Killing a node is ``kill -9`` of its namespace's pid 1 (the worker): the
kernel then kills everything in the namespace, its job's runner included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import Processes, job_of, wait_until
from sample_tasks import Gate, Overtaken, Tally

from xpmfs import experiment
from xpmfs.lock import LockStatus, inspect
from xpmfs.status import State
from xpmfs.workspace import Workspace

LEASE = 3.0
HEARTBEAT = LEASE / 3  # filelock refreshes a lease every lease_duration / 3
RESCAN = 0.5

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def can_unshare() -> None:
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed: cannot stand in for other nodes")
    probe = subprocess.run(
        ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", "hostname node-probe && hostname"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "node-probe":
        pytest.skip(
            f"unshare cannot make UTS/PID namespaces here (needs root or user namespaces): {probe.stderr.strip()}"
        )


@pytest.fixture
def shared_ws(ws: Path) -> Path:
    Workspace.open(ws, create=True, lock_mode="shared", lease_duration=LEASE)
    return ws


@pytest.fixture
def view(shared_ws: Path, tmp_path: Path) -> Iterator[Path]:
    """A bindfs (FUSE) view of the workspace: inotify through it does not see writes to the real path."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed (tools/test installs it when run as root): cannot make a blind view")
    mount = tmp_path / "view"
    mount.mkdir()
    result = subprocess.run(
        ["bindfs", "--no-allow-other", str(shared_ws), str(mount)], capture_output=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"bindfs cannot mount here: {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["fusermount", "-u", "-z", str(mount)], check=False)


class Node:
    """A worker on a stand-in host: its own host name and pid space; ``path`` is how it sees the workspace."""

    def __init__(self, processes: Processes, name: str, path: Path, *, jobs: int = 1) -> None:
        self.name = name
        self.path = path
        command = f'hostname {name} && exec "$0" -m xpmfs worker "$1" --jobs {jobs} --rescan {RESCAN}'
        args = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", command, sys.executable, str(path)]
        self.unshare = processes.start(args, log=processes.tmp_path / f"{name}.log")

    @property
    def registration(self) -> str:
        return f"{self.name}-1.json"  # the worker is pid 1 of its namespace

    def init(self) -> psutil.Process:
        """The namespace's pid 1 (the worker), as this host sees it."""
        children = wait_until(
            lambda: psutil.Process(self.unshare.pid).children(), timeout=30, what=f"{self.name} to start"
        )
        return children[0]  # type: ignore[index]

    def tree(self) -> list[psutil.Process]:
        init = self.init()
        return [init, *init.children(recursive=True)]

    def kill(self) -> list[int]:
        """kill -9 the namespace's pid 1, so the kernel kills everything in it; return the pids that died."""
        pids = [process.pid for process in self.tree()]
        os.kill(pids[0], signal.SIGKILL)
        self.unshare.wait(timeout=30)
        wait_until(lambda: not any(_alive(pid) for pid in pids), timeout=10, what=f"everything in {self.name} to die")
        return pids

    def signal_all(self, signum: int) -> None:
        for process in self.tree():
            os.kill(process.pid, signum)


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _namespace_pid(pid: int) -> int:
    """``pid`` as the process sees itself (the last ``NSpid`` field: its own pid namespace)."""
    with open(f"/proc/{pid}/status") as stream:
        return next(int(line.split()[-1]) for line in stream if line.startswith("NSpid:"))


def _registered(ws: Path, *nodes: Node) -> bool:
    names = set(os.listdir(ws / "workers"))
    return all(node.registration in names for node in nodes)


def _starts(counter: Path) -> dict[str, list[tuple[int, str]]]:
    """Per job name/number: (pid, what) for each start/end line, in file order."""
    lines: dict[str, list[tuple[int, str]]] = {}
    for line in counter.read_text().splitlines() if counter.exists() else []:
        parts = line.split()
        lines.setdefault(parts[0], []).append((int(parts[1]), parts[2]))
    return lines


def test_nodes_claim_each_job_once_and_blind_nodes_find_jobs_by_rescanning(
    can_unshare: None, shared_ws: Path, view: Path, tmp_path: Path, processes: Processes
) -> None:
    nodes = [Node(processes, "node-a", shared_ws), Node(processes, "node-b", view), Node(processes, "node-c", view)]
    wait_until(lambda: _registered(shared_ws, *nodes), timeout=60, what="the three nodes to register")
    gate = tmp_path / "gate"
    counter = tmp_path / "counter"
    # One slot per node and three jobs that hold their slot until the gate opens: each node must
    # take one, so the two nodes behind the blind view found theirs by rescanning.
    with experiment(shared_ws, "gates", wait=False, workers=0):
        gates = [Gate.C(name=f"g{i}", gate=str(gate), counter=str(counter)).submit() for i in range(3)]
    jobs = [job_of(shared_ws, output) for output in gates]
    wait_until(
        lambda: all((job.path / "started").exists() for job in jobs), timeout=60, what="the three gate jobs to start"
    )
    hosts = sorted(job.status().host for job in jobs)  # type: ignore[union-attr]
    assert hosts == ["node-a", "node-b", "node-c"]
    for job in jobs:
        # From here, a node's lock is another host's: held, not provably stale, whatever its pid.
        state = inspect(job.lock_path, "shared", lease_duration=LEASE)
        assert state.status is LockStatus.REMOTE, state
        assert state.holder is not None and "?pidns-" in state.holder.host
    gate.write_text("")

    tallies = tmp_path / "tallies"
    with experiment(shared_ws, "tallies", workers=0):
        outputs = [Tally.C(n=n, counter=str(tallies)).submit() for n in range(12)]
    runs = _starts(tallies)
    assert sorted(runs, key=int) == [str(n) for n in range(12)]
    for n, lines in runs.items():
        assert [what for _pid, what in lines] == ["start", "end"], f"job {n} ran {lines}"
    ran_on = {job_of(shared_ws, output).status().host for output in outputs}  # type: ignore[union-attr]
    print(f"12 jobs ran on {sorted(ran_on)}")
    assert ran_on <= {"node-a", "node-b", "node-c"}
    wait_until(lambda: all(job.marker() is State.DONE for job in jobs), timeout=30, what="the gate jobs to end")
    assert [what for _pid, what in _starts(counter)["g0"]] == ["start", "end"]


def test_a_killed_nodes_job_is_taken_over_after_its_lease_expires_and_not_before(
    can_unshare: None, shared_ws: Path, view: Path, tmp_path: Path, processes: Processes
) -> None:
    gate = tmp_path / "gate"
    counter = tmp_path / "counter"
    first = Node(processes, "node-a", shared_ws)
    wait_until(lambda: _registered(shared_ws, first), timeout=60, what="node-a to register")
    with experiment(shared_ws, "takeover", wait=False, workers=0):
        output = Gate.C(name="t", gate=str(gate), counter=str(counter)).submit()
    job = job_of(shared_ws, output)
    wait_until((job.path / "started").exists, timeout=60, what="node-a to start the job")
    assert job.status().host == "node-a"  # type: ignore[union-attr]
    second = Node(processes, "node-b", view)
    wait_until(lambda: _registered(shared_ws, second), timeout=60, what="node-b to register")

    runner = int((job.path / "started").read_text())
    assert any(_namespace_pid(process.pid) == runner for process in first.tree()), "node-a's runner is not visible"
    first.kill()  # waits until every process of the node is dead, the runner included
    killed_at = time.time()
    last_beat = job.lock_path.stat().st_mtime  # nobody refreshes it any more
    status = job.status()
    assert status is not None and status.state is State.RUNNING and status.host == "node-a"

    def taken_over() -> bool:
        current = job.status()
        return current is not None and current.host == "node-b" and current.state is State.RUNNING

    wait_until(taken_over, timeout=60, what="node-b to take the job over")
    claimed = job.status().claimed  # type: ignore[union-attr]
    assert claimed is not None
    delay = claimed - last_beat
    print(
        f"node-b claimed the job {delay:.2f}s after node-a's last heartbeat "
        f"(lease {LEASE}s, killed at +{killed_at - last_beat:.2f}s)"
    )
    # Expiry is proven only by seeing the marker unchanged for lease_duration: never earlier.
    # (0.05 s of slack: the marker's mtime and time.time() are read from one clock, but rounded.)
    assert delay >= LEASE - 0.05, f"taken over {delay:.2f}s after the last heartbeat, before the {LEASE}s lease expired"
    gate.write_text("")
    wait_until(job.marker, timeout=60, what="node-b to finish the job")
    final = job.status()
    assert job.marker() is State.DONE and final is not None and final.attempt == 2 and final.host == "node-b"
    lines = _starts(counter)["t"]
    assert [what for _pid, what in lines] == ["start", "start", "end"], lines


def test_a_frozen_node_that_lost_its_lease_kills_its_runner_when_it_wakes(
    can_unshare: None, shared_ws: Path, view: Path, tmp_path: Path, processes: Processes
) -> None:
    gate = tmp_path / "gate"
    counter = tmp_path / "counter"
    first = Node(processes, "node-a", shared_ws)
    wait_until(lambda: _registered(shared_ws, first), timeout=60, what="node-a to register")
    with experiment(shared_ws, "freeze", wait=False, workers=0):
        output = Gate.C(name="f", gate=str(gate), counter=str(counter)).submit()
    job = job_of(shared_ws, output)
    wait_until((job.path / "started").exists, timeout=60, what="node-a to start the job")
    frozen_runner = int((job.path / "started").read_text())  # its pid inside node-a: find it outside
    runners = [process.pid for process in first.tree()[1:] if _namespace_pid(process.pid) == frozen_runner]
    assert runners, "node-a's runner is not visible"
    second = Node(processes, "node-b", view)
    wait_until(lambda: _registered(shared_ws, second), timeout=60, what="node-b to register")

    first.signal_all(signal.SIGSTOP)  # a paused VM: alive, but its heartbeat stops
    try:
        wait_until(
            lambda: (job.status() or None) is not None and job.status().host == "node-b",  # type: ignore[union-attr]
            timeout=60,
            what="node-b to take the frozen node's job over",
        )
    finally:
        first.signal_all(signal.SIGCONT)
    # node-a's heartbeat sees owner-changed twice (two beats) and must stop its runner: one
    # job, one run at a time, once the old holder can see the file server again.
    deadline = time.monotonic() + 3 * HEARTBEAT + 4.0
    while time.monotonic() < deadline and any(_alive(pid) for pid in runners):
        time.sleep(0.05)
    alive = [pid for pid in runners if _alive(pid)]
    gate.write_text("")
    assert not alive, f"node-a's runner (pid {frozen_runner} in its namespace) still runs after losing its lease"
    wait_until(job.marker, timeout=60, what="node-b to finish the job")
    final = job.status()
    assert job.marker() is State.DONE and final is not None and final.host == "node-b", final
    assert [what for _pid, what in _starts(counter)["f"]] == ["start", "start", "end"], "node-a's run must not end"


@pytest.mark.parametrize("outcome", ["done", "failed"])
def test_a_runner_whose_worker_froze_never_records_over_the_attempt_that_replaced_it(
    can_unshare: None, shared_ws: Path, view: Path, tmp_path: Path, processes: Processes, outcome: str
) -> None:
    """Node A's worker freezes (its lease heartbeat stops) while its runner goes on; node B takes the
    job over and finishes it (attempt 2). A's runner then ends its task: it must record nothing."""
    gate = tmp_path / "gate"
    first = Node(processes, "node-a", shared_ws)
    wait_until(lambda: _registered(shared_ws, first), timeout=60, what="node-a to register")
    with experiment(shared_ws, "fence", wait=False, workers=0):
        output = Overtaken.C(name="o", gate=str(gate), fail=outcome == "failed").submit()
    job = job_of(shared_ws, output)
    wait_until((job.path / "started").exists, timeout=60, what="node-a to start the job")
    worker = first.init()
    os.kill(worker.pid, signal.SIGSTOP)  # a hung worker: its lease is not refreshed, its runner goes on
    try:
        Node(processes, "node-b", view)
        wait_until(lambda: job.marker() is State.DONE, timeout=60, what="node-b to take the job over and finish it")
        replaced = job.status()
        assert replaced is not None and replaced.attempt == 2 and replaced.host == "node-b", replaced
        gate.write_text("")  # node-a's runner returns from its task now, or raises
        wait_until(
            lambda: "is not recorded" in job.stderr_path.read_text(errors="replace"),
            timeout=30,
            what="node-a's runner to say it records nothing",
        )
    finally:
        os.kill(worker.pid, signal.SIGCONT)
    assert job.status() == replaced
    assert job.marker() is State.DONE and not (job.xpm_dir / "failed").exists()
    marked = json.loads((job.xpm_dir / "done").read_text())
    assert (marked["attempt"], marked["host"]) == (2, "node-b")
    said = job.stderr_path.read_text(errors="replace")
    assert f"ended {outcome} but is not recorded: attempt 1 is no longer the job's current attempt" in said, said
    # node-a's worker, awake again, records nothing either.
    deadline = time.monotonic() + 3 * HEARTBEAT + 2.0
    while time.monotonic() < deadline:
        assert job.status() == replaced
        time.sleep(0.1)
