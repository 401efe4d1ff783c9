"""``@cache("name")``: the folder, the lock, the root, and two real processes computing at once."""

from __future__ import annotations

import json
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Processes, wait_until
from seed_tasks import Terms, UseTerms

from xpmfs import Config, Param, experiment
from xpmfs.cache import CacheRoot, cache, current_root, folder_for, set_root
from xpmfs.cli import main as cli
from xpmfs.config import typeid
from xpmfs.errors import CacheError, ConfigError
from xpmfs.job import Job
from xpmfs.lock import JobLock, LockMode
from xpmfs.status import State
from xpmfs.workspace import Workspace


class Probe(Config):
    """Records what its cached method was given, and whether the lock was held meanwhile."""

    x: Param[int] = 1

    @cache("probe.txt")
    def compute(self, path: Path, extra: int = 0, *, twice: bool = False) -> tuple[Path, int, bool, bool]:
        lock = JobLock(path.with_name("probe.txt.lock"), _mode(path))
        return path, extra, twice, lock.probe()

    @cache("loop.txt")
    def loop(self, path: Path) -> None:
        self.loop()  # waits for itself: refused

    @cache("broken.txt")
    def broken(self, path: Path) -> None:
        raise RuntimeError("broken")


def _mode(path: Path) -> LockMode:
    root = current_root()
    assert root is not None
    return root.lock_mode


@pytest.fixture
def root(ws: Path) -> Iterator[Workspace]:
    """This process's cache root is ``ws/config`` while the test runs."""
    workspace = Workspace.open(ws, create=True)
    previous = set_root(workspace)
    try:
        yield workspace
    finally:
        set_root(previous)


def test_the_method_gets_its_path_in_the_configs_folder(root: Workspace) -> None:
    probe = Probe.C(x=3)
    path, extra, twice, locked = probe.compute(7, twice=True)
    folder = root.path / "config" / typeid(probe) / probe.__identifier__()
    assert folder == folder_for(probe) and typeid(probe) == "test_cache.probe"
    assert path == folder / "probe.txt"
    assert (extra, twice) == (7, True)  # other arguments pass through
    assert locked  # the lock is held while the method runs...
    assert not JobLock(folder / "probe.txt.lock", LockMode.LOCAL).probe()  # ... and released after
    assert folder_for(Probe.C(x=4)) != folder  # one folder per configuration


def test_a_failing_method_releases_the_lock(root: Workspace) -> None:
    probe = Probe.C()
    with pytest.raises(RuntimeError, match="broken"):
        probe.broken()
    assert not JobLock(folder_for(probe) / "broken.txt.lock", LockMode.LOCAL).probe()


def test_a_method_that_waits_for_itself_is_refused(root: Workspace) -> None:
    with pytest.raises(CacheError, match="must not call itself"):
        Probe.C().loop()


def test_without_a_root_the_error_says_where_to_call_it() -> None:
    previous = set_root(None)
    try:
        with pytest.raises(CacheError, match=r"Probe: no cache root.*inside a running job or a `with experiment"):
            Probe.C().compute()
    finally:
        set_root(previous)


def test_bad_uses_are_refused(root: Workspace) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        cache("a/b")
    with pytest.raises(ValueError, match="plain file name"):
        cache("")

    class NotAConfig:
        @cache("x")
        def method(self, path: Path) -> None:
            pass

    with pytest.raises(ConfigError, match=r"derive the class from xpmfs\.Config"):
        NotAConfig().method()
    error = CacheError("Terms", "no cache root", "call it in a job")
    assert str(pickle.loads(pickle.dumps(error))) == str(error) == "Terms: no cache root; call it in a job"


def test_set_root_returns_the_previous_one(tmp_path: Path) -> None:
    first = set_root(tmp_path / "a")
    try:
        assert current_root() == CacheRoot(tmp_path / "a", LockMode.LOCAL)
        assert set_root(CacheRoot(tmp_path / "b", LockMode.SHARED, 10.0)) == CacheRoot(tmp_path / "a")
        assert current_root() == CacheRoot(tmp_path / "b", LockMode.SHARED, 10.0)
    finally:
        set_root(first)


