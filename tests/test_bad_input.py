"""Bad input to the public API and the command line: a clear error, never a traceback or a broken workspace.

The contract (spec/failure-model.md, spec/cli.md): the API raises an :class:`xpmfs.Error` (or the
builtin it derives from) whose message names what is wrong and where; the CLI prints
``Error: ...`` and exits 1 (2 for bad usage), with a traceback only under ``--debug``; and a
failed operation leaves the workspace as consistent as before (a spec is written whole or not
at all).
"""

from __future__ import annotations

import errno
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result
from conftest import Processes, fill_disk, job_of, wait_until
from sample_tasks import Add, Count, Gate

from xpmfs import Error, experiment
from xpmfs.cli import main
from xpmfs.errors import ConfigError, NoExperimentError, WorkspaceError
from xpmfs.status import State
from xpmfs.workspace import Workspace

pytestmark = pytest.mark.timeout(120)


def cli(*args: object, **kwargs: Any) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], **kwargs)


def xpmfs(processes: Processes, *args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "xpmfs", *map(str, args)]
    return subprocess.run(
        command, env={**processes.env(), **(env or {})}, capture_output=True, text=True, timeout=60, check=False
    )


def _files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


# -- configuration construction ----------------------------------------------------------------

WRONG_CONFIGS: dict[str, tuple[Callable[[], object], str]] = {
    "str-for-int": (lambda: Add.C(x="one"), "Add.x"),
    "float-for-int": (lambda: Add.C(x=1.5), "Add.x"),
    "none-for-int": (lambda: Add.C(x=None), "Add.x"),
    "nan-for-int": (lambda: Add.C(x=math.nan), "Add.x"),
    "list-for-int": (lambda: Add.C(x=[1]), "Add.x"),
    "config-for-int": (lambda: Add.C(x=Count.C(n=1, counter="c")), "Add.x"),
    "wrong-config-type": (lambda: Add.C(x=1, previous=Count.C(n=1, counter="c")), "Add.previous"),
    "unknown-parameter": (lambda: Add.C(x=1, z=2), "Add.z"),
    "int-for-str": (lambda: Gate.C(name=3, gate="g"), "Gate.name"),
    "bytes-for-str": (lambda: Gate.C(name=b"x", gate="g"), "Gate.name"),
    "set-after-construction": (lambda: setattr(Add.C(x=1), "x", "two"), "Add.x"),
}


@pytest.mark.parametrize("case", list(WRONG_CONFIGS))
def test_a_wrongly_typed_configuration_is_refused_naming_the_field(case: str) -> None:
    build, where = WRONG_CONFIGS[case]
    with pytest.raises(ConfigError) as raised:
        build()
    assert isinstance(raised.value, TypeError) and isinstance(raised.value, Error)
    assert str(raised.value).startswith(where), str(raised.value)


def test_a_bool_for_an_int_is_taken_as_experimaestro_takes_it() -> None:
    # experimaestro 2.7 converts by pydantic's lax rules: True is 1 (its test_coercion[int-True-1]).
    assert Add.C(x=True).x == 1 and type(Add.C(x=True).x) is int


def test_submitting_outside_an_experiment_or_with_bad_options_is_refused(ws: Path) -> None:
    with pytest.raises(NoExperimentError, match=r"inside `with experiment"):
        Add.C(x=1).submit()
    with experiment(ws, "options", wait=False, workers=0):
        with pytest.raises(ConfigError, match=r"Add\.x"):
            Add.C().submit()  # a required parameter left unset
        with pytest.raises(TypeError, match="bogus"):
            Add.C(x=2).submit(bogus=1)
        with pytest.raises(TypeError, match="launcher"):
            Add.C(x=3).submit(launcher="slurm")
        with pytest.raises(ConfigError, match="64 bits"):
            Add.C(x=10**30).submit()  # an identifier hashes ints as int64
    assert not any((ws / "jobs").iterdir()), "a refused submission writes no job"
    assert not os.listdir(ws / "queue")


@pytest.mark.parametrize("name", ["", "a/b", ".hidden", "../escape"])
def test_a_bad_experiment_name_is_refused_before_anything_is_written(ws: Path, name: str) -> None:
    with pytest.raises(WorkspaceError, match="not a valid experiment name"):
        experiment(ws, name)
    assert not ws.exists()


