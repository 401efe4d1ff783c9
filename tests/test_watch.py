"""The file watcher survives overload: lost events and errors in dispatch mean a full rescan.

watchdog calls the watcher back from its dispatch thread; an exception there (even a missing
callback method) ends that thread and the inotify reader for the rest of the process, and every
worker, experiment and ``top`` would then wake only at its rescan deadline, silently.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from xpmfs import watch
from xpmfs.watch import Watcher

QUEUED_EVENTS = Path("/proc/sys/fs/inotify/max_queued_events")


@pytest.fixture(params=["inotify", "observer"])
def watcher_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a Watcher can watch: watchdog's inotify reader (Linux), or its Observer (elsewhere)."""
    if request.param == "observer":
        monkeypatch.setattr(watch, "InotifyFD", None)
    elif watch.InotifyFD is None:
        pytest.skip("no inotify here: the watcher uses watchdog's Observer")
    return str(request.param)


def _wait_for(watcher: Watcher, seen: Callable[[bool], bool], timeout: float = 10.0) -> bool:
    """Wait on ``watcher`` until ``seen(full)`` is true (``full``: what ``wait`` returned) or timeout."""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        if seen(watcher.wait(remaining)):
            return True
    return False


def _still_wakes(watcher: Watcher, folder: Path, name: str) -> bool:
    """Whether creating ``name`` in ``folder`` wakes ``watcher`` by an event (not the rescan timer)."""
    path = str(folder / name)
    changed: set[str] = set()
    (folder / name).touch()

    def woken_with_it(full: bool) -> bool:
        changed.update(watcher.take_changed())
        return watcher.woken and path in changed

    return _wait_for(watcher, woken_with_it)


def test_an_inotify_queue_overflow_is_a_full_rescan_and_the_watcher_lives_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A real overflow: the kernel queues events while nobody reads them, past its limit."""
    if watch.InotifyFD is None:
        pytest.skip("no inotify here: the watcher uses watchdog's Observer")
    try:
        limit = int(QUEUED_EVENTS.read_text())
    except (OSError, ValueError) as error:
        pytest.skip(f"cannot read {QUEUED_EVENTS} ({error}): the size of the kernel's queue is unknown")
    if limit > 200_000:
        pytest.skip(f"{QUEUED_EVENTS} is {limit}: overflowing it would take too long")
    folder = tmp_path / "queue"
    folder.mkdir()
    caplog.set_level(logging.WARNING, logger="xpmfs.watch")
    # The watches exist once the Watcher is built; its reader starts with start(). Until then the
    # kernel queues every event, and past its limit it drops them and queues IN_Q_OVERFLOW.
    watcher = Watcher([folder], rescan=60, track=True)
    try:
        for number in range(limit + 10):
            os.close(os.open(folder / f"e{number}", os.O_WRONLY | os.O_CREAT, 0o644))
        watcher.start()
        watcher.wait(0)  # the first wait is a full rescan, whatever happened
        assert _wait_for(watcher, lambda full: full and watcher.woken), "the overflow did not make a full rescan"
        assert _still_wakes(watcher, folder, "after-overflow"), "the watcher died with the overflow"
        again = Watcher([folder], rescan=60, track=True)  # a second overflow, for the log
        try:
            for number in range(limit + 10):
                os.rename(folder / f"e{number}", folder / f"f{number}")
            again.start()
            again.wait(0)
            assert _wait_for(again, lambda full: full and again.woken)
        finally:
            again.stop()
    finally:
        watcher.stop()
    told = [record for record in caplog.records if record.name == "xpmfs.watch"]
    assert len(told) == 2, [record.getMessage() for record in told]  # once per watcher
    assert all("overflowed" in record.getMessage() and str(folder) in record.getMessage() for record in told)


def test_an_error_in_event_dispatch_is_a_full_rescan_logged_once(
    tmp_path: Path, watcher_backend: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="xpmfs.watch")
    with Watcher([tmp_path], rescan=60, track=True) as watcher:
        watcher.wait(0)  # the first wait is a full rescan
        notify = watcher._notify
        failures = 0

        def broken(path: str | None, *, lost: bool = False) -> None:
            nonlocal failures
            if path is not None and os.path.basename(path).startswith("bad"):
                failures += 1
                raise RuntimeError("a bug in dispatch")
            notify(path, lost=lost)

        monkeypatch.setattr(watcher, "_notify", broken)
        (tmp_path / "bad-1").touch()
        assert _wait_for(watcher, lambda full: full and watcher.woken), "the error did not make a full rescan"
        (tmp_path / "bad-2").touch()  # the same error again: logged once only
        assert _wait_for(watcher, lambda full: full and watcher.woken)
        assert failures >= 2
        assert _still_wakes(watcher, tmp_path, "good"), "the watcher died with the error"
    told = [record for record in caplog.records if record.name == "xpmfs.watch"]
    assert len(told) == 1, [record.getMessage() for record in told]
    assert "a bug in dispatch" in told[0].getMessage() and str(tmp_path) in told[0].getMessage()
