"""Type objects of configuration fields, as experimaestro's ``experimaestro.core.types`` names them.

``Type.fromType(list[int])`` is the type object of an annotation, ``validate(value)`` returns the
value to store or raises :class:`~xpmfs.errors.ConfigError` (both a ``ValueError`` and a
``TypeError``), and a field's ``.type`` (``Model.__xpmtype__.arguments["x"].type``) is such an
object::

    >>> from xpmfs.types import Type
    >>> Type.fromType(tuple[int, str]).validate([1.0, "a"])
    (1, 'a')

They are the very objects that check field assignments (``_types``): one hierarchy, no copy.
"""

from __future__ import annotations

from ._types import (
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

__all__ = [
    "AnyType",
    "ArrayType",
    "BoolType",
    "DictType",
    "EnumType",
    "FloatType",
    "InstanceType",
    "IntType",
    "LiteralType",
    "NoneTypeType",
    "PathType",
    "SetType",
    "StrType",
    "TupleType",
    "Type",
    "TypeVarType",
    "UnionType",
]