def test_bad_experiment_options_are_refused(ws: Path) -> None:
    with pytest.raises(ValueError, match="workers"):
        experiment(ws, "x", workers=-1)
    with pytest.raises(ValueError, match="bogus"):
        experiment(ws, "x", lock_mode="bogus")


@pytest.mark.parametrize("lease", [0.0, -1.0, math.nan, math.inf])
def test_a_bad_lease_duration_is_refused_and_creates_nothing(ws: Path, lease: float) -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        Workspace.open(ws, create=True, lock_mode="shared", lease_duration=lease)
    assert not (ws / ".xpmfs" / "format").exists()


def test_a_huge_parameter_value_works(ws: Path, tmp_path: Path, processes: Processes) -> None:
    gate = tmp_path / "gate"
    gate.write_text("")
    huge = "x" * 10_000_000  # 10 MB
    with experiment(ws, "huge", wait=False, workers=0):
        output = Gate.C(name=huge, gate=str(gate)).submit()
    job = job_of(ws, output)
    assert orjson.loads(job.spec_path.read_bytes())["config"]["objects"][0]["fields"]["name"] == huge
    processes.worker(ws, rescan=0.3)
    wait_until(job.marker, timeout=90, what="the job with a 10 MB parameter to run")
    assert job.marker() is State.DONE, (job.path / "gate.err").read_text()
    shown = xpmfs(processes, "show", "--json", job.path)
    assert shown.returncode == 0 and orjson.loads(shown.stdout)["state"] == "done"
    assert xpmfs(processes, "ls", ws).returncode == 0
    assert xpmfs(processes, "check", ws).returncode == 0


# -- naming jobs and workspaces ----------------------------------------------------------------


@pytest.fixture
def small_ws(ws: Path) -> Path:
    with experiment(ws, "small", wait=False, workers=0):
        Add.C(x=1).submit()
        Add.C(x=2).submit()
    return ws


@pytest.mark.parametrize("command", ["show", "log", "kill", "retry"])
@pytest.mark.parametrize(
    "name, words",
    [
        ("ffffffffffff", "no such job"),
        ("no.such.type/abc", "no such job"),
        ("sample_tasks.add/", "ambiguous"),
        ("/no/such/folder/of/a/job", "no such file or folder"),
        ("", "matches nothing"),
    ],
)
def test_an_unknown_or_ambiguous_job_is_a_clear_error(small_ws: Path, command: str, name: str, words: str) -> None:
    before = _files(small_ws)
    result = cli(command, "-w", small_ws, name)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and words in result.stderr, result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert _files(small_ws) == before


def test_a_job_that_is_not_in_a_workspace_is_a_clear_error(small_ws: Path, tmp_path: Path) -> None:
    stray = tmp_path / "stray.txt"
    stray.write_text("")
    result = cli("show", stray)
    assert result.exit_code == 1 and "is not a job" in result.stderr, result.output
    result = cli("log", small_ws / "experiments")
    assert result.exit_code == 1 and "is not a job" in result.stderr, result.output


def test_the_log_of_a_job_that_never_started_is_a_clear_error(small_ws: Path) -> None:
    result = cli(
        "log", "-w", small_ws, "sample_tasks.add/" + next((small_ws / "jobs" / "sample_tasks.add").iterdir()).name
    )
    assert result.exit_code == 1 and "has not started yet" in result.stderr, result.output


