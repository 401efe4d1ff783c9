"""Make a large xpmfs workspace directly as files, in the on-disk format of ``spec/workspace.md``.

Submitting 100,000 jobs through an experiment and running them would take far longer than the
scans we want to time, so the jobs are written here: each one a ``spec.json`` (a real
configuration, hashed to its real identifier), a ``status.json`` and, for the finished ones, a
``done`` marker. The queued fraction instead waits on one *blocker* job that has neither a marker
nor a queue entry, so it never completes: a worker's scan sees every entry, claims none, and a
worker started with ``--idle-exit 0`` exits after one pass.

The format comes from xpmfs's own record classes and file-name constants, so this module follows
the format when it changes; files are written in place (no temp + rename), which is fine for a
workspace nobody else is reading yet.

Usage: python synth.py WORKSPACE [N] [QUEUED_FRACTION]
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import orjson

from xpmfs import _atomic, queue, status
from xpmfs.config import typeid
from xpmfs.job import SPEC_FILE, XPM_DIR, Spec
from xpmfs.queue import JobRef
from xpmfs.serialization import to_dict
from xpmfs.status import State, Status
from xpmfs.workspace import EXPERIMENT_JOURNAL as JOURNAL_FILE
from xpmfs.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
from xp_xpmfs import Touch


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as stream:
        stream.write(data)


def generate(path: Path, n: int, queued_fraction: float = 0.1) -> dict[str, int]:
    """Write ``n`` jobs into a new workspace at ``path``; return how many are done and queued."""
    workspace = Workspace.open(path, create=True)
    host, pid, now = socket.gethostname(), os.getpid(), time.time()
    sys_path = (str(Path(__file__).parent),)

    def write_job(config: Touch, dependencies: tuple[str, ...], done: bool) -> JobRef:
        ref = JobRef(typeid(config), config.__identifier__())
        job_dir = workspace.job_path(ref.typeid, ref.jobid)
        xpm_dir = job_dir / XPM_DIR
        xpm_dir.mkdir(parents=True)
        config.__xpm__.seal(job_dir)
        spec = Spec(
            typeid=ref.typeid,
            jobid=ref.jobid,
            config=to_dict(config),
            dependencies=dependencies,
            sys_path=sys_path,
            submitted=now,
        )
        _write(xpm_dir / SPEC_FILE, _atomic.dumps(spec.to_json()))
        if done:
            record = Status(
                state=State.DONE,
                attempt=1,
                host=host,
                pid=pid,
                worker=f"{host}-{pid}",
                updated=now,
                claimed=now,
                started=now,
                ended=now,
                exit_code=0,
            )
            _write(xpm_dir / status.STATUS_FILE, _atomic.dumps(record.to_json()))
            _write(xpm_dir / status.DONE_MARKER, _atomic.dumps({"ended": now}))
        else:
            record = Status(state=State.WAITING if dependencies else State.READY, updated=now)
            _write(xpm_dir / status.STATUS_FILE, _atomic.dumps(record.to_json()))
        return ref

    # The blocker: submitted (spec, status) but never queued nor ended, so its dependents wait forever.
    blocker = write_job(Touch.C(x=-1), (), done=False)
    queued_every = round(1 / queued_fraction) if queued_fraction else 0
    journal_lines = []
    done = queued = 0
    for x in range(n - 1):
        is_queued = queued_every and x % queued_every == 0
        ref = write_job(Touch.C(x=x), (blocker.relpath,) if is_queued else (), done=not is_queued)
        if is_queued:
            queue.add(workspace.queue_dir, ref)
            queued += 1
        else:
            done += 1
        journal_lines.append(
            orjson.dumps(
                {"job": ref.relpath, "run": "synth", "tags": {"x": x}, "submitted": now},
                option=orjson.OPT_APPEND_NEWLINE,
            )
        )
    experiment_dir = workspace.experiment_path("bench")
    experiment_dir.mkdir(parents=True, exist_ok=True)
    _write(experiment_dir / JOURNAL_FILE, b"".join(journal_lines))
    return {"jobs": n, "done": done, "queued": queued, "blocked": 1}


if __name__ == "__main__":
    args = sys.argv[1:]
    begin = time.perf_counter()
    counts = generate(
        Path(args[0]), int(args[1]) if len(args) > 1 else 100_000, float(args[2]) if len(args) > 2 else 0.1
    )
    print(counts, f"in {time.perf_counter() - begin:.1f}s")
