"""Type checks for configuration fields: one small checker object per declared type.

A field's annotation (``int``, ``list[Model]``, ``dict[str, float]``, ``Path | None``...) is
compiled once per class into a checker; assigning a value calls it. A checker returns the value to
store (``float`` fields store floats, ``Path`` fields accept ``str``, ``list`` fields store a fresh
list so the caller's list can change without changing the configuration) or raises
:class:`~xpmfs.errors.ConfigError` naming where the value was going, what was expected and what was
given.
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


class Checker:
    """Validates and normalises one value; ``describe`` is the type as the user wrote it."""

    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def fail(self, value: Any, where: str) -> ConfigError:
        return ConfigError(where, f"expected {self.describe()}, got {_shown(value)}")


class AnyChecker(Checker):
    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        return value

    def describe(self) -> str:
        return "Any"


class TypeVarChecker(AnyChecker):
    """A field typed by a type variable (``x: Param[T]``): any value; the instance binds ``T`` (see _generics)."""

    __slots__ = ("typevar",)

    def __init__(self, typevar: typing.TypeVar) -> None:
        self.typevar = typevar

    def describe(self) -> str:
        return str(self.typevar)


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


class IntChecker(Checker):
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


class FloatChecker(Checker):
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


class StrChecker(Checker):
    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, str):
            return value
        raise self.fail(value, where)

    def describe(self) -> str:
        return "str"


class BoolChecker(Checker):
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


class PathChecker(Checker):
    __slots__ = ()

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, Path):
            return value
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
        raise self.fail(value, where)

    def describe(self) -> str:
        return "Path"


class InstanceChecker(Checker):
    """A class: configurations, enums and any other class given as a type."""

    __slots__ = ("cls",)

    def __init__(self, cls: type) -> None:
        self.cls = cls

    def __call__(self, value: Any, where: str) -> Any:
        if isinstance(value, self.cls):
            return value
        raise self.fail(value, where)

    def describe(self) -> str:
        return self.cls.__qualname__


class EnumChecker(InstanceChecker):
    __slots__ = ()

    def fail(self, value: Any, where: str) -> ConfigError:
        members = ", ".join(f"{self.cls.__qualname__}.{m.name}" for m in self.cls)  # type: ignore[attr-defined]
        return ConfigError(where, f"expected {self.describe()} (one of {members}), got {_shown(value)}")


class LiteralChecker(Checker):
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


class ListChecker(Checker):
    __slots__ = ("item",)

    def __init__(self, item: Checker) -> None:
        self.item = item

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, list):
            raise self.fail(value, where)  # a tuple is refused, as experimaestro does
        check = self.item
        return [check(x, f"{where}[{i}]") for i, x in enumerate(value)]

    def describe(self) -> str:
        return f"list[{self.item.describe()}]"


class SetChecker(Checker):
    __slots__ = ("item",)

    def __init__(self, item: Checker) -> None:
        self.item = item

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, set):
            raise self.fail(value, where)  # a list or a frozenset is refused, as experimaestro does
        check = self.item
        return {check(x, f"{where}[{x!r}]") for x in value}

    def describe(self) -> str:
        return f"set[{self.item.describe()}]"


class TupleChecker(Checker):
    """``tuple[int, str]`` (fixed length) or ``tuple[int, ...]`` (``items`` is then one checker)."""

    __slots__ = ("items", "variadic")

    def __init__(self, items: tuple[Checker, ...], variadic: bool) -> None:
        self.items = items
        self.variadic = variadic

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, (list, tuple)):
            raise self.fail(value, where)
        if self.variadic:
            check = self.items[0]
            return tuple(check(x, f"{where}[{i}]") for i, x in enumerate(value))
        if len(value) != len(self.items):
            raise ConfigError(
                where, f"expected {self.describe()} ({len(self.items)} items), got {len(value)} items: {_shown(value)}"
            )
        return tuple(check(x, f"{where}[{i}]") for i, (check, x) in enumerate(zip(self.items, value, strict=True)))

    def describe(self) -> str:
        if self.variadic:
            return f"tuple[{self.items[0].describe()}, ...]"
        return "tuple[" + ", ".join(c.describe() for c in self.items) + "]"


class DictChecker(Checker):
    __slots__ = ("item", "key")

    def __init__(self, key: Checker, item: Checker) -> None:
        self.key = key
        self.item = item

    def __call__(self, value: Any, where: str) -> Any:
        if not isinstance(value, dict):
            raise self.fail(value, where)
        key, item = self.key, self.item
        return {key(k, f"{where} key {k!r}"): item(v, f"{where}[{k!r}]") for k, v in value.items()}

    def describe(self) -> str:
        return f"dict[{self.key.describe()}, {self.item.describe()}]"


class UnionChecker(Checker):
    """``A | B | None``: the first option that accepts the value wins (options keep their order)."""

    __slots__ = ("optional", "options")

    def __init__(self, options: tuple[Checker, ...], optional: bool) -> None:
        self.options = options
        self.optional = optional

    def __call__(self, value: Any, where: str) -> Any:
        if value is None:
            if self.optional:
                return None
            raise self.fail(value, where)
        # Left to right, the first option that accepts the value wins (experimaestro's rule): so
        # ``float | int`` stores 1 as 1.0, and ``int | str`` stores "1" as 1.
        errors = []
        for option in self.options:
            try:
                return option(value, where)
            except ConfigError as error:
                errors.append(error)
        if len(errors) == 1 and errors[0].where != where:
            raise errors[0]  # inside the only possible container (``list[int] | None``): say where
        raise self.fail(value, where)

    def describe(self) -> str:
        names = [o.describe() for o in self.options]
        if self.optional:
            names.append("None")
        return " | ".join(names)


class Array:
    """``Param[Array(int)]``: experimaestro's older spelling of ``Param[list[int]]`` (same checks, same hash)."""

    __slots__ = ("type",)

    def __init__(self, item_type: Any) -> None:
        self.type = item_type

    def __repr__(self) -> str:
        return f"Array({self.type!r})"


