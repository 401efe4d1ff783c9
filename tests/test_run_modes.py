"""Run modes (dry run, generate only) and experimaestro 2.7's other experiment() options (issue 20)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import orjson
import pytest
from conftest import Processes, job_of
from sample_tasks import Add, Fail

import xpmfs
from xpmfs import RunMode, experiment
from xpmfs.errors import FailedExperiment, OptionError
from xpmfs.status import State


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root`` with its size and modification time."""
    found: dict[str, tuple[int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (info.st_size, info.st_mtime_ns)
    return found


def test_run_mode_values_are_experimaestros() -> None:
    assert [mode.value for mode in RunMode] == ["normal", "generate", "dry-run", "prepare"]
    assert RunMode("dry-run") is RunMode.DRY_RUN and RunMode.GENERATE_ONLY == "generate"
    assert xpmfs.RunMode is RunMode
    with pytest.raises(OptionError, match=r"run_mode=.*unknown run mode 'dry'.*'dry-run'"):
        experiment("ws", "x", run_mode="dry")


def test_a_dry_run_writes_nothing_and_lists_each_job_with_its_state(
    ws: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with experiment(ws, "check", run_mode=RunMode.DRY_RUN) as xp:
        a = Add.C(x=1).submit()
        b = Add.C(x=2, previous=a).submit()  # outputs chain as in a normal run
        Add.C(x=1).submit()  # twice: listed once
        xp.wait()  # returns at once
        assert xp.run_mode is RunMode.DRY_RUN and len(xp.jobs) == 2
        assert a.__xpm__.job.state is State.WAITING  # a job with no folder (a property)
    assert not ws.exists(), "a dry run creates nothing, not even the workspace"
    err = capsys.readouterr().err
    first = Add.C(x=1)
    first.__xpm__.seal()  # a task given as a value must have a job, or be sealed (as one loaded)
    ids = [first.__identifier__(), Add.C(x=2, previous=first).__identifier__()]
    assert f"[new] sample_tasks.add/{ids[0]}\n   launcher: direct\n" in err
    assert f"[new] sample_tasks.add/{ids[1]}\n   launcher: direct\n   depends on: sample_tasks.add/{ids[0]}" in err
    assert err.count(f"[new] sample_tasks.add/{ids[0]}") == 1
    assert "check: dry-run: 2 job(s): 2 new; nothing was written" in err
    assert b.__xpm__.job.ref.jobid == ids[1]


@pytest.mark.timeout(120)
def test_a_dry_run_shows_what_the_workspace_holds_and_changes_no_file(
    ws: Path, processes: Processes, capsys: pytest.CaptureFixture[str]
) -> None:
    processes.worker(ws, jobs=2)
    with pytest.raises(FailedExperiment), experiment(ws, "first", workers=0):
        Add.C(x=1, y=1).submit()
        Fail.C().submit()
    capsys.readouterr()
    processes.reap()  # no worker writes while we compare
    before = _snapshot(ws)
    with experiment(ws, "first", run_mode="dry-run", port=-1):
        done = Add.C(x=1, y=1).submit()
        Fail.C().submit()
        Add.C(x=5, previous=done).submit()
    assert _snapshot(ws) == before
    err = capsys.readouterr().err
    assert f"[done] sample_tasks.add/{Add.C(x=1, y=1).__identifier__()}" in err
    assert f"[failed] sample_tasks.fail/{Fail.C().__identifier__()}" in err
    assert "first: dry-run: 3 job(s): 1 done, 1 failed, 1 new; nothing was written" in err


@pytest.mark.timeout(120)
def test_generate_only_writes_the_jobs_and_a_normal_run_queues_them(
    ws: Path, processes: Processes, capsys: pytest.CaptureFixture[str]
) -> None:
    with experiment(ws, "gen", run_mode=RunMode.GENERATE_ONLY) as xp:
        first = Add.C(x=20, y=1).submit()
        second = Add.C(x=1, previous=first).submit()
        xp.wait()
    job = job_of(ws, second)
    spec = orjson.loads(job.spec_path.read_bytes())
    assert spec["dependencies"] == [job_of(ws, first).ref.relpath]
    assert job.script_path.exists() and job_of(ws, second).marker() is None
    assert second.__xpm__.job.state is State.WAITING and first.__xpm__.job.state is State.READY
    assert os.listdir(ws / "queue") == [], "generate-only queues nothing"
    assert os.listdir(ws / "workers") == [] and os.listdir(ws / "experiments") == []
    assert "gen: generate: 2 job(s): 2 new; nothing was queued" in capsys.readouterr().err
    # Generated again: the listing says what is there; nothing is reset or queued.
    with experiment(ws, "gen", run_mode=RunMode.GENERATE_ONLY):
        Add.C(x=1, previous=Add.C(x=20, y=1).submit()).submit()
    assert "[ready] sample_tasks.add/" in capsys.readouterr().err and os.listdir(ws / "queue") == []
    # A normal run queues what was generated, and a worker runs it.
    processes.worker(ws)
    with experiment(ws, "gen", workers=0):
        output = Add.C(x=1, previous=Add.C(x=20, y=1).submit()).submit()
    assert job_of(ws, output).marker() is State.DONE
    assert (job_of(ws, output).path / "result.txt").read_text() == "22"


def test_a_submission_can_be_dry_inside_a_normal_run(ws: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with experiment(ws, "mixed", wait=False, workers=0) as xp:
        real = Add.C(x=1).submit()
        shown = Add.C(x=2).submit(run_mode=RunMode.DRY_RUN)
        assert list(xp.jobs) == [job_of(ws, real).ref]
    assert job_of(ws, real).spec_path.exists() and not job_of(ws, shown).path.exists()
    assert f"[new] sample_tasks.add/{Add.C(x=2).__identifier__()}" in capsys.readouterr().err
    # A dry run stays dry, whatever a submission asks.
    with experiment(ws, "dry", run_mode=RunMode.DRY_RUN):
        kept = Add.C(x=3).submit(run_mode=RunMode.NORMAL)
    assert not job_of(ws, kept).path.exists()


def test_experimaestro_options_are_accepted_and_the_ignored_ones_say_so(ws: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with experiment(
            ws,
            "quiet",
            wait=False,
            workers=0,
            port=-1,  # asks for no web server: what xpmfs does anyway
            register_signals=False,
            project_paths=[Path(".")],
            dirty_git="warn",
            no_db=True,
            no_environmental_impact=True,
        ):
            pass
    assert [str(w.message) for w in caught] == []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with experiment(
            ws,
            "loud",
            wait=False,
            workers=0,
            host="0.0.0.0",
            port=12345,
            token="t",
            wait_for_quit=True,
            dirty_git="error",
        ):
            pass
    messages = [str(w.message) for w in caught]
    assert [message.split("=")[0] for message in messages] == [
        "experiment(host",
        "experiment(port",
        "experiment(token",
        "experiment(wait_for_quit",
        "experiment(dirty_git",
    ]
    assert all(w.category is UserWarning and w.filename == __file__ for w in caught)
    assert "is ignored: xpmfs has no web monitor yet" in messages[1]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        experiment(ws, "x", colour="red")  # type: ignore[call-arg]
    # experimaestro's name for the workspace argument.
    with experiment(env=ws, name="by-env", wait=False, workers=0) as xp:
        assert xp.workspace.path == ws
    with pytest.raises(TypeError, match="workspace twice"):
        experiment(ws, "x", env=ws)


def test_job_state_is_a_property(ws: Path, processes: Processes) -> None:
    processes.worker(ws)
    with experiment(ws, "state", workers=0) as xp:
        output = Add.C(x=3).submit()
        xp.wait()
        assert output.__xpm__.job.state is State.DONE
        assert output.__xpm__.job.state == "done"


def test_generated_job_runs_by_hand(ws: Path, processes: Processes) -> None:
    with experiment(ws, "by-hand", run_mode=RunMode.GENERATE_ONLY):
        output = Add.C(x=4, y=3).submit()
    job = job_of(ws, output)
    run = processes.start([sys.executable, str(job.script_path)], log=ws.parent / "by-hand.log")
    assert run.wait(timeout=60) == 0, (ws.parent / "by-hand.log").read_text()
    assert job.marker() is State.DONE and (job.path / "result.txt").read_text() == "7"
