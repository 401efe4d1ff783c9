"""The experimaestro side of the benchmark: one experiment per fresh interpreter, so imports count.

Usage (in the side venv .bench/venv-experimaestro): python xp_experimaestro.py MODE WORKSPACE N

- ``batch``:  submit N independent ``Touch`` jobs and wait for them (default scheduler, direct launcher)
- ``chain``:  submit a chain of N jobs, each taking the previous one's output as a ``Param``, and wait

Prints one JSON line: seconds spent importing and inside the ``with experiment`` block.
``xp_xpmfs.py`` is the same script for xpmfs; keep the two alike.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402 -- imported after STARTED, to time the imports
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from experimaestro import Meta, Param, PathGenerator, Task, experiment, field  # noqa: E402

IMPORTED = time.perf_counter()


class Touch(Task):
    """The trivial task: writes a small file in its job folder."""

    x: Param[int]
    output: Meta[Path] = field(default_factory=PathGenerator("out.txt"))

    def execute(self) -> None:
        self.output.write_text(f"{self.x}\n")


class Next(Touch):
    """A link of the chain: copies the previous link's output and adds its own line."""

    prev: Param[Touch]

    def execute(self) -> None:
        self.output.write_text(self.prev.output.read_text() + f"{self.x}\n")


def _experiment(workspace: str, name: str) -> experiment:
    # Defaults otherwise (no web server is started by default in 2.7); this only silences the
    # "CodeCarbon is not installed" warning, which has no cost.
    return experiment(workspace, name, no_environmental_impact=True)


def main(mode: str, workspace: str, n: int) -> None:
    begin = time.perf_counter()
    if mode == "batch":
        with _experiment(workspace, "bench"):
            for x in range(n):
                Touch.C(x=x).submit()
    elif mode == "chain":
        with _experiment(workspace, "chain"):
            last = Touch.C(x=0).submit()
            for x in range(1, n):
                last = Next.C(x=x, prev=last).submit()
        lines = Path(last.output).read_text().split()
        if lines != [str(x) for x in range(n)]:
            raise SystemExit(f"the chain's last output is wrong: {lines[:5]}...")
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    end = time.perf_counter()
    print(json.dumps({"import": IMPORTED - STARTED, "inside": end - begin}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
