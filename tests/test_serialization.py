"""Config trees to JSON-compatible data and back (xpmfs.serialization): same tree, same identifiers."""

from __future__ import annotations

import copy
import enum
import math
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from xpmfs.config import (
    Config,
    Constant,
    LightweightTask,
    Meta,
    Param,
    Task,
    dependencies,
    field,
    sealed_set,
    setmeta,
    tag,
    tags,
    task_outputs_of,
    typeid,
)
from xpmfs.definition import SerializationContext, from_state_dict, state_dict
from xpmfs.errors import ConfigError
from xpmfs.generators import PathGenerator
from xpmfs.serialization import FORMAT, LOADED_MAIN, from_dict, to_dict


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Leaf(Config):
    x: Param[int]
    where: Meta[Path | None] = None


class Node(Config):
    name: Param[str]
    next: Param[Node | None] = None


class Rich(Config):
    ints: Param[list[int]]
    floats: Param[tuple[float, ...]]
    labels: Param[set[str]]
    by_id: Param[dict[int, Leaf]]
    odd_keys: Param[dict[str, int]]
    mode: Param[Mode]
    level: Param[Level]
    ratio: Param[float]
    leaves: Param[list[Leaf]]
    anything: Param[Any] = None
    path: Meta[Path]
    paths: Meta[list[Path]] = field(default_factory=list)


class Producer(Task):
    x: Param[int]
    out: Meta[Path] = field(default_factory=PathGenerator("out.bin"))

    def task_outputs(self, dep):
        return dep(Leaf.C(x=self.x, where=self.out))


class Loader(LightweightTask):
    leaf: Param[Leaf]


class Consumer(Task):
    rich: Param[Rich]
    leaf: Param[Leaf]
    produced: Param[Leaf]
    node: Param[Node]
    hidden: Meta[Leaf | None] = None
    result: Meta[Path] = field(default_factory=PathGenerator("result.json"))


class Versioned(Config):
    version: Constant[int] = 2


def build(tmp_path: Path) -> Consumer:
    shared = Leaf.C(x=tag(1))
    producer = Producer.C(x=7)
    producer.__xpm__.seal(tmp_path / "producer")
    produced = task_outputs_of(producer)
    first, second = Node.C(name="first"), Node.C(name="second")
    first.next, second.next = second, first  # a cycle
    rich = Rich.C(
        ints=[1, 2],
        floats=(0.5, float("inf")),
        labels={"b", "a", "c"},
        by_id={3: shared, 4: Leaf.C(x=4)},
        odd_keys={"$ref": 1, "plain": 2},
        mode=Mode.SLOW,
        level=Level.HIGH,
        ratio=float("nan"),
        leaves=[shared, setmeta(Leaf.C(x=9))],
        anything={"nested": [None, True, 1.5, "s", (1, 2)]},
        path="/data/in",
        paths=["/a", "/b"],
    )
    consumer = Consumer.C(rich=rich, leaf=shared, produced=produced, node=first, hidden=setmeta(Leaf.C(x=5), False))
    consumer.tag("run", "r1")
    consumer.__xpm__.set_init_tasks([Loader.C(leaf=produced)])
    consumer.__xpm__.seal(tmp_path / "consumer")
    return consumer


def round_trip(config: Config) -> Config:
    return from_dict(orjson.loads(orjson.dumps(to_dict(config))))