def test_debug_shows_the_traceback_and_nothing_else_does(small_ws: Path, processes: Processes) -> None:
    plain = xpmfs(processes, "show", "-w", small_ws, "ffffffffffff")
    assert plain.returncode == 1 and "Traceback" not in plain.stderr and plain.stderr.startswith("Error: ")
    debug = xpmfs(processes, "--debug", "show", "-w", small_ws, "ffffffffffff")
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "JobNotFoundError" in debug.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "{ws}", "--state", "exploded"],
        ["ls", "{ws}", "--tag", "novalue"],
        ["clean", "{ws}"],
        ["worker", "{ws}", "--jobs", "0"],
        ["worker", "{ws}", "--rescan", "0"],
        ["worker", "{ws}", "--idle-exit", "-1"],
        ["check"],
        ["frobnicate", "{ws}"],
    ],
    ids=" ".join,
)
def test_bad_usage_exits_2(small_ws: Path, args: list[str]) -> None:
    result = cli(*[arg.format(ws=small_ws) for arg in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["ls", "check", "workers", "worker", "clean"])
def test_a_workspace_path_that_is_a_file_is_bad_usage(tmp_path: Path, command: str) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a workspace")
    extra = ["--failed"] if command == "clean" else []
    result = cli(command, path, *extra)
    assert result.exit_code == 2 and "a-file" in result.stderr and "is a file" in result.stderr, result.output
    result = cli("show", "-w", path, "abc")
    assert result.exit_code == 2 and "is a file" in result.stderr
    assert path.read_text() == "not a workspace"


def test_the_api_refuses_a_workspace_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_text("not a workspace")
    for open_it in (
        lambda: Workspace.open(path),
        lambda: Workspace.open(path, create=True),
        lambda: experiment(path, "x"),
    ):
        with pytest.raises(WorkspaceError, match="is not a directory") as raised:
            open_it()
        assert raised.value.path == path
    with pytest.raises(OSError, match=re.escape(str(path))):
        experiment(path / "below", "x")  # a path through a file
    assert path.read_text() == "not a workspace"


def test_a_folder_that_is_no_workspace_is_a_clear_error(tmp_path: Path) -> None:
    missing = cli("ls", tmp_path / "missing")
    assert missing.exit_code == 1 and "no workspace here" in missing.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "data.csv").write_text("1,2\n")
    other = cli("check", tmp_path / "other")
    assert other.exit_code == 1 and "is not an xpmfs workspace" in other.stderr
    assert sorted(os.listdir(tmp_path / "other")) == ["data.csv"], "nothing was created in it"


# -- read-only and full file systems -----------------------------------------------------------


def _mount_tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True, check=False
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root, CAP_SYS_ADMIN): {result.stderr.decode().strip()}")


def _unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture
def read_only_ws(tmp_path: Path) -> Iterator[Path]:
    """A workspace with one queued job, on a file system mounted read-only."""
    mount = tmp_path / "ro"
    _mount_tmpfs(mount, "4m")
    try:
        ws = mount / "ws"
        with experiment(ws, "ro", wait=False, workers=0):
            Add.C(x=1).submit()
        result = subprocess.run(["mount", "-o", "remount,ro", str(mount)], capture_output=True, check=False)
        if result.returncode != 0:
            pytest.skip(f"cannot remount read-only: {result.stderr.decode().strip()}")
        yield ws
    finally:
        _unmount(mount)


