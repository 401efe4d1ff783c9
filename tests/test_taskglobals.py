"""experimaestro's taskglobals.Env: where the running task is (xpmfs.taskglobals)."""

from __future__ import annotations

from pathlib import Path

from compat_tasks import ReadsTaskGlobals

from xpmfs import experiment
from xpmfs.taskglobals import Env


def test_outside_a_job_the_globals_are_unset() -> None:
    env = Env.instance()
    assert env is Env.instance()
    assert (env.wspath, env.taskpath, env.current_task, env.slave) == (None, None, None, False)


def test_a_job_sees_its_workspace_folder_and_task(ws: Path) -> None:
    with experiment(ws, "globals", workers=1):
        task = ReadsTaskGlobals.C().submit()
    wspath, taskpath, is_self = task.out.read_text().splitlines()
    assert Path(wspath) == ws and Path(taskpath) == task.__xpm__.job.path and is_self == "True"