def test_round_trip_keeps_identifiers_and_structure(tmp_path: Path) -> None:
    original = build(tmp_path)
    loaded = round_trip(original)
    assert type(loaded) is Consumer.C  # a configuration of Consumer (Consumer.XPMConfig)
    assert loaded.__identifier__() == original.__identifier__()
    # Shared references stay shared, cycles stay cycles.
    assert loaded.rich.by_id[3] is loaded.leaf and loaded.rich.leaves[0] is loaded.leaf
    assert loaded.node.next.next is loaded.node
    # Values keep their types.
    rich = loaded.rich
    assert rich.ints == [1, 2] and rich.floats == (0.5, math.inf) and rich.labels == {"a", "b", "c"}
    assert rich.mode is Mode.SLOW and rich.level is Level.HIGH and math.isnan(rich.ratio)
    assert rich.odd_keys == {"$ref": 1, "plain": 2} and set(rich.by_id) == {3, 4}
    assert rich.anything == {"nested": [None, True, 1.5, "s", (1, 2)]}
    assert rich.path == Path("/data/in") and rich.paths == [Path("/a"), Path("/b")]
    # Meta flags, tags, generated paths, sealed state, job directories.
    assert loaded.rich.leaves[1].__xpm__.meta is True and loaded.hidden.__xpm__.meta is False
    assert tags(loaded) == tags(original) == {"x": 1, "run": "r1"}
    assert loaded.result == tmp_path / "consumer" / "result.json"
    assert loaded.__xpm__.sealed and loaded.jobpath == tmp_path / "consumer"
    # Task outputs and init tasks.
    producer = loaded.produced.__xpm__.task
    assert (
        isinstance(producer, Producer) and producer.__identifier__() == original.produced.__xpm__.task.__identifier__()
    )
    assert loaded.produced.where == tmp_path / "producer" / "out.bin"
    [loader] = loaded.__xpm__.init_tasks
    assert isinstance(loader, Loader) and loader.leaf is loaded.produced
    assert dependencies(loaded) == [producer]


def test_round_trip_is_stable(tmp_path: Path) -> None:
    data = to_dict(build(tmp_path))
    assert to_dict(round_trip(build(tmp_path))) == data
    assert orjson.dumps(to_dict(build(tmp_path))) == orjson.dumps(data)


def test_unsealed_trees_round_trip_unsealed() -> None:
    config = Leaf.C(x=3)
    loaded = round_trip(config)
    assert not loaded.__xpm__.sealed and loaded.__identifier__() == config.__identifier__()
    loaded.x = 4  # still a normal, changeable configuration


def test_format_of_a_small_tree() -> None:
    data = to_dict(Node.C(name=tag("a"), next=Node.C(name="b")))
    assert data == {
        "format": FORMAT,
        "root": 0,
        "objects": [
            {"id": 1, "type": {"module": __name__, "qualname": "Node"}, "fields": {"name": "b", "next": None}},
            {
                "id": 0,
                "type": {"module": __name__, "qualname": "Node"},
                "fields": {"name": "a", "next": {"$ref": 1}},
                "tags": {"name": "a"},
            },
        ],
    }


def test_enum_and_special_values_are_tagged() -> None:
    objects = to_dict(
        Rich.C(
            ints=[],
            floats=(),
            labels=set(),
            by_id={1: Leaf.C(x=1)},
            odd_keys={"$x": 1},
            mode=Mode.FAST,
            level=Level.LOW,
            ratio=-math.inf,
            leaves=[],
            path="/p",
        )
    )["objects"]
    fields = objects[-1]["fields"]
    assert fields["mode"] == {"$enum": {"module": __name__, "qualname": "Mode", "name": "FAST"}}
    assert fields["level"] == {"$enum": {"module": __name__, "qualname": "Level", "name": "LOW"}}
    assert fields["ratio"] == {"$float": "-inf"}
    assert fields["floats"] == {"$tuple": []} and fields["labels"] == {"$set": []}
    assert fields["by_id"] == {"$dict": [[1, {"$ref": 1}]]} and fields["odd_keys"] == {"$dict": [["$x", 1]]}
    assert fields["path"] == {"$path": "/p"}


# -- what cannot be written -----------------------------------------------------------------


def test_classes_defined_in_functions_are_refused() -> None:
    class Local(Config):
        x: Param[int] = 0

    with pytest.raises(
        ConfigError,
        match=r"^test_classes_defined_in_functions_are_refused\.<locals>\.Local: is defined inside a function",
    ):
        to_dict(Local.C())


