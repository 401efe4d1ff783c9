"""Values generated when a task is sealed for its job directory.

``field(default_factory=PathGenerator("parameters.pth"))`` leaves the field empty until the task is
submitted; sealing the task for job directory ``J`` then sets it to ``J / "parameters.pth"``.
A generated value depends on where the job runs, not on what it computes, so it is never part of
an identifier.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._annotation import FieldAnnotation


class Generator:
    """Produces a field's value when its configuration is sealed for a job directory."""

    def generate(self, config: Any, jobpath: Path) -> Any:
        """The value for ``config``'s field, given the directory of the job that owns it."""
        raise NotImplementedError

    def __call__(self, config: Any, jobpath: Path) -> Any:
        return self.generate(config, jobpath)


def partial_folder(config: Any, partial: Any, jobpath: Path | None) -> Path:
    """The partial folder of ``config`` for the job in ``jobpath`` (``WS/jobs/<type id>/<job id>``)."""
    from .partial import partial_path, workspace_of_job

    if jobpath is None or Path(jobpath).parent.parent.name != "jobs":
        raise NotImplementedError(
            "Partial paths require a context with workspace information (a job folder WS/jobs/<type id>/<job id>)"
        )
    info = config.__xpm__
    return partial_path(
        workspace_of_job(Path(jobpath)), info.cls_info.typeid, str(partial.name), info.partial_identifier(partial).hex()
    )


class DirectoryContext:
    """Where values are generated: a job directory (``path``) and the job's name (``name``).

    ``cfg.__xpm__.seal(DirectoryContext(folder))`` seals a configuration as if for a job in
    ``folder`` (handy in tests); it is path-like, so it can stand wherever a job path is taken.
    The name is the last part of the task's type id, which the job folder's parent is named after
    (``jobs/<typeid>/<jobid>``), as in the job's ``<name>.out``.
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        self._path = Path(path)
        self._name = name

    @property
    def path(self) -> Path:
        return self._path

    def currentpath(self) -> Path:
        return self._path

    @property
    def name(self) -> str:
        if self._name is not None:
            return self._name
        return self._path.parent.name.rsplit(".", 1)[-1] or self._path.name

    def __fspath__(self) -> str:
        return str(self._path)

    def __repr__(self) -> str:
        return f"DirectoryContext({str(self._path)!r})"


class EmptyContext:
    """A context with no job directory: ``cfg.instance(EmptyContext())`` (the default), or
    ``cfg.__xpm__.seal(EmptyContext())``. Nothing can be generated in it: asking its path fails."""

    @property
    def path(self) -> Path:
        raise AssertionError("Empty experimaestro context does not define a path")

    def currentpath(self) -> Path:
        return self.path

    def __repr__(self) -> str:
        return "EmptyContext()"


NameFunction = Callable[[DirectoryContext, Any], "str | os.PathLike[str]"]


class PathGenerator(Generator):
    """A path inside the job directory: ``jobpath / name``.

    ``name`` may also be a function ``(context, config) -> name`` (experimaestro's form), called
    with a :class:`DirectoryContext`; :func:`STDOUT` and :func:`STDERR` are two such functions.
    """

    def __init__(self, name: str | os.PathLike[str] | NameFunction = "", *, partial: Any = None) -> None:
        self.partial = partial
        """A :class:`~xpmfs.partial.Partial`: the path is then in the partial folder, shared by the
        tasks with the same partial identifier (``WS/partials/<type id>/<name>/<partial id>``)."""
        if callable(name):
            self.name: Path | NameFunction = name
            return
        if Path(name).is_absolute():
            raise ValueError(f"PathGenerator({str(name)!r}): the name must be relative to the job directory")
        self.name = Path(name)

    def generate(self, config: Any, jobpath: Path) -> Path:
        base = Path(jobpath) if self.partial is None else partial_folder(config, self.partial, jobpath)
        if callable(self.name):
            return base / self.name(DirectoryContext(jobpath), config)
        return base / self.name if str(self.name) not in ("", ".") else base

    def __repr__(self) -> str:
        name = getattr(self.name, "__name__", None) if callable(self.name) else str(self.name)
        return f"PathGenerator({name!r})" if not callable(self.name) else f"PathGenerator({name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathGenerator) and other.name == self.name

    def __hash__(self) -> int:
        return hash((PathGenerator, self.name))


def STDOUT(context: DirectoryContext, config: Any) -> str:
    """``PathGenerator(STDOUT)``: the job's standard output file, ``<name>.out``."""
    return f"{context.name}.out"


def STDERR(context: DirectoryContext, config: Any) -> str:
    """``PathGenerator(STDERR)``: the job's standard error file, ``<name>.err``."""
    return f"{context.name}.err"


class pathgenerator(FieldAnnotation):  # noqa: N801 (experimaestro's spelling)
    """``out: Annotated[Path, pathgenerator("out.txt")]``: a generated path, as a type annotation.

    The same as ``out: Meta[Path] = field(default_factory=PathGenerator("out.txt"))`` except that
    the field is a ``Param`` unless declared ``Meta`` (generated values are never hashed anyway).
    """

    def __init__(self, name: str | os.PathLike[str] | NameFunction) -> None:
        self.generator = PathGenerator(name)

    def annotate(self, options: dict[str, Any]) -> None:
        options["generator"] = self.generator


__all__ = ["STDERR", "STDOUT", "DirectoryContext", "EmptyContext", "Generator", "PathGenerator", "pathgenerator"]
