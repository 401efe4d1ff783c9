"""The workspace's files: format, status state machine, markers, queue, journals."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import pytest
from conftest import wait_until

from xpmfs import status, watch
from xpmfs.errors import CorruptedError, FormatError, WorkspaceError
from xpmfs.journal import Journal, read
from xpmfs.lock import LockMode
from xpmfs.queue import Entries, JobRef, add, contains, refs, remove
from xpmfs.status import Reason, State, TransitionError, transition
from xpmfs.watch import Watcher
from xpmfs.workspace import Workspace


def test_create_then_open(ws: Path) -> None:
    created = Workspace.open(ws, create=True)
    assert created.lock_mode is LockMode.LOCAL
    assert orjson.loads((ws / ".xpmfs" / "format").read_bytes())["format"] == "xpmfs/1"
    for folder in ("queue", "workers", "experiments", "jobs", "config"):
        assert (ws / folder).is_dir()
    assert Workspace.open(ws) == created


def test_lock_mode_mismatch_names_the_fix(ws: Path) -> None:
    Workspace.open(ws, create=True, lock_mode="shared")
    with pytest.raises(FormatError) as caught:
        Workspace.open(ws, lock_mode="local")
    message = str(caught.value)
    assert "format" in message and "'shared'" in message and "lock_mode='shared'" in message


def test_unknown_format_version_is_refused(ws: Path) -> None:
    Workspace.open(ws, create=True)
    (ws / ".xpmfs" / "format").write_bytes(b'{"format": "xpmfs/9", "lock_mode": "local"}')
    with pytest.raises(FormatError, match="xpmfs/9"):
        Workspace.open(ws)


def test_garbage_format_file(ws: Path) -> None:
    Workspace.open(ws, create=True)
    (ws / ".xpmfs" / "format").write_bytes(b"\x00garbage")
    with pytest.raises(FormatError, match="cannot be read"):
        Workspace.open(ws)


def test_workspace_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(WorkspaceError, match="is not a directory"):
        Workspace.open(path, create=True)
    assert path.read_text() == "x"


def test_non_workspace_folder_is_not_adopted(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    with pytest.raises(WorkspaceError, match="not an xpmfs workspace"):
        Workspace.open(tmp_path)


# -- state machine ------------------------------------------------------------------------------


def test_transitions_write_status_then_marker(tmp_path: Path) -> None:
    transition(tmp_path, State.READY)
    running = transition(tmp_path, State.RUNNING, pid=123)
    assert running.attempt == 1 and running.host and running.started
    assert status.terminal_marker(tmp_path) is None
    done = transition(tmp_path, State.DONE)
    assert done.state is State.DONE and done.ended
    assert status.terminal_marker(tmp_path) is State.DONE
    assert orjson.loads((tmp_path / "status.json").read_bytes())["state"] == "done"


def test_failed_marker_holds_reason(tmp_path: Path) -> None:
    transition(tmp_path, State.WAITING)
    transition(tmp_path, State.FAILED, reason=Reason.DEPENDENCY, message="dependency x failed")
    failure = status.read_failure(tmp_path)
    assert (failure["reason"], failure["message"]) == ("dependency", "dependency x failed")
    assert failure["ended"] == status.read(tmp_path).ended  # type: ignore[union-attr]
    # The marker is the final status itself (a hard link): one atomic call.
    assert os.path.samefile(tmp_path / status.FAILED_MARKER, tmp_path / status.STATUS_FILE)


def test_a_marker_survives_the_next_status_and_is_never_replaced(tmp_path: Path) -> None:
    transition(tmp_path, State.READY)
    transition(tmp_path, State.RUNNING)
    transition(tmp_path, State.DONE)
    done = orjson.loads((tmp_path / status.DONE_MARKER).read_bytes())
    assert done["state"] == "done" and done["ended"] is not None
    transition(tmp_path, State.READY)  # a resubmission: the marker goes first, the status is replaced
    assert not (tmp_path / status.DONE_MARKER).exists()
    running = transition(tmp_path, State.RUNNING)
    for name in (status.FAILED_MARKER, status.DONE_MARKER):  # left there by someone else
        (tmp_path / name).write_bytes(b"left by hand")
        with pytest.raises(status.TransitionError, match="exists already"):
            transition(tmp_path, State.FAILED, message="boom")
        # Nothing written: the outcome marked first stands, for `xpmfs check` to report.
        assert status.read(tmp_path) == running and (tmp_path / name).read_bytes() == b"left by hand"
        (tmp_path / name).unlink()


def test_a_process_whose_attempt_was_replaced_records_nothing(tmp_path: Path) -> None:
    transition(tmp_path, State.READY)
    mine = transition(tmp_path, State.RUNNING, host="node-a")
    # The lease was taken over while this process was frozen: another attempt ran to its end.
    transition(tmp_path, State.READY, current=mine, message="previous run ended without a status")
    theirs = transition(tmp_path, State.RUNNING, host="node-b")
    theirs = transition(tmp_path, State.DONE, current=theirs)
    for to in (State.DONE, State.FAILED, State.READY):
        with pytest.raises(status.Superseded, match="attempt 1 is no longer the job's current attempt") as raised:
            transition(tmp_path, to, current=mine, fence=mine.attempt)
        assert raised.value.current == theirs
    assert status.read(tmp_path) == theirs and status.terminal_marker(tmp_path) is State.DONE
    assert not (tmp_path / status.FAILED_MARKER).exists()
    with pytest.raises(status.TransitionError, match="cannot go back"):
        transition(tmp_path, State.READY, attempt=1)


def test_resubmission_clears_marker_and_keeps_history(tmp_path: Path) -> None:
    transition(tmp_path, State.READY)
    transition(tmp_path, State.RUNNING)
    transition(tmp_path, State.FAILED, reason=Reason.ERROR)
    again = transition(tmp_path, State.READY)
    assert again.reason is None and again.attempt == 1
    assert status.terminal_marker(tmp_path) is None
    history = [line for _, line in read(tmp_path / "history.jsonl")]
    assert [entry["state"] for entry in history] == ["failed"]
    assert transition(tmp_path, State.RUNNING).attempt == 2


@pytest.mark.parametrize(
    ("path", "to"),
    [((), State.DONE), ((State.READY, State.RUNNING, State.DONE), State.RUNNING), ((State.READY,), State.DONE)],
)
def test_forbidden_transitions(tmp_path: Path, path: tuple[State, ...], to: State) -> None:
    for state in path:
        transition(tmp_path, state)
    with pytest.raises(TransitionError, match=f"to {to.value}"):
        transition(tmp_path, to)


def test_corrupt_status_names_path_and_fix(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_bytes(b'{"state": "runn')
    with pytest.raises(CorruptedError) as caught:
        status.read(tmp_path)
    assert str(tmp_path / "status.json") in str(caught.value)
    assert "xpmfs check --fix" in str(caught.value)
    (tmp_path / "status.json").write_bytes(b'{"state": "sleeping"}')
    with pytest.raises(CorruptedError, match="not a valid job status"):
        status.read(tmp_path)


def test_status_reads_records_with_unknown_and_missing_fields(tmp_path: Path) -> None:
    (tmp_path / "status.json").write_bytes(b'{"state": "ready", "future_field": 1}')
    assert status.read(tmp_path) == status.Status(state=State.READY)


# -- queue ---------------------------------------------------------------------------------------


def test_queue_entries(tmp_path: Path) -> None:
    ref = JobRef("my.task", "ab" * 32)
    add(tmp_path, ref)
    add(tmp_path, ref)  # idempotent
    assert contains(tmp_path, ref)
    (tmp_path / ".tmp-junk").write_text("")
    (tmp_path / "no-separator").write_text("")
    assert list(refs(tmp_path)) == [ref]
    remove(tmp_path, ref)
    remove(tmp_path, ref)
    assert list(refs(tmp_path)) == []


def test_queue_view_keeps_submission_order_from_listings_and_from_reported_changes(tmp_path: Path) -> None:
    refs = [JobRef("my.task", f"{n:064x}") for n in range(4)]
    for n, ref in enumerate(refs[:3]):
        add(tmp_path, ref)
        os.utime(tmp_path / ref.entry_name, (1000 + n, 1000 + n))  # submitted in this order
    (tmp_path / ".tmp-junk").write_text("")
    entries = Entries(tmp_path)
    entries.refresh()
    assert [ref for _, ref in entries] == refs[:3]
    # Changes as inotify reports them: one entry gone, one new (older than the rest), one noise.
    remove(tmp_path, refs[1])
    add(tmp_path, refs[3])
    os.utime(tmp_path / refs[3].entry_name, (999, 999))
    entries.refresh([refs[1].entry_name, refs[3].entry_name, ".tmp-junk", "gone-already"])
    assert [ref for _, ref in entries] == [refs[3], refs[0], refs[2]]
    assert entries.unsettled({refs[0].entry_name}) == [(refs[3].entry_name, refs[3]), (refs[2].entry_name, refs[2])]
    entries.settle(refs[3].entry_name)
    assert entries.unsettled() == [(refs[0].entry_name, refs[0]), (refs[2].entry_name, refs[2])]
    # A change nobody reported (another NFS client) shows at the next full listing.
    remove(tmp_path, refs[0])
    entries.refresh([])
    assert len(entries) == 3
    entries.refresh()
    assert [ref for _, ref in entries] == [refs[3], refs[2]]
    # A job submitted again: its entry comes back, newer, and is listed once, at its new place.
    add(tmp_path, refs[1])
    os.utime(tmp_path / refs[1].entry_name, (2000, 2000))
    entries.refresh([refs[1].entry_name])
    assert [ref for _, ref in entries] == [refs[3], refs[2], refs[1]]
    remove(tmp_path, refs[3])
    add(tmp_path, refs[0])
    os.utime(tmp_path / refs[0].entry_name, (500, 500))
    entries.refresh([refs[3].entry_name, refs[0].entry_name])
    assert [ref for _, ref in entries] == [refs[0], refs[2], refs[1]]
    # refs[0] came back: unsettled again; refs[3], settled, is gone.
    rest = entries.unsettled({refs[2].entry_name})
    assert rest == [(refs[0].entry_name, refs[0]), (refs[1].entry_name, refs[1])]


def _inotify_masks(folder: Path) -> list[int]:
    """The masks this process's inotify watches on ``folder`` have, as the kernel keeps them."""
    inode = f"ino:{os.stat(folder).st_ino:x} "
    masks = []
    for info in Path("/proc/self/fdinfo").iterdir():
        try:
            text = info.read_text()
        except OSError:
            continue  # a descriptor closed meanwhile
        for line in text.splitlines():
            if line.startswith("inotify wd:") and inode in line:
                masks.append(int(line.split("mask:")[1].split()[0], 16))
    return masks


