"""Type objects (xpmfs.types): built from annotations, validating values, and given by fields' ``.type``."""

from __future__ import annotations

import enum
import typing
from pathlib import Path
from typing import Any, Optional

import pytest

from xpmfs import Array
from xpmfs.config import Config, Meta, Param
from xpmfs.errors import ConfigError
from xpmfs.types import (
    AnyType,
    ArrayType,
    BoolType,
    DictType,
    EnumType,
    FloatType,
    InstanceType,
    IntType,
    LiteralType,
    NoneTypeType,
    PathType,
    SetType,
    StrType,
    TupleType,
    Type,
    TypeVarType,
    UnionType,
)


class Shade(enum.Enum):
    LIGHT = 1
    DARK = 2


class Layer(Config):
    width: Param[int]


class WideLayer(Layer):
    pass


class Network(Config):
    depth: Param[int]
    rate: Param[float | None]
    dropout: Param[float] = None
    widths: Param[list[int]]
    names: Param[dict[str, Layer]]
    choice: Param[int | str | None]
    shade: Param[Shade] = Shade.LIGHT
    output: Meta[Path] = Path("out")


T = typing.TypeVar("T")


# -- Type.fromType: the type object of an annotation -------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "cls"),
    [
        (int, IntType),
        (float, FloatType),
        (str, StrType),
        (bool, BoolType),
        (Path, PathType),
        (Any, AnyType),
        (type(None), NoneTypeType),
        (Shade, EnumType),
        (Layer, InstanceType),
        (typing.Literal["a", "b"], LiteralType),
        (list[int], ArrayType),
        (typing.List[int], ArrayType),  # noqa: UP006 (the old spelling is what is tested)
        (Array(int), ArrayType),
        (set[str], SetType),
        (dict[str, int], DictType),
        (tuple[int, str], TupleType),
        (tuple[int, ...], TupleType),
        (int | str, UnionType),
        (Optional[int], UnionType),  # noqa: UP045 (the old spelling is what is tested)
        (T, TypeVarType),
    ],
)
def test_from_type_gives_the_class_of_each_annotation(annotation: Any, cls: type) -> None:
    made = Type.fromType(annotation)
    assert type(made) is cls
    assert isinstance(made, Type)


def test_simple_types_are_shared_and_a_type_object_is_returned_as_is() -> None:
    assert Type.fromType(int) is Type.fromType(int)
    listing = Type.fromType(list[int])
    assert Type.fromType(listing) is listing
    assert Type.from_type(list[int]).describe() == listing.describe()  # xpmfs's spelling


def test_nested_types_expose_their_parts() -> None:
    listing = Type.fromType(list[float])
    assert isinstance(listing, ArrayType) and isinstance(listing.type, FloatType)
    mapping = Type.fromType(dict[str, list[int]])
    assert isinstance(mapping, DictType)
    assert isinstance(mapping.keytype, StrType)
    assert isinstance(mapping.valuetype, ArrayType) and isinstance(mapping.valuetype.type, IntType)
    fixed = Type.fromType(tuple[int, str])
    assert isinstance(fixed, TupleType) and not fixed.variadic
    assert [type(t) for t in fixed.types] == [IntType, StrType]
    variadic = Type.fromType(tuple[int, ...])
    assert isinstance(variadic, TupleType) and variadic.variadic
    union = Type.fromType(int | str | None)
    assert isinstance(union, UnionType) and union.optional
    assert [type(t) for t in union.types] == [IntType, StrType, NoneTypeType]
    enum_type = Type.fromType(Shade)
    assert isinstance(enum_type, EnumType) and enum_type.type is Shade
    typevar = Type.fromType(T)
    assert isinstance(typevar, TypeVarType) and typevar.typevar is T


def test_types_describe_themselves_as_written() -> None:
    assert Type.fromType(dict[str, tuple[int, ...]]).describe() == "dict[str, tuple[int, ...]]"
    assert Type.fromType(Optional[list[Layer]]).describe() == "list[Layer] | None"  # noqa: UP045
    assert repr(Type.fromType(set[int])) == "<SetType set[int]>"


@pytest.mark.parametrize("annotation", ["Layer", typing.ForwardRef("Layer"), 3, [int]])
def test_from_type_refuses_what_it_cannot_check(annotation: Any) -> None:
    with pytest.raises(TypeError):
        Type.fromType(annotation)


# -- validate: the value to store, coerced as experimaestro coerces -----------------------------

REFUSED = object()


