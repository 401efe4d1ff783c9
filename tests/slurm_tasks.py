"""Tasks the SLURM tests submit; importable by job runners on the (single) node through the spec's sys.path."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from xpmfs import GracefulTimeout, Meta, Param, PathGenerator, ResumableTask, Task, field


def _log(line: str) -> None:
    print(f"{time.time():.2f} {line}", flush=True)


class Remaining(ResumableTask):
    """Writes what ``remaining_time()`` answers inside its job."""

    tag: Param[str] = "remaining"
    result: Meta[Path] = field(default_factory=PathGenerator("remaining.json"))

    def execute(self) -> None:
        first = self.remaining_time()
        self.result.write_text(json.dumps({"remaining": first, "again": self.remaining_time()}))


class WhereAmI(Task):
    """Records which SLURM job (if any) and which worker ran it."""

    n: Param[int]
    seconds: Meta[float] = 0.0
    result: Meta[Path] = field(default_factory=PathGenerator("where.json"))

    def execute(self) -> None:
        time.sleep(self.seconds)
        keys = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "XPMFS_WORKER")
        self.result.write_text(json.dumps({key: os.environ.get(key) for key in keys}))


class Resume(ResumableTask):
    """Checkpoints after every step; each run ("attempt") resumes from the checkpoint.

    Simulates the two ways a SLURM job meets its limit: attempt 1 follows the seed's pattern
    (stops with ``GracefulTimeout`` once ``remaining_time()`` is short, which the pre-timeout USR1
    makes it at once); attempt 2 never asks and is killed by SLURM at the limit; what is left for
    attempt 3 is quick.
    """

    steps: Param[int]
    step_seconds: Meta[float] = 1.0
    checkpoint: Meta[Path] = field(default_factory=PathGenerator("checkpoint.json"))

    def execute(self) -> None:
        state = json.loads(self.checkpoint.read_text()) if self.checkpoint.exists() else {"step": 0, "attempts": 0}
        state["attempts"] += 1
        self._save(state)
        attempt = state["attempts"]
        _log(f"attempt {attempt} resumes at step {state['step']}")
        while state["step"] < self.steps:
            if attempt == 1:
                remaining = self.remaining_time()
                # USR1 makes it 0, 0-30 s into a --time=1 job (SLURM's periodic check); a loaded
                # machine has delayed it past 50 s, so the countdown alone stops only near the end.
                if remaining is not None and remaining < 5:
                    _log(f"attempt {attempt} stops at step {state['step']}: remaining_time() = {remaining}")
                    raise GracefulTimeout(f"{remaining:.0f}s left at step {state['step']}")
            time.sleep(self.step_seconds if attempt <= 2 else 0.01)
            state["step"] += 1
            self._save(state)
        _log(f"attempt {attempt} finished all {self.steps} steps")

    def _save(self, state: dict[str, int]) -> None:
        # Write, then rename: a kill mid-write leaves the previous checkpoint whole.
        temporary = self.checkpoint.with_name(self.checkpoint.name + ".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.checkpoint)