def test_watchers_ask_inotify_for_names_only_unless_told(tmp_path: Path, watcher_backend: str) -> None:
    """Opens, writes and closes of queue entries (and listings of the queue) must not reach
    workers and experiments: each event costs two watchdog threads a wake-up per process."""
    created, deleted, moved = 0x100, 0x200, 0x40 | 0x80
    contents = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20  # access, modify, attrib, close, open
    with Watcher([tmp_path], rescan=60):
        (mask,) = _inotify_masks(tmp_path)
    assert mask & created and mask & deleted and mask & moved == moved
    assert mask & contents == 0, hex(mask)
    (tmp_path / "record").write_text("")  # before watching: no event of its own is pending
    with Watcher([tmp_path], rescan=60, contents=True) as watcher:
        (mask,) = _inotify_masks(tmp_path)
        assert mask & 0x4 and mask & 0x8, hex(mask)  # attrib (a heartbeat), close after writing
        watcher.wait(0)  # the first wait is a full rescan
        os.utime(tmp_path / "record")
        assert watcher.wait(10) is False and watcher.woken  # woken by the touch, well before 10 s


@pytest.fixture(params=["inotify", "observer"])
def watcher_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a Watcher can watch: watchdog's inotify reader (Linux), or its Observer (elsewhere)."""
    if request.param == "observer":
        monkeypatch.setattr(watch, "InotifyFD", None)
    return str(request.param)


