"""Values generated when a task is sealed for its job directory.

``field(default_factory=PathGenerator("parameters.pth"))`` leaves the field empty until the task is
submitted; sealing the task for job directory ``J`` then sets it to ``J / "parameters.pth"``, and
a nested configuration's to ``J / "out" / <field> / ... / "parameters.pth"`` (experimaestro's layout).
A generated value depends on where the job runs, not on what it computes, so it is never part of
an identifier.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._annotation import FieldAnnotation


class Generator:
    """Produces a field's value when its configuration is sealed for a job directory.

    As in experimaestro, a generator is called as ``generator(context, config)``: ``context`` is a
    :class:`ConfigWalkContext` (the job folder and where ``config`` sits in the task's tree).
    """

    def __call__(self, context: ConfigWalkContext, config: Any) -> Any:
        """The value for ``config``'s field."""
        raise NotImplementedError

    def isoutput(self) -> bool:
        """Whether the value is a task output (a path inside the job folder)."""
        return False


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


OUT = "out"
"""Where the generated paths of nested configurations go: ``<job>/out/<field>/<field or index>/...``
(experimaestro's layout, so that an adopted workspace's outputs are found where it put them)."""

INIT_TASKS = "__init_tasks__"
"""The position of init tasks in that layout: ``<job>/out/__init_tasks__/<index>/...``."""


class ConfigWalkContext:
    """Where values are generated while a task's tree is sealed (experimaestro's name).

    ``path`` is the job folder; :meth:`currentpath` is the folder of the configuration being
    sealed: the job folder for the task itself, ``path / "out" / <field> / ...`` for the
    configurations below it (a list item adds its index, a dict value its key, an init task
    ``__init_tasks__/<index>``). A ``PathGenerator("x")`` gives ``currentpath() / "x"``.
    """

    def __init__(self) -> None:
        self._keys: tuple[str, ...] = ()  # the place being sealed, below the job folder's "out"

    @property
    def path(self) -> Path:
        """The job folder."""
        raise NotImplementedError

    @property
    def name(self) -> str:
        """The job's name (the last part of the task's type id): ``STDOUT`` gives ``<name>.out``."""
        raise NotImplementedError

    @property
    def task(self) -> Any:
        return None

    def currentpath(self) -> Path:
        """The folder of the configuration being sealed (see the class)."""
        return self.path.joinpath(OUT, *self._keys) if self._keys else self.path

    def partial_path(self, partial: Any, config: Any) -> Path:
        """The partial folder of ``config`` for ``partial`` (``WS/partials/<type id>/<name>/<partial id>``)."""
        raise NotImplementedError("Partial paths require a context with workspace information (a job folder)")

    @contextlib.contextmanager
    def push(self, key: str) -> Iterator[str]:
        """Go down one level of the tree (a field name, a list index, a dict key) while in the block."""
        previous = self._keys
        try:
            self._keys = (*previous, key)  # a path is made only when a generator asks for one
            yield key
        finally:
            self._keys = previous


class DirectoryContext(ConfigWalkContext):
    """Where values are generated: a job directory (``path``) and the job's name (``name``).

    ``cfg.__xpm__.seal(DirectoryContext(folder))`` seals a configuration as if for a job in
    ``folder`` (handy in tests); it is path-like, so it can stand wherever a job path is taken.
    The name is the last part of the task's type id, which the job folder's parent is named after
    (``jobs/<typeid>/<jobid>``), as in the job's ``<name>.out``. Partial folders need a job folder
    inside a workspace (``WS/jobs/<typeid>/<jobid>``).
    """

    def __init__(self, path: str | os.PathLike[str], name: str | None = None) -> None:
        super().__init__()
        self._path = Path(path)
        self._name = name

    @property
    def path(self) -> Path:
        return self._path

    @property
    def name(self) -> str:
        if self._name is not None:
            return self._name
        return self._path.parent.name.rsplit(".", 1)[-1] or self._path.name

    def partial_path(self, partial: Any, config: Any) -> Path:
        return partial_folder(config, partial, self._path)

    def __fspath__(self) -> str:
        return str(self._path)

    def __repr__(self) -> str:
        return f"DirectoryContext({str(self._path)!r})"


class EmptyContext(ConfigWalkContext):
    """A context with no job directory: ``cfg.instance(EmptyContext())`` (the default), or
    ``cfg.__xpm__.seal(EmptyContext())``. Nothing can be generated in it: asking its path fails."""

    @property
    def path(self) -> Path:
        raise AssertionError("Empty experimaestro context does not define a path")

    def __repr__(self) -> str:
        return "EmptyContext()"


NameFunction = Callable[[ConfigWalkContext, Any], "str | os.PathLike[str]"]


class PathGenerator(Generator):
    """A path in the folder of the configuration being sealed: ``context.currentpath() / name``.

    That folder is the job folder for the task's own fields and ``<job>/out/<field>/...`` for
    nested configurations (see :class:`ConfigWalkContext`). ``name`` may also be a function
    ``(context, config) -> name`` (experimaestro's form); :func:`STDOUT` and :func:`STDERR` are
    two such functions.
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

    def __call__(self, context: ConfigWalkContext, config: Any) -> Path:
        base = context.currentpath() if self.partial is None else context.partial_path(self.partial, config)
        if callable(self.name):
            return base / self.name(context, config)
        return base / self.name if str(self.name) not in ("", ".") else base

    def isoutput(self) -> bool:
        return True

    def __repr__(self) -> str:
        name = getattr(self.name, "__name__", None) if callable(self.name) else str(self.name)
        return f"PathGenerator({name!r})" if not callable(self.name) else f"PathGenerator({name})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathGenerator) and other.name == self.name

    def __hash__(self) -> int:
        return hash((PathGenerator, self.name))


def STDOUT(context: ConfigWalkContext, config: Any) -> str:
    """``PathGenerator(STDOUT)``: the job's standard output file, ``<name>.out``."""
    return f"{context.name}.out"


def STDERR(context: ConfigWalkContext, config: Any) -> str:
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


__all__ = [
    "INIT_TASKS",
    "OUT",
    "STDERR",
    "STDOUT",
    "ConfigWalkContext",
    "DirectoryContext",
    "EmptyContext",
    "Generator",
    "PathGenerator",
    "pathgenerator",
]
