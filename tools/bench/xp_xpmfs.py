"""The xpmfs side of the benchmark: one experiment per fresh interpreter, so imports count.

Usage: python xp_xpmfs.py MODE WORKSPACE N

- ``batch``:  submit N independent ``Touch`` jobs and wait for them (embedded worker, default slots)
- ``chain``:  submit a chain of N jobs, each taking the previous one's output as a ``Param``, and wait
- ``submit``: only write N job specs (``workers=0, wait=False``): the cost of submission alone

Prints one JSON line: seconds spent importing and inside the ``with experiment`` block.
``xp_experimaestro.py`` is the same script for experimaestro; keep the two alike.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import json  # noqa: E402 -- imported after STARTED, to time the imports
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from xpmfs import Meta, Param, PathGenerator, Task, experiment, field  # noqa: E402

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


def main(mode: str, workspace: str, n: int) -> None:
    begin = time.perf_counter()
    if mode == "batch":
        with experiment(workspace, "bench"):
            for x in range(n):
                Touch.C(x=x).submit()
    elif mode == "chain":
        with experiment(workspace, "chain"):
            last = Touch.C(x=0).submit()
            for x in range(1, n):
                last = Next.C(x=x, prev=last).submit()
        lines = Path(last.output).read_text().split()
        if lines != [str(x) for x in range(n)]:
            raise SystemExit(f"the chain's last output is wrong: {lines[:5]}...")
    elif mode == "submit":
        with experiment(workspace, "bench", workers=0, wait=False):
            for x in range(n):
                Touch.C(x=x).submit()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    end = time.perf_counter()
    print(json.dumps({"import": IMPORTED - STARTED, "inside": end - begin, "module": sys.modules["xpmfs"].__file__}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