def test_watcher_reports_the_names_that_changed(tmp_path: Path, watcher_backend: str) -> None:
    with Watcher([tmp_path], rescan=60, track=True) as watcher:
        watcher.wait(0)  # the first wait is a full rescan
        (tmp_path / "a").write_text("")
        (tmp_path / "b").write_text("")
        os.rename(tmp_path / "b", tmp_path / "c")
        wanted = {str(tmp_path / name) for name in "abc"}
        seen: set[str] = set()

        def all_seen() -> bool:
            seen.update(watcher.take_changed())
            return seen >= wanted

        wait_until(all_seen, timeout=10, what="inotify to report a, b and c")
        assert seen == wanted
        assert watcher.take_changed() == set()


def test_a_watcher_wakes_on_an_event_and_leaves_no_thread_behind(tmp_path: Path) -> None:
    """Whatever threads watchdog runs inside (its own business), a stopped watcher leaves none:
    a notebook or a long-lived worker opens and closes watchers many times."""
    before = set(threading.enumerate())
    with Watcher([tmp_path], rescan=60) as watcher:
        assert watcher.wait(0) is True  # the first wait is a full rescan
        (tmp_path / "entry").touch()
        assert watcher.wait(10) is False and watcher.woken  # the event, long before the rescan
    wait_until(lambda: set(threading.enumerate()) <= before, timeout=10, what="the watcher's threads to end")


