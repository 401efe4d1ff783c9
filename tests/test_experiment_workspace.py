"""``xp.workspace`` as experimaestro 2.7 exposes it: ``env``, ``run_mode``, ``launcher.setenv``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xpmfs import Param, RunMode, Task, experiment
from xpmfs.errors import OptionError
from xpmfs.results import SPEC_FILE


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
