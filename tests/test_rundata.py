"""``xp.save`` / ``xp.load``, ``xp.workdir`` and ``xp.resultspath`` (experimaestro 2.7's names; xpmfs.rundata)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rundata_xp import Saved

from xpmfs import RunMode, experiment
from xpmfs.adopt import adopt
from xpmfs.errors import OptionError

TESTS = Path(__file__).resolve().parent


def _save(ws: Path, name: str, value: int, *, save_as: str = "default") -> str:
    with experiment(ws, name, workers=0) as xp:
        xp.save([Saved.C(value=value)], name=save_as)
        return xp.run_id


def test_a_later_experiment_loads_what_a_run_saved(ws: Path) -> None:
    first = _save(ws, "train", 1)
    folder = ws / "experiments" / "train" / "runs" / first / "data" / "default"
    assert sorted(os.listdir(folder)) == ["experimaestro.json"]
    with experiment(ws, "analysis", workers=0) as xp:
        [loaded] = xp.load("train")
    assert isinstance(loaded, Saved) and loaded.value == 1
    assert loaded.__identifier__() == Saved.C(value=1).__identifier__()


def test_the_latest_save_of_the_name_wins_and_a_run_can_be_chosen(ws: Path) -> None:
    first = _save(ws, "train", 1)
    _save(ws, "train", 2)
    _save(ws, "train", 3, save_as="other")  # the latest run, which saved no "default"
    with experiment(ws, "analysis", workers=0) as xp:
        assert [s.value for s in xp.load("train")] == [2]
        assert [s.value for s in xp.load("train", run_id=first)] == [1]
        assert [s.value for s in xp.load("train", name="other")] == [3]


def test_nothing_saved_says_where_it_looked(ws: Path) -> None:
    _save(ws, "train", 1)
    with experiment(ws, "analysis", workers=0) as xp:
        with pytest.raises(FileNotFoundError, match=r"no data saved as 'best' by experiment 'train'.*xp\.save"):
            xp.load("train", name="best")
        with pytest.raises(FileNotFoundError, match=r"by run 'nope' of experiment 'train'"):
            xp.load("train", run_id="nope")
        with pytest.raises(OptionError, match=r"^xp\.save\(name=\.\.\.\): '\.\./x' cannot name a folder"):
            xp.save([Saved.C(value=1)], name="../x")
    assert not (ws / "experiments" / "x").exists()


def test_a_dry_run_saves_nothing_and_has_no_results_folder(ws: Path) -> None:
    with experiment(ws, "check", run_mode=RunMode.DRY_RUN) as xp:
        xp.save([Saved.C(value=1)])
        assert xp.workdir.name == "dry-run"
        with pytest.raises(RuntimeError, match=r"xp\.resultspath is not available in dry-run mode"):
            xp.resultspath  # noqa: B018 -- the property raises
    assert not ws.exists()


def test_workdir_and_resultspath_are_in_the_run_folder(ws: Path) -> None:
    with experiment(ws, "train", workers=0) as xp:
        assert xp.workdir == ws / "experiments" / "train" / "runs" / xp.run_id
        assert xp.workdir.is_dir()
        assert xp.resultspath == xp.workdir / "results"
    with pytest.raises(RuntimeError, match=r"inside `with experiment"):
        experiment(ws, "later").workdir  # noqa: B018 -- the property raises


@pytest.mark.timeout(300)
def test_what_experimaestro_saved_loads_after_adoption(tmp_path: Path, experimaestro_python: Path) -> None:
    ws = tmp_path / "ws"
    environ = {**os.environ, "XPM_LIB": "experimaestro", "PYTHONPATH": str(TESTS)}
    made = subprocess.run(
        [str(experimaestro_python), str(TESTS / "rundata_xp.py"), str(ws), "theirs", "7"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    adopt(ws)
    with experiment(ws, "ours", workers=0) as xp:
        [loaded] = xp.load("theirs")
    assert isinstance(loaded, Saved) and loaded.value == 7
    mine = subprocess.run(
        [sys.executable, str(TESTS / "rundata_xp.py"), str(ws), "ours", "8"],
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert mine.returncode == 0, mine.stderr[-2000:]
    with experiment(ws, "later", workers=0) as xp:
        assert [s.value for s in xp.load("ours")] == [8]
