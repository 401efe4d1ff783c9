"""``xp.workspace`` as experimaestro 2.7 exposes it: ``env``, ``run_mode``, ``launcher.setenv``; and
built by hand as experimaestro's ``Workspace(settings, workspace_settings, run_mode=...)``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xpmfs import Config, ExperimentWorkspace, Meta, Param, PathGenerator, RunMode, Task, experiment, field
from xpmfs.config import typeid
from xpmfs.errors import ConfigError, NoExperimentError, OptionError
from xpmfs.results import SPEC_FILE
from xpmfs.settings import Settings, WorkspaceSettings


class Echo(Task):
    x: Param[int]

    def execute(self) -> None:
        pass


def _environ(task: Echo) -> dict[str, str]:
    assert task.jobpath is not None
    return json.loads((task.jobpath / SPEC_FILE).read_text())["environ"]  # type: ignore[no-any-return]


def test_workspace_env_run_mode_and_launcher_environment(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "e", workers=0, run_mode=RunMode.GENERATE_ONLY) as xp:
        assert xp.workspace.run_mode is RunMode.GENERATE_ONLY
        assert xp.workspace.path == tmp_path / "ws"
        xp.setenv("A", "setenv")
        xp.workspace.env["B"] = "env"  # experimaestro's setenv writes there
        xp.workspace.launcher.setenv("A", "launcher")  # the launcher's layer wins over env
        xp.workspace.launcher.setenv("C", tmp_path)
        assert xp.workspace.env == {"A": "setenv", "B": "env"} == xp.environ
        first = Echo.C(x=1)
        first.submit()
        other = Echo.C(x=2)
        other.submit(launcher=_Other())  # not the default launcher: not its environment
    assert _environ(first) == {"A": "launcher", "B": "env", "C": str(tmp_path)}
    assert _environ(other) == {"A": "setenv", "B": "env"}


def test_launcher_setenv_checks_name_and_value(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "e", workers=0, run_mode=RunMode.DRY_RUN) as xp:
        with pytest.raises(OptionError, match=r"workspace\.launcher\.setenv"):
            xp.workspace.launcher.setenv("A=B", "x")
        with pytest.raises(OptionError, match="must be a string"):
            xp.workspace.launcher.setenv("A", 1)  # type: ignore[arg-type]


class _Other:
    def to_json(self) -> dict[str, str]:
        return {"type": "direct"}


# -- experimaestro's Workspace(settings, workspace_settings, run_mode=...) outside an experiment ----


class Checkpoints(Config):
    best: Meta[Path] = field(default_factory=PathGenerator("best"))


class Learn(Task):
    checkpoints: Param[Checkpoints]
    x: Param[int]


class Load(Task):
    checkpoints: Param[Checkpoints] = field(ignore_generated=True)


def _dry(path: Path, **env: str) -> ExperimentWorkspace:
    settings = Settings(env={"G": "global", **env})
    return ExperimentWorkspace(settings, WorkspaceSettings("mine", path, env={"W": "ws"}), run_mode=RunMode.DRY_RUN)


def test_built_from_settings_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = _dry(tmp_path / "ws", W="global")
    assert (ws.path, ws.run_mode, ws.env) == (tmp_path / "ws", RunMode.DRY_RUN, {"G": "global", "W": "ws"})
    checkpoints = Checkpoints.C()
    task = Learn.C(checkpoints=checkpoints, x=1)
    task.submit(workspace=ws)
    job = ws.job_path(typeid(task), task.__identifier__())
    # Sealed for its folder in that workspace, as a dry run in an experiment seals it...
    assert checkpoints.best == job / "out" / "checkpoints" / "best"
    assert task.__xpm__.job.path == job
    assert f"[new] {typeid(task)}/{task.__identifier__()}" in capsys.readouterr().err
    assert not (tmp_path / "ws").exists()  # ...and nothing is written


def test_generated_paths_belong_to_the_first_task(tmp_path: Path) -> None:
    ws = _dry(tmp_path / "ws")
    checkpoints = Checkpoints.C()
    second = Learn.C(checkpoints=checkpoints, x=2)  # built before the first is submitted
    Learn.C(checkpoints=checkpoints, x=1).submit(workspace=ws)
    with pytest.raises(AttributeError, match="generated for another job"):
        second.submit(workspace=ws)
    with pytest.raises(AttributeError, match="generated for another job"):
        Learn.C(checkpoints=checkpoints, x=3)
    Load.C(checkpoints=checkpoints)  # field(ignore_generated=True): allowed


def test_outside_an_experiment_only_a_dry_run(tmp_path: Path) -> None:
    ws = ExperimentWorkspace(Settings(), WorkspaceSettings("mine", tmp_path / "ws"))
    assert ws.run_mode is RunMode.NORMAL
    with pytest.raises(NoExperimentError):
        Echo.C(x=1).submit(workspace=ws)
    Echo.C(x=1).submit(workspace=ws, run_mode=RunMode.DRY_RUN)  # the submission's own mode writes less
    assert not (tmp_path / "ws").exists()
    with pytest.raises(ConfigError, match="ExperimentWorkspace"):
        Echo.C(x=1).submit(workspace=tmp_path)


def test_in_an_experiment_only_its_own_workspace(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "e", workers=0, run_mode=RunMode.GENERATE_ONLY) as xp:
        with pytest.raises(OptionError, match="is not the workspace of experiment 'e'"):
            Echo.C(x=1).submit(workspace=_dry(tmp_path / "other"))
        written = Echo.C(x=2)
        written.submit(workspace=xp.workspace)
        shown = Echo.C(x=3)
        shown.submit(workspace=_dry(tmp_path / "ws"))  # its run mode (dry) applies
    assert written.__xpm__.job.path.is_dir()
    assert not shown.__xpm__.job.path.exists()