def test_unserializable_values_are_refused() -> None:
    rich = Rich.C(
        ints=[],
        floats=(),
        labels=set(),
        by_id={},
        odd_keys={},
        mode=Mode.FAST,
        level=Level.LOW,
        ratio=0.0,
        leaves=[],
        path="/p",
        anything=[object()],
    )
    with pytest.raises(ConfigError, match=r"^Rich\.anything\[0\]: cannot serialize a value of type object"):
        to_dict(rich)


# -- bad data -------------------------------------------------------------------------------


def leaf_data() -> dict[str, Any]:
    return to_dict(
        Consumer.C(
            rich=Rich.C(
                ints=[],
                floats=(),
                labels=set(),
                by_id={},
                odd_keys={},
                mode=Mode.FAST,
                level=Level.LOW,
                ratio=0.0,
                leaves=[],
                path="/p",
            ),
            leaf=Leaf.C(x=1),
            produced=Leaf.C(x=2),
            node=Node.C(name="n"),
        )
    )


def find(data: dict[str, Any], qualname: str) -> dict[str, Any]:
    return next(o for o in data["objects"] if o["type"]["qualname"] == qualname)


def corrupt(change) -> dict[str, Any]:
    data = copy.deepcopy(leaf_data())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(format="other/9"), r"^configuration: expected format 'xpmfs.config/1', got 'other/9'"),
        (lambda d: d.update(objects=[]), r"^configuration: 'objects' must be a non-empty list"),
        (lambda d: d.update(root=99), r"^configuration: root 99 is not one of the objects"),
        (
            lambda d: find(d, "Leaf")["type"].update(module="no_such_module_xyz"),
            r"^no_such_module_xyz\.Leaf: cannot import module 'no_such_module_xyz' \(ModuleNotFoundError",
        ),
        (
            lambda d: find(d, "Leaf")["type"].update(qualname="Gone"),
            rf"^{__name__}\.Gone: module '{__name__}' has no 'Gone'; was the class renamed or removed\?",
        ),
        (lambda d: find(d, "Leaf")["type"].update(qualname="Mode"), rf"^{__name__}\.Mode: is not a Config class"),
        (
            lambda d: find(d, "Leaf")["fields"].update(y=1),
            r"^Leaf\.y: is stored but the class has no such field; the class changed",
        ),
        (lambda d: find(d, "Leaf")["fields"].update(x="a"), r"^Leaf\.x: expected int, got 'a' \(str\)"),
        (
            lambda d: find(d, "Consumer")["fields"].update(leaf={"$ref": 99}),
            r"^Consumer\.leaf: refers to object 99, which is not in the data",
        ),
        (lambda d: find(d, "Leaf")["fields"].update(x={"$bogus": 1}), r"^Leaf\.x: unknown tagged value '\$bogus'"),
        (
            lambda d: find(d, "Leaf")["fields"].update(x={"$ref": 1, "extra": 2}),
            r"^Leaf\.x: a tagged value must have exactly one key",
        ),
        (
            lambda d: find(d, "Rich")["fields"].update(
                mode={"$enum": {"module": __name__, "qualname": "Mode", "name": "MEDIUM"}}
            ),
            rf"^Rich\.mode: {__name__}\.Mode has no member 'MEDIUM'",
        ),
        (
            lambda d: find(d, "Rich")["fields"].update(by_id={"$dict": [[1]]}),
            r"^Rich\.by_id: \$dict must hold \[key, value\] pairs",
        ),
        (lambda d: find(d, "Rich")["fields"].update(path={"$path": 3}), r"^Rich\.path: \$path expects a str, got 3"),
        (
            lambda d: find(d, "Rich")["fields"].update(ratio={"$float": "big"}),
            r"^Rich\.ratio: \$float must be nan, inf or -inf",
        ),
        (
            lambda d: find(d, "Consumer").update(task=find(d, "Leaf")["id"]),
            r"^Consumer task: refers to Leaf, which is not a Task",
        ),
        (lambda d: find(d, "Leaf").pop("type"), r"^configuration object #\d+: needs an integer 'id' and a 'type'"),
    ],
)
def test_bad_data_is_refused_naming_class_and_field(change, message) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(corrupt(change))


