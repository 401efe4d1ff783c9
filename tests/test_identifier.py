"""Identifiers: the DESIGN.md test vectors, then every rule of spec/identifiers.md byte by byte.

Expected digests are built here with a tiny independent encoder (``ref_*``), so a test fails if the
implementation writes one byte differently.
"""

from __future__ import annotations

import enum
import hashlib
import struct
import time
from pathlib import Path

import pytest

from xpmfs.config import (
    Config,
    Constant,
    LightweightTask,
    Meta,
    Param,
    Task,
    field,
    setmeta,
    tag,
    task_outputs_of,
    typeid,
)
from xpmfs.errors import ConfigError
from xpmfs.generators import PathGenerator

# -- an independent reference encoder -------------------------------------------------------


def ref_int(value: int) -> bytes:
    return b"\x01" + struct.pack(">q", value)


def ref_float(value: float) -> bytes:
    return b"\x02" + struct.pack(">d", value)


def ref_str(value: str) -> bytes:
    return b"\x03" + value.encode()


def ref_list(*items: bytes) -> bytes:
    return b"\x07" + struct.pack(">d", len(items)) + b"".join(items)


def ref_obj(digest: bytes) -> bytes:
    return b"\x00" + digest


def ref_config(
    type_id: str, *args: tuple[str, bytes], task: bytes | None = None, init: tuple[bytes, ...] = ()
) -> bytes:
    stream = b"\x00"
    if task is not None:
        stream += b"\x08" + ref_obj(task)
    stream += type_id.lower().encode()
    for name, value in sorted(args):
        stream += ref_str(name) + b"\x05" + value
    if init:
        stream += b"\x0c" + b"".join(ref_obj(d) for d in init)
    return hashlib.sha256(stream).digest()


def digest(config: Config) -> bytes:
    return bytes.fromhex(config.__identifier__())


# -- the reference vectors (DESIGN.md) ----------------------------------------------------------


class ConfigInt(Config):
    __xpmid__ = "test.stability.ConfigInt"
    x: Param[int]


class ConfigStr(Config):
    __xpmid__ = "test.stability.ConfigStr"
    s: Param[str]


class ConfigNested(Config):
    __xpmid__ = "test.stability.ConfigNested"
    inner: Param[ConfigInt]


class SimpleTask(Task):
    __xpmid__ = "test.stability.SimpleTask"
    x: Param[int]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: ConfigInt.C(x=42), "dddd2297650a3601b683248175a6ff15ccdc97c49a151f185b14a7c260cdebc8"),
        (lambda: ConfigStr.C(s="hello"), "772227a98d05cab98685b3a11771b768a001fa590a105a77ff4c72663733cf2b"),
        (
            lambda: ConfigNested.C(inner=ConfigInt.C(x=100)),
            "d958cded439ee491aaa93ac5f718533c25b6f5f24909fd8a63b619a59401cb71",
        ),
        (lambda: SimpleTask.C(x=10), "3eee5a80b576c1ec4400e41518322e40f8b233d96b269e6af4f7cbd50a8397a8"),
    ],
    ids=["ConfigInt", "ConfigStr", "ConfigNested", "SimpleTask"],
)
def test_reference_vectors(build, expected) -> None:
    config = build()
    assert config.__identifier__() == expected
    config.__xpm__.seal()
    assert config.__identifier__() == expected  # the cached value is the same


def test_reference_encoder_matches_a_vector() -> None:
    # The helpers below are trustworthy only if they reproduce a published vector.
    assert ref_config("test.stability.ConfigInt", ("x", ref_int(42))).hex().startswith("dddd2297")


# -- value encodings ------------------------------------------------------------------------


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 7


class Values(Config):
    __xpmid__ = "t.values"
    v: Param[object]


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (3, ref_int(3)),
        (-(2**63), ref_int(-(2**63))),
        (True, ref_int(1)),  # bool is an int
        (Level.HIGH, ref_int(7)),  # an IntEnum hashes as an int
        (2.5, ref_float(2.5)),
        ("héllo", ref_str("héllo")),
        (None, b"\x06"),
        ([1, "a"], ref_list(ref_int(1), ref_str("a"))),
        ((1, 2), ref_list(ref_int(1), ref_int(2))),  # a tuple is a list
        ([], ref_list()),
        ({"b": 1, "a": 2.0}, b"\x09" + ref_str("a") + ref_float(2.0) + ref_str("b") + ref_int(1)),
        (Color.BLUE, b"\x0a" + f"{__name__}.Color:BLUE".encode()),
    ],
    ids=["int", "int-min", "bool", "intenum", "float", "str", "none", "list", "tuple", "empty", "dict", "enum"],
)
def test_value_encoding(value, encoded) -> None:
    assert digest(Values.C(v=value)) == ref_config("t.values", ("v", encoded))


