"""Type objects of configuration fields: one small object per declared type, which checks values.

A field's annotation (``int``, ``list[Model]``, ``dict[str, float]``, ``Path | None``...) is
compiled once per class into a :class:`Type`; assigning a value calls it. A type returns the value
to store (``float`` fields store floats, ``Path`` fields accept ``str``, ``list`` fields store a
fresh list so the caller's list can change without changing the configuration) or raises
:class:`~xpmfs.errors.ConfigError` naming where the value was going, what was expected and what was
given. The same objects are experimaestro's ``experimaestro.core.types`` (``Type.fromType``,
``validate``, ``IntType``...): :mod:`xpmfs.types` is their public face.
"""

from __future__ import annotations

import enum
import numbers
import operator
import os
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ForwardRef

from .errors import ConfigError

Resolve = Callable[[Any], Any]
"""Turns a forward reference (``"Model"`` or ``ForwardRef("Model")``) into the object it names."""


def _shown(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


class Type:
    """A field's type: checks one value and returns the value to store (coerced when the type says so).

    Field assignment calls it, ``field_type(value, where)``, with ``where`` naming the field, so the
    error says where the value was going. :meth:`validate` checks a value that goes to no field
    (experimaestro's ``Type.validate``). ``describe`` spells the type as the user wrote it.
    """

    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def validate(self, value: Any) -> Any:
        """The value to store for ``value``, or :class:`~xpmfs.errors.ConfigError` (a ``ValueError``
        and a ``TypeError``) whose ``where`` locates the bad part, as in ``value[1]['b']``."""
        return self(value, "value")

    @staticmethod
    def from_type(annotation: Any) -> Type:
        """The type object of ``annotation`` (``int``, ``list[Model]``, ``tuple[int, ...]``...).

        A type object is returned as it is. Raises ``TypeError`` for an annotation that does not
        describe a configuration value, or a forward reference (``"Model"``): pass the class.
        """
        if isinstance(annotation, Type):
            return annotation
        return compile_type(annotation, _unresolved)

    fromType = from_type  # noqa: N815 (experimaestro's spelling)

    def fail(self, value: Any, where: str) -> ConfigError:
        return ConfigError(where, f"expected {self.describe()}, got {_shown(value)}")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def _unresolved(reference: Any) -> Any:
    name = reference if isinstance(reference, str) else reference.__forward_arg__
    raise TypeError(f"cannot resolve the forward reference {name!r} here: give the class itself")


class AnyType(Type):
    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        return value

    def describe(self) -> str:
        return "Any"


class TypeVarType(AnyType):
    """A field typed by a type variable (``x: Param[T]``): any value; the instance binds ``T`` (see _generics)."""

    __slots__ = ("typevar",)

    def __init__(self, typevar: typing.TypeVar) -> None:
        self.typevar = typevar

    def describe(self) -> str:
        return str(self.typevar)


class NoneTypeType(Type):
    """``None`` (``type(None)``), alone or as the ``None`` of ``X | None``."""

    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if value is None:
            return None
        raise self.fail(value, where)

    def describe(self) -> str:
        return "None"


_INT_TEXT = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?")
_TRUE_TEXT = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_TEXT = frozenset({"0", "off", "f", "false", "n", "no"})


def _text(value: Any) -> str | None:
    """``value`` as text when it is ``str`` or ASCII ``bytes`` (experimaestro parses both)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


class IntType(Type):
    """experimaestro's (pydantic's lax) int: ``True`` is 1, ``3.0`` is 3, ``"5"`` is 5; ``1.5`` is refused."""

    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if type(value) is int:
            return value
        if isinstance(value, int):
            return int(value)  # bool, IntEnum: stored (and hashed) as a plain int
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            raise self.fail(value, where)
        text = _text(value)
        if text is not None:
            text = text.strip()
            if _INT_TEXT.fullmatch(text):
                return int(text.split(".", 1)[0])
            raise self.fail(value, where)
        if hasattr(value, "__index__"):  # numpy integers
            return operator.index(value)
        raise self.fail(value, where)

    def describe(self) -> str:
        return "int"


class FloatType(Type):
    """experimaestro's (pydantic's lax) float: ints and bools convert, and so does numeric text."""

    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if type(value) is float:
            return value
        if isinstance(value, numbers.Real):
            return float(value)  # stored as float so 1 and 1.0 give one identifier
        text = _text(value)
        if text is not None:
            try:
                return float(text)
            except ValueError:
                raise self.fail(value, where) from None
        raise self.fail(value, where)

    def describe(self) -> str:
        return "float"


class StrType(Type):
    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return value
        raise self.fail(value, where)

    def describe(self) -> str:
        return "str"


class BoolType(Type):
    """experimaestro's (pydantic's lax) bool: also 0/1 (int or float) and "true"/"false", "yes"/"no"..."""

    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        text = _text(value)
        if text is not None:
            lowered = text.lower()
            if lowered in _TRUE_TEXT:
                return True
            if lowered in _FALSE_TEXT:
                return False
        raise self.fail(value, where)

    def describe(self) -> str:
        return "bool"


class PathType(Type):
    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, Path):
            return value
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise self.fail(value, where)

    def describe(self) -> str:
        return "Path"


class InstanceType(Type):
    """A class (``type``): configurations and any other class given as a type; the value must be an instance."""

    __slots__ = ("type",)

    def __init__(self, cls: type) -> None:
        self.type = cls

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, self.type):
            return value
        raise self.fail(value, where)

    def describe(self) -> str:
        return self.type.__qualname__


class TaskType(InstanceType):
    """A task class (``Param[Learner]``, ``Param[Task | None]``): the value must also have a job.

    As in experimaestro, a task given as a value must be submitted first: the job that uses it
    waits for its job, and a task never submitted has none. A sealed task (loaded from a job
    folder) stands for a job already made. Task classes carry ``__xpm_task__`` (the
    configuration layer is not imported here)."""

    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        value = super().__call__(value, where)
        if getattr(type(value), "__xpm_configobject__", False):  # a configuration, not a built object
            info = value.__xpm__
            if info.job is None and not info.sealed:
                name = type(value).__dict__.get("__xpm_origin__", type(value)).__qualname__
                raise ConfigError(
                    where,
                    f"the {name} task given is not submitted: the job that uses it would wait for a job that"
                    " does not exist",
                    f"submit it first and pass what submit() returns, e.g. {name}.C(...).submit()",
                )
        return value


class EnumType(InstanceType):
    """An ``Enum`` class (``type``): the value must be one of its members."""

    __slots__ = ()

    def fail(self, value: Any, where: str) -> ConfigError:
        members = ", ".join(f"{self.type.__qualname__}.{m.name}" for m in self.type)  # type: ignore[attr-defined]
        return ConfigError(where, f"expected {self.describe()} (one of {members}), got {_shown(value)}")


class LiteralType(Type):
    __slots__ = ("values",)

    def __init__(self, values: tuple[Any, ...]) -> None:
        self.values = values

    def __call__(self, value: Any, where: str) -> Any:
        for allowed in self.values:
            if type(value) is type(allowed) and value == allowed:
                return value
        raise self.fail(value, where)

    def describe(self) -> str:
        return "Literal[" + ", ".join(repr(v) for v in self.values) + "]"


class ArrayType(Type):
    """``list[X]`` (or ``Array(X)``): a list whose items are of type ``type``."""

    __slots__ = ("type",)

    def __init__(self, item: Type) -> None:
        self.type = item

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise self.fail(value, where)  # a tuple is refused, as experimaestro does
        check = self.type
        return [check(x, f"{where}[{i}]") for i, x in enumerate(value)]

    def describe(self) -> str:
        return f"list[{self.type.describe()}]"


class SetType(Type):
    """``set[X]``: a set whose items are of type ``type``."""

    __slots__ = ("type",)

    def __init__(self, item: Type) -> None:
        self.type = item

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, set):
            raise self.fail(value, where)  # a list or a frozenset is refused, as experimaestro does
        check = self.type
        return {check(x, f"{where}[{x!r}]") for x in value}

    def describe(self) -> str:
        return f"set[{self.type.describe()}]"


class TupleType(Type):
    """``tuple[int, str]`` (fixed length) or, when ``variadic``, ``tuple[int, ...]`` (``types`` is then one type)."""

    __slots__ = ("types", "variadic")

    def __init__(self, types: tuple[Type, ...], variadic: bool) -> None:
        self.types = types
        self.variadic = variadic

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, (list, tuple)):
            raise self.fail(value, where)
        if self.variadic:
            check = self.types[0]
            return tuple(check(x, f"{where}[{i}]") for i, x in enumerate(value))
        if len(value) != len(self.types):
            raise ConfigError(
                where, f"expected {self.describe()} ({len(self.types)} items), got {len(value)} items: {_shown(value)}"
            )
        return tuple(check(x, f"{where}[{i}]") for i, (check, x) in enumerate(zip(self.types, value, strict=True)))

    def describe(self) -> str:
        if self.variadic:
            return f"tuple[{self.types[0].describe()}, ...]"
        return "tuple[" + ", ".join(c.describe() for c in self.types) + "]"


class DictType(Type):
    """``dict[K, V]``: keys of type ``keytype``, values of type ``valuetype``."""

    __slots__ = ("keytype", "valuetype")

    def __init__(self, keytype: Type, valuetype: Type) -> None:
        self.keytype = keytype
        self.valuetype = valuetype

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise self.fail(value, where)
        key, item = self.keytype, self.valuetype
        return {key(k, f"{where} key {k!r}"): item(v, f"{where}[{k!r}]") for k, v in value.items()}

    def describe(self) -> str:
        return f"dict[{self.keytype.describe()}, {self.valuetype.describe()}]"


class UnionType(Type):
    """``A | B | None``: the first of ``types`` that accepts the value wins (they keep their order)."""

    __slots__ = ("optional", "types")

    def __init__(self, types: tuple[Type, ...]) -> None:
        self.types = types
        self.optional = any(isinstance(t, NoneTypeType) for t in types)
        """Whether ``None`` is one of the types (``X | None``)."""

    def __call__(self, value: Any, where: str) -> Any:
        if value is None and self.optional:
            return None
        # Left to right, the first type that accepts the value wins (experimaestro's rule): so
        # ``float | int`` stores 1 as 1.0, and ``int | str`` stores "1" as 1.
        errors: list[tuple[Type, ConfigError]] = []
        for option in self.types:
            try:
                return option(value, where)
            except ConfigError as error:
                if not isinstance(option, NoneTypeType):
                    errors.append((option, error))
        if len(errors) == 1:
            only, refusal = errors[0]
            # The only possible type refused the value for a reason of its own: inside a container
            # (``list[int] | None``), or a task not submitted (``Task | None``): say that.
            if refusal.where != where or (isinstance(only, InstanceType) and isinstance(value, only.type)):
                raise refusal
        raise self.fail(value, where)

    def describe(self) -> str:
        return " | ".join(t.describe() for t in self.types)

    def without_none(self) -> Type:
        """The type without its ``None``: ``int`` for ``int | None``."""
        rest = tuple(t for t in self.types if not isinstance(t, NoneTypeType))
        if len(rest) == 1:
            return rest[0]
        return self if len(rest) == len(self.types) else UnionType(rest)


def optional(check: Type) -> Type:
    """``check | None`` (``check`` itself when it accepts ``None`` already)."""
    if isinstance(check, (AnyType, NoneTypeType)) or (isinstance(check, UnionType) and check.optional):
        return check
    return UnionType((check, NONE))


class Array:
    """``Param[Array(int)]``: experimaestro's older spelling of ``Param[list[int]]`` (same checks, same hash)."""

    __slots__ = ("type",)

    def __init__(self, item_type: Any) -> None:
        self.type = item_type

    def __repr__(self) -> str:
        return f"Array({self.type!r})"


