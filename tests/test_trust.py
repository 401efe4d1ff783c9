"""A shared workspace cannot be used to run code as someone else (spec/workspace.md, "Trust").

A job spec names the code a worker runs. A worker runs only specs (and ``<name>.py`` scripts)
owned by its own user or by a user it was told to trust; any other job is refused, said once in
its log, and left exactly as it is. The tests give files to user ``nobody`` with ``chown``, which
needs root.
"""

from __future__ import annotations

import os
import pickle
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from conftest import Processes, job_of, wait_until
from sample_tasks import Count

from xpmfs import DirectLauncher, SlurmLauncher, experiment
from xpmfs.cli import main
from xpmfs.errors import UntrustedError, WorkspaceError
from xpmfs.job import Job
from xpmfs.status import State
from xpmfs.trust import Trust, resolve_user

try:
    NOBODY = pwd.getpwnam("nobody").pw_uid
except KeyError:  # pragma: no cover - every Linux we run on has one
    NOBODY = None

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or NOBODY is None,
    reason="giving a file to another user (chown to nobody) needs root and a user nobody",
)


def _worker(
    processes: Processes, ws: Path, log: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "xpmfs", "worker", str(ws), "--rescan", "0.1", *extra]
    return processes.start(args, log=log, env=env or processes.env())


def _left_in_place(ws: Path, job: Job, status_before: bytes) -> None:
    """The refused job is exactly as it was: same status, queue entry there, never run."""
    assert job.marker() is None
    assert (job.xpm_dir / "status.json").read_bytes() == status_before
    assert (ws / "queue" / job.ref.entry_name).exists()
    assert not job.stdout_path.exists() and not job.stderr_path.exists()  # no runner ever started


def _refusals(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "refusing job" in line]


def _check(processes: Processes, ws: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "xpmfs", "check", str(ws), *extra]
    return subprocess.run(args, capture_output=True, text=True, env=processes.env(), timeout=60, check=False)


@needs_root
def test_a_worker_runs_only_specs_of_its_user_unless_told_to_trust_another(
    ws: Path, tmp_path: Path, processes: Processes
) -> None:
    counter = tmp_path / "counter"
    with experiment(ws, "trust", wait=False, workers=0):
        foreign = job_of(ws, Count.C(n=1, counter=str(counter)).submit())
        own = job_of(ws, Count.C(n=2, counter=str(counter)).submit())
    os.chown(foreign.spec_path, NOBODY, NOBODY)
    status_before = (foreign.xpm_dir / "status.json").read_bytes()

    # --idle-exit: the refused job must not keep the worker busy; some 10 rescans look at it.
    log = tmp_path / "worker.log"
    worker = _worker(processes, ws, log, "--idle-exit", "1")
    assert worker.wait(timeout=60) == 0
    assert own.marker() is State.DONE
    assert [line.split()[0] for line in counter.read_text().splitlines()] == ["2"]  # the foreign task never ran
    _left_in_place(ws, foreign, status_before)
    refusals = _refusals(log)
    assert len(refusals) == 1, log.read_text()  # said once, not once per rescan
    assert "ERROR" in refusals[0] and str(foreign.spec_path) in refusals[0]
    assert f"nobody (uid {NOBODY})" in refusals[0] and "--trust-user nobody" in refusals[0]

    trusting = _worker(processes, ws, tmp_path / "trusting.log", "--idle-exit", "1", "--trust-user", "nobody")
    assert trusting.wait(timeout=60) == 0
    assert foreign.marker() is State.DONE
    assert sorted(line.split()[0] for line in counter.read_text().splitlines()) == ["1", "2"]


@needs_root
def test_code_named_by_a_foreign_spec_is_never_imported_by_a_worker_nor_by_check(
    ws: Path, tmp_path: Path, processes: Processes
) -> None:
    """What an attacker with write access to the workspace would do: put a spec naming their own
    module in a job folder, and let workers (or `xpmfs check`, which imports tasks to verify them)
    import it."""
    probe = tmp_path / "imported"
    code = tmp_path / "attacker"
    code.mkdir()
    (code / "trust_probe.py").write_text(f"open({str(probe)!r}, 'w').close()\nclass Count: pass\n")
    with experiment(ws, "attack", wait=False, workers=0):
        evil = job_of(ws, Count.C(n=1, counter=str(tmp_path / "counter")).submit())
    record = orjson.loads(evil.spec_path.read_bytes())
    record["config"]["objects"][0]["type"]["module"] = "trust_probe"
    record["sys_path"] = [str(code), *record["sys_path"]]
    evil.spec_path.write_bytes(orjson.dumps(record))
    os.chown(evil.spec_path, NOBODY, NOBODY)
    spec_before = evil.spec_path.read_bytes()
    status_before = (evil.xpm_dir / "status.json").read_bytes()

    log = tmp_path / "worker.log"
    assert _worker(processes, ws, log, "--idle-exit", "0.5").wait(timeout=60) == 0
    assert not probe.exists()
    _left_in_place(ws, evil, status_before)
    assert len(_refusals(log)) == 1

    for extra in ((), ("--fix",)):
        result = _check(processes, ws, *extra)
        lines = [line for line in result.stdout.splitlines() if ": untrusted-spec: " in line]
        assert result.returncode == 1 and len(lines) == 1, result.stdout + result.stderr
        assert lines[0].startswith(f"{evil.spec_path}: untrusted-spec: owned by nobody (uid {NOBODY})")
        assert "--trust-user nobody" in lines[0] and "[fixed]" not in lines[0]
        assert not probe.exists()  # not imported to verify it
        # --fix never touches it: same file, same owner, same content; the job still queued.
        assert evil.spec_path.stat().st_uid == NOBODY and evil.spec_path.read_bytes() == spec_before
        _left_in_place(ws, evil, status_before)

    trusted = _check(processes, ws, "--trust-user", "nobody")
    assert ": untrusted-spec: " not in trusted.stdout
    assert probe.exists()  # the control: trusted, it is imported (to verify its identifier)


