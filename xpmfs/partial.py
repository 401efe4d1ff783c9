"""Partial identifiers: an identifier that leaves out some parameter groups (experimaestro 2.7).

Tasks that differ only in the left-out groups share a partial identifier, hence a folder (for
checkpoints, say)::

    iter_group = param_group("iter")

    class Learn(Task):
        checkpoints = partial(exclude_groups=[iter_group])
        max_iter: Param[int] = field(groups=[iter_group])
        learning_rate: Param[float]
        path: Meta[Path] = field(default_factory=PathGenerator("ckpt", partial=checkpoints))

``path`` is then ``WS/partials/<type id>/checkpoints/<partial id>/ckpt`` (see spec/workspace.md),
the folder experimaestro uses for the same task. The partial identifier is the identifier
(spec/identifiers.md) of the configuration with the excluded fields skipped, at its top level
only: nested configurations keep their full identifiers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ParameterGroup:
    """A named group of parameters (``field(groups=[group])``); compared by name."""

    name: str


def param_group(name: str) -> ParameterGroup:
    """A parameter group for :func:`partial` (``field(groups=[...])`` puts parameters in it)."""
    return ParameterGroup(name)


@dataclass
class Partial:
    """Which parameters a partial identifier keeps (the rules are experimaestro's, in this order):

    a parameter in one of ``include_groups`` is kept; else, with ``exclude_all``, it is left out;
    else one with no group is left out under ``exclude_no_group``; else one in ``exclude_groups``
    is left out. ``name`` is the class attribute the partial is assigned to (set by the class).
    """

    exclude_groups: set[ParameterGroup] = field(default_factory=set)
    include_groups: set[ParameterGroup] = field(default_factory=set)
    exclude_no_group: bool = False
    exclude_all: bool = False
    name: str | None = None

    def __post_init__(self) -> None:
        self.exclude_groups = set(self.exclude_groups)
        self.include_groups = set(self.include_groups)

    def is_excluded(self, groups: Iterable[ParameterGroup]) -> bool:
        """Whether a parameter in ``groups`` is left out of this partial identifier."""
        groups = set(groups)
        if groups & self.include_groups:
            return False
        if self.exclude_all:
            return True
        if not groups:
            return self.exclude_no_group
        return bool(groups & self.exclude_groups)

    def __set_name__(self, owner: type, name: str) -> None:
        if self.name is None:
            self.name = name

    def __hash__(self) -> int:
        return id(self)


def partial(
    *,
    exclude_groups: Iterable[ParameterGroup] | None = None,
    include_groups: Iterable[ParameterGroup] | None = None,
    exclude_no_group: bool = False,
    exclude_all: bool = False,
) -> Partial:
    """A partial identifier specification; assign it to a class attribute to name it."""
    return Partial(set(exclude_groups or ()), set(include_groups or ()), exclude_no_group, exclude_all)


PARTIALS_DIR = "partials"
"""``WS/partials/``: partial folders, as experimaestro lays them out."""


def partial_path(workspace: Path, typeid: str, name: str, identifier: str) -> Path:
    """``WS/partials/<type id>/<partial name>/<partial identifier>``."""
    return Path(workspace) / PARTIALS_DIR / typeid / name / identifier


def workspace_of_job(jobpath: Path) -> Path:
    """The workspace of job folder ``WS/jobs/<type id>/<job id>`` (spec/workspace.md)."""
    return Path(jobpath).parent.parent.parent


def groups_of(spec: Any) -> frozenset[ParameterGroup]:
    groups = getattr(spec, "groups", None) or ()
    for group in groups:
        if not isinstance(group, ParameterGroup):
            raise TypeError(f"field(groups=...) takes param_group(...) values, got {group!r}")
    return frozenset(groups)


__all__ = ["PARTIALS_DIR", "ParameterGroup", "Partial", "param_group", "partial", "partial_path", "workspace_of_job"]
