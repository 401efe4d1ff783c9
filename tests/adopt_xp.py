"""One experiment script for both experimaestro 2.7 and xpmfs (tests/test_adopt.py).

``XPM_LIB=experimaestro`` imports experimaestro (run in its side venv), anything else xpmfs: the
"imports switched" of a user who moves a workspace from one to the other.

Usage: python adopt_xp.py WORKSPACE EXPERIMENT MODE, MODE being ``first`` (done, failed and
dependent jobs, a DataPath), ``second`` (more of them, and a job that sleeps while ``XPM_SLEEP`` is set, with a
job waiting for it) or ``all`` (every job of both, as a user re-running everything would).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

if os.environ.get("XPM_LIB") == "experimaestro":
    from experimaestro import Config, DataPath, Meta, Param, PathGenerator, Task, experiment, field, tag
else:
    from xpmfs import Config, DataPath, Meta, Param, PathGenerator, Task, experiment, field, tag


class Options(Config):
    """A nested configuration with values of many kinds (all must read back the same)."""

    rate: Param[float]
    names: Param[list[str]]
    weights: Param[dict[str, float]]
    note: Meta[str] = "not hashed"


class Add(Task):
    x: Param[int]
    options: Param[Options | None] = None
    output: Meta[Path] = field(default_factory=PathGenerator("out.txt"))

    def execute(self) -> None:
        print(f"add {self.x}")
        print(f"add {self.x} on stderr", file=sys.stderr)
        self.output.write_text(f"{self.x}\n")


class Use(Task):
    a: Param[Add]
    output: Meta[Path] = field(default_factory=PathGenerator("sum.txt"))

    def execute(self) -> None:
        self.output.write_text(f"{int(self.a.output.read_text()) + 1}\n")


class Data(Task):
    """A DataPath field: experimaestro writes it in params.json as ``path.serialized``."""

    data: DataPath

    def execute(self) -> None:
        print(Path(self.data).read_text()[:20])


class Fail(Task):
    x: Param[int]

    def execute(self) -> None:
        raise RuntimeError(f"failing {self.x} on purpose")


class Sleep(Task):
    x: Param[int]
    output: Meta[Path] = field(default_factory=PathGenerator("slept.txt"))

    def execute(self) -> None:
        if os.environ.get("XPM_SLEEP"):
            time.sleep(3600)
        self.output.write_text("slept\n")


def first() -> None:
    a = Add.C(x=tag(1), options=Options.C(rate=0.5, names=["a", "b"], weights={"w": 1.5})).submit()
    Use.C(a=a).submit()
    Fail.C(x=tag(3)).submit()
    Data.C(data=Path(__file__).absolute()).submit()


def second() -> None:
    Add.C(x=tag(2)).submit()
    slow = Sleep.C(x=1).submit()
    Use.C(a=Add.C(x=5).submit()).submit()
    Sleep.C(x=2).submit()
    del slow


def main(workspace: str, name: str, mode: str) -> None:
    if os.environ.get("XPM_LIB") == "experimaestro":
        context = experiment(workspace, name, no_environmental_impact=True)
    else:
        context = experiment(workspace, name)
    with context:
        if mode in ("first", "all"):
            first()
        if mode in ("second", "all"):
            second()


if __name__ == "__main__":
    main(*sys.argv[1:4])
