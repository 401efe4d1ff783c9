"""The base of annotation metadata that shapes a field (kept apart: generators and checkers need it)."""

from __future__ import annotations

from typing import Any


class FieldAnnotation:
    """Extra information in an annotation: ``Param[Annotated[int, help("...")]]``.

    Subclasses change the options a field is built with (:meth:`annotate`): ``help`` text, a
    ``checker`` (:mod:`xpmfs.checkers`) or a ``generator`` (:class:`xpmfs.generators.pathgenerator`).
    """

    def annotate(self, options: dict[str, Any]) -> None:
        raise NotImplementedError


__all__ = ["FieldAnnotation"]
