"""A synthetic experimaestro 2.7 workspace, for the adoption benchmark and tests.

The files are modeled on what experimaestro 2.7.0 writes (see spec/adopt.md, and a workspace made
by ``tests/adopt_xp.py``): per job ``params.json`` (version 3), ``<name>.py``, ``.out``, ``.err``,
``.lock``, ``.done`` or ``.failed`` (JSON), ``.experimaestro/status.json`` and an output file; per
experiment run ``jobs.jsonl`` with tags, a ``current`` link and the ``lock``. Identifiers are random
(adoption does not recompute them); about a third of the jobs use another job's output.

Usage: python tools/bench/adopt_synth.py WORKSPACE N [--failed 0.05] [--unfinished 0.02]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

TYPES = ("mymodule.train", "mymodule.evaluate", "mymodule.preprocess", "mymodule.checkpoint")
ERR = (
    "INFO:{pid}:26-12-04 17:53:47 [xpm] Working in directory {folder}\n"
    "INFO:{pid}:26-12-04 17:53:47 [xpm] Locking {folder}/{name}.lock\n"
    "INFO:{pid}:26-12-04 17:53:47 [xpm] Running task\n"
    "INFO:{pid}:26-12-04 17:53:48 [xpm] Task ended successfully\n"
    "INFO:{pid}:26-12-04 17:53:48 [xpm] Cleaning up\n"
    "INFO:{pid}:26-12-04 17:53:48 [xpm] Releasing lock\n"
    "INFO:{pid}:26-12-04 17:53:48 [xpm] Released lock\n"
    "INFO:{pid}:26-12-04 17:53:48 [xpm] Finished cleanup\n"
)
SCRIPT = (
    "#!/usr/bin/python3\n# Experimaestro generated task\n\nimport logging\nimport sys\n"
    "logging.basicConfig(level=logging.INFO)\n\n\nif __name__ == '__main__':\n\n"
    "    from experimaestro.run import TaskRunner\n    import os\n\n    lockfiles = [\n       '{name}.lock',\n    ]\n\n"
    "    TaskRunner('{folder}/{name}.py', lockfiles).run()\n"
)


def _write(path: str, text: str) -> None:
    with open(path, "w") as stream:
        stream.write(text)


def make(root: Path, n: int, *, failed: float = 0.05, unfinished: float = 0.02, seed: int = 0) -> dict[str, int]:
    """Write an experimaestro workspace of ``n`` jobs at ``root``; return the count of each state."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".__experimaestro__").touch()
    counts = {"done": 0, "failed": 0, "unfinished": 0}
    jobs: list[tuple[str, str]] = []
    runs = {"train": "20261204_175347", "eval": "20261205_091500"}
    journals = {name: [] for name in runs}
    for number in range(n):
        typeid = TYPES[number % len(TYPES)]
        module, _, lower = typeid.rpartition(".")
        qualname = lower.capitalize()
        jobid = rng.getrandbits(256).to_bytes(32, "big").hex()
        name = lower
        folder = f"{root}/jobs/{typeid}/{jobid}"
        os.makedirs(f"{folder}/.experimaestro")
        objects = []
        fields: dict[str, object] = {
            "x": number,
            "lr": rng.choice([0.1, 0.01, 0.001]),
            "output": {"type": "path", "value": "out.txt", "base": "job"},
        }
        if jobs and rng.random() < 0.3:
            dep_type, dep_id = jobs[rng.randrange(len(jobs))]
            dep_module, _, dep_lower = dep_type.rpartition(".")
            objects.append(
                {
                    "id": 1,
                    "module": dep_module,
                    "type": dep_lower.capitalize(),
                    "typename": f"{dep_module}.{dep_lower.capitalize()}",
                    "identifier": dep_id,
                    "task": 1,
                    "fields": {
                        "x": 0,
                        "output": {"type": "path", "value": f"jobs/{dep_type}/{dep_id}/out.txt", "base": "workspace"},
                    },
                }
            )
            fields["previous"] = {"type": "python", "value": 1}
        objects.append(
            {
                "id": 2,
                "module": module,
                "type": qualname,
                "typename": f"{module}.{qualname}",
                "identifier": jobid,
                "task": 2,
                "fields": fields,
            }
        )
        params = {"workspace": str(root), "version": 3, "experimaestro": "2.7.0", "objects": objects}
        _write(f"{folder}/params.json", json.dumps(params))
        _write(f"{folder}/{name}.py", SCRIPT.format(name=name, folder=folder))
        _write(f"{folder}/{name}.lock", "")
        _write(f"{folder}/{name}.out", f"step {number}\n")
        _write(f"{folder}/{name}.err", ERR.format(pid=1000 + number, folder=folder, name=name))
        draw = rng.random()
        if draw < unfinished:
            state = "unfinished"
        elif draw < unfinished + failed:
            state = "failed"
            _write(f"{folder}/{name}.failed", json.dumps({"code": 1, "reason": "failed"}))
        else:
            state = "done"
            _write(f"{folder}/{name}.done", "")
            _write(f"{folder}/out.txt", f"{number}\n")
        counts[state] += 1
        status = {
            "job_id": jobid,
            "task_id": typeid,
            "path": folder,
            "state": {"unfinished": "running", "failed": "error"}.get(state, state),
            "failure_reason": None,
            "started_time": "2026-12-04T17:53:47.995176",
            "ended_time": None if state == "unfinished" else "2026-12-04T17:53:48.014800",
            "exit_code": None,
            "retry_count": 0,
            "progress": [],
            "process": None,
        }
        _write(f"{folder}/.experimaestro/status.json", json.dumps(status))
        jobs.append((typeid, jobid))
        experiment = "train" if number % 3 else "eval"
        journals[experiment].append(
            json.dumps(
                {"job_id": jobid, "task_id": typeid, "tags": {"x": number, "model": "bert"}, "timestamp": time.time()}
            )
        )
    for experiment, run in runs.items():
        run_dir = root / "experiments" / experiment / run
        run_dir.mkdir(parents=True)
        (run_dir / "jobs.jsonl").write_text("".join(line + "\n" for line in journals[experiment]))
        (root / "experiments" / experiment / "lock").touch()
        (root / "experiments" / experiment / "current").symlink_to(run)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--failed", type=float, default=0.05)
    parser.add_argument("--unfinished", type=float, default=0.02)
    args = parser.parse_args()
    began = time.monotonic()
    counts = make(args.workspace, args.n, failed=args.failed, unfinished=args.unfinished)
    print(json.dumps({"jobs": args.n, **counts, "seconds": round(time.monotonic() - began, 1)}))


if __name__ == "__main__":
    main()
