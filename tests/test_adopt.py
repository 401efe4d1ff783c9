"""`xpmfs adopt`: an experimaestro 2.7 workspace taken over in place (issue 21, spec/adopt.md).

The workspaces adopted here are made by experimaestro 2.7.0 itself, run for real in a side venv
(``.bench/venv-experimaestro``, installed once and kept; the tests are skipped, saying why, when
it cannot be installed), with ``tests/adopt_xp.py``: done, failed and unfinished (killed) jobs,
dependencies, tags, two experiments. A synthetic workspace (``tools/bench/adopt_synth.py``)
covers the many-jobs logic and an adoption killed half-way.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from conftest import ROOT, TESTS, wait_until

from xpmfs import RunMode
from xpmfs import adopt as adoption
from xpmfs.catalog import details, list_jobs, read_log
from xpmfs.cli import main as cli
from xpmfs.errors import WorkspaceError
from xpmfs.job import Job
from xpmfs.queue import JobRef
from xpmfs.status import State
from xpmfs.workspace import EXPERIMENT_LOCK, Workspace

sys.path.insert(0, str(ROOT / "tools" / "bench"))
import adopt_synth

SCRIPT = TESTS / "adopt_xp.py"
pytestmark = pytest.mark.timeout(600)  # experimaestro runs, installed on first use


@pytest.fixture(scope="session")
def side_python(experimaestro_python: Path) -> Path:
    return experimaestro_python


def _run_experimaestro(python: Path, ws: Path, name: str, mode: str, **env: str) -> subprocess.Popen[bytes]:
    environ = {**os.environ, "XPM_LIB": "experimaestro", **env}
    environ.pop("PYTHONPATH", None)
    return subprocess.Popen(
        [str(python), str(SCRIPT), str(ws), name, mode],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
        start_new_session=True,
    )


def _sleepers(ws: Path) -> list[Path]:
    return sorted((ws / "jobs" / "__main__.sleep").glob("*/sleep.pid"))


def _kill_all(process: subprocess.Popen[bytes], ws: Path) -> None:
    """SIGKILL the experimaestro experiment, then the jobs it started (they run in sessions of
    their own), and wait until none of them holds its job's lock any more."""
    from xpmfs.experimaestro_layout import lock_held

    try:
        os.killpg(process.pid, signal.SIGKILL)  # first: the scheduler starts no job after this
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    for pid_file in _sleepers(ws):
        try:
            os.kill(json.loads(pid_file.read_text())["pid"], signal.SIGKILL)
        except (OSError, ValueError, KeyError):
            pass
    wait_until(
        lambda: not any(lock_held(str(pid_file.with_suffix(".lock"))) for pid_file in _sleepers(ws)),
        timeout=30,
        what="the killed jobs to release their locks",
    )


def _start_second(python: Path, ws: Path, done: int = 3) -> subprocess.Popen[bytes]:
    """Start experiment ``second``: done jobs, then a job that sleeps (``XPM_SLEEP``) holding its lock."""
    process = _run_experimaestro(python, ws, "second", "second", XPM_SLEEP="1")
    wait_until(lambda: _sleepers(ws), timeout=120, what="experimaestro to start a sleeping job")
    wait_until(
        lambda: len(list(ws.glob("jobs/__main__.*/*/*.done"))) >= done,
        timeout=60,
        what="the second experiment's jobs that do not sleep to end",
    )
    return process


