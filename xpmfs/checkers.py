"""Value checkers: ``Param[Annotated[str, Choices(["adam", "sgd"])]]`` refuses other values.

A checker is annotation metadata; the field's type is checked first, then the checker.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._annotation import FieldAnnotation


class Checker(FieldAnnotation):
    """Accepts or refuses a field's value: subclass it and implement :meth:`check`."""

    def check(self, value: Any) -> bool:
        """Whether ``value`` is allowed."""
        raise NotImplementedError

    def annotate(self, options: dict[str, Any]) -> None:
        if options.get("checker") is not None:
            raise TypeError(f"a field takes one checker; got {options['checker']} and {self}")
        options["checker"] = self


class Choices(Checker):
    """The value must equal one of ``choices``."""

    def __init__(self, choices: Iterable[Any]) -> None:
        self.choices = list(choices)

    def check(self, value: Any) -> bool:
        return any(value == choice for choice in self.choices)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(choice) for choice in self.choices)


__all__ = ["Checker", "Choices"]
