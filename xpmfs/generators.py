"""Values generated when a task is sealed for its job directory.

``field(default_factory=PathGenerator("parameters.pth"))`` leaves the field empty until the task is
submitted; sealing the task for job directory ``J`` then sets it to ``J / "parameters.pth"``.
A generated value depends on where the job runs, not on what it computes, so it is never part of
an identifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Generator:
    """Produces a field's value when its configuration is sealed for a job directory."""

    def generate(self, config: Any, jobpath: Path) -> Any:
        """The value for ``config``'s field, given the directory of the job that owns it."""
        raise NotImplementedError

    def __call__(self, config: Any, jobpath: Path) -> Any:
        return self.generate(config, jobpath)


class PathGenerator(Generator):
    """A path inside the job directory: ``jobpath / name``."""

    def __init__(self, name: str | Path) -> None:
        if Path(name).is_absolute():
            raise ValueError(f"PathGenerator({str(name)!r}): the name must be relative to the job directory")
        self.name = Path(name)

    def generate(self, config: Any, jobpath: Path) -> Path:
        return Path(jobpath) / self.name

    def __repr__(self) -> str:
        return f"PathGenerator({str(self.name)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathGenerator) and other.name == self.name

    def __hash__(self) -> int:
        return hash((PathGenerator, self.name))


__all__ = ["Generator", "PathGenerator"]