def test_shared_lock_mode_uses_a_lease(ws: Path) -> None:
    workspace = Workspace.open(ws, create=True, lock_mode="shared")
    previous = set_root(workspace)
    try:
        probe = Probe.C()
        path, _, _, locked = probe.compute()
        assert locked
        # A lease marker exists only while held: nothing is left once the method returned.
        assert sorted(p.name for p in path.parent.iterdir()) == []
    finally:
        set_root(previous)


def test_two_threads_compute_once(root: Workspace, tmp_path: Path) -> None:
    counter = tmp_path / "computed"
    gate = tmp_path / "gate"
    terms = Terms.C(vocabulary="p q", counter=str(counter), gate=str(gate))
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(terms.load())) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(counter.exists, what="a thread to compute")
    gate.write_text("")
    for thread in threads:
        thread.join(timeout=30)
    assert results == [{"p": 0.5, "q": 0.5}] * 2
    assert len(counter.read_text().splitlines()) == 1


@pytest.mark.timeout(120)
def test_two_processes_one_computes_the_other_waits_then_reuses(
    ws: Path, tmp_path: Path, processes: Processes, root: Workspace
) -> None:
    """A job's process computes (held at a gate); this test's process calls the same method meanwhile."""
    counter = tmp_path / "computed"
    gate = tmp_path / "gate"
    terms = Terms.C(vocabulary="u v w x", counter=str(counter), gate=str(gate))
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "cache", wait=False, workers=0):
        first = UseTerms.C(terms=terms, n=1)
        first.submit()
    job = Job(root, first.__xpm__.job.ref)
    wait_until(counter.exists, what="the job to start computing")
    lock = JobLock(folder_for(terms) / "terms.npy.lock", LockMode.LOCAL)
    assert lock.probe()  # the job holds the file's lock while it computes

    results: list[object] = []
    here = threading.Thread(target=lambda: results.append(terms.load()), daemon=True)
    here.start()
    # Without the lock this process would compute at once (a second line) and then also wait at the
    # gate; with it, it waits for the lock. Either way it cannot end while the gate is closed.
    here.join(timeout=0.5)
    assert here.is_alive() and len(counter.read_text().splitlines()) == 1

    gate.write_text("")
    here.join(timeout=60)
    assert not here.is_alive()
    wait_until(lambda: job.marker() is State.DONE, what="the job to end")
    expected = {word: 0.25 for word in "uvwx"}
    assert results == [expected]
    assert json.loads((job.path / "terms.json").read_text()) == expected
    assert counter.read_text().splitlines() == [f"computed {job.status().pid}"]  # type: ignore[union-attr]


def test_xpmfs_clean_and_check_leave_config_alone(ws: Path, processes: Processes, root: Workspace) -> None:
    terms = Terms.C(vocabulary="k")
    assert terms.load() == {"k": 1.0}
    cached = folder_for(terms) / "terms.npy"
    before = cached.read_bytes()
    processes.worker(ws, rescan=0.5)
    with experiment(ws, "clean", workers=0):
        use = UseTerms.C(terms=terms)
        use.submit()
    job = Job(root, use.__xpm__.job.ref)
    # The done marker comes before the worker releases the job's lock; clean keeps a locked job.
    wait_until(lambda: not job.lock().probe(), what="the worker to release the job")
    runner = CliRunner()
    cleaned = runner.invoke(cli, ["clean", str(ws), "--done", "--failed", "--workers", "--yes"])
    assert cleaned.exit_code == 0, cleaned.output
    assert "removed:" in cleaned.output  # the done job went...
    assert not any((ws / "jobs").glob("*/*/__xpm__"))
    checked = runner.invoke(cli, ["check", str(ws), "--fix"])
    assert checked.exit_code in (0, 1), checked.output
    assert "config" not in checked.output
    assert cached.read_bytes() == before  # ... the cache stayed
    assert sorted(p.name for p in cached.parent.iterdir()) == ["terms.npy", "terms.npy.lock"]


def test_cache_works_in_the_experiment_process(ws: Path) -> None:
    previous = set_root(None)
    try:
        with experiment(ws, "in-experiment", wait=False, workers=0):
            terms = Terms.C(vocabulary="e")
            assert terms.load() == {"e": 1.0}
        assert (ws / "config" / typeid(terms) / terms.__identifier__() / "terms.npy").is_file()
        assert current_root() is None  # restored when the experiment ends
    finally:
        set_root(previous)
