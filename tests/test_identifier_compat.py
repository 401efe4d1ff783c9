"""Identifiers of the experimaestro 2.7 constructs added for compatibility.

Each expected digest was computed by experimaestro 2.7.0 itself (tools/compat, side venv) on the
same classes; spec/identifiers.md lists them. The byte streams are also rebuilt independently.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Generic, TypeVar

import pytest

from xpmfs import (
    Config,
    DataPath,
    Identifier,
    InstanceConfig,
    LightweightTask,
    Param,
    Task,
    deprecate,
    field,
    stop_tags,
    tag,
)

NS = Identifier("test.ns")
T = TypeVar("T")


class NsA(Config):
    __xpmid__ = NS.a
    x: Param[int]


class NsChild(NsA):  # an Identifier is inherited
    pass


class Fac(Config):
    __xpmid__ = "test.vec.Fac"
    a: Param[int] = field(default_factory=lambda: 1, ignore_default=True)
    b: Param[int]


class FacAlways(Config):
    __xpmid__ = "test.vec.FacAlways"
    a: Param[int] = field(default_factory=lambda: 1)


class Sub(InstanceConfig):
    __xpmid__ = "test.vec.Sub"
    v: Param[int] = field(default=100, ignore_default=True)


class Main(Config):
    __xpmid__ = "test.vec.Main"
    m1: Param[Sub]
    m2: Param[Sub]


class Data(Config):
    __xpmid__ = "test.vec.Data"
    x: Param[int]
    path: DataPath


class Holder(Config):
    __xpmid__ = "test.vec.Holder"
    inner: Param[NsA]
    n: Param[int] = field(default=0, ignore_generated=True)


class Gen(Config, Generic[T]):
    __xpmid__ = "test.vec.Gen"
    x: Param[T]


class DepNew(Config):
    __xpmid__ = "test.deprecate.vec.new"
    values: Param[list[int]]


@deprecate(DepNew)
class DepOld(Config):
    __xpmid__ = "test.deprecate.vec.old"
    value: Param[int]

    def __convert__(self) -> DepNew:
        return DepNew.C(values=[self.value])


class DepBase(Config):
    __xpmid__ = "test.deprecate.vec.base"
    x: Param[int]


@deprecate
class DepLegacy(DepBase):
    __xpmid__ = "test.deprecate.vec.legacy"


class DepOuter(Config):
    __xpmid__ = "test.deprecate.vec.outer"
    inner: Param[Config]


@deprecate(DepNew, replace=True)
class DepReplaced(Config):
    __xpmid__ = "test.deprecate.vec.replaced"
    value: Param[int]

    def __convert__(self) -> DepNew:
        return DepNew.C(values=[self.value])


class DepValues(Config):
    __xpmid__ = "test.deprecate.vec.attribute"
    values: Param[list[int]] = field(default=[], ignore_default=True)

    @deprecate
    def value(self, x: int) -> None:
        self.values = [x]


class Coerce(Config):
    __xpmid__ = "test.vec.Coerce"
    i: Param[int]
    f: Param[float]
    b: Param[bool]
    fi: Param[float | int]
    istr: Param[int | str]


def _shared() -> Main:
    sub = Sub.C()
    return Main.C(m1=sub, m2=sub)


class InitLight(LightweightTask):
    __xpmid__ = "test.init.Init"
    x: Param[int]


class InitPlain(Config):
    __xpmid__ = "test.init.Plain"
    x: Param[int]


class InitPre(Task):
    __xpmid__ = "test.init.Pre"
    x: Param[int]


class InitMain(Task):
    __xpmid__ = "test.init.Main"
    y: Param[int]


def _with_init(*init_tasks: Config) -> InitMain:
    main = InitMain.C(y=1)
    main.__xpm__.set_init_tasks(init_tasks)
    return main


# Computed by experimaestro 2.7.0.
VECTORS = {
    "init-none": (_with_init, "54660d09e9bdf2428b4b4a1a16f5ed6a76a7493f3ef4b720091208dc918143a4"),
    "init-lightweight": (
        lambda: _with_init(InitLight.C(x=1)),
        "627c3a6d4b3f7a578166f5df5673e677d62a584f4cbdd3023c2acfb04674ec6e",
    ),
    "init-plain-config": (
        lambda: _with_init(InitPlain.C(x=1)),
        "6b2c417ceb159563630b76ebb61dff60ee3eb286205591593ba321d2539ef3ca",
    ),
    "init-task": (
        lambda: _with_init(InitPre.C(x=1)),
        "3805cfc3448d6be444196dcbdc0559c3e8d28fd807f2ce617cbf5e835d3c07a3",
    ),
    "init-task-then-lightweight": (
        lambda: _with_init(InitPre.C(x=1), InitLight.C(x=2)),
        "8b3d1e532ab96dbe262a7fc586cfa0152f1a5e0a4e51cd01fec221f17320f9fe",
    ),
    "namespace": (lambda: NsA.C(x=1), "ec9a51dbab53aa48d3b5048e07c42cd57e28188a5484cb20301f1da1b59421ab"),
    "namespace-inherited": (lambda: NsChild.C(x=1), "ec9a51dbab53aa48d3b5048e07c42cd57e28188a5484cb20301f1da1b59421ab"),
    "factory-ignored-default": (lambda: Fac.C(b=2), "ef38c03470a1751281648da3880dca86dbfd6a3714f16af7eeeadfee9517f003"),
    "factory-ignored-same": (
        lambda: Fac.C(a=1, b=2),
        "ef38c03470a1751281648da3880dca86dbfd6a3714f16af7eeeadfee9517f003",
    ),
    "factory-ignored-other": (
        lambda: Fac.C(a=2, b=2),
        "5b9a8d839771bf9a1a9e2fbca84de92ab7f3525e727d8cf3256febef891fa796",
    ),
    "factory-always": (FacAlways.C, "af45d98221d5322785a0fd8c49d3c9d72c102f76ea4813adcb98427ae29c1873"),
    "instance-shared": (_shared, "12a94cb20f2b4397805a25817bc847ff24314284545e52843bb20a86b12d51d6"),
    "instance-separate": (
        lambda: Main.C(m1=Sub.C(), m2=Sub.C()),
        "e61884cd7fb06d756e1a55fe940182a9bb3e8916f3255f044cdc8b2c849bc9e9",
    ),
    "datapath": (
        lambda: Data.C(x=1, path=Path("/a")),
        "c17f7e1a8b6bfe46590ae5643c4d4b4d5848d944aa9811025c1cbada4819e963",
    ),
    "stop_tags": (
        lambda: Holder.C(inner=stop_tags(NsA.C(x=tag(3)))),
        "ddc0eccf5f5d59d1c43a2b94d82a695f90bedc0f8eb4cd973e2a4608669c4c7c",
    ),
    "generic-int": (lambda: Gen.C(x=1), "36304a40b4a8eb47f42f8edf27c2357603cdd068982e22eb2f5f8a6da1740804"),
    "generic-str": (lambda: Gen.C(x="a"), "5e0ce49b3e207bb3d8d0ce9236e5073caa4b94ad36b30992ba071d4ab070f7ed"),
    "deprecated-convert": (
        lambda: DepOld.C(value=42),
        "1cf4b171389385ee45f13124bba9e9f0663b8a6e4088948bbe48ee74b95149d1",
    ),
    "deprecated-target": (
        lambda: DepNew.C(values=[42]),
        "1cf4b171389385ee45f13124bba9e9f0663b8a6e4088948bbe48ee74b95149d1",
    ),
    "deprecated-legacy": (
        lambda: DepLegacy.C(x=1),
        "e9652e7a78246f7d1cf59d11b48bb0fd9584ebd9eed0f6ae560c8521452f6344",
    ),
    "deprecated-legacy-base": (
        lambda: DepBase.C(x=1),
        "e9652e7a78246f7d1cf59d11b48bb0fd9584ebd9eed0f6ae560c8521452f6344",
    ),
    "deprecated-nested": (
        lambda: DepOuter.C(inner=DepOld.C(value=7)),
        "6f30025e23902d1627f1dff71de9e1dceefc769b36e25b91f77b4ed082d27fc1",
    ),
    "deprecated-nested-target": (
        lambda: DepOuter.C(inner=DepNew.C(values=[7])),
        "6f30025e23902d1627f1dff71de9e1dceefc769b36e25b91f77b4ed082d27fc1",
    ),
    "deprecated-replace": (
        lambda: DepReplaced.C(value=3),
        "bfa6fcc0ac771d2659b5640dea97f511a1364ec30d2bd8c06cf9b705c76b01ee",
    ),
    "coerced": (
        lambda: Coerce.C(i=True, f=1, b="false", fi=1, istr="1"),
        "112e8c8ae9014173e2b023c5854456a2c1f025e9da99c7401441e6c4fbdc6b17",
    ),
    "coerced-plain": (
        lambda: Coerce.C(i=1, f=1.0, b=False, fi=1.0, istr=1),
        "112e8c8ae9014173e2b023c5854456a2c1f025e9da99c7401441e6c4fbdc6b17",
    ),
    "coerced-text": (
        lambda: Coerce.C(i="5", f="1.5", b="yes", fi=2, istr="x"),
        "d68c6127b21b80dc5d77d67a5dd938eae1e372bcffd16cffba6d49e3b025b149",
    ),
    "deprecated-attribute": (
        lambda: DepValues.C(value=5),
        "288dfb03f9eb592afa5af9a76b29a9812691ab73d182d4aead68b014f5c26018",
    ),
}


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_experimaestro_vectors(name: str) -> None:
    build, expected = VECTORS[name]
    assert build().__identifier__() == expected


def _stream_digest(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def test_namespace_type_id_is_lower_cased_and_inherited() -> None:
    assert str(NS.a) == "test.ns.a" and NS["b"] == Identifier("TEST.NS.B")
    expected = _stream_digest(b"\x00", b"test.ns.a", b"\x03x\x05", b"\x01" + struct.pack(">q", 1))
    assert NsChild.C(x=1).__identifier__() == expected.hex()
    assert NsChild.__xpmtype__.identifier == NS.a


def test_a_second_distinct_instance_config_carries_its_rank() -> None:
    sub_digest = _stream_digest(b"\x00", b"test.vec.sub")
    nested = b"\x00" + sub_digest
    separate = _stream_digest(
        b"\x00test.vec.main", b"\x03m1\x05", nested, b"\x03m2\x05", nested, b"\x0d" + struct.pack(">q", 1)
    )
    assert Main.C(m1=Sub.C(), m2=Sub.C()).__identifier__() == separate.hex()


def test_stop_tags_datapath_and_ignore_generated_leave_identifiers_alone() -> None:
    assert Holder.C(inner=stop_tags(NsA.C(x=3))).__identifier__() == Holder.C(inner=NsA.C(x=3)).__identifier__()
    assert Data.C(x=1, path=Path("/a")).__identifier__() == Data.C(x=1, path=Path("/b")).__identifier__()


def test_deprecation_keeps_the_original_type_id_and_replace_converts() -> None:
    xpmtype = DepOld.__xpmtype__
    assert xpmtype.deprecated and xpmtype.identifier == Identifier("test.deprecate.vec.new")
    assert xpmtype._deprecated_identifier == Identifier("test.deprecate.vec.old")
    assert xpmtype._deprecation is not None and xpmtype._deprecation.target is DepNew
    assert DepLegacy.__xpmtype__._deprecation.target is DepBase  # type: ignore[union-attr]
    old = DepOld.C(value=1)
    assert type(old) is DepOld.C and old.value == 1  # configurations are X.C (X.XPMConfig) objects
    replaced = DepReplaced.C(value=3)
    assert type(replaced) is DepNew.C and replaced.values == [3]
    assert type(replaced._deprecated_from) is DepReplaced.C and replaced._deprecated_from.value == 3
    assert DepNew.C(values=[1])._deprecated_from is None


def test_a_deprecated_parameter_is_a_setter(caplog: pytest.LogCaptureFixture) -> None:
    values = DepValues.C()
    values.value = 4  # type: ignore[method-assign,assignment]
    assert values.values == [4] and "Parameter value is deprecated" in caplog.text
    with pytest.raises(AttributeError, match="deprecated parameter"):
        _ = values.value


def test_setting_a_parameter_only_the_replaced_class_had_warns_and_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Extra(Config):
        __xpmid__ = "test.deprecate.extra"
        value: Param[int]
        extra: Param[str] = field(default="x", ignore_default=True)

        def __convert__(self) -> DepNew:
            return DepNew.C(values=[self.value])

    deprecate(DepNew, replace=True)(Extra)
    result = Extra.C(value=1)
    result.extra = "y"  # type: ignore[attr-defined]
    assert "extra" in caplog.text and "deprecated" in caplog.text
    assert "extra" not in result.__dict__