class Bag(Config):
    leaves: Param[set[Leaf]]


class Producing(Task):
    x: Param[int]


def test_a_sealed_set_of_configurations_reloads() -> None:
    # Its members must be sealed before the set is built: they hash by identifier.
    bag = Bag.C(leaves=sealed_set(Leaf.C(x=1), Leaf.C(x=2)))
    bag.seal()
    loaded = round_trip(bag)
    assert loaded.__xpm__.sealed and {leaf.x for leaf in loaded.leaves} == {1, 2}
    assert all(leaf.__xpm__.sealed for leaf in loaded.leaves)
    assert loaded.__identifier__() == bag.__identifier__()


def test_an_output_of_a_stubbed_task_round_trips_with_its_identifier() -> None:
    # An output loaded without its task (partial loading), then used in a job's spec.
    output = Leaf.C(x=1)
    output.__xpm__.task = Producing.C(x=2)
    loaded = from_state_dict(state_dict(SerializationContext(), output), partial_loading=True)
    node = Bag.C(leaves=sealed_set(loaded))
    data = to_dict(node)
    assert data["objects"][0]["task"] == {
        "$stub": {"identifier": output.__xpm__.task.__identifier__(), "typename": "test_serialization.Producing"}
    }
    again = from_dict(data)
    assert again.__identifier__() == node.__identifier__()
    assert again.__identifier__() == Bag.C(leaves=sealed_set(output)).__identifier__()
    assert dependencies(again) == []  # a stub is a task of a saved run: nothing to wait for


def test_a_bad_stub_is_refused() -> None:
    output = Leaf.C(x=1)
    output.__xpm__.task = Producing.C(x=2)
    loaded = from_state_dict(state_dict(SerializationContext(), output), partial_loading=True)
    data = to_dict(loaded)
    data["objects"][0]["task"] = {"$stub": {"identifier": "zz"}}
    with pytest.raises(ConfigError, match=r"^Leaf task: a \$stub needs a hex identifier and a typename"):
        from_dict(data)


def test_a_changed_constant_is_refused() -> None:
    data = to_dict(Versioned.C())
    data["objects"][0]["fields"]["version"] = 3
    with pytest.raises(ConfigError, match=r"^Versioned\.version: the stored constant 3 differs from the class's 2"):
        from_dict(data)


