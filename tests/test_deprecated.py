"""``xpmfs deprecated`` / ``fix_deprecated``: jobs of deprecated configurations, linked under their new ids."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from deprecated_tasks import Current, Renamed

from xpmfs import RunMode, experiment
from xpmfs.check import check
from xpmfs.cli import main
from xpmfs.config import typeid
from xpmfs.deprecated import fix_deprecated
from xpmfs.errors import OptionError
from xpmfs.queue import JobRef
from xpmfs.status import State
from xpmfs.workspace import Workspace


def _ref(task: object) -> JobRef:
    return JobRef(typeid(task), task.__identifier__())  # type: ignore[attr-defined]


@pytest.mark.timeout(120)
def test_done_jobs_are_linked_under_their_new_identifiers(tmp_path: Path) -> None:
    path = tmp_path / "ws"
    with experiment(path, "before"):
        ran = Renamed.C(x=1)
        ran.submit()
    with experiment(path, "before", run_mode=RunMode.GENERATE_ONLY):
        written = Renamed.C(x=2)  # a folder, never run
        written.submit()
        taken = Renamed.C(x=3)
        taken.submit()
        Current.C(x=3).submit()  # its new name is taken by another job
    old = {x: _ref(task) for x, task in ((1, ran), (2, written), (3, taken))}
    ws = Workspace.open(path)

    Renamed.__xpmtype__.deprecate()  # type: ignore[attr-defined]
    new = {x: _ref(Current.C(x=x)) for x in (1, 2, 3)}
    assert _ref(Renamed.C(x=1)) == new[1] != old[1]

    listed = fix_deprecated(path)  # without fix: a listing, nothing written
    assert {(d.old, d.new, d.action) for d in listed} == {
        (old[1], new[1], "found"),
        (old[2], new[2], "found"),
        (old[3], new[3], "conflict"),
    }
    assert not os.path.lexists(ws.job_path(new[1].typeid, new[1].jobid))

    fixed = {d.old: d.action for d in fix_deprecated(ws, fix=True)}
    assert fixed == {old[1]: "linked", old[2]: "not-done", old[3]: "conflict"}
    link = ws.job_path(new[1].typeid, new[1].jobid)
    assert link.is_symlink() and not os.path.isabs(os.readlink(link))
    assert link.resolve() == ws.job_path(old[1].typeid, old[1].jobid)
    assert not os.path.lexists(ws.job_path(new[2].typeid, new[2].jobid))
    again = {d.old: d.action for d in fix_deprecated(ws, fix=True)}
    assert again == {old[1]: "linked-already", old[2]: "not-done", old[3]: "conflict"}
    assert not [p for p in check(ws, verify=False) if p.kind == "spec-mismatch"]  # a link is no job of its own

    old_spec = ws.job_path(old[1].typeid, old[1].jobid) / "__xpm__" / "spec.json"
    spec_before = old_spec.read_bytes()
    with experiment(path, "after", workers=0) as xp:  # found done through the link: nothing to run
        current = Current.C(x=1)
        current.submit()
        assert current.__xpm__.job.state is State.DONE
        assert xp.jobs[new[1]].path == link
    assert old_spec.read_bytes() == spec_before  # the old job's spec is not "repaired" through the link

    result = CliRunner().invoke(main, ["deprecated", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{old[1].relpath} -> {new[1].relpath}: linked-already" in result.output
    assert f"{old[2].relpath} -> {new[2].relpath}: found" in result.output  # without --fix: listed only


def test_cleanup_is_refused_and_an_empty_workspace_has_nothing(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    with pytest.raises(OptionError, match="cleanup"):
        fix_deprecated(ws, fix=True, cleanup=True)
    assert fix_deprecated(ws.path, fix=True) == []
    result = CliRunner().invoke(main, ["deprecated", str(ws.path)])
    assert result.exit_code == 0
    assert "no job of a deprecated configuration" in result.output
