"""``forwardoption``: a click option made from a configuration field (experimaestro's ``experimaestro.click``).

``@forwardoption.epochs(Learn)`` is ``@click.option("--epochs", help=<the field's help>,
default=<its default>)``; ``@forwardoption.epochs(Learn, "my-epochs")`` names the option
``--my-epochs``; ``default=`` overrides the default. ``forwardoption.model.epochs(Learn)``
follows ``Learn.model``'s declared configuration class to its ``epochs`` field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ._classinfo import MISSING, Field, class_info, is_config_class


class _ForwardOptionType(type):
    def __getattr__(cls, name: str) -> forwardoption:
        if name.startswith("__") and name.endswith("__"):  # introspection (inspect, IDEs) finds nothing
            raise AttributeError(name)
        return forwardoption((name,))


class forwardoption(metaclass=_ForwardOptionType):  # noqa: N801 -- experimaestro's name
    """``forwardoption.<field>[.<field>...](cls, option_name=None, default=...)``: a click option decorator."""

    def __init__(self, path: tuple[str, ...] = ()) -> None:
        self.path = path

    def __getattr__(self, name: str) -> forwardoption:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return forwardoption((*self.path, name))

    def field(self, cls: type) -> Field:
        """The field the path names, starting from configuration class ``cls``."""
        current: Any = cls
        found: Field | None = None
        for depth, name in enumerate(self.path):
            if not (isinstance(current, type) and is_config_class(current)):
                where = ".".join(self.path[:depth])
                raise TypeError(f"forwardoption: {where} is not a configuration field ({current!r})")
            fields = class_info(current).fields
            if name not in fields:
                raise AttributeError(f"forwardoption: {current.__qualname__} has no field {name!r}")
            found = fields[name]
            current = found.hint
        if found is None:
            raise TypeError("forwardoption needs a field name: forwardoption.<field>(cls)")
        return found

    def __call__(self, cls: type, option_name: str | None = None, **kwargs: Any) -> Callable[[Any], Any]:
        f = self.field(cls)
        name = f"--{option_name or f.name.replace('_', '-')}"
        default = kwargs.get("default", None if f.default is MISSING else f.default)
        return click.option(name, help=f.help or "", default=default)


__all__ = ["forwardoption"]