# -- classes of the experiment script --------------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys
    from enum import Enum
    from pathlib import Path

    import orjson

    from xpmfs.config import Config, Meta, Param, Task, field, tag, typeid
    from xpmfs.generators import PathGenerator
    from xpmfs.serialization import to_dict

    class Kind(Enum):
        A = 1
        B = 2

    class Settings(Config):
        kind: Param[Kind]

    class Train(Task):
        settings: Param[Settings]
        n: Param[int]
        out: Meta[Path] = field(default_factory=PathGenerator("model.bin"))

    if __name__ == "__main__":
        with open(sys.argv[1], "a") as marker:
            marker.write("ran\\n")
        task = Train.C(settings=Settings.C(kind=Kind.B), n=tag(3))
        task.__xpm__.seal(Path(sys.argv[2]))
        record = {"identifier": task.__identifier__(), "typeid": typeid(task), "config": to_dict(task)}
        sys.stdout.buffer.write(orjson.dumps(record))
    """
)


@pytest.fixture
def isolated_main() -> Iterator[None]:
    """Loading a script registers ``__xpm_main__`` and may extend sys.path: undo both."""
    path = list(sys.path)
    sys.modules.pop(LOADED_MAIN, None)
    yield
    sys.modules.pop(LOADED_MAIN, None)
    sys.path[:] = path


def test_script_classes_load_in_another_process_without_running_main(tmp_path: Path, isolated_main: None) -> None:
    script, marker = tmp_path / "experiment.py", tmp_path / "ran.txt"
    script.write_text(SCRIPT)
    run = subprocess.run(
        [sys.executable, str(script), str(marker), str(tmp_path / "job")], capture_output=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr.decode()
    record = orjson.loads(run.stdout)
    assert record["typeid"] == "__main__.train"
    types = {o["type"]["qualname"]: o["type"] for o in record["config"]["objects"]}
    assert types["Train"] == {"module": "__main__", "qualname": "Train", "file": str(script)}

    task = from_dict(record["config"])
    assert type(task).__module__ == LOADED_MAIN and sys.modules[LOADED_MAIN].__file__ == str(script)
    assert typeid(task) == "__main__.train"
    assert task.__identifier__() == record["identifier"]
    assert task.settings.kind is sys.modules[LOADED_MAIN].Kind.B
    assert task.out == tmp_path / "job" / "model.bin" and tags(task) == {"n": 3}
    assert marker.read_text() == "ran\n"  # the script's main block ran once: in its own process
    # Written again from this process, the classes still point at the script.
    assert to_dict(task)["objects"][-1]["type"] == types["Train"]


def test_a_script_named_through_a_symlink_is_the_script_loaded(tmp_path: Path, isolated_main: None) -> None:
    script, link = tmp_path / "experiment.py", tmp_path / "link.py"
    script.write_text(SCRIPT)
    link.symlink_to(script)
    command = [sys.executable, str(script), str(tmp_path / "ran.txt"), str(tmp_path / "job")]
    run = subprocess.run(command, capture_output=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr.decode()
    config = orjson.loads(run.stdout)["config"]
    first = from_dict(config)
    for record in config["objects"]:
        if record.get("type", {}).get("module") == "__main__":
            record["type"]["file"] = str(link)
    again = from_dict(config)  # the loaded script, found by its real path: not a second load
    assert type(again) is type(first) and again.__identifier__() == first.__identifier__()


def test_a_missing_script_is_reported(tmp_path: Path, isolated_main: None) -> None:
    data = {
        "format": FORMAT,
        "root": 0,
        "objects": [{"id": 0, "type": {"module": "__main__", "qualname": "Train", "file": str(tmp_path / "gone.py")}}],
    }
    with pytest.raises(ConfigError, match=r"^__main__\.Train: the experiment script .*gone\.py does not exist"):
        from_dict(data)
    assert LOADED_MAIN not in sys.modules


def test_a_failing_script_is_reported(tmp_path: Path, isolated_main: None) -> None:
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('boom')\n")
    data = {
        "format": FORMAT,
        "root": 0,
        "objects": [{"id": 0, "type": {"module": "__main__", "qualname": "X", "file": str(script)}}],
    }
    with pytest.raises(
        ConfigError, match=r"^__main__\.X: loading the experiment script .*broken\.py failed \(RuntimeError: boom\)"
    ):
        from_dict(data)


def test_a_second_script_in_one_process_is_refused(tmp_path: Path, isolated_main: None) -> None:
    for name in ("one", "two"):
        (tmp_path / f"{name}.py").write_text("from xpmfs.config import Config\nclass X(Config):\n    pass\n")

    def data(name: str) -> dict[str, Any]:
        ref = {"module": "__main__", "qualname": "X", "file": str(tmp_path / f"{name}.py")}
        return {"format": FORMAT, "root": 0, "objects": [{"id": 0, "type": ref, "fields": {}}]}

    assert typeid(from_dict(data("one"))) == "__main__.x"
    assert type(from_dict(data("one"))) is type(from_dict(data("one")))  # loaded once
    with pytest.raises(ConfigError, match=r"^__main__\.X: needs script .*two\.py, but .*one\.py is already loaded"):
        from_dict(data("two"))