def test_a_read_only_workspace_can_be_read_and_refuses_writes_clearly(read_only_ws: Path, processes: Processes) -> None:
    ws = read_only_ws
    before = _files(ws)
    jobid = next((ws / "jobs" / "sample_tasks.add").iterdir()).name
    for args in (
        ["ls", ws],
        ["ls", ws, "--json"],
        ["show", "-w", ws, jobid],
        ["workers", ws],
        ["check", ws],
        ["check", ws, "--fix"],
    ):
        result = xpmfs(processes, *args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, (args, result.stderr)
    for args in (["worker", ws, "--idle-exit", "0.5"], ["kill", "-w", ws, jobid], ["retry", "-w", ws, jobid]):
        result = xpmfs(processes, *args)
        assert result.returncode == 1, (args, result)
        assert (
            result.stderr.startswith("Error: ")
            and "Read-only file system" in result.stderr
            and str(ws) in result.stderr
        )
        assert "Traceback" not in result.stderr
    with pytest.raises(OSError) as raised, experiment(ws, "another", wait=False, workers=0):
        pass
    assert raised.value.errno == errno.EROFS and str(ws) in str(raised.value)
    assert _files(ws) == before


FULL_DISK_SCRIPT = """
import sys
from xpmfs import experiment
from sample_tasks import Add

ws, filler = sys.argv[1], sys.argv[2]
with experiment(ws, "full", wait=sys.argv[3] == "wait", workers=0):
    if filler != "-":
        import os
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                os.write(fd, b"\\0")
        except OSError:
            pass
        os.close(fd)
    Add.C(x=7).submit()
print("submitted")
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    _mount_tmpfs(mount, "1m")
    try:
        yield mount
    finally:
        _unmount(mount)


def test_submitting_on_a_full_disk_fails_clearly_and_leaves_the_workspace_consistent(
    small_disk: Path, tmp_path: Path, processes: Processes
) -> None:
    ws = small_disk / "ws"
    Workspace.open(ws, create=True)
    script = tmp_path / "full.py"
    script.write_text(FULL_DISK_SCRIPT)
    filler = small_disk / "filler"
    run = subprocess.run(
        [sys.executable, str(script), str(ws), str(filler), "nowait"],
        env=processes.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 1 and "submitted" not in run.stdout
    assert "No space left on device" in run.stderr
    # Written whole or not at all: no spec, or one that reads; never a status or entry without a spec.
    for spec in ws.glob("jobs/*/*/__xpm__/spec.json"):
        orjson.loads(spec.read_bytes())
    assert not os.listdir(ws / "queue")
    assert not list(ws.glob("jobs/*/*/__xpm__/status.json")) or list(ws.glob("jobs/*/*/__xpm__/spec.json"))
    assert not [path for path in ws.rglob(".tmp-*")], "a failed write leaves no temporary file"
    filler.unlink()
    checked = cli("check", ws)
    assert not {"damaged-spec", "damaged-status"} & {
        line.split(": ")[1] for line in checked.stdout.splitlines() if ": " in line
    }

    processes.worker(ws, rescan=0.3)
    again = subprocess.run(
        [sys.executable, str(script), str(ws), "-", "wait"],
        env=processes.env(),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert again.returncode == 0 and "submitted" in again.stdout, again.stderr
    [job] = [path for path in ws.glob("jobs/*/*") if path.is_dir()]
    assert (job / "__xpm__" / "done").exists() and (job / "result.txt").read_text() == "7"


def test_the_full_disk_error_names_the_workspace(small_disk: Path) -> None:
    ws = small_disk / "ws"
    with experiment(ws, "full", wait=False, workers=0):
        fill_disk(small_disk / "filler")
        try:
            with pytest.raises(OSError) as raised:
                Add.C(x=8).submit()
        finally:
            (small_disk / "filler").unlink()
    assert raised.value.errno == errno.ENOSPC
    assert str(ws) in str(raised.value), str(raised.value)


def test_a_failed_experiment_run_on_a_full_disk_releases_its_lock(small_disk: Path) -> None:
    ws = small_disk / "ws"
    filler = small_disk / "filler"
    with pytest.raises(OSError), experiment(ws, "full", wait=False, workers=0):
        fill_disk(filler)
        Add.C(x=9).submit()
    filler.unlink()
    with experiment(ws, "full", wait=False, workers=0):
        Add.C(x=9).submit()


# -- names that are not UTF-8 --------------------------------------------------------------------


def _stray_names(ws: Path) -> None:
    root = os.fsencode(ws)
    for name in (b"queue/\xff", b"queue/a\xff~b", b"jobs/\xff", b"workers/\xff.json"):
        with open(root + b"/" + name, "wb") as stream:
            stream.write(b"\xff\xfe")
    for folder in (b"jobs/\xfe/\xfd", b"jobs/sample_tasks.add/\xff", b"experiments/\xff"):
        os.makedirs(root + b"/" + folder)


def test_names_that_are_not_utf8_do_not_stop_a_worker(small_ws: Path, tmp_path: Path, processes: Processes) -> None:
    _stray_names(small_ws)
    process = processes.worker(small_ws, rescan=0.3)
    wait_until(
        lambda: all(
            (job / "__xpm__" / "done").exists()
            for job in (small_ws / "jobs" / "sample_tasks.add").iterdir()
            if job.name.isascii()
        ),
        timeout=60,
        what="the worker to run the jobs next to the stray names",
    )
    assert process.poll() is None
    log = (tmp_path / "worker-0.log").read_text(errors="replace")
    assert "Traceback" not in log


def test_names_that_are_not_utf8_do_not_crash_ls_or_check(small_ws: Path, processes: Processes) -> None:
    _stray_names(small_ws)
    strict = {"PYTHONIOENCODING": "utf-8"}
    for args in (["ls", small_ws], ["ls", small_ws, "--json"], ["check", small_ws], ["check", small_ws, "--fix"]):
        result = xpmfs(processes, *args, env=strict)
        assert result.returncode in (0, 1) and "Traceback" not in result.stderr, (args, result.stderr[-500:])
    listing = xpmfs(processes, "ls", small_ws, "--json", env=strict)
    for line in listing.stdout.splitlines():
        orjson.loads(line)
    checked = xpmfs(processes, "check", small_ws, env=strict)
    assert checked.returncode == 1 and "unknown-entry" in checked.stdout