def test_a_watched_folder_that_goes_makes_the_next_wait_a_full_rescan(tmp_path: Path) -> None:
    folder = tmp_path / "queue"
    folder.mkdir()
    with Watcher([folder], rescan=60, track=True) as watcher:
        assert watcher.wait(0) is True  # the first wait is a full rescan
        assert watcher.wait(0) is False
        os.rmdir(folder)  # inotify can say nothing more about it: only a listing can
        assert watcher.wait(10) is True and watcher.woken  # at once, not after 60 s


def test_job_ref_round_trips() -> None:
    ref = JobRef("a.b.c", "0123")
    assert JobRef.from_entry_name(ref.entry_name) == ref
    assert JobRef.from_relpath(ref.relpath) == ref


# -- journals ------------------------------------------------------------------------------------


def test_journal_tolerates_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append({"n": 1})
        journal.append({"n": 2})
    with open(path, "ab") as stream:
        stream.write(b'{"n": 3')  # a writer died mid-line
    records = list(read(path))
    assert [record["n"] for _, record in records] == [1, 2]
    assert records[-1][0] == len(b'{"n":1}\n{"n":2}\n')
    with Journal(path) as journal:  # the next writer ends the torn line first
        journal.append({"n": 4})
    with pytest.warns(UserWarning, match="damaged line"):
        assert [record["n"] for _, record in read(path)] == [1, 2, 4]


def test_journal_resumes_from_offset(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with Journal(path) as journal:
        journal.append({"n": 1})
        ((offset, _),) = read(path)
        journal.append({"n": 2})
    assert [record["n"] for _, record in read(path, offset=offset)] == [2]
    assert list(read(tmp_path / "missing.jsonl")) == []


def test_atomic_write_leaves_no_temp(tmp_path: Path) -> None:
    from xpmfs import _atomic

    _atomic.write_json(tmp_path / "x.json", {"a": 1})
    assert _atomic.create_bytes(tmp_path / "y", b"1")
    assert not _atomic.create_bytes(tmp_path / "y", b"2")
    assert (tmp_path / "y").read_bytes() == b"1"
    assert sorted(os.listdir(tmp_path)) == ["x.json", "y"]


def test_the_public_namespace_is_complete_and_lazy() -> None:
    """Every public name resolves; ``import xpmfs`` alone loads neither the experiment's watcher
    (watchdog) nor filelock, whose fork hooks every job forked from the warm runner would pay for."""
    import xpmfs

    assert set(xpmfs.__all__) == {*xpmfs._EXPORTS, "__version__"}
    for name in xpmfs.__all__:
        assert getattr(xpmfs, name) is not None, name
    probe = "import sys, xpmfs.runner; print(sorted(m for m in ('watchdog', 'filelock') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    # A submodule spelled like a public name never hides it, whichever is imported first.
    code = "import xpmfs.experiment, xpmfs.cache, xpmfs.progress, xpmfs; print(xpmfs.experiment, xpmfs.progress)"
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "module" not in shown, shown


def test_the_package_binds_only_its_own_submodules() -> None:
    """``xpmfs.types`` is xpmfs's (the type objects), not the standard library's, and importing it
    first does not break the lazy modules that the package binds later (``xpmfs.cli`` binds several)."""
    code = (
        "from xpmfs import types; print(types.__name__)\n"
        "import xpmfs.types, xpmfs.cli; print(xpmfs.types.Type.__module__)"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.split() == ["xpmfs.types", "xpmfs._types"]
