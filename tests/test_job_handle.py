"""``task.__xpm__.job`` (issue 20): what experimaestro 2.7's ``Job`` offers scripts, on xpmfs's
:class:`~xpmfs.experiment.JobHandle`: ``dependencies``, ``stdout``/``stderr`` and ``wait()``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sample_tasks import Add, Fail

from xpmfs import FailedExperiment, experiment
from xpmfs.errors import ConfigError, WorkspaceError
from xpmfs.experiment import JobDependency, JobHandle
from xpmfs.job import ADOPTED_FILE, Job
from xpmfs.queue import JobRef
from xpmfs.runmode import RunMode
from xpmfs.status import State
from xpmfs.workspace import Workspace


def test_wait_returns_the_end_state_and_the_streams_are_the_jobs(ws: Path) -> None:
    with pytest.raises(FailedExperiment), experiment(ws, "handle", workers=1):
        first = Add.C(x=1, y=2).submit()
        second = Add.C(x=3, previous=first).submit()
        failing = Fail.C().submit()
        handle = second.__xpm__.job
        assert handle.wait() is State.DONE  # blocks until it ended: its dependency ran first
        assert second.result.read_text() == "6"
        assert first.__xpm__.job.state is State.DONE
        assert handle.wait() is State.DONE  # ended: at once
        assert failing.__xpm__.job.wait() is State.FAILED  # a failure is returned, not raised
        assert "RuntimeError: failing on purpose" in failing.__xpm__.job.stderr.read_text()
    job = Job(Workspace.open(ws), handle.ref)
    assert handle.stdout == job.stdout_path and handle.stderr == job.stderr_path
    assert handle.stdout.name == "add.out" and handle.stdout.is_file()
    assert handle.config is second
    # experimaestro's shortcuts on the task itself
    assert second.job is handle and second.wait() is State.DONE
    assert second.stdout() == handle.stdout and second.stderr() == handle.stderr


def test_the_task_shortcuts_need_a_submission() -> None:
    task = Add.C(x=1)
    assert task.job is None
    for shortcut in (task.stdout, task.stderr, task.wait):
        with pytest.raises(ConfigError, match="not submitted in an experiment"):
            shortcut()


def test_dependencies_as_experimaestro_lists_them(ws: Path) -> None:
    # experimaestro's test_dependencies checks them in a dry run: nothing is written or queued.
    with experiment(ws, "deps", run_mode=RunMode.DRY_RUN):
        first = Add.C(x=1).submit()
        second = Add.C(x=2, previous=first)
        second.submit()
        alone = first.__xpm__.job
        assert alone.dependencies == set()
        (dependency,) = second.__xpm__.job.dependencies
        assert isinstance(dependency, JobDependency)
        assert dependency.origin is alone and dependency.origin.config is first
        assert dependency.target is second.__xpm__.job
        with pytest.raises(WorkspaceError, match=r"not queued.*dry or generate-only"):
            alone.wait()  # nothing would ever run it
    assert not ws.exists()


def test_the_streams_of_an_adopted_folder(tmp_path: Path) -> None:
    # experimaestro's <name>.out stays its own; xpmfs's runs write <name>.xpmfs.out beside it.
    workspace = Workspace.open(tmp_path / "ws", create=True)
    job = Job(workspace, JobRef("sample_tasks.add", "a" * 64))
    job.xpm_dir.mkdir(parents=True)
    (job.xpm_dir / ADOPTED_FILE).write_text("{}")
    handle = JobHandle(Job(workspace, job.ref))
    assert handle.stdout == job.path / "add.xpmfs.out"  # neither exists: where xpmfs will write
    (job.path / "add.out").write_text("experimaestro's run\n")
    (job.path / "add.err").write_text("")
    assert handle.stdout == job.path / "add.out" and handle.stderr == job.path / "add.err"
    (job.path / "add.xpmfs.out").write_text("xpmfs's run\n")
    assert handle.stdout == job.path / "add.xpmfs.out" and handle.stderr == job.path / "add.err"
    assert os.fspath(handle.stdout) == f"{os.fspath(job)}/add.xpmfs.out"
