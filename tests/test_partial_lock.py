"""One job at a time uses a partial folder (xpmfs.partial_lock; spec/workspace.md, "partials")."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from partial_tasks import Learn, Slow, Sub

from xpmfs import experiment
from xpmfs.partial_lock import declared_partials, hold, lock_path, partial_folders
from xpmfs.workspace import Workspace


def test_the_locked_folders_are_the_task_classs_own_partials(tmp_path: Path) -> None:
    task = Learn.C(max_iter=10, learning_rate=0.1, sub=Sub.C(x=2))
    job = tmp_path / "jobs" / "test.partial.learn" / task.__identifier__()
    assert sorted(declared_partials(task)) == ["checkpoints", "no_group", "only_lr"]  # experimaestro's _partials
    folders = partial_folders(task, job)
    task.__xpm__.seal(job)
    assert task.path.parent in folders and folders == sorted(folders)
    assert lock_path(folders[0]) == folders[0] / ".experimaestro" / "locks" / "xpmfs.lock"


def test_a_second_holder_waits_and_says_for_what(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    first, second = Slow.C(n=1), Slow.C(n=2)  # the same partial identifier
    paths = [tmp_path / "ws" / "jobs" / "test.partial.slow" / t.__identifier__() for t in (first, second)]
    assert partial_folders(first, paths[0]) == partial_folders(second, paths[1])
    order: list[str] = []

    def run_second() -> None:
        with hold(second, paths[1], ws):
            order.append("second")

    with hold(first, paths[0], ws):
        thread = threading.Thread(target=run_second)
        thread.start()
        time.sleep(1.5)
        order.append("first done")
    thread.join(timeout=30)
    assert order == ["first done", "second"]
    assert "xpmfs: waiting for partial folder" in capsys.readouterr().err


@pytest.mark.timeout(120)
def test_jobs_sharing_a_partial_folder_never_overlap(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "partial-lock", workers=2):
        tasks = [Slow.C(n=n) for n in (1, 2)]
        for task in tasks:
            task.submit()
    assert tasks[0].folder == tasks[1].folder
    lines = [line.split() for line in (tasks[0].folder / "log.txt").read_text().splitlines()]
    assert [kind for kind, _, _ in lines] == ["start", "end", "start", "end"]  # one after the other
    assert lines[0][1] == lines[1][1] and lines[2][1] == lines[3][1]
