"""Where generated paths go, written for experimaestro 2.7 and for xpmfs (tests/test_generated_paths.py).

``XPM_LIB=experimaestro`` imports experimaestro (run in its side venv), anything else xpmfs. Usage:
``python generated_paths_xp.py WORKSPACE`` prints, as JSON, each generated path relative to its job
folder (``DirectoryContext`` cases) or to the workspace (submitted tasks, dry run: nothing runs).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

if os.environ.get("XPM_LIB") == "experimaestro":
    from experimaestro import (
        STDOUT,
        Config,
        DirectoryContext,
        LightweightTask,
        Meta,
        Param,
        PathGenerator,
        Task,
        experiment,
        field,
        param_group,
        partial,
    )
    from experimaestro.scheduler.workspace import RunMode
else:
    from xpmfs import (
        STDOUT,
        Config,
        DirectoryContext,
        LightweightTask,
        Meta,
        Param,
        PathGenerator,
        RunMode,
        Task,
        experiment,
        field,
        param_group,
        partial,
    )

grp = param_group("grp")


class A(Config):
    __xpmid__ = "gp.A"
    path: Meta[Path] = field(default_factory=PathGenerator("test.txt"))


class InitAsTask(Task):  # experimaestro accepts a Task as an init task
    __xpmid__ = "gp.InitAsTask"
    p: Meta[Path] = field(default_factory=PathGenerator("t.bin"))

    def execute(self) -> None:
        pass


class InitAsConfig(Config):  # ... and a plain configuration with an execute() method
    __xpmid__ = "gp.InitAsConfig"
    a: Param[A]

    def execute(self) -> None:
        pass


class B(Config):
    __xpmid__ = "gp.B"
    a: Param[A]


class C(Task):
    __xpmid__ = "gp.C"
    b: Param[B]


class Many(Task):
    __xpmid__ = "gp.Many"
    items: Param[list[A]]
    d: Param[dict[str, A]]
    nested: Param[dict[str, list[A]]]
    own: Meta[Path] = field(default_factory=PathGenerator("own"))


class Init(LightweightTask):
    __xpmid__ = "gp.Init"
    a: Param[A]
    p: Meta[Path] = field(default_factory=PathGenerator("init.bin"))


class Plain(Task):
    __xpmid__ = "gp.Plain"
    x: Param[int] = 1


class Parent(Task):
    __xpmid__ = "gp.Parent"
    z: Param[A]


class Child(Parent):
    __xpmid__ = "gp.Child"
    a: Param[A]


class PA(Config):
    __xpmid__ = "gp.PA"
    cks = partial(exclude_groups=[grp])
    y: Param[int] = field(groups=[grp])
    z: Param[int] = 0
    ck: Meta[Path] = field(default_factory=PathGenerator("ck", partial=cks))


class PT(Task):
    __xpmid__ = "gp.PT"
    cks = partial(exclude_groups=[grp])
    sub: Param[PA]
    y: Param[int] = field(groups=[grp])
    ck: Meta[Path] = field(default_factory=PathGenerator("ck", partial=cks))


class Logged(Config):
    __xpmid__ = "gp.Logged"
    log: Meta[Path] = field(default_factory=PathGenerator(STDOUT))


class UsesLogged(Task):
    __xpmid__ = "gp.UsesLogged"
    logged: Param[Logged]


class Producer(Task):
    __xpmid__ = "gp.Producer"

    def task_outputs(self, dep):
        return dep(A.C())


class Consumer(Task):
    __xpmid__ = "gp.Consumer"
    a: Param[A]


class Holds(Task):  # any configuration: a task never submitted is a plain one there
    __xpmid__ = "gp.Holds"
    any: Param[Config]


class Writes(Task):
    __xpmid__ = "gp.Writes"
    a: Param[A]
    out: Meta[Path] = field(default_factory=PathGenerator("w.txt"))


def main(ws: Path) -> dict[str, object]:
    base = Path("/base")

    def rel(path: Path, root: Path) -> str:
        return str(Path(path).relative_to(root))

    out: dict[str, object] = {}
    c = C.C(b=B.C(a=A.C())).instance(DirectoryContext(base))
    out["nested"] = rel(c.b.a.path, base)
    m = Many.C(items=[A.C(), A.C()], d={"k": A.C()}, nested={"x": [A.C()]}).instance(DirectoryContext(base))
    out["list"] = [rel(x.path, base) for x in m.items]
    out["dict"] = rel(m.d["k"].path, base)
    out["dict_of_lists"] = rel(m.nested["x"][0].path, base)
    out["task_own"] = rel(m.own, base)
    shared = A.C()
    child = Child.C(a=shared, z=shared).instance(DirectoryContext(base))
    out["shared_first_declared_wins"] = [rel(child.z.path, base), rel(child.a.path, base)]
    with experiment(ws, "gp", run_mode=RunMode.DRY_RUN):
        t = C.C(b=B.C(a=A.C()))
        t.submit()
        out["job_nested"] = rel(t.b.a.path, ws)
        init = Init.C(a=A.C())
        plain = Plain.C(x=2)
        plain.submit(init_tasks=[init])
        out["job_init_task"] = [rel(init.p, ws), rel(init.a.path, ws)]
        task_init, config_init = InitAsTask.C(), InitAsConfig.C(a=A.C())
        Plain.C(x=3).submit(init_tasks=[task_init, config_init])
        out["job_init_task_not_lightweight"] = [rel(task_init.p, ws), rel(config_init.a.path, ws)]
        pt = PT.C(sub=PA.C(y=1), y=2)
        pt.submit()
        out["job_partial"] = [rel(pt.ck, ws), rel(pt.sub.ck, ws)]
        logged = UsesLogged.C(logged=Logged.C())
        logged.submit()
        out["job_stdout_nested"] = rel(logged.logged.log, ws)
        consumer = Consumer.C(a=Producer.C().submit())
        consumer.submit()
        out["job_task_output_in_consumer"] = rel(consumer.a.path, ws)
        holds = Holds.C(any=Writes.C(a=A.C()))
        holds.submit()
        out["job_unsubmitted_task_in_field"] = [rel(holds.any.out, ws), rel(holds.any.a.path, ws)]
    return out


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    result = main(Path(sys.argv[1]).absolute())
    sys.stdout = sys.__stdout__
    print("RESULT " + json.dumps(result, sort_keys=True))
