"""Type variables of generic configurations, bound per instance (experimaestro's rules).

``class Pair(Config, Generic[T])`` with ``x: Param[T]`` and ``y: Param[T]``: the first value set
binds ``T`` to its class for this instance; a later value must be of a class related to the
binding: a subclass keeps it, a superclass widens it (``T`` becomes the superclass), anything
else is refused with a ``TypeError``. A field typed ``Param[Holder[T]]`` ties ``T`` to what the
nested ``Holder`` instance bound its own type variable to, and ``Param[Holder[Model]]`` requires
that binding to be ``Model`` or a subclass.
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
        _unify(bindings, hint, type(value), where)
        return
    generic = _generic_config(hint)
    if generic is not None:
        origin, args = generic
        inner: Bindings = getattr(getattr(value, "__xpm__", None), "typevars", {})
        for parameter, arg in zip(origin.__parameters__, args, strict=False):
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


__all__ = ["Bindings", "bind", "has_typevars"]