@pytest.fixture(scope="session")
def experimaestro_ws(side_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace written by experimaestro 2.7: experiment ``first`` (2 done, one of them a
    dependency of the other, 1 with a DataPath; 1 failed) and ``second`` (done jobs, and sleeping jobs killed)."""
    ws = tmp_path_factory.mktemp("experimaestro") / "ws"
    first = _run_experimaestro(side_python, ws, "first", "first")
    first.wait(timeout=300)  # experimaestro 2.7 exits with 0 although a job failed
    second = _start_second(side_python, ws, done=6)  # with first's 3
    _kill_all(second, ws)
    return ws


@pytest.fixture
def ws(experimaestro_ws: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(experimaestro_ws, copy, symlinks=True)
    return copy


def _snapshot(root: Path, *, xpmfs_too: bool = False) -> dict[str, bytes]:
    """Every file (its content's digest) and link under ``root``; xpmfs's own files left out unless asked."""
    found = {}
    for folder, dirs, files in os.walk(root):
        rel = os.path.relpath(folder, root)
        if not xpmfs_too:
            dirs[:] = [d for d in dirs if d not in ("__xpm__", ".xpmfs", "queue", "workers", "config", "runs")]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            if not xpmfs_too and (
                ".xpmfs." in name
                or (rel.startswith("experiments") and name in ("jobs.jsonl", EXPERIMENT_LOCK) and rel.count("/") == 1)
            ):
                continue
            if os.path.islink(path):
                found[os.path.join(rel, name)] = os.readlink(path).encode()
            else:
                found[os.path.join(rel, name)] = hashlib.sha256(Path(path).read_bytes()).digest()
    return found


def _by_type(ws: Path) -> dict[str, list]:
    infos: dict[str, list] = {}
    for info in list_jobs(Workspace.open(ws)):
        infos.setdefault(info.ref.typeid.rpartition(".")[2], []).append(info)
    return infos


# -- part 2: refused before adoption ----------------------------------------------------------------


def test_an_experimaestro_workspace_is_refused_with_the_adopt_command_and_left_unchanged(ws: Path) -> None:
    from xpmfs import experiment

    before = _snapshot(ws, xpmfs_too=True)
    attempts = (
        lambda: Workspace.open(ws),
        lambda: Workspace.open(ws, create=True),
        lambda: experiment(ws, "x"),
        lambda: experiment(ws, "x", run_mode=RunMode.DRY_RUN),  # not "every job new": a real run would refuse
        lambda: experiment(ws, "x", run_mode=RunMode.GENERATE_ONLY),
    )
    for attempt in attempts:
        with pytest.raises(WorkspaceError, match="experimaestro workspace") as raised:
            attempt()
        assert f"xpmfs adopt {ws}" in str(raised.value)
    runner = CliRunner()
    for args in (
        ["ls", str(ws)],
        ["worker", str(ws), "--idle-exit", "0"],
        ["init", str(ws)],
        ["top", str(ws), "--once"],
    ):
        result = runner.invoke(cli, args)
        assert result.exit_code == 1, (args, result.output)
        assert "experimaestro workspace" in result.output and "xpmfs adopt" in result.output, result.output
    assert _snapshot(ws, xpmfs_too=True) == before


# -- part 1: adoption --------------------------------------------------------------------------------


def test_dry_run_counts_and_changes_nothing(ws: Path) -> None:
    before = _snapshot(ws, xpmfs_too=True)
    result = CliRunner().invoke(cli, ["adopt", "--dry-run", str(ws)])
    assert result.exit_code == 0, result.output
    assert "would adopt" in result.output and "nothing was changed" in result.output
    assert "experimaestro 2.7.0" in result.output
    assert _snapshot(ws, xpmfs_too=True) == before


def test_adoption_finds_done_failed_unfinished_jobs_with_tags_experiments_and_dependencies(ws: Path) -> None:
    before = _snapshot(ws)
    result = CliRunner().invoke(cli, ["adopt", str(ws)])
    assert result.exit_code == 0, result.output
    # Every file experimaestro wrote is byte-identical, and nothing of theirs is gone.
    assert _snapshot(ws) == before
    jobs = _by_type(ws)
    assert sorted(info.label for info in jobs["add"]) == ["done", "done", "done"]
    assert [info.label for info in jobs["use"]] == ["done", "done"]
    [fail] = jobs["fail"]
    assert (fail.label, fail.reason.value, fail.status.exit_code) == ("failed", "error", 1)
    assert all((info.label, info.reason.value) == ("failed", "lost") for info in jobs["sleep"])
    assert jobs["sleep"], "the killed sleeping job was not adopted as unfinished"
    # Tags and experiments come from experimaestro's run journals.
    tagged = {info.tags.get("x"): info.experiments for info in jobs["add"] if "x" in info.tags}
    assert tagged == {1: ("first",), 2: ("second",)}
    assert fail.tags == {"x": 3}
    assert [info.label for info in list_jobs(Workspace.open(ws), experiment="second", tags={"x": "2"})] == ["done"]
    # Dependencies, from params.json.
    for use in jobs["use"]:
        shown = details(Job(Workspace.open(ws), use.ref))
        assert [(ref.typeid, label) for ref, label in shown.dependencies] == [("__main__.add", "done")]
    # xpmfs log shows experimaestro's streams of a job xpmfs never ran.
    text = b"".join(read_log(Job(Workspace.open(ws), fail.ref), "err"))
    assert b"failing 3 on purpose" in text
    # A second adoption is a no-op.
    everything = _snapshot(ws, xpmfs_too=True)
    again = CliRunner().invoke(cli, ["adopt", str(ws)])
    assert again.exit_code == 0 and "adopted 0 jobs" in again.output, again.output
    assert _snapshot(ws, xpmfs_too=True) == everything


def test_an_adopted_configuration_loads_with_its_identifier(ws: Path) -> None:
    adoption.adopt(ws)
    specs = sorted(str(path) for path in ws.glob("jobs/*/*/__xpm__/spec.json"))
    code = (
        "import sys, orjson\n"
        "from xpmfs.serialization import from_dict\n"
        "for path in sys.argv[1:]:\n"
        "    spec = orjson.loads(open(path, 'rb').read())\n"
        "    config = from_dict(spec['config'])\n"
        "    assert config.__identifier__() == spec['jobid'], path\n"
        "    print(type(config).__name__, getattr(config, 'output', None))\n"
    )
    result = subprocess.run([sys.executable, "-c", code, *specs], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == len(specs) >= 8
    # Outputs are where experimaestro put them.
    for line in result.stdout.splitlines():
        kind, _, output = line.partition(" ")
        if kind == "Add":
            assert Path(output).parent.parent.name == "__main__.add" and Path(output).name == "out.txt"


# -- part 3: the same experiment, imports switched ---------------------------------------------------


def _rerun_with_xpmfs(ws: Path) -> None:
    """Run experiments ``first`` and ``second`` again with xpmfs (imports switched)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    env.pop("XPM_SLEEP", None)
    for name in ("first", "second"):
        result = subprocess.run(
            [sys.executable, str(SCRIPT), str(ws), name, name],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert (result.returncode != 0) == (name == "first"), result.stderr[-2000:]


def _stats(paths: list[Path]) -> dict[Path, tuple[int, int, int]]:
    return {path: (path.stat().st_ino, path.stat().st_mtime_ns, path.stat().st_size) for path in paths}


@pytest.mark.parametrize("lock_mode", ["local", "shared"])
def test_rerunning_the_experiment_with_xpmfs_runs_only_failed_and_unfinished_jobs(ws: Path, lock_mode: str) -> None:
    adoption.adopt(ws, lock_mode=lock_mode)
    assert Workspace.open(ws).lock_mode.value == lock_mode
    before = _snapshot(ws)
    done_before = {info.ref for info in list_jobs(Workspace.open(ws), state="done")}
    # experimaestro's experiment locks: xpmfs's runs neither write nor even open them for writing.
    their_locks = _stats(sorted(ws.glob("experiments/*/lock")))
    assert their_locks
    provisional = {ref for ref in done_before if Job(Workspace.open(ws), ref).read_spec().provisional}
    assert provisional == done_before  # adoption's specs, from params.json
    _rerun_with_xpmfs(ws)
    assert _stats(list(their_locks)) == their_locks
    if lock_mode == "local":  # a shared lock (a lease marker) is removed on release
        assert sorted(ws.glob(f"experiments/*/{EXPERIMENT_LOCK}")), "xpmfs's experiment lock has a name of its own"
    # experimaestro's files are byte-identical (new outputs of the jobs run are added): done jobs did not run again.
    after = _snapshot(ws)
    assert {name: after.get(name) for name in before} == before
    ws_ = Workspace.open(ws)
    for ref in done_before:
        job = Job(ws_, ref)
        assert not job.stdout_path.exists() and not job.stderr_path.exists(), f"{ref} ran again"
        assert not job.read_spec().provisional, f"{ref}: the submission did not replace adoption's spec"
    jobs = _by_type(ws)
    [fail] = jobs["fail"]
    assert fail.label == "failed" and fail.status.attempt == 2
    assert "failing 3 on purpose" in Path(f"{fail.folder}/fail.xpmfs.err").read_text()
    assert not Path(fail.folder, "fail.done").exists()
    for sleeper in jobs["sleep"]:
        assert sleeper.label == "done"
        assert Path(sleeper.folder, "slept.txt").read_text() == "slept\n"
        assert Path(sleeper.folder, "sleep.xpmfs.err").exists()
        # experimaestro's marker, added (empty, as experimaestro writes it): going back runs it not again.
        assert Path(sleeper.folder, "sleep.done").read_bytes() == b""
    # A workspace adopted in either lock mode is adopted again (nothing new) in the same mode.
    assert adoption.adopt(ws).adopted == 0


def test_a_worker_leaves_an_adopted_job_queued_while_experimaestro_holds_its_lock(ws: Path) -> None:
    adoption.adopt(ws)
    [folder] = [
        path
        for path in ws.glob("jobs/__main__.sleep/*")
        if json.loads((path / "params.json").read_text())["objects"][-1]["fields"]["x"] == 1
    ]
    job = Job(Workspace.open(ws), JobRef("__main__.sleep", folder.name))
    # As experimaestro's runner does for the whole run: flock(2) on <name>.lock.
    fd = os.open(folder / "sleep.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    env.pop("XPM_SLEEP", None)
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(ws), "second", "second"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    try:
        others = [Job(job.workspace, JobRef("__main__.sleep", path.name)) for path in folder.parent.iterdir()]
        others = [other for other in others if other.ref != job.ref]
        wait_until(lambda: all(other.marker() is State.DONE for other in others), timeout=120, what="the others")
        time.sleep(3.0)  # the worker looks at it again meanwhile (rescans)
        current = job.status()
        assert current is not None and current.state is State.READY and job.marker() is None, current
        assert (ws / "queue" / f"{job.ref.typeid}~{job.ref.jobid}").exists(), "left queued"
        assert not (job.path / "sleep.xpmfs.err").exists(), "never started"
    finally:
        os.close(fd)  # experimaestro's run ends: xpmfs runs it now
    _out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-2000:]
    assert job.marker() is State.DONE
    logs = b"".join(path.read_bytes() for path in ws.glob("experiments/second/runs/*/worker-*.log"))
    assert logs.count(b"is being run by experimaestro") == 1, logs[-2000:]


def test_a_job_experimaestro_is_running_is_left_to_it_then_adopted_once_ended(
    side_python: Path, tmp_path: Path
) -> None:
    ws = tmp_path / "live"
    process = _start_second(side_python, ws)
    try:
        report = adoption.adopt(ws)
        assert report.counts["running"] >= 1, report.lines()
        [pid_file, *_] = _sleepers(ws)
        assert not (pid_file.parent / "__xpm__").exists()
        assert any("being run by experimaestro" in problem for problem in report.problems)
    finally:
        _kill_all(process, ws)
    report = adoption.adopt(ws)
    assert report.counts["running"] == 0 and report.counts["unfinished"] >= 1, report.lines()


# -- part 5: back to experimaestro -------------------------------------------------------------------


def test_experimaestro_run_again_after_xpmfs_runs_no_done_job_and_leaves_xpmfs_files_alone(
    side_python: Path, ws: Path
) -> None:
    adoption.adopt(ws)
    _rerun_with_xpmfs(ws)
    theirs = set(_snapshot(ws))
    ours = {name: digest for name, digest in _snapshot(ws, xpmfs_too=True).items() if name not in theirs}
    done = list_jobs(Workspace.open(ws), state="done")
    # Done before the adoption, and done by xpmfs since (the killed sleepers): experimaestro removes
    # a job's .done before it runs it, so an unchanged .done is a job it did not run.
    markers = _stats([Path(info.folder, f"{info.ref.typeid.rpartition('.')[2]}.done") for info in done])
    assert any("sleep" in str(path) for path in markers)
    [fail] = list_jobs(Workspace.open(ws), state="failed")
    failed_before = Path(fail.folder, "fail.failed").stat().st_mtime_ns
    for name in ("first", "second"):
        _run_experimaestro(side_python, ws, name, name).wait(timeout=300)
    after = _snapshot(ws, xpmfs_too=True)
    assert {name: after.get(name) for name in ours} == ours, "experimaestro changed a file of xpmfs"
    assert _stats(list(markers)) == markers, "experimaestro ran a done job again"
    assert Path(fail.folder, "fail.failed").stat().st_mtime_ns != failed_before, "the failed job is run again"
    # xpmfs reads the workspace as before (experimaestro's new run journals are imported on request).
    assert {info.ref for info in list_jobs(Workspace.open(ws), state="done")} == {info.ref for info in done}


# -- many jobs, interrupted --------------------------------------------------------------------------


def test_an_adoption_killed_half_way_completes_when_run_again(tmp_path: Path) -> None:
    ws = tmp_path / "synth"
    counts = adopt_synth.make(ws, 400, failed=0.1, unfinished=0.05)
    before = _snapshot(ws)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "xpmfs", "adopt", str(ws)], env=env, start_new_session=True)
    try:
        wait_until(lambda: len(list(ws.glob("jobs/*/*/__xpm__"))) >= 40 or process.poll() is not None, timeout=60)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    with pytest.raises(WorkspaceError, match="xpmfs adopt"):
        Workspace.open(ws)  # not usable until an adoption has completed
    report = adoption.adopt(ws)
    assert report.counts["known"] + report.adopted == 400
    infos = list_jobs(Workspace.open(ws))
    labels = {label: sum(info.label == label for info in infos) for label in ("done", "failed")}
    assert labels == {"done": counts["done"], "failed": counts["failed"] + counts["unfinished"]}
    assert not list(ws.glob(f"jobs/*/*/{adoption.BUILDING}*"))
    assert _snapshot(ws) == before
    assert adoption.adopt(ws).adopted == 0


def test_a_folder_experimaestro_creates_after_adoption_is_adopted_when_xpmfs_submits_it(ws: Path) -> None:
    adoption.adopt(ws)
    [add] = [info for info in _by_type(ws)["add"] if info.tags.get("x") == 1]
    # As if experimaestro had made this job's folder after the adoption: no __xpm__ yet.
    shutil.rmtree(Path(add.folder, "__xpm__"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(ws), "first", "first"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert "failing 3" in result.stderr, result.stderr[-2000:]
    job = Job(Workspace.open(ws), JobRef(add.ref.typeid, add.ref.jobid))
    assert job.adopted and job.marker().value == "done"
    assert not job.read_spec().provisional  # the submission's own spec replaced none: it wrote it
    assert not job.stdout_path.exists()


def test_params_json_values_translate(tmp_path: Path) -> None:
    """Values experimaestro 2.7 writes that the real runs above do not: enums, sets, NaN, absolute
    paths, a relative DataPath (path.serialized)."""
    from xpmfs.experimaestro_layout import read_params

    folder = tmp_path / "jobs" / "m.t" / ("a" * 64)
    folder.mkdir(parents=True)
    objects = [
        {
            "id": 7,
            "module": "m",
            "type": "T",
            "typename": "m.T",
            "identifier": "a" * 64,
            "task": 7,
            "fields": {
                "e": {"type": "enum", "module": "m", "enum": "E", "value": "A"},
                "s": {"type": "set", "items": [2, 1]},
                "p": {"type": "path", "value": "/abs/x"},
                "dp": {"type": "path.serialized", "value": "rel/data", "is_folder": False},
                "f": float("nan"),
                "d": {"k": [1, 2]},
            },
        }
    ]
    (folder / "params.json").write_text(json.dumps({"version": 3, "objects": objects}))
    params = read_params(folder, tmp_path)
    fields = params.config["objects"][0]["fields"]
    assert fields == {
        "d": {"k": [1, 2]},
        "dp": {"$path": "rel/data"},  # as experimaestro's runner gives it: the value as it is
        "e": {"$enum": {"module": "m", "qualname": "E", "name": "A"}},
        "f": {"$float": "nan"},
        "p": {"$path": "/abs/x"},
        "s": {"$set": [1, 2]},
    }
    assert params.config["objects"][0]["jobpath"] == str(folder)
    assert orjson.dumps(params.config)


def test_experimaestro_1_markers_and_experiment_links_read(tmp_path: Path) -> None:
    """What spec/adopt.md says is read from 1.x's layout (files made here, not by a real 1.x)."""
    from xpmfs.experimaestro_layout import outcome, submissions

    folder = tmp_path / "jobs" / "m.task" / ("b" * 64)
    folder.mkdir(parents=True)
    (folder / "task.failed").write_text("2\n")  # 1.x: a bare exit code
    failed = outcome(str(folder), "task")
    assert (failed.state, failed.reason, failed.exit_code) == ("failed", "error", 2)
    (folder / "task.failed").write_text("0")
    assert outcome(str(folder), "task").state == "done"
    links = tmp_path / "experiments" / "old" / "jobs" / "m.task"
    links.mkdir(parents=True)
    (links / folder.name).symlink_to(folder)
    [found] = submissions(tmp_path / "experiments" / "old")
    assert (found.run, found.job, found.tags) == ("experimaestro-1", f"m.task/{folder.name}", {})


def test_adoption_takes_well_under_a_second_per_thousand_jobs(tmp_path: Path) -> None:
    ws = tmp_path / "synth"
    adopt_synth.make(ws, 300)
    began = time.monotonic()
    assert adoption.adopt(ws).adopted == 300
    assert time.monotonic() - began < 10