_SIMPLE: dict[Any, Checker] = {
    int: IntChecker(),
    float: FloatChecker(),
    str: StrChecker(),
    bool: BoolChecker(),
    Path: PathChecker(),
    Any: AnyChecker(),
    object: AnyChecker(),
}
ANY = _SIMPLE[Any]


def compile_type(hint: Any, resolve: Resolve) -> Checker:
    """The checker for ``hint``; ``resolve`` evaluates forward references met inside it.

    Raises ``TypeError`` for an annotation that cannot describe a configuration value.
    """
    if isinstance(hint, (str, ForwardRef)):
        hint = resolve(hint)
    if hint is None or hint is type(None):
        return UnionChecker((), optional=True)
    try:
        simple = _SIMPLE.get(hint)
    except TypeError:  # an unhashable annotation (e.g. Annotated metadata): not a simple type
        simple = None
    if simple is not None:
        return simple
    if isinstance(hint, typing.TypeVar):
        return TypeVarChecker(hint)
    if isinstance(hint, Array):
        return ListChecker(compile_type(hint.type, resolve))
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        return compile_type(args[0], resolve)
    if origin is typing.Union or (origin is types.UnionType):
        optional = any(a is type(None) for a in args)
        options = tuple(compile_type(a, resolve) for a in args if a is not type(None))
        if len(options) == 1 and not optional:
            return options[0]
        return UnionChecker(options, optional)
    if origin is typing.Literal:
        return LiteralChecker(args)
    if origin is list:  # also typing.List[...], whose origin is list
        return ListChecker(compile_type(args[0], resolve) if args else ANY)
    if origin in (set, frozenset):
        return SetChecker(compile_type(args[0], resolve) if args else ANY)
    if origin is tuple:
        if not args:
            return TupleChecker((ANY,), variadic=True)
        if len(args) == 2 and args[1] is Ellipsis:
            return TupleChecker((compile_type(args[0], resolve),), variadic=True)
        return TupleChecker(tuple(compile_type(a, resolve) for a in args), variadic=False)
    if origin is dict:
        if not args:
            return DictChecker(ANY, ANY)
        return DictChecker(compile_type(args[0], resolve), compile_type(args[1], resolve))
    if hint is list:
        return ListChecker(ANY)
    if hint in (set, frozenset):
        return SetChecker(ANY)
    if hint is tuple:
        return TupleChecker((ANY,), variadic=True)
    if hint is dict:
        return DictChecker(ANY, ANY)
    if isinstance(hint, type):
        if issubclass(hint, enum.Enum):
            return EnumChecker(hint)
        return InstanceChecker(hint)
    if origin is not None and isinstance(origin, type):
        return InstanceChecker(origin)  # a user generic such as ``Model[int]``: check the class only
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