def test_set_items_are_sorted_by_their_own_sha256() -> None:
    items = [ref_int(1), ref_int(2), ref_str("x")]
    items.sort(key=lambda chunk: hashlib.sha256(chunk).digest())
    expected = b"\x0e" + struct.pack(">d", 3) + b"".join(items)
    assert digest(Values.C(v={2, "x", 1})) == ref_config("t.values", ("v", expected))
    assert digest(Values.C(v={"x", 1, 2})) == digest(Values.C(v=frozenset([1, 2, "x"])))


def test_arguments_are_sorted_by_name() -> None:
    class_ = type(
        "Two",
        (Config,),
        {"__module__": __name__, "__xpmid__": "t.two", "__annotations__": {"b": Param[int], "a": Param[int]}},
    )
    assert digest(class_.C(b=1, a=2)) == ref_config("t.two", ("a", ref_int(2)), ("b", ref_int(1)))


def test_integer_beyond_64_bits_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"Values\.v.*does not fit in 64 bits"):
        Values.C(v=2**64).__identifier__()


def test_path_inside_a_hashed_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"Values\.v: a path .* cannot be part of an identifier"):
        Values.C(v=[Path("/x")]).__identifier__()


def test_unhashable_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"Values\.v: cannot hash a value of type bytes"):
        Values.C(v=b"raw").__identifier__()


def test_missing_required_parameter_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"ConfigInt\.x: required parameter is not set"):
        ConfigNested.C(inner=ConfigInt.C()).__identifier__()


# -- what is not hashed ---------------------------------------------------------------------
# Each class shares the type id "t.base" with ``Base`` so that "skipped" means "same bytes".


class Base(Config):
    __xpmid__ = "t.base"
    x: Param[int]


BASE_3 = ref_config("t.base", ("x", ref_int(3)))


