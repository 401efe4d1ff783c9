"""settings.yaml's env and workspace ids, and xp.setenv, as experimaestro 2.7 has them (issue 20).

Also home of the task the real-process test runs (the runner imports this module by name).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import orjson
import pytest
from conftest import Processes, job_of

from xpmfs import Meta, Param, SubmitHook, Task, experiment, settings
from xpmfs.errors import SettingsError
from xpmfs.settings import WorkspaceSettings

NAMES = ("XPMFS_T_GLOBAL", "XPMFS_T_WS", "XPMFS_T_SET", "XPMFS_T_HOOK", "XPMFS_T_KEPT")


class ShowEnv(Task):
    """Writes the values of NAMES it sees, one ``NAME=value`` a line (``-`` when unset)."""

    n: Param[int]
    out: Meta[str]

    def execute(self) -> None:
        lines = [f"{name}={os.environ.get(name, '-')}" for name in NAMES]
        Path(self.out).write_text("\n".join(lines) + "\n")


class HookEnv(SubmitHook):
    def spec(self) -> str:
        return "hook-env"

    def process(self, job: object, launcher: object) -> None:
        job.environ["XPMFS_T_HOOK"] = "from the hook"  # type: ignore[attr-defined]
        job.environ["XPMFS_T_SET"] = "hook wins"  # type: ignore[attr-defined]


@HookEnv()
class HookedShowEnv(ShowEnv):
    """ShowEnv with a submit hook that sets two variables."""


@pytest.fixture
def settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "settings.yaml"
    monkeypatch.setenv(settings.ENV_SETTINGS, str(path))
    return path


def test_env_global_and_per_workspace_with_interpolation(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XPMFS_T_SOURCE", "/from/env")
    monkeypatch.delenv("XPMFS_T_UNSET", raising=False)
    settings_file.write_text(
        "env:\n"
        "  A: ${env:XPMFS_T_SOURCE}/a\n"
        "  B: ${oc.env.XPMFS_T_SOURCE}\n"
        "  C: ${env:XPMFS_T_UNSET}\n"
        "  N: 3\n"
        "  F: yes\n"
        "workspaces:\n"
        "  - id: mine\n    path: ${env:XPMFS_T_HOME}/ws\n    env: {A: own, D: '1.5'}\n"
    )
    monkeypatch.setenv("XPMFS_T_HOME", str(tmp_path))
    loaded = settings.load()
    assert dict(loaded.env) == {
        "A": "/from/env/a",
        "B": "/from/env",
        "C": "${env:XPMFS_T_UNSET}",
        "N": "3",
        "F": "True",
    }
    entry = loaded.by_id("mine")
    assert (
        entry is not None and entry.path == (tmp_path / "ws").resolve() and dict(entry.env) == {"A": "own", "D": "1.5"}
    )
    merged = loaded.environment_for(entry)
    assert merged["A"] == "own" and merged["B"] == "/from/env" and merged["D"] == "1.5"
    assert settings.environment_for(tmp_path / "ws") == merged
    # Interpolation takes the environment of each load, even from the cached file.
    monkeypatch.setenv("XPMFS_T_SOURCE", "/changed")
    assert settings.load().env["B"] == "/changed"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("env: [A]", "env"),
        ("env: {A: [1, 2]}", "env.A"),
        ("env: {A: null}", "env.A"),
        ("workspaces: [{id: w, path: /x, env: {B: {c: d}}}]", "workspaces[0].env.B"),
    ],
)
def test_a_bad_env_names_the_file_and_the_field(settings_file: Path, text: str, field: str) -> None:
    settings_file.write_text(text)
    with pytest.raises(SettingsError) as caught:
        settings.load()
    assert caught.value.field == field and str(caught.value).startswith(f"{settings_file}: {field}: ")


def test_environment_precedence_reaches_the_job_and_never_the_identifier(
    settings_file: Path, ws: Path, tmp_path: Path, processes: Processes
) -> None:
    settings_file.write_text(
        "env: {XPMFS_T_GLOBAL: global, XPMFS_T_WS: global, XPMFS_T_SET: global, XPMFS_T_KEPT: global}\n"
        f"workspaces: [{{id: w, path: {ws}, env: {{XPMFS_T_WS: workspace, XPMFS_T_SET: workspace}}}}]\n"
    )
    out = tmp_path / "env.txt"
    processes.worker(ws)
    with experiment(ws, "env", workers=0) as xp:
        assert xp.environ["XPMFS_T_WS"] == "workspace"
        xp.setenv("XPMFS_T_SET", "setenv")
        xp.setenv("XPMFS_T_KEPT", "not taken", override=False)  # set by the settings already
        xp.setenv("XPMFS_T_KEPT", "not taken either", override=False)
        plain = ShowEnv.C(n=1, out=str(out)).submit()
        HookedShowEnv.C(n=2, out=str(tmp_path / "hooked.txt")).submit()
    seen = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert seen == {
        "XPMFS_T_GLOBAL": "global",
        "XPMFS_T_WS": "workspace",
        "XPMFS_T_SET": "setenv",
        "XPMFS_T_HOOK": "-",
        "XPMFS_T_KEPT": "global",
    }
    hooked = dict(line.split("=", 1) for line in (tmp_path / "hooked.txt").read_text().splitlines())
    assert hooked["XPMFS_T_HOOK"] == "from the hook" and hooked["XPMFS_T_SET"] == "hook wins"
    assert hooked["XPMFS_T_WS"] == "workspace"  # hooks add to the environment, the rest stays
    spec = orjson.loads(job_of(ws, plain).spec_path.read_bytes())
    assert spec["environ"]["XPMFS_T_SET"] == "setenv"
    # The environment is no part of the identifier: the same task without any env is the same job.
    assert job_of(ws, plain).ref.jobid == ShowEnv.C(n=1, out=str(out)).__identifier__()


def test_setenv_refuses_what_cannot_be_an_environment_variable(ws: Path) -> None:
    from xpmfs.errors import OptionError

    with experiment(ws, "bad-env", wait=False, workers=0) as xp:
        with pytest.raises(OptionError, match="not an environment variable name"):
            xp.setenv("A=B", "x")
        with pytest.raises(OptionError, match="must be a string"):
            xp.setenv("A", 3)  # type: ignore[arg-type]
        xp.setenv("P", Path("/some/path"))
        assert xp.environ["P"] == "/some/path"


# -- workspace ids ---------------------------------------------------------------------------------


def test_a_workspace_id_resolves_to_its_path_and_settings(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "data" / "ws"
    settings_file.write_text(
        f"workspaces:\n  - id: other\n    path: {tmp_path / 'other'}\n  - id: mine\n    path: {target}\n"
        "    max_retries: 7\n    env: {XPMFS_T_WS: mine}\n    launcher: {type: slurm, time: 5}\n"
    )
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    with experiment("mine", "by-id", wait=False, workers=0) as xp:
        assert xp.workspace.path == target.resolve() and xp.settings is not None and xp.settings.id == "mine"
        assert xp.max_retries == 7 and xp.environ["XPMFS_T_WS"] == "mine"
        assert xp.launcher is not None and xp.launcher.to_json()["type"] == "slurm"
    assert os.listdir(cwd) == [], "an id must not create a folder in the current directory"
    # experimaestro's WorkspaceSettings object is accepted as well.
    entry = settings.get_workspace("mine")
    assert entry is not None and settings.get_workspace() == settings.load().by_id("other")
    with experiment(entry, "by-object", wait=False, workers=0) as xp:
        assert xp.workspace.path == target.resolve()
    with experiment(WorkspaceSettings("", tmp_path / "plain"), "plain", wait=False, workers=0) as xp:
        assert xp.workspace.path == (tmp_path / "plain").resolve() and xp.max_retries == 3
    assert settings.find_workspace(workspace="mine") == entry
    assert settings.find_workspace(workdir=tmp_path / "x").path == (tmp_path / "x").resolve()


def test_an_unknown_id_is_an_error_naming_the_file_and_the_ids(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file.write_text(f"workspaces: [{{id: mine, path: {tmp_path / 'm'}}}, {{id: yours, path: /y}}]\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SettingsError) as caught:
        experiment("mien", "typo")
    message = str(caught.value)
    assert message.startswith(f"{settings_file}: workspaces: no workspace has the id 'mien'")
    assert "(ids: 'mine', 'yours')" in message and "'./mien'" in message
    assert not (tmp_path / "mien").exists() and not (tmp_path / "m").exists()
    with pytest.raises(SettingsError, match="no workspace has the id 'mien'"):
        settings.find_workspace(workspace="mien")
    # A path, or a plain name that is an existing folder, is a path (as in experimaestro).
    with experiment("./mien", "path", wait=False, workers=0) as xp:
        assert xp.workspace.path == tmp_path / "mien"
    with experiment("mien", "existing", wait=False, workers=0) as xp:
        assert xp.workspace.path == tmp_path / "mien"
    with experiment(Path("new"), "path-object", wait=False, workers=0) as xp:
        assert xp.workspace.path == tmp_path / "new"


def test_without_listed_workspaces_a_plain_name_is_a_new_folder(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_file.write_text("env: {A: b}\n")
    monkeypatch.chdir(tmp_path)
    with experiment("workspace", "readme", wait=False, workers=0) as xp:
        assert xp.workspace.path == tmp_path / "workspace"
    assert (tmp_path / "workspace" / ".xpmfs" / "format").exists()


def test_an_id_wins_over_a_folder_of_the_same_name_and_says_so(
    settings_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings_file.write_text(f"workspaces: [{{id: mine, path: {tmp_path / 'real'}}}]\n")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    with (
        caplog.at_level(logging.WARNING, logger="xpmfs.settings"),
        experiment("mine", "x", wait=False, workers=0) as xp,
    ):
        assert xp.workspace.path == (tmp_path / "real").resolve()
    assert "is the id of" in caplog.text and "'./mine'" in caplog.text
    assert os.listdir(tmp_path / "mine") == []


def test_setenv_reaches_only_jobs_submitted_after_it_and_never_an_existing_job(ws: Path, tmp_path: Path) -> None:
    """spec/workspace.md, "When the environment is fixed": at the job's first submission."""
    with experiment(ws, "timing", wait=False, workers=0) as xp:
        before = ShowEnv.C(n=1, out=str(tmp_path / "1")).submit()
        xp.setenv("XPMFS_T_SET", "first run")
        after = ShowEnv.C(n=2, out=str(tmp_path / "2")).submit()
    assert "XPMFS_T_SET" not in job_of(ws, before).read_spec().environ
    assert job_of(ws, after).read_spec().environ["XPMFS_T_SET"] == "first run"
    with experiment(ws, "timing", wait=False, workers=0) as xp:
        xp.setenv("XPMFS_T_SET", "second run")
        again = ShowEnv.C(n=2, out=str(tmp_path / "2")).submit()
    assert job_of(ws, again).read_spec().environ["XPMFS_T_SET"] == "first run"  # the spec is immutable