@pytest.mark.parametrize(
    ("annotation", "given", "stored"),
    [
        (int, 7, 7),
        (int, False, 0),
        (int, 4.0, 4),
        (int, " 12 ", 12),
        (int, 2.5, REFUSED),
        (int, "two", REFUSED),
        (int, None, REFUSED),
        (float, 3, 3.0),
        (float, "2.5", 2.5),
        (float, "much", REFUSED),
        (bool, "yes", True),
        (bool, "off", False),
        (bool, 1.0, True),
        (bool, 2, REFUSED),
        (bool, (), REFUSED),
        (str, "text", "text"),
        (str, 3, REFUSED),
        (str, b"bytes", REFUSED),
        (Path, "a/b", Path("a/b")),
        (Path, 3, REFUSED),
        (Shade, Shade.DARK, Shade.DARK),
        (Shade, 2, REFUSED),
        (typing.Literal["a", 1], 1, 1),
        (typing.Literal["a", 1], True, REFUSED),
        (list[float], [1, "2"], [1.0, 2.0]),
        (list[int], (1,), REFUSED),
        (set[int], {1.0}, {1}),
        (set[int], frozenset({1}), REFUSED),
        (dict[str, int], {"k": 1.0}, {"k": 1}),
        (dict[str, int], [("k", 1)], REFUSED),
        (tuple[int, str], [1.0, "a"], (1, "a")),
        (tuple[int, str], (1, "a", "b"), REFUSED),
        (tuple[int, ...], (), ()),
        (tuple[int, ...], [1, "2"], (1, 2)),
        (tuple[int, ...], (1, "x"), REFUSED),
        (int | None, None, None),
        (int | str, "4", 4),  # left to right: int takes "4" first
        (str | int, "4", "4"),
        (float | int, 1, 1.0),
        (int | str, [], REFUSED),
        (int | str, {"a": 1}, REFUSED),
    ],
)
def test_validate_coerces_or_refuses(annotation: Any, given: Any, stored: Any) -> None:
    made = Type.fromType(annotation)
    if stored is REFUSED:
        with pytest.raises(ConfigError):
            made.validate(given)
    else:
        result = made.validate(given)
        assert result == stored
        assert type(result) is type(stored)


def test_refusals_are_caught_as_value_error_and_as_type_error() -> None:
    with pytest.raises(ValueError):
        Type.fromType(int).validate("x")
    with pytest.raises(TypeError):
        Type.fromType(int).validate("x")


def test_nested_refusal_says_where_in_the_value() -> None:
    with pytest.raises(ConfigError) as caught:
        Type.fromType(list[dict[str, int]]).validate([{"a": 1}, {"b": "x"}])
    assert caught.value.where == "value[1]['b']"
    assert str(caught.value) == "value[1]['b']: expected int, got 'x' (str)"
    with pytest.raises(ConfigError, match=r"^value\['k'\]\[1\]: expected str, got 2 \(int\)$"):
        Type.fromType(dict[str, tuple[int, str]]).validate({"k": (1, 2)})
    with pytest.raises(ConfigError, match=r"^value: expected tuple\[int, str\] \(2 items\), got 1 items"):
        Type.fromType(tuple[int, str]).validate((1,))


def test_an_optional_container_reports_the_bad_item() -> None:
    with pytest.raises(ConfigError) as caught:
        Type.fromType(list[int] | None).validate([1, "x"])
    assert caught.value.where == "value[1]"
    with pytest.raises(ConfigError, match=r"^value: expected list\[int\] \| None, got 3 \(int\)$"):
        Type.fromType(list[int] | None).validate(3)


def test_config_types_accept_instances_of_subclasses() -> None:
    pair = Type.fromType(tuple[Layer, Layer])
    a, b = Layer.C(width=1), WideLayer.C(width=2)
    assert pair.validate((a, b)) == (a, b)
    with pytest.raises(ConfigError, match=r"^value\[1\]: expected Layer, got 3 \(int\)"):
        pair.validate((a, 3))


def test_validate_copies_containers() -> None:
    given = [1, 2]
    stored = Type.fromType(list[int]).validate(given)
    assert stored == given and stored is not given


# -- a field's .type is the type object that checks it -----------------------------------------


def test_field_type_is_the_type_object() -> None:
    arguments = Network.__xpmtype__.arguments
    assert arguments["depth"].type is Type.fromType(int)
    assert isinstance(arguments["widths"].type, ArrayType)
    assert isinstance(arguments["widths"].type.type, IntType)
    names = arguments["names"].type
    assert isinstance(names, DictType)
    assert isinstance(names.keytype, StrType)
    assert isinstance(names.valuetype, InstanceType) and names.valuetype.type is Layer
    assert isinstance(arguments["shade"].type, EnumType)
    assert isinstance(arguments["output"].type, PathType)


def test_field_type_leaves_out_the_none_of_optional() -> None:
    arguments = Network.__xpmtype__.arguments
    assert isinstance(arguments["rate"].type, FloatType)
    assert isinstance(arguments["dropout"].type, FloatType)  # ``= None`` makes it optional
    choice = arguments["choice"].type
    assert isinstance(choice, UnionType) and not choice.optional
    assert [type(t) for t in choice.types] == [IntType, StrType]
    # ... while the field itself still takes None.
    network = Network.C(depth=1, rate=None, dropout=None, widths=[], names={}, choice=None)
    assert network.rate is None and network.dropout is None and network.choice is None


def test_field_assignment_still_names_the_field() -> None:
    network = Network.C()
    with pytest.raises(ConfigError, match=r"^Network\.widths\[1\]: expected int, got 'x' \(str\)"):
        network.widths = [1, "x"]
    with pytest.raises(ConfigError, match=r"^Network\.choice: expected int \| str \| None, got \[\] \(list\)"):
        network.choice = []