@needs_root
def test_a_script_of_another_user_is_refused_under_the_lock(ws: Path, tmp_path: Path, processes: Processes) -> None:
    """``<name>.py`` is what a fresh interpreter runs: its owner counts too, looked at when claiming."""
    counter = tmp_path / "counter"
    with experiment(ws, "script", wait=False, workers=0):
        foreign = job_of(ws, Count.C(n=1, counter=str(counter)).submit(launcher=DirectLauncher(isolate=True)))
    os.chown(foreign.script_path, NOBODY, NOBODY)
    status_before = (foreign.xpm_dir / "status.json").read_bytes()

    log = tmp_path / "worker.log"
    assert _worker(processes, ws, log, "--idle-exit", "1").wait(timeout=60) == 0
    assert not counter.exists()
    _left_in_place(ws, foreign, status_before)
    refusals = _refusals(log)
    assert len(refusals) == 1 and str(foreign.script_path) in refusals[0], log.read_text()

    assert (
        _worker(processes, ws, tmp_path / "trusting.log", "--idle-exit", "1", "--trust-user", str(NOBODY)).wait(
            timeout=60
        )
        == 0
    )
    assert foreign.marker() is State.DONE


_FAKE_SBATCH = """#!/bin/bash
dir=$(dirname "$0")
exec 9>>"$dir/lock"; flock 9
id=$(( $(cat "$dir/next" 2>/dev/null || echo 700) + 1 )); echo "$id" > "$dir/next"
echo "$id ${@: -1}" >> "$dir/sbatch.log"
echo "$id"
"""

# Every job it is asked about is still pending: the worker must not judge the own job gone before
# the test has seen it SUBMITTED.
_FAKE_SQUEUE = """#!/bin/bash
for arg in "$@"; do
  case "$arg" in
    --jobs=*) IFS=, read -ra ids <<< "${arg#--jobs=}"
              for id in "${ids[@]}"; do echo "$id|PENDING|Priority"; done;;
  esac
done
"""


@needs_root
def test_a_slurm_job_of_another_user_is_never_submitted(ws: Path, tmp_path: Path, processes: Processes) -> None:
    fake = tmp_path / "fakebin"
    fake.mkdir()
    for name, text in (("sbatch", _FAKE_SBATCH), ("squeue", _FAKE_SQUEUE), ("scancel", "#!/bin/bash\n")):
        (fake / name).write_text(text)
        (fake / name).chmod(0o755 | stat.S_IEXEC)
    env = processes.env()
    env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
    with experiment(ws, "slurm", wait=False, workers=0):
        foreign = job_of(ws, Count.C(n=1, counter="c").submit(launcher=SlurmLauncher(time=5)))
        own = job_of(ws, Count.C(n=2, counter="c").submit(launcher=SlurmLauncher(time=5)))
    os.chown(foreign.spec_path, NOBODY, NOBODY)
    status_before = (foreign.xpm_dir / "status.json").read_bytes()

    log = tmp_path / "worker.log"
    _worker(processes, ws, log, env=env)
    wait_until(lambda: getattr(own.status(), "state", None) is State.SUBMITTED, what="the own job submitted")
    wait_until(lambda: _refusals(log), what="the foreign job refused")
    submitted = (fake / "sbatch.log").read_text().splitlines()
    assert len(submitted) == 1 and str(own.path) in submitted[0]
    _left_in_place(ws, foreign, status_before)


def test_trust_user_must_name_a_user(ws: Path) -> None:
    for command in ("worker", "check"):
        result = CliRunner().invoke(main, [command, str(ws), "--trust-user", "no-such-user-xpmfs"])
        assert result.exit_code == 2, result.output
        assert "--trust-user" in result.output and "no user named 'no-such-user-xpmfs'" in result.output
    assert not ws.exists()  # refused before anything was opened or created


def test_the_trusted_users_and_the_refusal() -> None:
    me = os.geteuid()
    assert Trust.of().uids == {me}  # root included: a worker run by root trusts root alone
    assert Trust.of(["12345", 4242]).uids == {me, 12345, 4242}
    with pytest.raises(LookupError, match="no-such-user-xpmfs"):
        Trust.of(["no-such-user-xpmfs"])
    assert resolve_user("root") == 0
    trust = Trust.of()
    assert trust.refusal("/ws/spec.json", me) is None
    assert trust.refusal("/ws/spec.json", None) is None  # no file: nothing to run from it
    stranger = next(uid for uid in range(40000, 50000) if uid != me)
    refusal = trust.refusal("/ws/spec.json", stranger)
    assert isinstance(refusal, UntrustedError) and isinstance(refusal, WorkspaceError)
    assert isinstance(refusal, PermissionError)
    text = str(refusal)
    assert text.startswith(f"/ws/spec.json: is owned by uid {stranger},")
    assert f"--trust-user {stranger}" in text
    copy = pickle.loads(pickle.dumps(refusal))
    assert str(copy) == text and copy.owner == stranger
