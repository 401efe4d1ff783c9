"""Randomized chaos run: kill -9 workers, runners and the experiment at random, then prove nothing broke.

Usage (through ``tools/chaos``, which runs this with the project's venv)::

    tools/chaos [--seconds S] [--workers N] [--jobs J] [--seed X] [--trials T]
                [--lock-mode local|shared] [--lease L] [--nodes] [--slots K] [--work W]
                [--runner-kills] [--kill-interval I] [--no-experiment-kills]
                [--converge-timeout T] [--workdir DIR] [--keep] [-v]

What happens, per trial:

1. A workspace is created in a temporary folder (``--workdir``), with a task module and an
   experiment script written next to it. The experiment submits ``J`` ``ChaosTally`` jobs, a third
   of them depending on an earlier one; each run of a job appends
   ``<n> <pid> <ppid> <host> start <t>`` and, after a short random sleep,
   ``<n> <pid> <ppid> <host> end <t>`` to a counter file (a run is named by its host and pid).
2. ``N`` workers (``xpmfs worker WS --rescan 0.5``) and the experiment run while, for ``S``
   seconds, a random process is ``kill -9``'d about once a second: a worker (then restarted after
   a random delay), the experiment (then re-run), and with ``--runner-kills`` a job's runner. An
   experiment that ended by itself is re-run too (resubmitting finished jobs must be harmless).
   With ``--nodes``, every worker is another "host" (``unshare --uts --pid``, its own host name;
   odd ones see the workspace through a bindfs view, blind to inotify), the lock mode is
   ``shared`` with a short lease, and killing a worker kills its whole node (the namespace's
   pid 1): its jobs are taken over only once their leases expire.
3. The chaos stops (everything is killed), then the workspace converges: one worker, and the
   experiment run once more to its end.
4. The verdict: every submitted job is done (none lost); no two runs of a job overlapped in time;
   every dependent job started after its dependency's run ended; ``xpmfs check WS`` reports
   nothing but the registrations of the workers we killed, and is clean (exit 0) once
   ``xpmfs check --fix`` removed those.

How "never overlapped" is judged: a run that wrote its ``end`` line spans ``[start, end]``. A run
with no ``end`` was killed; its span ends when its process was *seen dead* by this controller.
To see that, a worker is frozen (SIGSTOP) before it is killed, so it cannot start a runner
between our listing of its descendants and the SIGKILL (its descendants are frozen too); each
descendant (runners, a fork server: all die with the worker by PR_SET_PDEATHSIG) is then polled
until it is gone (or a zombie), and that time is recorded. A run whose death was never seen is
unproven: any later run of the same job counts as a duplicate.

Prints ONE line of figures, e.g.::

    chaos: trials=1 seconds=20 kills=17 (workers 12, experiment 5, runners 0) jobs=60 submitted=60 done=60
           lost=0 duplicates=0 order=0 reruns=9 converge=2.1s check=clean seed=42

(on one line)

and exits 1 on any loss, duplicate, ordering violation or check problem (the reasons follow on
stderr, and the work folder is kept for a post-mortem).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TASKS_MODULE = "chaos_tasks"
TASKS = '''\
"""Written by tools/chaos.py: the task its chaos experiment submits."""

from __future__ import annotations

import os
import socket
import time

from xpmfs import Meta, Param, Task


def _append(path: str, line: str) -> None:
    # One write(2) of one short line with O_APPEND: whole, even if the process is killed.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{line}\\n".encode())
    finally:
        os.close(fd)


class ChaosTally(Task):
    """Appends start and end lines (job number, pid, parent pid, host, time) around a short sleep."""

    n: Param[int]
    counter: Meta[str]
    work: Meta[float] = 0.1
    previous: Param[ChaosTally | None] = None

    def execute(self) -> None:
        me = f"{self.n} {os.getpid()} {os.getppid()} {socket.gethostname()}"
        _append(self.counter, f"{me} start {time.time()!r}")
        time.sleep(self.work)
        _append(self.counter, f"{me} end {time.time()!r}")
'''

EXPERIMENT = '''\
"""Written by tools/chaos.py: submits the planned jobs, slowly enough to be killed mid-way."""

import json
import random
import sys
import time

from xpmfs import experiment
from chaos_tasks import ChaosTally

ws, counter, plan_file = sys.argv[1], sys.argv[2], sys.argv[3]
plan = json.loads(open(plan_file).read())
pace = random.Random()
with experiment(ws, "chaos", workers=0, rescan=0.5):
    outputs = {}
    for job in plan:
        previous = outputs[job["after"]] if job["after"] is not None else None
        outputs[job["n"]] = ChaosTally.C(n=job["n"], counter=counter, work=job["work"], previous=previous).submit()
        time.sleep(pace.uniform(0.0, 0.02))
print("converged", flush=True)
'''

#: Mean seconds between two kills during the chaos.
KILL_INTERVAL = 1.0
#: A killed worker is restarted after a delay drawn from this range (seconds).
RESTART_DELAY = (0.1, 1.2)
#: How long a killed worker's runner may take to die (PR_SET_PDEATHSIG) before it is a finding.
DEATH_TIMEOUT = 5.0
#: Time allowed for the final, undisturbed experiment run.
CONVERGE_TIMEOUT = 180.0
WORKER_RESCAN = 0.5
#: Rough cost of starting a job's runner (a fresh interpreter importing xpmfs), seconds.
RUNNER_START = 0.4
#: A final run still going after this long gets a snapshot of the workspace (logs/slow-convergence.txt).
SLOW_CONVERGENCE = 30.0


@dataclass
class Figures:
    """What one or more trials measured; :meth:`line` is the one-line summary."""

    trials: int = 0
    seconds: float = 0.0
    kills_workers: int = 0
    kills_experiment: int = 0
    kills_runners: int = 0
    jobs: int = 0
    submitted: int = 0
    done: int = 0
    duplicates: int = 0
    order: int = 0
    reruns: int = 0
    experiment_runs: int = 0
    converge: float = 0.0  # seconds the final, undisturbed run took (the slowest trial's)
    check: str = "clean"
    problems: list[str] = field(default_factory=list)

    @property
    def kills(self) -> int:
        return self.kills_workers + self.kills_experiment + self.kills_runners

    @property
    def lost(self) -> int:
        return self.jobs - self.done

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicates == 0 and self.order == 0

    def add(self, other: Figures) -> None:
        for name in (
            "trials",
            "seconds",
            "kills_workers",
            "kills_experiment",
            "kills_runners",
            "jobs",
            "submitted",
            "done",
            "duplicates",
            "order",
            "reruns",
            "experiment_runs",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.converge = max(self.converge, other.converge)
        if other.check != "clean":
            self.check = other.check
        self.problems += other.problems

    def line(self) -> str:
        return (
            f"chaos: trials={self.trials} seconds={self.seconds:g} kills={self.kills} "
            f"(workers {self.kills_workers}, experiment {self.kills_experiment}, runners {self.kills_runners}) "
            f"jobs={self.jobs} submitted={self.submitted} done={self.done} lost={self.lost} "
            f"duplicates={self.duplicates} order={self.order} reruns={self.reruns} converge={self.converge:.1f}s "
            f"check={self.check}"
        )


def _alive(pid: int) -> bool:
    # A zombie has died: it writes nothing more (our orphans may be reaped late by PID 1).
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _namespace_pid(pid: int) -> int:
    """``pid`` as the process sees itself: the last ``NSpid`` of ``/proc/<pid>/status`` (its own pid namespace)."""
    try:
        with open(f"/proc/{pid}/status") as stream:
            for line in stream:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return pid


class Trial:
    """One chaos trial in ``workdir``; :meth:`run` returns its figures."""

    def __init__(
        self,
        workdir: Path,
        *,
        seconds: float,
        workers: int,
        jobs: int,
        seed: int,
        slots: int = 2,
        lock_mode: str = "local",
        lease_duration: float = 3.0,
        runner_kills: bool = False,
        work: float | None = None,
        kill_interval: float = KILL_INTERVAL,
        nodes: bool = False,
        experiment_kills: bool = True,
        converge_timeout: float = CONVERGE_TIMEOUT,
        verbose: bool = False,
    ) -> None:
        self.workdir = workdir
        self.ws = workdir / "ws"
        self.logs = workdir / "logs"
        self.counter = workdir / "counter"
        self.seconds = seconds
        self.n_workers = workers
        self.n_jobs = jobs
        self.rng = random.Random(seed)
        self.seed = seed
        self.slots = slots
        self.lock_mode = "shared" if nodes else lock_mode  # OS locks do not exclude across nodes
        self.lease_duration = lease_duration
        self.runner_kills = runner_kills
        self.work = work
        self.kill_interval = kill_interval
        self.nodes = nodes
        self.experiment_kills = experiment_kills
        self.converge_timeout = converge_timeout
        self.view = workdir / "view"  # nodes mode: a bindfs view of the workspace, blind to inotify
        self.host = socket.gethostname()
        self.incarnations: dict[int, int] = {}
        self.verbose = verbose
        self.figures = Figures(trials=1, seconds=seconds, jobs=jobs)
        self.workers: dict[int, subprocess.Popen[bytes] | None] = {}
        self.restart_at: dict[int, float] = {}
        self.experiment: subprocess.Popen[bytes] | None = None
        self.experiment_at = 0.0
        # (host, pid as the process sees itself) -> when it was seen dead: runners of killed workers, killed runners
        self.deaths: dict[tuple[str, int], float] = {}
        self.spawned = 0
        self.log_of: dict[int, Path] = {}
        self.plan: list[dict[str, object]] = []

    # -- set-up --------------------------------------------------------------------------------

    def _prepare(self) -> None:
        from xpmfs.workspace import Workspace

        self.logs.mkdir(parents=True, exist_ok=True)
        (self.workdir / f"{TASKS_MODULE}.py").write_text(TASKS)
        (self.workdir / "experiment.py").write_text(EXPERIMENT)
        plan_rng = random.Random(self.seed)
        # Enough work to keep the workers busy for about half the chaos: kills must hit running jobs.
        mean = self.work
        if mean is None:
            mean = max(0.1, 0.5 * self.seconds * self.n_workers * self.slots / self.n_jobs - RUNNER_START)
        for n in range(self.n_jobs):
            after = n - 1 - plan_rng.randrange(3) if n >= 3 and plan_rng.random() < 0.33 else None
            self.plan.append({"n": n, "work": round(plan_rng.uniform(0.5 * mean, 1.5 * mean), 3), "after": after})
        (self.workdir / "plan.json").write_text(json.dumps(self.plan))
        options: dict[str, object] = {"create": True, "lock_mode": self.lock_mode}
        if self.lock_mode == "shared":
            options["lease_duration"] = self.lease_duration
        Workspace.open(self.ws, **options)  # type: ignore[arg-type]
        if self.nodes:
            self.view.mkdir()
            mounted = subprocess.run(
                ["bindfs", "--no-allow-other", str(self.ws), str(self.view)], capture_output=True, check=False
            )
            if mounted.returncode != 0:
                raise RuntimeError(f"bindfs cannot mount a view of the workspace: {mounted.stderr.decode().strip()}")

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.workdir), str(ROOT), env.get("PYTHONPATH", "")]))
        env.pop("XPMFS_CRASH_AT", None)
        return env

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        self.spawned += 1
        path = self.logs / f"{self.spawned:03d}-{name}.log"
        with open(path, "wb") as log:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
                cwd=self.workdir,
            )
        self.log_of[process.pid] = path
        return process

    def _start_worker(self, slot: int, *, plain: bool = False) -> None:
        self.incarnations[slot] = self.incarnations.get(slot, -1) + 1
        if self.nodes and not plain:
            # Another "host": its own host name and pid space; odd nodes see the workspace through
            # the FUSE view, where inotify is blind to the others' writes (as over NFS).
            path = self.view if slot % 2 else self.ws
            worker = f'exec "$0" -m xpmfs worker "$1" --jobs {self.slots} --rescan {WORKER_RESCAN}'
            script = f"hostname {self._node(slot)} && {worker}"
            command = [
                "unshare",
                "--uts",
                "--pid",
                "--fork",
                "--mount-proc",
                "sh",
                "-c",
                script,
                sys.executable,
                str(path),
            ]
        else:
            command = [sys.executable, "-m", "xpmfs", "worker", str(self.ws), "--jobs", str(self.slots)]
            command += ["--rescan", str(WORKER_RESCAN)]
        self.workers[slot] = self._spawn(command, f"worker{slot}")

    def _node(self, slot: int) -> str:
        # A restarted node is a new host (a rebooted machine): pids restart at 1 in a new namespace.
        return f"node-{slot}-{self.incarnations.get(slot, 0)}"

    def _host_of(self, slot: int) -> str:
        return self._node(slot) if self.nodes else self.host

    def _experiment_command(self) -> list[str]:
        return [
            sys.executable,
            str(self.workdir / "experiment.py"),
            str(self.ws),
            str(self.counter),
            str(self.workdir / "plan.json"),
        ]

    def _start_experiment(self) -> None:
        self.experiment = self._spawn(self._experiment_command(), "experiment")
        self.figures.experiment_runs += 1

    def _say(self, message: str) -> None:
        if self.verbose:
            print(f"[{time.time():.3f}] {message}", file=sys.stderr, flush=True)

    # -- killing -------------------------------------------------------------------------------

    def _freeze(self, pid: int, host: str) -> dict[int, tuple[str, int]]:
        """SIGSTOP ``pid`` and all its descendants, until no new one appears; return the descendants.

        A frozen process cannot start a runner (or ask its fork server for one) that we would not
        see: every process that may write a start line is known before anything is killed. Each
        descendant maps to how its runs name it: its host, and its pid in its own pid namespace.
        """
        frozen: dict[int, tuple[str, int]] = {}
        try:
            os.kill(pid, signal.SIGSTOP)
            while True:
                new = [child.pid for child in psutil.Process(pid).children(recursive=True) if child.pid not in frozen]
                if not new:
                    return frozen
                for child in new:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(child, signal.SIGSTOP)
                    frozen[child] = (host, _namespace_pid(child))
        except (ProcessLookupError, psutil.NoSuchProcess):
            return frozen

    def _kill_worker(self, slot: int) -> None:
        process = self.workers[slot]
        assert process is not None
        self.workers[slot] = None
        descendants = self._freeze(process.pid, self._host_of(slot))
        with contextlib.suppress(ProcessLookupError):
            if self.nodes and descendants:
                # The namespace's pid 1 (the worker): when it dies the kernel kills the whole node.
                os.kill(next(iter(descendants)), signal.SIGKILL)
                os.kill(process.pid, signal.SIGCONT)  # unshare, frozen too, must see its child die
            else:
                os.kill(process.pid, signal.SIGKILL)
        process.wait()
        self._say(f"killed worker {process.pid} (descendants {sorted(descendants)})")
        # Thaw them: those that armed PR_SET_PDEATHSIG died with the worker (SIGKILL ends a stopped
        # process too); one frozen before it armed it must run to see its parent gone, and exit.
        for pid in descendants:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        for pid, key in descendants.items():
            self._await_death(pid, key, f"process {pid} of killed worker {process.pid}")

    def _await_death(self, pid: int, key: tuple[str, int], what: str) -> None:
        deadline = time.monotonic() + DEATH_TIMEOUT
        while _alive(pid):
            if time.monotonic() > deadline:
                self.figures.problems.append(f"{what} is still alive {DEATH_TIMEOUT:g}s after the kill")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)  # do not leak it (it may be stopped)
                return
            time.sleep(0.002)
        self.deaths[key] = time.time()

    def _kill_experiment(self) -> None:
        assert self.experiment is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.experiment.pid, signal.SIGKILL)
        self.experiment.wait()
        self._say(f"killed experiment {self.experiment.pid}")
        self.experiment = None

    def _runners(self) -> dict[int, tuple[int, tuple[str, int]]]:
        """Runners of our live workers: pid -> (worker slot, (host, pid in its namespace)).

        A runner is a descendant of a worker that a ``running`` status names (by host and pid).
        """
        running = set()
        for status in self.ws.glob("jobs/*/*/__xpm__/status.json"):
            try:
                record = json.loads(status.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("state") == "running" and isinstance(record.get("pid"), int):
                running.add((record.get("host"), record["pid"]))
        runners = {}
        for slot, process in self.workers.items():
            if process is None or process.poll() is not None:
                continue
            try:
                descendants = psutil.Process(process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            for child in descendants:
                key = (self._host_of(slot), _namespace_pid(child.pid))
                if key in running:
                    runners[child.pid] = (slot, key)
        return runners

    def _kill_runner(self) -> bool:
        runners = self._runners()
        if not runners:
            return False
        pid = self.rng.choice(sorted(runners))
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return False
        self._say(f"killed runner {pid} {runners[pid][1]}")
        self._await_death(pid, runners[pid][1], f"killed runner {pid}")
        return True

    def _kill_something(self) -> None:
        live = [slot for slot, process in self.workers.items() if process is not None]
        choices = ["worker"] * 6 + (["experiment"] * 3 if self.experiment_kills else [])
        choices += ["runner"] * 2 if self.runner_kills else []
        what = self.rng.choice(choices)
        if what == "experiment" and self.experiment is not None and self.experiment.poll() is None:
            self._kill_experiment()
            self.figures.kills_experiment += 1
            self.experiment_at = time.monotonic() + self.rng.uniform(0.1, 1.0)
        elif what == "runner" and self._kill_runner():
            self.figures.kills_runners += 1
        elif live:
            # Mostly a worker that is running jobs: killing an idle one tests little.
            busy = sorted({slot for slot, _key in self._runners().values()})
            slot = self.rng.choice(busy if busy and self.rng.random() < 0.8 else live)
            self._kill_worker(slot)
            self.figures.kills_workers += 1
            self.restart_at[slot] = time.monotonic() + self.rng.uniform(*RESTART_DELAY)

    def _unfinished(self) -> list[str]:
        """A line for each job without a ``done`` marker: its state, queue entry and lock file, for a post-mortem."""
        lines = []
        for folder in sorted(self.ws.glob("jobs/*/*")):
            xpm = folder / "__xpm__"
            if (xpm / "done").exists() or not folder.is_dir():
                continue
            try:
                status = json.loads((xpm / "status.json").read_bytes())
            except (OSError, ValueError) as error:
                status = {"state": f"unreadable ({error})"}
            try:
                n = json.loads((xpm / "spec.json").read_bytes())["config"]["objects"][0]["fields"]["n"]
            except (OSError, ValueError, KeyError, IndexError, TypeError):
                n = "?"
            lock = xpm / "lock"
            if not lock.exists():
                what = "no lock file"
            else:
                info = lock.stat()
                content = lock.read_bytes()
                first = content.split(b"\n")[2:3] if content.startswith(b"filelock/") else []
                what = (
                    "empty"
                    if not content
                    else (first[0].decode(errors="replace") if first else f"{len(content)} bytes")
                )
                what = f"lock {what}, unchanged since {info.st_mtime!r} ({time.time() - info.st_mtime:.0f}s)"
            queued = any(self.ws.glob(f"queue/*~{folder.name}"))
            failed = " failed-marker" if (xpm / "failed").exists() else ""
            lines.append(
                f"job {n} {folder.name[:12]}: {status.get('state')}{failed}, "
                f"{'queued' if queued else 'not queued'}, {what}"
            )
        return lines

    def _snapshot(self, name: str) -> None:
        """Save what the workspace looks like (``xpmfs ls --json``, the queue, the workers) for a post-mortem."""
        listing = subprocess.run(
            [sys.executable, "-m", "xpmfs", "ls", str(self.ws), "--json"],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        report = [f"time {time.time()!r}", "queue: " + " ".join(sorted(os.listdir(self.ws / "queue")))]
        report += ["workers: " + " ".join(sorted(os.listdir(self.ws / "workers"))), listing.stdout, listing.stderr]
        (self.logs / f"{name}.txt").write_text("\n".join(report))

    def _stop_everything(self) -> None:
        for slot, process in list(self.workers.items()):
            if process is not None:
                if process.poll() is None:
                    self._kill_worker(slot)
                else:
                    self.workers[slot] = None
        if self.experiment is not None:
            if self.experiment.poll() is None:
                self._kill_experiment()
            self.experiment = None

    # -- the trial -----------------------------------------------------------------------------

    def run(self) -> Figures:
        self._prepare()
        try:
            self._chaos()
            self._stop_everything()
            self._converge()
        finally:
            self._stop_everything()
        try:
            self._judge()
        finally:
            if self.nodes:
                subprocess.run(["fusermount", "-u", "-z", str(self.view)], capture_output=True, check=False)
        return self.figures

    def _chaos(self) -> None:
        for slot in range(self.n_workers):
            self._start_worker(slot)
        self._start_experiment()
        start = time.monotonic()
        end = start + self.seconds
        next_kill = start + self.rng.expovariate(1.0 / self.kill_interval)
        while (now := time.monotonic()) < end:
            for slot, process in self.workers.items():
                if process is None and now >= self.restart_at.get(slot, 0.0):
                    self._start_worker(slot)
                elif process is not None and process.poll() is not None:
                    self.figures.problems.append(
                        f"worker {process.pid} exited by itself with code {process.returncode}"
                    )
                    self.workers[slot] = None
            if self.experiment is not None and self.experiment.poll() is not None:
                self._say(f"experiment {self.experiment.pid} ended with code {self.experiment.returncode}")
                self.experiment = None
                self.experiment_at = now + self.rng.uniform(0.2, 1.5)
            if self.experiment is None and now >= self.experiment_at:
                self._start_experiment()
            if now >= next_kill:
                self._kill_something()
                next_kill = time.monotonic() + self.rng.expovariate(1.0 / self.kill_interval)
            time.sleep(0.02)

    def _converge(self) -> None:
        self._start_worker(0, plain=True)  # on this host, on the real path
        started = time.monotonic()
        final = self._spawn(self._experiment_command(), "converge")
        self.figures.experiment_runs += 1
        snapshot_at = started + SLOW_CONVERGENCE
        while final.poll() is None:
            now = time.monotonic()
            if now > started + self.converge_timeout:
                self.figures.problems.append(
                    f"the final experiment run did not end within {self.converge_timeout:g}s; "
                    f"unfinished: {'; '.join(self._unfinished()) or 'none'}"
                )
                final.kill()
                final.wait()
                break
            if snapshot_at and now > snapshot_at:
                snapshot_at = 0.0
                self._snapshot("slow-convergence")
            time.sleep(0.05)
        self.figures.converge = max(self.figures.converge, time.monotonic() - started)
        output = self.log_of[final.pid].read_bytes()
        if final.returncode != 0 or b"converged" not in output:
            tail = output.decode(errors="replace").strip().splitlines()[-5:]
            self.figures.problems.append(
                f"the final experiment run failed (code {final.returncode}): {' | '.join(tail)}"
            )
        self._say(f"converged in {time.monotonic() - started:.1f}s")
        worker = self.workers[0]
        assert worker is not None
        # Its "N slot(s)" line is logged once its SIGTERM handler is installed: a worker stopped
        # earlier would just die of the signal, which is not the clean stop this checks.
        deadline = time.monotonic() + 60
        while b" slot(s) on " not in self.log_of[worker.pid].read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.figures.problems.append("the last worker did not stop on SIGTERM within 30s")
            return
        self.workers[0] = None
        if code != 0:
            self.figures.problems.append(f"the last worker exited with code {code} on SIGTERM")

    # -- the verdict ---------------------------------------------------------------------------

    def _judge(self) -> None:
        from xpmfs.catalog import iter_refs
        from xpmfs.job import Job
        from xpmfs.status import State
        from xpmfs.workspace import Workspace

        ws = Workspace.open(self.ws)
        refs = list(iter_refs(ws))
        self.figures.submitted = sum(1 for ref in refs if Job(ws, ref).spec_path.exists())
        self.figures.done = sum(1 for ref in refs if Job(ws, ref).marker() is State.DONE)
        if self.figures.submitted != self.n_jobs:
            self.figures.problems.append(f"{self.figures.submitted} job folders for {self.n_jobs} planned jobs")
        leftovers = sorted(os.listdir(self.ws / "queue"))
        if leftovers:
            self.figures.problems.append(f"queue not empty after convergence: {leftovers[:5]}")
        self._judge_runs()
        self._judge_check()

    def _runs(self) -> dict[int, list[tuple[tuple[str, int], float, float | None]]]:
        """Per job number, its runs as ((host, pid), start, end or None), in start order."""
        runs: dict[int, dict[tuple[str, int], list[float | None]]] = defaultdict(dict)
        text = self.counter.read_text() if self.counter.exists() else ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 6 or parts[4] not in ("start", "end"):
                self.figures.problems.append(f"unreadable counter line {line!r}")
                continue
            n, pid, when = int(parts[0]), (parts[3], int(parts[1])), float(parts[5])
            times = runs[n].setdefault(pid, [None, None])
            times[0 if parts[4] == "start" else 1] = when
        result: dict[int, list[tuple[tuple[str, int], float, float | None]]] = {}
        for n, by_pid in runs.items():
            entries = []
            for pid, (start, end) in by_pid.items():
                if start is None:
                    self.figures.problems.append(f"job {n}: pid {pid} wrote an end line without a start line")
                    continue
                entries.append((pid, start, end))
            result[n] = sorted(entries, key=lambda run: run[1])
        return result

    def _judge_runs(self) -> None:
        runs = self._runs()
        for job in self.plan:
            n = int(job["n"])  # type: ignore[call-overload]
            attempts = runs.get(n, [])
            if not any(end is not None for _pid, _start, end in attempts):
                self.figures.problems.append(f"job {n} never completed a run")
            self.figures.reruns += max(0, len(attempts) - 1)
            # Every pair: a later run must start after the earlier one ended, or was seen dead.
            for i, (pid, start, end) in enumerate(attempts):
                finish = end if end is not None else self.deaths.get(pid)
                for later_pid, later_start, _later_end in attempts[i + 1 :]:
                    if finish is None or finish > later_start:
                        self.figures.duplicates += 1
                        why = (
                            f"ended at {finish!r}"
                            if end is not None
                            else (f"was seen dead at {finish!r}" if finish is not None else "was never seen dead")
                        )
                        self.figures.problems.append(
                            f"job {n}: run of pid {later_pid[1]} on {later_pid[0]} started at {later_start!r} "
                            "while the run "
                            f"of pid {pid[1]} on {pid[0]} "
                            f"(started {start!r}) had not ended: it {why}"
                        )
            after = job["after"]
            if after is not None:
                ends = [end for _pid, _start, end in runs.get(int(after), []) if end is not None]  # type: ignore[call-overload]
                first_end = min(ends) if ends else None
                for pid, start, _end in attempts:
                    if first_end is None or start < first_end:
                        self.figures.order += 1
                        self.figures.problems.append(
                            f"job {n}: run of pid {pid[1]} on {pid[0]} started at {start!r} "
                            f"before its dependency {after} "
                            f"had completed a run (first end: {first_end!r})"
                        )

    def _check(self, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "xpmfs", "check", str(self.ws), "--no-wait", *extra],
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def _await_dead_registrations(self) -> None:
        """Wait until every worker registration looks dead (all our workers are gone by now).

        A registration from another host (a node) can only be judged by its age: it looks alive
        for 3 heartbeats + 1 s after its worker died, and `check` would find it stale a moment later.
        """
        from xpmfs import heartbeat

        deadline = time.monotonic() + 30.0
        while alive := [info.path.name for info in heartbeat.scan(self.ws / "workers") if info.alive]:
            if time.monotonic() > deadline:
                self.figures.problems.append(f"worker registrations still look alive with no worker left: {alive}")
                return
            time.sleep(0.2)

    def _judge_check(self) -> None:
        self._await_dead_registrations()
        first = self._check()
        unexpected = [
            line
            for line in first.stdout.splitlines()
            if line.strip() and ": stale-worker: " not in line and ": unverifiable-spec: " not in line
        ]
        if first.returncode not in (0, 1) or unexpected or "Traceback" in first.stderr:
            self.figures.check = "problems"
            self.figures.problems.append(
                f"xpmfs check (code {first.returncode}) reported: {unexpected[:5]} {first.stderr.strip()[-300:]}"
            )
            return
        if first.returncode == 1:
            fixed = self._check("--fix")
            if fixed.returncode != 0:
                self.figures.check = "problems"
                self.figures.problems.append(
                    f"xpmfs check --fix (code {fixed.returncode}): {fixed.stdout.strip()[-300:]}"
                )
                return
        final = self._check()
        if final.returncode != 0:
            self.figures.check = "problems"
            self.figures.problems.append(
                f"xpmfs check after --fix (code {final.returncode}): {final.stdout.strip()[-300:]}"
            )


def run(
    *,
    seconds: float = 20.0,
    workers: int = 3,
    jobs: int = 60,
    seed: int | None = None,
    trials: int = 1,
    slots: int = 2,
    lock_mode: str = "local",
    lease_duration: float = 3.0,
    runner_kills: bool = False,
    work: float | None = None,
    kill_interval: float = KILL_INTERVAL,
    nodes: bool = False,
    experiment_kills: bool = True,
    converge_timeout: float = CONVERGE_TIMEOUT,
    workdir: Path | None = None,
    keep: bool = False,
    verbose: bool = False,
) -> tuple[Figures, Path]:
    """Run ``trials`` chaos trials; return the summed figures and the work folder."""
    if seed is None:
        seed = random.SystemRandom().randrange(1 << 31)
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="xpmfs-chaos-"))
    total = Figures()
    for index in range(trials):
        folder = root / f"trial-{index}"
        folder.mkdir(parents=True, exist_ok=True)
        trial = Trial(
            folder,
            seconds=seconds,
            workers=workers,
            jobs=jobs,
            seed=seed + index,
            slots=slots,
            lock_mode=lock_mode,
            lease_duration=lease_duration,
            runner_kills=runner_kills,
            work=work,
            kill_interval=kill_interval,
            nodes=nodes,
            experiment_kills=experiment_kills,
            converge_timeout=converge_timeout,
            verbose=verbose,
        )
        figures = trial.run()
        figures.problems = [f"trial {index} (seed {seed + index}): {problem}" for problem in figures.problems]
        total.add(figures)
        if figures.ok and not keep:
            shutil.rmtree(folder, ignore_errors=True)
    if total.ok and not keep and workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return total, root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="chaos time per trial (default 20)")
    parser.add_argument("--workers", type=int, default=3, help="workers running at once (default 3)")
    parser.add_argument("--jobs", type=int, default=60, help="jobs the experiment submits (default 60)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed on failure)")
    parser.add_argument("--trials", type=int, default=1, help="trials, with seeds seed, seed+1, ... (default 1)")
    parser.add_argument("--slots", type=int, default=2, help="job slots per worker (default 2)")
    parser.add_argument("--lock-mode", choices=["local", "shared"], default="local")
    parser.add_argument("--lease", type=float, default=3.0, help="lease_duration in shared mode (default 3)")
    parser.add_argument(
        "--runner-kills", action="store_true", help="also kill -9 job runners (their jobs fail, then are resubmitted)"
    )
    parser.add_argument("--work", type=float, help="mean seconds a job sleeps (default: enough to fill half the chaos)")
    parser.add_argument(
        "--kill-interval", type=float, default=KILL_INTERVAL, help="mean seconds between kills (default 1)"
    )
    parser.add_argument(
        "--nodes",
        action="store_true",
        help="run each worker as another host (unshare UTS+PID namespaces; odd ones through a bindfs view); "
        "implies --lock-mode shared; a kill takes down the whole node",
    )
    parser.add_argument("--no-experiment-kills", action="store_true", help="never kill the experiment")
    parser.add_argument(
        "--converge-timeout",
        type=float,
        default=CONVERGE_TIMEOUT,
        help=f"seconds allowed to converge (default {CONVERGE_TIMEOUT:g})",
    )
    parser.add_argument("--workdir", type=Path, help="where to put the trials (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder even on success")
    parser.add_argument("--verbose", "-v", action="store_true", help="narrate every kill on stderr")
    args = parser.parse_args(argv)
    if (
        args.seconds <= 0
        or args.kill_interval <= 0
        or args.workers < 1
        or args.jobs < 1
        or args.trials < 1
        or args.slots < 1
    ):
        parser.error("--seconds, --kill-interval, --workers, --jobs, --trials and --slots must be positive")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    figures, root = run(
        seconds=args.seconds,
        workers=args.workers,
        jobs=args.jobs,
        seed=seed,
        trials=args.trials,
        slots=args.slots,
        lock_mode="shared" if args.nodes else args.lock_mode,
        lease_duration=args.lease,
        runner_kills=args.runner_kills,
        work=args.work,
        kill_interval=args.kill_interval,
        nodes=args.nodes,
        experiment_kills=not args.no_experiment_kills,
        converge_timeout=args.converge_timeout,
        workdir=args.workdir,
        keep=args.keep,
        verbose=args.verbose,
    )
    print(f"{figures.line()} seed={seed}", flush=True)
    if not figures.ok:
        for problem in figures.problems:
            print(f"chaos: {problem}", file=sys.stderr)
        print(f"chaos: work folder kept for a post-mortem: {root}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