_SIMPLE: dict[Any, Type] = {
    int: IntType(),
    float: FloatType(),
    str: StrType(),
    bool: BoolType(),
    Path: PathType(),
    Any: AnyType(),
    object: AnyType(),
    None: NoneTypeType(),
    type(None): NoneTypeType(),
}
ANY = _SIMPLE[Any]
NONE = _SIMPLE[None]


def compile_type(hint: Any, resolve: Resolve) -> Type:
    """The type object of ``hint``; ``resolve`` evaluates forward references met inside it.

    Raises ``TypeError`` for an annotation that cannot describe a configuration value.
    """
    if isinstance(hint, (str, ForwardRef)):
        hint = resolve(hint)
    try:
        simple = _SIMPLE.get(hint)
    except TypeError:  # an unhashable annotation (e.g. Annotated metadata): not a simple type
        simple = None
    if simple is not None:
        return simple
    if isinstance(hint, typing.TypeVar):
        return TypeVarType(hint)
    if isinstance(hint, Array):
        return ArrayType(compile_type(hint.type, resolve))
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return compile_type(args[0], resolve)
    if origin is typing.Union or (origin is types.UnionType):
        members = tuple(compile_type(a, resolve) for a in args)
        return members[0] if len(members) == 1 else UnionType(members)
    if origin is typing.Literal:
        return LiteralType(args)
    if origin is list:  # also typing.List[...], whose origin is list
        return ArrayType(compile_type(args[0], resolve) if args else ANY)
    if origin in (set, frozenset):
        return SetType(compile_type(args[0], resolve) if args else ANY)
    if origin is tuple:
        if not args:
            return TupleType((ANY,), variadic=True)
        if len(args) == 2 and args[1] is Ellipsis:
            return TupleType((compile_type(args[0], resolve),), variadic=True)
        return TupleType(tuple(compile_type(a, resolve) for a in args), variadic=False)
    if origin is dict:
        if not args:
            return DictType(ANY, ANY)
        return DictType(compile_type(args[0], resolve), compile_type(args[1], resolve))
    if hint is list:
        return ArrayType(ANY)
    if hint in (set, frozenset):
        return SetType(ANY)
    if hint is tuple:
        return TupleType((ANY,), variadic=True)
    if hint is dict:
        return DictType(ANY, ANY)
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return EnumType(hint)
        if getattr(hint, "__xpm_task__", False):
            return TaskType(hint)
        return InstanceType(hint)
    if origin is not None and isinstance(origin, type):
        return InstanceType(origin)  # a user generic such as ``Model[int]``: check the class only
    raise TypeError(f"{hint!r} is not a type xpmfs can check")


def is_path_type(hint: Any) -> bool:
    """Whether ``hint`` is ``Path`` or ``Path | None``: such parameters are not hashed (experimaestro)."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return is_path_type(typing.get_args(hint)[0])
    if origin is typing.Union or origin is types.UnionType:
        rest = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(rest) == 1 and is_path_type(rest[0])
    return hint is Path


def allows_none(hint: Any) -> bool:
    """Whether ``hint`` is ``Optional[...]`` (or ``Any``)."""
    origin = typing.get_origin(hint)
    if origin is typing.Annotated:
        return allows_none(typing.get_args(hint)[0])
    if origin is typing.Union or origin is types.UnionType:
        return any(a is type(None) for a in typing.get_args(hint))
    return hint is Any or hint is None or hint is type(None)
