"""Type variables of generic configurations, bound per instance (experimaestro's rules).

``class Pair(Config, Generic[T])`` with ``x: Param[T]`` and ``y: Param[T]``: the first value set
binds ``T`` to its class for this instance; a later value must be of a class related to the
binding: a subclass keeps it, a superclass widens it (``T`` becomes the superclass), anything
else is refused. A value outside ``T``'s bound (``TypeVar("T", bound=Model)``) is refused.

A configuration given where a type variable is expected (``x: Param[T]``) also brings its own
bindings, by type variable: ``Pair.C(x=Pair.C(x=1, y=2), ...)`` binds ``T`` to ``Pair`` and, through
the inner pair, to ``int``: refused, as experimaestro does. A field typed ``Param[Holder[T]]`` ties
``T`` to what the nested ``Holder`` bound its own type variable to; ``Param[Holder[Model]]`` requires
that binding to be ``Model`` or a subclass, and a value whose class fixes the arguments
(``class IntHolder(Holder[int])``) must fix them to compatible types (a member of a ``Union``
argument is compatible with it).
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar

from .errors import ConfigError

Bindings = dict[TypeVar, type]


def has_typevars(hint: Any) -> bool:
    """Whether ``hint`` mentions a type variable, or a generic configuration class's parameters."""
    if isinstance(hint, TypeVar):
        return True
    if isinstance(hint, type):
        return False
    if typing.get_origin(hint) is not None and any(has_typevars(a) for a in typing.get_args(hint)):
        return True
    return _generic_config(hint) is not None


def _generic_config(hint: Any) -> tuple[type, tuple[Any, ...]] | None:
    """``(Holder, args)`` for ``Holder[X]`` where ``Holder`` is a generic configuration class."""
    origin = typing.get_origin(hint)
    if isinstance(origin, type) and getattr(origin, "__xpm_config__", False) and getattr(origin, "__parameters__", ()):
        return origin, typing.get_args(hint)
    return None


def bind(bindings: Bindings, hint: Any, value: Any, where: str) -> None:
    """Record what ``value`` (already type-checked against ``hint``) tells about type variables."""
    if value is None:
        return
    if isinstance(hint, TypeVar):
        found = type(value)
        _unify(bindings, hint, found.__dict__.get("__xpm_origin__", found), where)  # X for an X.C object
        for typevar, bound in getattr(getattr(value, "__xpm__", None), "typevars", {}).items():
            _unify(bindings, typevar, bound, where)  # a generic configuration's own bindings
        return
    generic = _generic_config(hint)
    if generic is not None:
        origin, args = generic
        _check_class_arguments(hint, origin, args, value, where)
        inner: Bindings = getattr(getattr(value, "__xpm__", None), "typevars", {})
        for parameter, arg in zip(getattr(origin, "__parameters__", ()), args, strict=False):
            bound = inner.get(parameter)
            if bound is None:
                continue
            if isinstance(arg, TypeVar):
                _unify(bindings, arg, bound, where)
            elif isinstance(arg, type) and not issubclass(bound, arg):
                raise ConfigError(
                    where,
                    f"expected {typing._type_repr(hint)}, got a {origin.__qualname__} of {bound.__qualname__}",
                    f"{bound.__qualname__} is not a subtype of {arg.__qualname__}",
                )
        return
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        bind(bindings, args[0], value, where)
    elif origin is typing.Union or origin is types.UnionType:
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            bind(bindings, options[0], value, where)
    elif origin in (list, set, frozenset) and args:
        for item in value:
            bind(bindings, args[0], item, where)
    elif origin is tuple and args:
        items = zip(value, args, strict=False) if args[-1] is not Ellipsis else ((x, args[0]) for x in value)
        for item, item_hint in items:
            bind(bindings, item_hint, item, where)
    elif origin is dict and len(args) == 2:
        for key, item in value.items():
            bind(bindings, args[0], key, where)
            bind(bindings, args[1], item, where)


def _unify(bindings: Bindings, typevar: TypeVar, found: type, where: str) -> None:
    limit = typevar.__bound__
    if isinstance(limit, type) and not issubclass(found, limit):
        raise ConfigError(
            where,
            f"{typevar} is bound to {limit.__qualname__} (its declared bound), got a {found.__qualname__}",
            f"give a {limit.__qualname__}",
        )
    bound = bindings.get(typevar)
    if bound is None or issubclass(found, bound):
        bindings.setdefault(typevar, found)
    elif issubclass(bound, found):
        bindings[typevar] = found  # widened to the common ancestor
    else:
        raise ConfigError(
            where,
            f"{typevar} is bound to {bound.__qualname__} in this configuration, got a {found.__qualname__}",
            f"give a {bound.__qualname__} (or a class related to it), or build another configuration",
        )


def _class_arguments(cls: type, origin: type) -> tuple[Any, ...] | None:
    """The arguments ``cls`` (or a base class of it) gives ``origin``: ``(int,)`` for ``class X(Holder[int])``."""
    for klass in cls.__mro__:
        for base in klass.__dict__.get("__orig_bases__", ()):
            if typing.get_origin(base) is origin:
                return typing.get_args(base)
    return None


def _check_class_arguments(hint: Any, origin: type, expected: tuple[Any, ...], value: Any, where: str) -> None:
    actual = _class_arguments(type(value), origin)
    if not actual:
        return
    for want, got in zip(expected, actual, strict=False):
        if isinstance(want, TypeVar) or isinstance(got, TypeVar):
            continue
        if not _compatible(got, want):
            raise ConfigError(
                where,
                f"expected {typing._type_repr(hint)}, got a {type(value).__qualname__}, "
                f"whose type argument {typing._type_repr(got)} is not compatible with {typing._type_repr(want)}",
            )


def _compatible(actual: Any, expected: Any) -> bool:
    """Whether type argument ``actual`` fits ``expected`` (experimaestro's rule for generic arguments)."""
    if expected is Any or actual is Any:
        return True
    if isinstance(expected, type) and isinstance(actual, type):
        return issubclass(actual, expected)
    if _is_union(expected):
        return any(_compatible(actual, member) for member in typing.get_args(expected))
    if _is_union(actual):
        return all(_compatible(member, expected) for member in typing.get_args(actual))
    want_origin, got_origin = typing.get_origin(expected), typing.get_origin(actual)
    if want_origin is not None and got_origin is not None:
        if not (isinstance(got_origin, type) and isinstance(want_origin, type) and issubclass(got_origin, want_origin)):
            return False
        want_args, got_args = typing.get_args(expected), typing.get_args(actual)
        return not (want_args and got_args) or all(_compatible(a, e) for a, e in zip(got_args, want_args, strict=False))
    return bool(expected == actual)


def _is_union(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin is typing.Union or origin is types.UnionType


__all__ = ["Bindings", "bind", "has_typevars"]