class WithMeta(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    m: Meta[int]
    p: Param[Path]
    q: Param[Path | None] = None
    out: Meta[Path] = field(default_factory=PathGenerator("out.txt"))
    gen: Param[Path] = field(default_factory=PathGenerator("gen.txt"))


def test_meta_path_and_generated_values_are_not_hashed(tmp_path: Path) -> None:
    config = WithMeta.C(x=3, m=7, p="/data/in", q="/other")
    assert digest(config) == BASE_3
    config.__xpm__.seal(tmp_path)
    assert config.out == tmp_path / "out.txt" and config.gen == tmp_path / "gen.txt"
    assert digest(config) == BASE_3


class WithOptional(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    y: Param[int | None]
    z: Param[str | None] = None


def test_absent_optionals_are_not_hashed() -> None:
    assert digest(WithOptional.C(x=3)) == BASE_3
    assert digest(WithOptional.C(x=3, y=5)) == ref_config("t.base", ("x", ref_int(3)), ("y", ref_int(5)))


class OptionalWithDefault(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    y: Param[int | None] = 4


def test_none_replacing_a_default_is_hashed() -> None:
    assert digest(OptionalWithDefault.C(x=3)) == BASE_3
    assert digest(OptionalWithDefault.C(x=3, y=None)) == ref_config("t.base", ("x", ref_int(3)), ("y", b"\x06"))


class BareDefault(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    d: Param[int] = 5


class IgnoreDefault(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    d: Param[int] = field(ignore_default=5)


class IgnoreDefaultFlag(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    d: Param[int] = field(default=5, ignore_default=True)


class HashedDefault(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    d: Param[int] = field(default=5)


@pytest.mark.parametrize("cls", [BareDefault, IgnoreDefault, IgnoreDefaultFlag])
def test_ignorable_default_is_hashed_only_when_changed(cls) -> None:
    assert digest(cls.C(x=3)) == BASE_3
    assert digest(cls.C(x=3, d=5)) == BASE_3
    assert digest(cls.C(x=3, d=6)) == ref_config("t.base", ("d", ref_int(6)), ("x", ref_int(3)))


def test_field_default_is_always_hashed() -> None:
    assert digest(HashedDefault.C(x=3)) == ref_config("t.base", ("d", ref_int(5)), ("x", ref_int(3)))


class Versioned(Config):
    __xpmid__ = "t.base"
    x: Param[int]
    version: Constant[int] = 2


def test_constants_are_always_hashed() -> None:
    assert digest(Versioned.C(x=3)) == ref_config("t.base", ("version", ref_int(2)), ("x", ref_int(3)))


def test_tags_never_change_an_identifier() -> None:
    tagged = Base.C(x=tag(3))
    tagged.tag("run", "first")
    assert digest(tagged) == BASE_3


class Holder(Config):
    __xpmid__ = "t.holder"
    items: Param[list[Base]]
    named: Param[dict[str, Base]] = field(default_factory=dict)
    one: Param[Base | None] = None
    hidden: Meta[Base | None] = None


def test_meta_configs_are_dropped_from_lists_dicts_and_values() -> None:
    kept, dropped = Base.C(x=3), setmeta(Base.C(x=4))
    config = Holder.C(items=[kept, dropped], named={"a": kept, "b": dropped}, one=setmeta(Base.C(x=5)))
    expected = ref_config(
        "t.holder",
        ("items", ref_list(ref_obj(BASE_3))),
        ("named", b"\x09" + ref_str("a") + ref_obj(BASE_3)),
    )
    assert digest(config) == expected


def test_a_meta_false_config_in_a_meta_field_is_hashed() -> None:
    config = Holder.C(items=[], hidden=setmeta(Base.C(x=3), False))
    expected = ref_config("t.holder", ("hidden", ref_obj(BASE_3)), ("items", ref_list()), ("named", b"\x09"))
    assert digest(config) == expected


def test_shared_and_copied_nested_configs_hash_alike() -> None:
    shared = Base.C(x=3)
    assert digest(Holder.C(items=[shared, shared])) == digest(Holder.C(items=[Base.C(x=3), Base.C(x=3)]))


# -- tasks, outputs, init tasks -------------------------------------------------------------


class Learn(Task):
    __xpmid__ = "t.learn"
    x: Param[int]

    def task_outputs(self, dep):
        return dep(Base.C(x=self.x))


class Loader(LightweightTask):
    __xpmid__ = "t.loader"
    model: Param[Base]


class Evaluate(Task):
    __xpmid__ = "t.evaluate"
    model: Param[Base]


def test_task_output_carries_the_task_digest() -> None:
    learn = Learn.C(x=3)
    output = task_outputs_of(learn)
    learn_digest = ref_config("t.learn", ("x", ref_int(3)))
    assert digest(learn) == learn_digest
    assert digest(output) == ref_config("t.base", ("x", ref_int(3)), task=learn_digest)
    assert digest(output) != BASE_3


def test_a_task_marked_as_its_own_output_has_no_task_prefix() -> None:
    task = SimpleTask.C(x=10)
    assert task_outputs_of(task) is task
    assert task.__identifier__() == "3eee5a80b576c1ec4400e41518322e40f8b233d96b269e6af4f7cbd50a8397a8"


def test_init_tasks_are_hashed_after_the_arguments() -> None:
    model = Base.C(x=3)
    loader = Loader.C(model=model)
    evaluate = Evaluate.C(model=model)
    evaluate.__xpm__.set_init_tasks([loader])
    loader_digest = ref_config("t.loader", ("model", ref_obj(BASE_3)))
    expected = ref_config("t.evaluate", ("model", ref_obj(BASE_3)), init=(loader_digest,))
    assert digest(evaluate) == expected
    assert digest(Evaluate.C(model=model)) != expected


# -- cycles ---------------------------------------------------------------------------------


class Node(Config):
    __xpmid__ = "t.node"
    name: Param[str]
    next: Param[Node | None] = None


def test_cycles_are_written_as_back_references() -> None:
    a, b = Node.C(name="a"), Node.C(name="b")
    a.next, b.next = b, a
    # The distance counts the configurations being hashed from the one referred to: a, b -> 2.
    back_to_a = b"\x00\x0b" + struct.pack(">q", 2)
    b_inside_a = ref_config("t.node", ("name", ref_str("b")), ("next", back_to_a))
    assert digest(a) == ref_config("t.node", ("name", ref_str("a")), ("next", ref_obj(b_inside_a)))
    # c -> d -> e -> c: distance 3.
    c, d, e = Node.C(name="c"), Node.C(name="d"), Node.C(name="e")
    c.next, d.next, e.next = d, e, c
    e_inside = ref_config("t.node", ("name", ref_str("e")), ("next", b"\x00\x0b" + struct.pack(">q", 3)))
    d_inside = ref_config("t.node", ("name", ref_str("d")), ("next", ref_obj(e_inside)))
    assert digest(c) == ref_config("t.node", ("name", ref_str("c")), ("next", ref_obj(d_inside)))


def test_a_self_reference_has_distance_one() -> None:
    a = Node.C(name="a")
    a.next = a
    assert digest(a) == ref_config("t.node", ("name", ref_str("a")), ("next", b"\x00\x0b" + struct.pack(">q", 1)))


def test_digests_inside_a_cycle_are_not_cached() -> None:
    a, b = Node.C(name="a"), Node.C(name="b")
    a.next, b.next = b, a
    expected_a, expected_b = digest(a), digest(b)
    a.__xpm__.seal()
    # Hashing a computed b relative to a; b's own identifier must not be that relative digest.
    assert (digest(a), digest(b)) == (expected_a, expected_b)
    assert b.__xpm__.identifier_cache is None


def test_experimaestros_sealed_and_cached_identifier_names() -> None:
    # cfg.__xpm__._sealed / ._identifier / .__unseal__(): experimaestro's names, over sealed and
    # the identifier cache.
    leaf = Node.C(name="leaf")
    root = Node.C(name="root", next=leaf)
    assert not root.__xpm__._sealed and root.__xpm__._identifier is None
    _ = root.__xpm__.identifier  # computed, not cached: not sealed
    assert root.__xpm__._identifier is None
    root.__xpm__.seal()
    assert root.__xpm__._sealed and leaf.__xpm__._sealed
    assert root.__xpm__._identifier is None  # cached on first use only
    assert root.__xpm__.identifier == root.__xpm__._identifier
    assert leaf.__xpm__._identifier is not None and leaf.__xpm__._identifier.all == digest(leaf)
    root.__xpm__.__unseal__()
    assert not root.__xpm__._sealed and not leaf.__xpm__._sealed
    assert root.__xpm__._identifier is None and leaf.__xpm__._identifier is None
    leaf.name = "changed"  # changeable again, and hashed again
    assert digest(root) == ref_config(
        "t.node", ("name", ref_str("root")), ("next", ref_obj(ref_config("t.node", ("name", ref_str("changed")))))
    )


def test_a_cycle_sealed_from_any_member_has_the_same_identifiers() -> None:
    a, b, c = Node.C(name="a"), Node.C(name="b"), Node.C(name="c")
    a.next, b.next, c.next = b, c, a
    expected = [digest(x) for x in (a, b, c)]
    for start in (a, b, c):
        start.__xpm__.seal()
        assert all(x.__xpm__._sealed for x in (a, b, c))
        assert [digest(x) for x in (a, b, c)] == expected
        start.__xpm__.__unseal__()
        assert not any(x.__xpm__._sealed for x in (a, b, c))


# -- type ids -------------------------------------------------------------------------------


class Renamed(Config):
    __xpmid__ = "My.Custom.ID"


class RenamedChild(Renamed):
    pass


# How a job runner loads the experiment script (built with type() so the annotation is an object,
# as ``__xpm_main__`` is not an importable module here).
FromScript = type("FromScript", (Config,), {"__module__": "__xpm_main__", "__annotations__": {"x": Param[int]}})


class FromSpawn(enum.Enum):
    __module__ = "__mp_main__"
    A = 1


def test_type_ids() -> None:
    assert typeid(Base) == "t.base"
    assert typeid(Renamed.C()) == "my.custom.id"
    assert typeid(RenamedChild) == f"{__name__}.RenamedChild".lower()  # an __xpmid__ is not inherited
    assert typeid(Holder) == "t.holder"


class RenamedLater(Config):
    x: Param[int]


def test_a_type_renamed_through_its_xpmtype_hashes_under_the_new_name() -> None:
    # experimaestro lets a script set X.__xpmtype__.identifier.name (its tests give a class the type
    # id of another this way); configurations hashed afterwards use it.
    RenamedLater.__xpmtype__.identifier.name = "t.later"
    assert typeid(RenamedLater) == "t.later" and str(RenamedLater.__xpmtype__.identifier) == "t.later"
    assert digest(RenamedLater.C(x=1)) == ref_config("t.later", ("x", ref_int(1)))
    RenamedLater.__xpmtype__.identifier.name = "T.Later"  # hashed as given, as experimaestro does
    assert typeid(RenamedLater.C(x=1)) == "T.Later"
    with pytest.raises(TypeError, match="a type id is a str"):
        RenamedLater.__xpmtype__.identifier.name = 3  # type: ignore[assignment]


def test_script_classes_hash_as_main() -> None:
    assert typeid(FromScript) == "__main__.fromscript"
    assert digest(FromScript.C(x=1)) == ref_config("__main__.fromscript", ("x", ref_int(1)))
    assert digest(Values.C(v=FromSpawn.A)) == ref_config("t.values", ("v", b"\x0a__main__.FromSpawn:A"))


# -- caching and speed ----------------------------------------------------------------------


def test_identifier_is_cached_once_sealed() -> None:
    config = ConfigNested.C(inner=ConfigInt.C(x=100))
    assert config.__xpm__.identifier_cache is None
    config.__identifier__()
    assert config.__xpm__.identifier_cache is None  # not sealed: values may still change
    config.inner.x = 101
    changed = config.__identifier__()
    config.__xpm__.seal()
    assert config.__identifier__() == changed
    assert config.__xpm__.identifier_cache == bytes.fromhex(changed)
    assert config.inner.__xpm__.identifier_cache is not None


def test_identifier_of_a_small_config_is_fast() -> None:
    config = ConfigNested.C(inner=ConfigInt.C(x=100))
    runs = 2000
    start = time.perf_counter()
    for _ in range(runs):
        config.__identifier__()
    per_call = (time.perf_counter() - start) / runs
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} µs per identifier"
