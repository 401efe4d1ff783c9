"""Configurations and tasks: typed values whose identity is their content.

This layer is pure: no files, no processes, no workspace. A configuration class declares typed
fields; ``X.C(**values)`` builds an instance of ``X`` whose values are validated on the way in::

    class ModelLearn(Task):
        epochs: Param[int] = 100
        model: Param[Model]
        parameters: Meta[Path] = field(default_factory=PathGenerator("parameters.pth"))

``cfg.__identifier__()`` is the content address (see :mod:`xpmfs.identifier`); ``task.submit()``
hands the task to whatever the running experiment installed with :func:`set_submit_handler`.

Per-instance state lives on ``cfg.__xpm__`` (a :class:`ConfigInfo`): the values, the sealed flag,
the task whose output the configuration is, init tasks, tags, and the experiment's job handle.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import copy as _copy
import functools
import inspect
import logging
import os
import reprlib
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeGuard, TypeVar, cast

from . import _generics
from . import identifier as _identifier
from ._classinfo import (
    MISSING,
    ClassInfo,
    Constant,
    Field,
    FieldDescriptor,
    Meta,
    Option,
    Param,
    XPMType,
    class_info,
    field,
    is_config_class,
    register_config_type,
)
from .errors import ConfigError, NoExperimentError, ReadOnlyError, SealedError
from .generators import INIT_TASKS, ConfigWalkContext, DirectoryContext, EmptyContext, PathGenerator
from .identifier import ConfigIdentifier

if TYPE_CHECKING:
    from contextvars import Token

CfgT = TypeVar("CfgT", bound="Config")

# -- tags ----------------------------------------------------------------------------------


_log = logging.getLogger("xpmfs")


def _caller(depth: int) -> str:
    """``file:line`` of the code ``depth`` frames above the caller (where a tag was written)."""
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:
        return "?"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


class TaggedValue:
    """A value wrapped by :func:`tag` and/or :func:`stop_tags`; the field stores the value itself."""

    __slots__ = ("source", "stop_tags", "tagged", "value")

    def __init__(self, value: Any) -> None:
        self.value = value
        self.tagged = False
        self.stop_tags = False
        self.source = "?"

    @staticmethod
    def ensure(value: Any) -> TaggedValue:
        return value if isinstance(value, TaggedValue) else TaggedValue(value)

    def __repr__(self) -> str:
        text = repr(self.value)
        if self.tagged:
            text = f"tag({text})"
        return f"stop_tags({text})" if self.stop_tags else text


def tag(value: Any) -> Any:
    """``X.C(lr=tag(0.1))`` sets ``lr`` to 0.1 and tags the configuration ``lr=0.1``.

    Tags label results (``tags(cfg)``, job listings); they never change an identifier. The value
    may be a configuration (``stop_tags(tag(cfg))``: the tag is ``cfg`` itself, its own tags stop).
    """
    wrapped = TaggedValue.ensure(value)
    wrapped.tagged = True
    wrapped.source = _caller(1)
    return wrapped


def stop_tags(value: Any) -> Any:
    """``X.C(sub=stop_tags(cfg))``: the tags of ``cfg`` (and below) do not reach ``X``'s tags.

    Also ``task.submit(init_tasks=[stop_tags(init)])``. It never changes an identifier; it
    combines with :func:`tag` in either order.
    """
    wrapped = TaggedValue.ensure(value)
    wrapped.stop_tags = True
    return wrapped


class TagDict(dict[str, Any]):
    """The tags of a configuration: sorted by name, read-only and hashable (a dict key, a set member)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        items = dict(*args, **kwargs)
        super().__init__(sorted(items.items()))

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a TagDict is read-only; build a new one with TagDict({**old, name: value})")

    __setitem__ = __delitem__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (TagDict, (dict(self),))


# -- per-instance state ----------------------------------------------------------------------


def _location(source: tuple[str, int] | None) -> str:
    if source is None:
        return "<unknown>"
    return f"{os.path.abspath(source[0])}:{source[1]}"


class SetInfo:
    """Where and how a parameter was set (``cfg.__xpm__.provenance_of(name)``): debug information only."""

    __slots__ = ("_source", "kind")

    def __init__(self, source: tuple[str, int] | None, kind: str) -> None:
        self._source = source
        self.kind = kind
        """``"explicit"``, ``"default"``, ``"composed"``, ``"deserialized"`` or ``"generated"``."""

    @property
    def location(self) -> str:
        """``"/abs/path/file.py:line"``, or ``"<unknown>"``."""
        return _location(self._source)

    def __repr__(self) -> str:
        return f"SetInfo(location={self.location!r}, kind={self.kind!r})"


class TaskStub:
    """A task that partial loading did not load: what ``cfg.__xpm__.task`` holds in its place.

    Loading a saved output with ``partial_loading`` does not import its producing task (its code
    may have changed or be missing); the stub keeps what the output needs of it: the task's
    ``identifier`` (the output's identifier hashes it) and ``typename`` (``module.qualname``).
    Saving the output again writes the stub back (``"stub": true``), so it survives a round trip.
    """

    __slots__ = ("identifier", "typename")
    __xpm_taskstub__: ClassVar[bool] = True  # recognised by xpmfs.identifier without an import

    def __init__(self, identifier: ConfigIdentifier, typename: str) -> None:
        self.identifier = identifier
        self.typename = typename

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskStub) and other.identifier == self.identifier and other.typename == self.typename

    def __hash__(self) -> int:
        return hash((self.identifier, self.typename))

    def __repr__(self) -> str:
        return f"TaskStub(identifier={self.identifier.hex()}, typename={self.typename!r})"


_NO_STOPPED_TAGS: frozenset[str | int] = frozenset()  # shared: one less object per configuration for the GC


class ConfigInfo:
    """The configuration layer's state for one instance: ``cfg.__xpm__``."""

    __slots__ = (
        "cls_info",
        "completed_callbacks",
        "config",
        "created_at",
        "dynamic",
        "generated",
        "identifier_cache",
        "init_tasks",
        "job",
        "jobpath",
        "main_jobpath",
        "meta",
        "output_watchers",
        "own_tags",
        "provenance",
        "sealed",
        "stop_tags",
        "tag_sources",
        "task",
        "typevars",
        "values",
    )

    def __init__(self, config: ConfigMixin, cls_info: ClassInfo) -> None:
        self.config = config
        self.cls_info = cls_info
        self.values: dict[str, Any] = cls_info.initial_values()
        self.sealed = False
        self.task: TaskConfig | TaskStub | None = None
        """The task this configuration is an output of (set by ``dep``); ``None`` otherwise; a
        :class:`TaskStub` for an output loaded without its task (partial loading)."""
        self.init_tasks: tuple[ConfigMixin, ...] = ()
        self.own_tags: dict[str, Any] = {}
        """Tags set on this configuration (:meth:`tags` collects the tree's)."""
        self.tag_sources: dict[str, str] = {}
        """Where each own tag was written (``file:line``), for conflict warnings."""
        self.stop_tags: frozenset[str | int] = _NO_STOPPED_TAGS
        """Field names, and ``id()`` of init tasks, whose tags do not reach this configuration."""
        self.typevars: dict[Any, type] = {}
        """What this instance bound the type variables of its generic class to."""
        self.generated = False
        """Sealed with paths generated for a job folder (its own or its fields')."""
        self.created_at: tuple[str, int] | None = None
        """Where ``X.C(...)`` was called (file, line): provenance of its defaults and arguments."""
        self.provenance: dict[str, SetInfo] = {}
        """Where and how each value set after creation was set (see :meth:`provenance_of`)."""
        self.job: Any = None
        """The experiment layer's handle for a submitted task."""
        self.meta: bool | None = None
        """``True``: dropped from identifiers wherever it appears; ``False``: hashed even as a Meta."""
        self.jobpath: Path | None = None
        self.main_jobpath: Path | None = None
        self.identifier_cache: bytes | None = None
        """Set by :mod:`xpmfs.identifier` once sealed (and not part of a cycle)."""
        self.dynamic = False
        """An output produced while its task runs (``watch_output``): it creates no dependency."""
        self.completed_callbacks: tuple[Callable[[], None], ...] = ()
        self.output_watchers: tuple[OutputWatcher, ...] = ()

    _NOT_PICKLED = ("cls_info", "completed_callbacks", "created_at", "output_watchers", "provenance")

    def __getstate__(self) -> dict[str, Any]:
        # The class information is rebuilt from the class, not copied (it may hold lambdas);
        # callbacks belong to the experiment process that registered them.
        return {name: getattr(self, name) for name in self.__slots__ if name not in self._NOT_PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self.cls_info = class_info(type(self.config))
        self.completed_callbacks = ()
        self.output_watchers = ()
        self.created_at = None
        self.provenance = {}

    # -- values --

    def where(self, name: str) -> str:
        return f"{self.cls_info.cls.__qualname__}.{name}"  # X's name, not X.XPMConfig's (as _qualname)

    def field(self, name: str) -> Field:
        found = self.cls_info.fields.get(name)
        if found is None:
            known = ", ".join(sorted(self.cls_info.fields)) or "none"
            import difflib  # here: only a mistake pays for importing it

            close = difflib.get_close_matches(name, self.cls_info.fields, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(self.where(name), "unknown parameter", f"{hint}known parameters: {known}")
        return found

    def set(self, name: str, value: Any, source: tuple[str, int] | None = None, kind: str = "explicit") -> None:
        """Validate and store ``value`` (``cfg.name = value`` and ``X.C(name=value)`` come here).

        ``source`` is where the value was set (file, line); by default, the caller of the caller.
        """
        f = self.field(name)
        where = self.where(name)
        if source is None:
            frame = sys._getframe(2)  # set() <- the field's __set__ <- the code that assigned
            source = (frame.f_code.co_filename, frame.f_lineno)
        if self.sealed:
            raise SealedError(
                where,
                "the configuration is sealed (it was submitted) and cannot change",
                "build a new one with .C(...)",
            )
        wrapped = value if isinstance(value, TaggedValue) else None
        if wrapped is not None:
            value = wrapped.value
        if f.generator is not None:
            raise ReadOnlyError(
                where, f"is generated ({f.generator!r}) when the task is submitted", f"do not set {name}"
            )
        if isinstance(value, Config) and not isinstance(value, ConfigMixin):
            raise ReadOnlyError(
                where,
                f"{_qualname(value)} object given: configurations (and not objects) should be used",
                "build the value with .C(...)",
            )
        try:
            value = f.check(value, where)
        except ConfigError as error:
            # As experimaestro: name the parameter and where it was set.
            raise ConfigError(
                error.where, f"{error.problem} (parameter '{name}', set at {_location(source)})", error.fix
            ) from None
        if f.value_checker is not None and value is not None and not f.value_checker.check(value):
            raise ConfigError(
                where,
                f"{value!r} is not allowed: expected {f.value_checker} "
                f"(parameter '{name}', set at {_location(source)})",
            )
        if f.constant and value != f.default:
            raise ReadOnlyError(
                where, f"is a constant ({f.default!r}) and cannot be set to {value!r}", f"do not set {name}"
            )
        if _may_hold_configs(value) and not f.ignore_generated and _carries_generated(value):
            raise ReadOnlyError(
                where,
                "the configuration given holds paths generated for another job "
                f"({', '.join(_generated_paths(value, name))})",
                "build a new configuration, or declare the field with field(ignore_generated=True)",
            )
        if f.generic:
            bindings = dict(self.typevars)
            _generics.bind(bindings, f.hint, value, where)
            self.typevars = bindings
        self.values[name] = value
        self.provenance[name] = SetInfo(source, kind)
        if name in self.stop_tags:
            self.stop_tags -= {name}
        if wrapped is not None:
            if wrapped.stop_tags:
                self.stop_tags |= {name}
            if wrapped.tagged:
                self.add_tag(name, value, wrapped.source)  # a configuration too: stop_tags(tag(cfg))

    def set_loaded(self, name: str, value: Any) -> None:
        """Store a value read back from a serialized tree (sealed or generated fields included)."""
        f = self.field(name)
        where = self.where(name)
        value = f.check(value, where)
        if f.constant and value != f.default:
            raise ConfigError(
                where,
                f"the stored constant {value!r} differs from the class's {f.default!r}",
                "the class changed since this configuration was written; submit the task again",
            )
        self.values[name] = value

    def provenance_of(self, name: str) -> SetInfo | None:
        """Where and how parameter ``name`` got its value (``kind``: explicit, default, composed,
        deserialized, generated), or ``None`` if it has none. Debug information: never hashed or saved."""
        found = self.provenance.get(name)
        if found is not None:
            return found
        if name in self.values:
            f = self.field(name)
            kind = "generated" if f.generator is not None else "default"
            return SetInfo(self.created_at, kind)
        return None

    def unset(self, name: str) -> None:
        self.field(name)
        if self.sealed:
            raise SealedError(self.where(name), "the configuration is sealed and cannot change")
        self.values.pop(name, None)

    def unset_error(self, name: str) -> AttributeError:
        f = self.field(name)
        if f.generator is not None:
            return AttributeError(f"{self.where(name)} is generated when the task is submitted; it is not set yet")
        return AttributeError(f"{self.where(name)} is not set")

    def add_tag(self, name: str, value: Any, source: str = "?") -> None:
        self.own_tags[name] = value
        self.tag_sources[name] = source

    def tags(self) -> TagDict:
        """The tags of this configuration and of everything below it (see :func:`tags`)."""
        return tags(self.config)

    @property
    def _tags(self) -> dict[str, tuple[Any, str]]:
        """This configuration's own tags and where each was set: ``{name: (value, "file:line")}``."""
        return {name: (value, self.tag_sources.get(name, "?")) for name, value in self.own_tags.items()}

    def set_meta(self, meta: bool | None) -> None:
        if self.sealed:
            raise SealedError(_qualname(self.config), "the configuration is sealed; its meta flag cannot change")
        self.meta = meta

    def set_init_tasks(self, init_tasks: Iterable[Any]) -> None:
        """Set the configurations run in the job before the task (experimaestro's ``init_tasks``).

        Any configuration is accepted, as in experimaestro: usually a :class:`LightweightTask`; a
        :class:`Task` (a submitted one makes the job wait for it) or a plain configuration with an
        ``execute()`` method work too. The job calls ``execute()`` on each object, in order.
        """
        name = _qualname(self.config)
        stopped: set[int] = set()
        tasks_list: list[ConfigMixin] = []
        for i, given in enumerate(init_tasks):
            task = given
            if isinstance(given, TaggedValue):
                if given.tagged:
                    raise ConfigError(
                        f"{name}.submit(init_tasks[{i}])",
                        "an init task cannot be tagged (a tag needs a parameter name)",
                        "tag one of its parameters instead, or use stop_tags(init_task)",
                    )
                if given.stop_tags:
                    stopped.add(id(given.value))
                task = given.value
            if not isinstance(task, ConfigMixin):
                raise ConfigError(
                    f"{name}.submit(init_tasks[{i}])",
                    f"expected a configuration, got {task!r} ({type(task).__name__})",
                    "init tasks are configurations built with .C(...), usually of a LightweightTask",
                )
            tasks_list.append(task)
        tasks = tuple(tasks_list)
        if len(tasks) == len(self.init_tasks) and all(a is b for a, b in zip(tasks, self.init_tasks, strict=True)):
            self._stop_init_tags(stopped)
            return
        if self.sealed:
            raise SealedError(
                f"{name}.submit()", "the task was submitted with other init tasks", "build a new task with .C(...)"
            )
        self.init_tasks = tasks
        self._stop_init_tags(stopped)

    def _stop_init_tags(self, stopped: builtins.set[int]) -> None:
        self.stop_tags = frozenset(key for key in self.stop_tags if isinstance(key, str)) | stopped

    # -- lifecycle --

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first required field left unset in this tree."""
        _validate(self.config, _qualname(self.config), set())

    def seal(self, jobpath: Any = None) -> None:
        """Validate, generate values for ``jobpath`` (if given), then freeze the whole tree.

        ``jobpath`` is a path or a context (:class:`DirectoryContext`; :class:`EmptyContext` is none).
        The task's own generated paths go in the job folder, those of nested configurations in
        ``<job>/out/<field>/...`` (see :class:`~xpmfs.generators.ConfigWalkContext`). Nested
        configurations already sealed (shared with an earlier task) keep their values;
        submitted tasks met in the tree are left alone (they are their own jobs); a task never submitted
        is sealed as a part of this one.
        """
        context = _check_context(jobpath)
        if self.sealed:
            if self.jobpath is None:
                self.jobpath = _job_folder(context)
            return
        self.validate()
        self.jobpath = _job_folder(context)
        _seal(self.config, self.config, context, set())

    def post_init(self) -> None:
        """Run ``__post_init__`` over the tree, children first (see :func:`post_init`)."""
        post_init(self.config)

    def set_jobpath(self, jobpath: Path) -> None:
        """Tell a loaded task where its job directory is (the job runner calls this)."""
        self.jobpath = Path(jobpath)
        _set_main_jobpath(self.config, self.config, self.jobpath, set())

    @property
    def identifier(self) -> ConfigIdentifier:
        """The identifier, as experimaestro exposes it: ``.all`` is the 32-byte digest."""
        return ConfigIdentifier(self.digest())

    @property
    def _identifier(self) -> ConfigIdentifier | None:
        """experimaestro's name for the cached identifier: ``None`` until a sealed one is computed
        (or when loaded with ``discard_id``)."""
        cached = self.identifier_cache
        return None if cached is None else ConfigIdentifier(cached)

    @property
    def _sealed(self) -> bool:
        """experimaestro's name for :attr:`sealed`."""
        return self.sealed

    def __unseal__(self) -> None:
        """Unseal this configuration and the sealed ones below it, dropping their cached identifiers.

        experimaestro's internal API, for tests that seal one tree from several roots; never on a
        submitted task (its job folder is named by the identifier). Generated values stay.
        """
        todo: list[ConfigMixin] = [self.config]
        while todo:
            info = todo.pop().__xpm__
            if info.sealed:
                info.sealed = False
                info.identifier_cache = None
                todo.extend(_children(info.config))

    def partial_identifier(self, partial: Any) -> bytes:
        """The 32-byte partial identifier for ``partial`` (see :mod:`xpmfs.partial`)."""
        return _identifier.partial_digest(self.config, partial)

    def get_partial_identifier(self, partial: Any) -> ConfigIdentifier:
        """experimaestro's spelling: the partial identifier, with ``.all`` its 32 bytes."""
        return ConfigIdentifier(self.partial_identifier(partial))

    def digest(self) -> bytes:
        """The 32-byte identifier (cached once sealed)."""
        cached = self.identifier_cache
        return cached if cached is not None else _identifier.digest(self.config)

    def xpmvalues(self) -> Iterator[tuple[Field, Any]]:
        """``(field, value)`` for each field set, in the class's declaration order (experimaestro's)."""
        fields = self.cls_info.fields
        for name in fields:
            if name in self.values:
                yield fields[name], self.values[name]

    # -- saving (experimaestro's definition format, :mod:`xpmfs.definition`) --

    def __json__(self) -> str:
        """The configuration's objects as JSON, in experimaestro's definition format (the root last)."""
        import json

        from .definition import json_objects

        return json.dumps(json_objects(self.config))

    def __get_objects__(self, objects: list[dict[str, Any]], context: Any) -> list[dict[str, Any]]:
        """experimaestro's: append to ``objects`` those of this configuration not in ``context`` yet
        (a :class:`~xpmfs.definition.SerializationContext`), the root last, and return ``objects``."""
        from .definition import json_objects

        objects.extend(json_objects(self.config, context))
        return objects

    def serialize(
        self, save_directory: Path, definition_filename: str = "experimaestro.json", context: Any = None
    ) -> None:
        """Write the objects (the root last) to ``save_directory/definition_filename``, copying data paths."""
        import json

        from .definition import SerializationContext, json_objects

        context = context or SerializationContext(save_directory=Path(save_directory))
        with (Path(save_directory) / definition_filename).open("w") as out:
            json.dump(json_objects(self.config, context), out)

    @staticmethod
    def load_objects(
        definitions: list[dict[str, Any]],
        as_instance: bool = True,
        data_loader: Any = None,
        discard_id: bool = False,
        partial_loading: bool = False,
    ) -> dict[Any, Any]:
        """Each saved object (``state_dict(...)["objects"]``) by its id: see :func:`xpmfs.definition.load_objects`."""
        from .definition import load_objects

        return load_objects(definitions, as_instance, data_loader, discard_id, partial_loading)

    @staticmethod
    def fromParameters(  # experimaestro's name
        definitions: list[dict[str, Any]],
        as_instance: bool = True,
        data_loader: Any = None,
        discard_id: bool = False,
        return_tasks: bool = False,
        partial_loading: bool | None = None,
    ) -> Any:
        """The root of saved objects (``json.loads(info.__json__())``): see :func:`xpmfs.definition.from_parameters`."""
        from .definition import from_parameters

        return from_parameters(definitions, as_instance, data_loader, discard_id, return_tasks, partial_loading)

    @staticmethod
    def deserialize(
        path: Any,
        as_instance: bool = False,
        return_tasks: bool = False,
        partial_loading: bool | None = None,
        definition_filename: str | None = None,
    ) -> Any:
        """What :meth:`serialize` wrote; ``return_tasks``: ``(root, init tasks)``, else init tasks run
        (with ``as_instance``) and the root is returned."""
        from .definition import deserialize_root

        return deserialize_root(path, as_instance, return_tasks, partial_loading, definition_filename)


_HOLDERS = (list, tuple, set, frozenset, dict)
"""The containers a configuration may be inside of, in a field's value."""


def _may_hold_configs(value: Any) -> bool:
    """Whether ``value`` is or may contain a configuration (most field values are plain: no walk)."""
    return isinstance(value, (ConfigMixin, *_HOLDERS))


def _has_job(config: ConfigMixin) -> TypeGuard[Task]:
    """Whether ``config`` is a submitted task: what is below it is its own job's business. A task
    never submitted is a plain configuration of the job that uses it (experimaestro): sealed there,
    with its generated paths in that job's ``out/<field>/``, and the tasks it uses are depended on."""
    return isinstance(config, Task) and config.__xpm__.job is not None


def _configs_in(value: Any) -> Iterator[ConfigMixin]:
    """Configurations directly inside a value (through lists, tuples, sets and dict values)."""
    if isinstance(value, ConfigMixin):
        yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _configs_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _configs_in(item)


def _children(config: ConfigMixin) -> Iterator[ConfigMixin]:
    info = config.__xpm__
    for value in info.values.values():
        yield from _configs_in(value)
    yield from info.init_tasks


def _validate(config: ConfigMixin, trail: str, seen: set[int]) -> None:
    seen.add(id(config))
    info = config.__xpm__
    values = info.values
    for f in info.cls_info.fields.values():
        if f.required and f.name not in values:
            where = info.where(f.name)
            through = f" (reached through {trail})" if trail != _qualname(config) else ""
            raise ConfigError(
                where,
                f"required parameter is not set{through}",
                f"pass {f.name}=... to .C() or assign it before submitting",
            )
    for name, value in values.items():
        for child in _configs_in(value):
            if id(child) not in seen and not child.__xpm__.sealed:
                _validate(child, f"{trail}.{name}", seen)
    for child in info.init_tasks:
        if id(child) not in seen and not child.__xpm__.sealed:
            _validate(child, f"{trail}.init_tasks", seen)
    check = getattr(config, "__validate__", None)
    if check is not None:
        check()  # the user's own cross-field checks (experimaestro's hook)


def _seal(config: ConfigMixin, root: ConfigMixin, context: ConfigWalkContext | None, seen: set[int]) -> None:
    """Seal ``config`` and what is below it, generating values in ``context`` (experimaestro's walk).

    Children are walked in the class's field order, then the init tasks, each inside
    ``context.push(...)``; a configuration met twice is sealed at its first place. Values are
    generated after the children, at the configuration's own place.
    """
    seen.add(id(config))
    info = config.__xpm__
    fields = info.cls_info.fields
    for name, value in info.values.items():
        if _may_hold_configs(value) and not fields[name].ignore_generated and _carries_generated(value):
            raise ReadOnlyError(
                info.where(name),
                f"holds paths generated for another job ({', '.join(_generated_paths(value, name))})",
                "build a new configuration for this task, or declare the field with field(ignore_generated=True)",
            )
    if config is not root and info.main_jobpath is None:
        info.main_jobpath = root.__xpm__.jobpath
    for name in fields:
        if name in info.values and _may_hold_configs(value := info.values[name]):
            with _push(context, name):
                _seal_value(value, root, context, seen)
    if info.init_tasks:
        with _push(context, INIT_TASKS):
            for index, task in enumerate(info.init_tasks):
                with _push(context, str(index)):
                    # An init task runs in this job: experimaestro seals it here even when it is a
                    # Task (a submitted one is sealed already).
                    if id(task) not in seen and not task.__xpm__.sealed:
                        _seal(task, root, context, seen)
    if context is not None:
        for f in info.cls_info.generated:
            if f.name not in info.values:
                info.values[f.name] = f.check(f.generator(context, config), info.where(f.name))  # type: ignore[misc]
                info.generated = info.generated or not f.ignore_generated
    # Generated paths below make this configuration one that belongs to this job too.
    for name, value in info.values.items():
        if (
            _may_hold_configs(value)
            and not fields[name].ignore_generated
            and any(c.__xpm__.generated for c in _configs_in(value) if not _has_job(c))
        ):
            info.generated = True
    info.sealed = True


def _seal_value(value: Any, root: ConfigMixin, context: ConfigWalkContext | None, seen: set[int]) -> None:
    if isinstance(value, ConfigMixin):
        if id(value) not in seen and not value.__xpm__.sealed and not _has_job(value):
            _seal(value, root, context, seen)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            with _push(context, str(index)):
                _seal_value(item, root, context, seen)
    elif isinstance(value, dict):
        for key, item in value.items():
            with _push(context, str(key)):
                _seal_value(item, root, context, seen)
    elif isinstance(value, (set, frozenset)):
        for item in value:  # members are sealed already (a set needs their hash): no place to give
            _seal_value(item, root, context, seen)


def _push(context: ConfigWalkContext | None, key: str) -> contextlib.AbstractContextManager[Any]:
    return contextlib.nullcontext() if context is None else context.push(key)


def _carries_generated(value: Any) -> bool:
    """Whether ``value`` holds a configuration sealed with another job's generated paths.

    Such a configuration cannot be given to a new configuration (experimaestro's rule): its paths
    point into the job it was sealed for. Task outputs (``dep``) and tasks are exempt.
    """
    return any(c.__xpm__.generated and c.__xpm__.task is None and not isinstance(c, Task) for c in _configs_in(value))


def _generated_paths(value: Any, trail: str, seen: set[int] | None = None) -> list[str]:
    """``field.sub.path`` of each generated value inside ``value`` (for the error message)."""
    seen = set() if seen is None else seen
    found: list[str] = []
    for child in _configs_in(value):
        if id(child) in seen:
            continue
        seen.add(id(child))
        info = child.__xpm__
        for f in info.cls_info.generated:
            if f.name in info.values:
                found.append(f"{trail}.{f.name}")
        for name, inner in info.values.items():
            if info.cls_info.fields[name].generator is None:
                found.extend(_generated_paths(inner, f"{trail}.{name}", seen))
    return found or [trail]


def _set_main_jobpath(config: ConfigMixin, root: ConfigMixin, jobpath: Path, seen: set[int]) -> None:
    seen.add(id(config))
    if config is not root:
        config.__xpm__.main_jobpath = jobpath
    for child in _children(config):
        if id(child) not in seen and not isinstance(child, Task):
            _set_main_jobpath(child, root, jobpath, seen)


class ObjectInfo:
    """What an object built from a configuration (``cfg.instance()``, the job's task) knows of it.

    It is ``obj.__xpm__``; the object's field values are plain attributes.
    """

    __slots__ = ("config", "digest", "jobpath", "main_jobpath", "typeid")

    def __init__(self, config: ConfigMixin | None, source: ConfigInfo) -> None:
        self.config = config
        """The configuration, kept by ``instance(keep=True)`` (the default); ``None`` otherwise."""
        self.typeid = source.cls_info.typeid
        self.digest = source.digest()
        self.jobpath = source.jobpath
        self.main_jobpath = source.main_jobpath


def _check_context(context: Any) -> ConfigWalkContext | None:
    """The context a job path or a context (``instance(context)``) stands for; ``None`` for none or
    :class:`EmptyContext` (nothing is generated then)."""
    if context is None or isinstance(context, EmptyContext):
        return None
    if isinstance(context, ConfigWalkContext):
        return context
    if not isinstance(context, (str, os.PathLike)):
        return None  # another kind of context (experimaestro's SerializationContext): nothing to generate
    return DirectoryContext(context)


def _job_folder(context: ConfigWalkContext | None) -> Path | None:
    """The job folder of a sealing context; ``None`` for none, or for a bare ``ConfigWalkContext()``
    (experimaestro seals with one: only a path generator then needs a folder, and fails)."""
    if context is None:
        return None
    try:
        return context.path
    except NotImplementedError:
        return None


def _instance(config: ConfigMixin, objects: dict[int, Any], keep: bool) -> Any:
    found = objects.get(id(config))
    if found is not None:
        return found
    source = config.__xpm__
    # The value class's own __init__ runs (a torch.nn.Module sets itself up there), with no
    # argument, as in experimaestro; the fields are set afterwards, then __post_init__ runs.
    obj = source.cls_info.value_type()
    objects[id(config)] = obj  # before the values: cycles come back to it
    object.__setattr__(obj, "__xpm__", ObjectInfo(config if keep else None, source))
    for name, value in source.values.items():
        setattr(obj, name, _instance_value(value, objects, keep))
    for task in source.init_tasks:
        _instance(task, objects, keep)
    if keep:
        object.__setattr__(obj, "__config__", config)
    obj.__post_init__()
    return obj


def _instance_value(value: Any, objects: dict[int, Any], keep: bool) -> Any:
    if isinstance(value, ConfigMixin):
        return _instance(value, objects, keep)
    if isinstance(value, list):
        return [_instance_value(x, objects, keep) for x in value]
    if isinstance(value, tuple):
        return tuple(_instance_value(x, objects, keep) for x in value)
    if isinstance(value, dict):
        return {k: _instance_value(v, objects, keep) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return type(value)(_instance_value(x, objects, keep) for x in value)
    return _copy.copy(value) if isinstance(value, Path) else value


def instantiate_job(task: ConfigMixin) -> tuple[Any, list[Any]]:
    """The objects a job runs: its task and init tasks built from their (sealed) configurations.

    The job runner calls it once the loaded task knows its job directory. Objects are built as
    by :meth:`ConfigMixin.instance` (one object per configuration, shared between the task and
    its init tasks; children's ``__post_init__`` first).
    """
    objects: dict[int, Any] = {}
    obj = _instance(task, objects, True)
    return obj, [objects[id(init)] for init in task.__xpm__.init_tasks]


def post_init(config: ConfigMixin) -> None:
    """Call ``__post_init__`` on every configuration of the tree, children first, each once.

    Configuration objects do not need it (the job builds objects with :func:`instantiate_job`,
    which calls it); kept for code that calls it on configurations by hand.
    """
    done: set[int] = set()

    def visit(current: ConfigMixin) -> None:
        done.add(id(current))
        for child in _children(current):
            if id(child) not in done:
                visit(child)
        current.__post_init__()

    visit(config)


class _ClassProperty:
    """A read-only attribute computed from the class (on the class and on its instances)."""

    def __init__(self, get: Callable[[type], Any]) -> None:
        self.get = get

    def __get__(self, obj: Any, owner: type) -> Any:
        return self.get(owner)


def _qualname(obj: Any) -> str:
    """The declared class's name for a configuration (``X``, not ``X.XPMConfig``), or an object's."""
    cls = obj if isinstance(obj, type) else type(obj)
    return cls.__dict__.get("__xpm_origin__", cls).__qualname__


_CONFIG_TYPES_LOCK = threading.RLock()


def config_type(cls: type) -> type:
    """``X.C`` (``X.XPMConfig``): the class of ``X``'s configuration objects, made on first use.

    It derives from the configuration classes of ``X``'s configuration bases (or from
    :class:`ConfigMixin`), then from ``X``: configuration behaviour comes first in its method
    order, so ``X``'s own ``__init__`` (or a ``torch.nn.Module``'s) never runs on a configuration.
    """
    if issubclass(cls, ConfigMixin):
        return cls
    info = class_info(cls)
    made = info.config_type
    if made is not None:
        return made
    with _CONFIG_TYPES_LOCK:
        if info.config_type is not None:
            return info.config_type
        bases = tuple(config_type(b) for b in cls.__bases__ if is_config_class(b) and b is not Config)
        *outer, name = cls.__qualname__.split(".")
        namespace: dict[str, Any] = {
            "__module__": cls.__module__,
            "__qualname__": ".".join([*outer, f"{name}.XPMConfig"]),
            "__doc__": cls.__doc__,
            "__xpm_origin__": cls,
        }
        # Every field, inherited ones too: a default a subclass overrides sits on the subclass,
        # which comes after the parents' configuration classes in the method order.
        namespace.update((field_name, FieldDescriptor(f)) for field_name, f in info.fields.items())
        metaclass: type = type(cls)  # a Config class may have its own metaclass (ABCMeta...)
        made = metaclass(f"{name}.XPMConfig", (*(bases or (ConfigMixin,)), cls), namespace)
        register_config_type(info, made)
        return made


# -- configurations --------------------------------------------------------------------------


class Config:
    """Base of every configuration class: declare fields with ``Param``/``Meta``/``Constant``.

    ``X`` is the class of the objects a job works with; ``X.C(...)`` (``X.XPMConfig``) is the
    class of configuration objects, a subclass of :class:`ConfigMixin` and of ``X``.
    """

    __xpm_config__: ClassVar[bool] = True
    __xpm_hooks__: ClassVar[tuple[SubmitHook, ...]] = ()
    if TYPE_CHECKING:
        __xpm__: Any
        C: ClassVar[Any]
        XPMConfig: ClassVar[Any]
        XPMValue: ClassVar[type]
        __xpmtype__: ClassVar[XPMType]

    C = XPMConfig = _ClassProperty(config_type)
    """``X.C(**values)``: a new configuration of ``X`` (an ``X.XPMConfig``, validated values)."""

    XPMValue = _ClassProperty(lambda cls: class_info(cls).value_type)  # type: ignore[assignment]
    """The class objects are built of: ``X``, or the one registered with ``X.value_class()``."""

    __xpmtype__ = _ClassProperty(lambda cls: class_info(cls).xpmtype)  # type: ignore[assignment]
    """Same as :meth:`__getxpmtype__`, on the class and its instances."""

    @classmethod
    def __getxpmtype__(cls) -> XPMType:
        """The class's type information: ``identifier``, ``arguments``, ``value_type``..."""
        return class_info(cls).xpmtype

    @classmethod
    def value_class(cls) -> Callable[[type[CfgT]], type[CfgT]]:
        """Decorator: build objects of the decorated subclass of ``cls`` (``.instance()``, in the job).

        Keeps heavy set-up out of the experiment::

            @Model.value_class()
            class TorchModel(Model, nn.Module): ...

        The class must derive from ``cls`` and from the value classes its parents registered.
        """

        def decorator(value_class: type[CfgT]) -> type[CfgT]:
            if not (isinstance(value_class, type) and issubclass(value_class, cls)):
                raise TypeError(f"Value class {value_class.__name__} must be a subclass of {cls.__name__}")
            for base in cls.__bases__:
                if base is Config or not is_config_class(base):
                    continue
                parent = class_info(base)
                if parent.value_type is not parent.cls and not issubclass(value_class, parent.value_type):
                    raise TypeError(
                        f"Value class {value_class.__name__} must be a subclass of "
                        f"parent value class {parent.value_type.__name__}"
                    )
            class_info(cls).value_type = value_class
            return value_class

        return decorator

    def __xpm_serialize__(self, context: Any) -> dict[str, Any]:
        """What :func:`xpmfs.definition.save` copies for this configuration: ``{name: SerializedPath}``.

        By default each ``DataPath`` field, at its place in the tree; override to copy more or
        elsewhere (``context.serialize(context.var_path + ["name"], path, self)``).
        """
        from .definition import serialize_data

        return serialize_data(self, context)

    def __post_init__(self) -> None:
        """Override to derive state from the fields: runs on the objects the job and ``instance()`` build.

        Like experimaestro, it is not called on configurations (``.C()``): their fields may still change.
        """

    @property
    def xpmconfig(self) -> Any:
        """The configuration an object was built from (``instance(keep=True)``); a configuration: itself."""
        found = self.__dict__.get("__config__")
        if found is None:
            raise AttributeError(
                f"Object of type {_qualname(self)} has no configuration tracked. "
                "Ensure it was instantiated with .instance(keep=True)"
            )
        return found

    def _object_info(self) -> ObjectInfo:
        info = self.__dict__.get("__xpm__")
        if not isinstance(info, ObjectInfo):
            raise AttributeError(f"{_qualname(self)} object was not built by xpmfs (use X.C(...).instance())")
        return info

    def __identifier__(self) -> str:
        """The identifier of the configuration this object was built from (64 hex characters)."""
        return self._object_info().digest.hex()

    @property
    def jobpath(self) -> Path | None:
        """The job directory (a task's object in its job; ``None`` elsewhere)."""
        return self._object_info().jobpath

    @property
    def __taskdir__(self) -> Path | None:
        return self._object_info().jobpath

    @property
    def __maintaskdir__(self) -> Path | None:
        """The directory of the task this object belongs to (its own for a task)."""
        info = self._object_info()
        return info.main_jobpath if info.main_jobpath is not None else info.jobpath

    @property
    def __tags__(self) -> dict[str, Any]:
        """The tags of the configuration the object was built from (empty if it was not kept)."""
        config = self._object_info().config
        return TagDict() if config is None else tags(config)

    def register_task_output(self, method: Callable[..., Any], **kwargs: Any) -> None:
        """Announce a dynamic output while the task runs: ``method(dep, **kwargs)`` builds it.

        ``method`` is a bound method of an object of the running task's tree; ``kwargs`` must
        be JSON values. Experiments watching the output (``task.watch_output``) get it at once;
        only a :class:`ResumableTask` may do this (checked by the job runner).
        """
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", None)
        if not isinstance(owner, Config) or name is None or getattr(type(owner), name, None) is None:
            raise ConfigError(
                f"{_qualname(self)}.register_task_output",
                f"expected a method of a configuration, got {method!r}",
                "pass a bound method such as self.checkpoint",
            )
        handler = _OUTPUT_HANDLER
        if handler is None:
            raise ConfigError(
                f"{_qualname(self)}.register_task_output",
                "no task is running in this process",
                "call it from a task's execute(), inside a job",
            )
        handler(owner, name, kwargs)


if TYPE_CHECKING:
    # Every X.C derives from ConfigMixin and from X, a Config: for the type checker a configuration
    # object is a Config. At run time ConfigMixin stays outside Config's hierarchy (it is not itself
    # a configuration class, and X's own methods come after it in X.C's method order).
    _ConfigObject = Config
else:
    _ConfigObject = object


class ConfigMixin(_ConfigObject):
    """Behaviour of configuration objects: every ``X.C`` (``X.XPMConfig``) derives from it and from ``X``."""

    __xpm_configobject__: ClassVar[bool] = True
    __xpm__: ConfigInfo

    _deprecated_from: ConfigMixin | None = None
    """For a configuration built by a class deprecated with ``replace=True``: that configuration."""

    def __new__(cls, *args: Any, **values: Any) -> Any:
        deprecation = class_info(cls).deprecation
        if deprecation is None or not deprecation.replace:
            return object.__new__(cls)
        # @deprecate(New, replace=True): build the old configuration, hand back its conversion.
        old = object.__new__(cls)
        ConfigMixin.__init__(old, **values)
        converted = old.__convert__()  # type: ignore[attr-defined]
        converted.__dict__["_deprecated_from"] = old
        return converted

    def __init__(self, **values: Any) -> None:
        if "__xpm__" in self.__dict__:
            return  # a configuration converted by __new__ (deprecated with replace=True)
        info = ConfigInfo(self, class_info(type(self)))
        frame = sys._getframe(1)
        if frame.f_code is _NEW_CODE:  # built by __new__ (replace=True): the caller is one further up
            frame = frame.f_back or frame
        info.created_at = (frame.f_code.co_filename, frame.f_lineno)
        self.__dict__["__xpm__"] = info
        for name, value in values.items():
            if name not in info.cls_info.fields:
                attribute = getattr(type(self), name, None)
                if isinstance(attribute, DeprecatedAttribute):
                    attribute.__set__(self, value)
                    continue
            info.set(name, value, info.created_at)
        for f in info.cls_info.factories:
            if f.name not in info.values:
                info.values[f.name] = f.check(f.factory(), info.where(f.name))  # type: ignore[misc]

    def __setattr__(self, name: str, value: Any) -> None:
        info = self.__dict__.get("__xpm__")
        if info is not None and name in info.cls_info.fields:
            frame = sys._getframe(1)
            info.set(name, value, (frame.f_code.co_filename, frame.f_lineno))
            return
        old = self.__dict__.get("_deprecated_from")
        if old is not None and name not in self.__xpm__.cls_info.fields and name in old.__xpm__.cls_info.fields:
            _log.warning(
                "Attribute '%s' was in deprecated config %s but is not in %s. The value is being discarded.",
                name,
                old.__xpm__.cls_info.deprecation.original_identifier,
                self.__xpm__.cls_info.typeid,
            )
            return
        object.__setattr__(self, name, value)

    def __identifier__(self) -> str:
        """The identifier: 64 hex characters (SHA-256), cached once sealed."""
        return self.__xpm__.digest().hex()

    def tag(self: CfgT, name: str, value: Any) -> CfgT:
        """Add tag ``name=value`` (it does not change the identifier)."""
        self.__xpm__.add_tag(name, value, _caller(1))
        return self

    def tags(self) -> TagDict:
        """The tags of this configuration and everything below it (:func:`xpmfs.tags`)."""
        return tags(self)

    def seal(self: CfgT) -> CfgT:
        """Validate and freeze this configuration (it becomes hashable); returns it."""
        self.__xpm__.seal()
        return self

    def __arguments__(self) -> dict[str, Any]:
        """The values set, by field name."""
        return dict(self.__xpm__.values)

    def instance(self, context: Any = None, *, objects: dict[int, Any] | None = None, keep: bool = True) -> Any:
        """An object of ``X`` (or of its value class) built from this configuration, as the job builds it.

        The configuration is validated and sealed first (``context``: a :class:`DirectoryContext`
        to generate paths in, or :class:`EmptyContext`/``None`` for none). Nested configurations
        are built first, each once (sharing and cycles are kept; pass the same ``objects`` dict to
        share them across calls); then ``__post_init__`` runs. With ``keep`` the object remembers
        this configuration (``obj.xpmconfig``, ``obj.__config__``).
        """
        info = self.__xpm__
        if _check_context(context) is None and not info.sealed:
            missing = _generated_unset(self)
            if missing:
                raise AssertionError(
                    f"Empty experimaestro context does not define a path ({missing} is generated); "
                    "pass instance(DirectoryContext(folder))"
                )
        info.seal(context)
        return _instance(self, {} if objects is None else objects, keep)

    @property
    def xpmconfig(self: CfgT) -> CfgT:
        """A configuration is its own configuration."""
        return self

    def __eq__(self, other: object) -> bool:
        """Same class and same values (same identifier once both are sealed), as in experimaestro."""
        if not isinstance(other, ConfigMixin):
            return NotImplemented
        if type(self) is not type(other):
            return False
        mine, theirs = self.__xpm__, other.__xpm__
        if mine.sealed and theirs.sealed:
            return mine.digest() == theirs.digest()
        return self is other or mine.values == theirs.values

    def __hash__(self) -> int:
        info = self.__xpm__
        if not info.sealed:
            raise TypeError(
                f"unhashable: {_qualname(self)} is not sealed; use sealed_set(...) to build a set of configurations"
            )
        return hash(info.digest())

    def __rmatmul__(self, other: Any) -> Any:
        """``B.C() @ A.C(x=1)`` sets the one parameter of ``B`` that takes an ``A``; returns ``B``'s configuration."""
        if not isinstance(other, ConfigMixin):
            return NotImplemented
        mine = class_info(type(self)).cls
        matching = [
            name
            for name, f in other.__xpm__.cls_info.fields.items()
            if isinstance(f.hint, type) and issubclass(mine, f.hint)
        ]
        where = f"{_qualname(other)} @ {_qualname(self)}"
        if not matching:
            raise ConfigError(where, f"No parameter in {_qualname(other)} accepts type {mine.__name__}")
        if len(matching) > 1:
            raise ConfigError(
                where,
                f"Ambiguous composition: parameters {matching} in {_qualname(other)} all accept type {mine.__name__}",
            )
        frame = sys._getframe(1)  # where `b @ a` was written
        other.__xpm__.set(matching[0], self, (frame.f_code.co_filename, frame.f_lineno), "composed")
        return other

    @property
    def jobpath(self) -> Path | None:
        """The job directory of a sealed task (``None`` before it is submitted)."""
        return self.__xpm__.jobpath

    @property
    def __taskdir__(self) -> Path | None:
        return self.__xpm__.jobpath

    @property
    def __maintaskdir__(self) -> Path | None:
        """The directory of the task this configuration belongs to (its own for a task)."""
        info = self.__xpm__
        return info.main_jobpath if info.main_jobpath is not None else info.jobpath

    @property
    def __tags__(self) -> dict[str, Any]:
        return tags(self)

    @reprlib.recursive_repr()
    def __repr__(self) -> str:
        info = self.__dict__.get("__xpm__")
        if info is None:
            return f"<{_qualname(self)} (not initialised)>"
        values = ", ".join(f"{k}={v!r}" for k, v in info.values.items())
        return f"{_qualname(self)}.C({values})"


_NEW_CODE = ConfigMixin.__new__.__code__


def _generated_unset(config: ConfigMixin) -> str | None:
    """``Class.field`` of a generated value still to be made in ``config``'s tree, or ``None``."""
    seen: set[int] = set()

    def visit(current: ConfigMixin) -> str | None:
        seen.add(id(current))
        info = current.__xpm__
        if info.sealed:
            return None
        for f in info.cls_info.generated:
            if f.name not in info.values:
                return info.where(f.name)
        for child in _children(current):
            if id(child) not in seen:
                found = visit(child)
                if found is not None:
                    return found
        return None

    return visit(config)


class InstanceConfig(Config):
    """A configuration whose object identity counts: two equal ones used side by side are two things.

    ``Main.C(m1=sm, m2=sm)`` (one object twice) and ``Main.C(m1=sm1, m2=sm2)`` (two equal objects)
    get different identifiers: the second distinct object with the same identifier met while
    hashing is written with its rank (see spec/identifiers.md, tag ``0d``).
    """

    __xpm_instance__: ClassVar[bool] = True


class DeprecatedAttribute:
    """A deprecated parameter: ``@deprecate`` on a method ``old(self, value)`` that sets the new ones.

    ``X.C(old=v)`` and ``cfg.old = v`` call the method (with a warning); the name is not a field,
    so it never enters an identifier.
    """

    def __init__(self, setter: Callable[[Any, Any], None]) -> None:
        self.setter = setter
        self.name = setter.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        raise AttributeError(f"{_qualname(obj)}.{self.name} is a deprecated parameter: it can only be set")

    def __set__(self, obj: Any, value: Any) -> None:
        _log.warning("Parameter %s is deprecated", self.name)
        self.setter(obj, value)


def deprecate(target: Any = None, *, replace: bool = False) -> Any:
    """Deprecate a configuration class, or a parameter (experimaestro's ``@deprecate``).

    - ``@deprecate`` on ``class Old(New)``: ``Old`` gets ``New``'s type id (same identifiers);
    - ``@deprecate(New)`` on a class with a ``__convert__()`` returning a ``New`` configuration:
      ``Old``'s identifier is the identifier of what ``__convert__`` returns;
    - ``@deprecate(New, replace=True)``: ``Old.C(...)`` returns the converted ``New`` configuration
      (``_deprecated_from`` keeps the ``Old`` one);
    - ``@deprecate`` on a method ``old(self, value)``: ``old`` becomes a write-only parameter that
      calls the method (see :class:`DeprecatedAttribute`).
    """
    if inspect.isfunction(target):
        return DeprecatedAttribute(target)
    if isinstance(target, type):
        bases = target.__bases__
        if (
            not replace
            and len(bases) == 1
            and bases[0] not in (Config, Task)
            and isinstance(bases[0], type)
            and issubclass(bases[0], Config)
        ):
            target.__getxpmtype__().deprecate()  # type: ignore[attr-defined]
            return target  # @deprecate on class Old(New)
        new = target

        def deprecate_class(old: type[CfgT]) -> type[CfgT]:
            old.__getxpmtype__().deprecate(new, replace)
            return old

        return deprecate_class
    if target is None:

        def deprecate_legacy(old: type[CfgT]) -> type[CfgT]:
            old.__getxpmtype__().deprecate(None, replace)
            return old

        return deprecate_legacy
    raise ConfigError("deprecate()", f"cannot deprecate {target!r}", "decorate a configuration class or a method")


def initializer(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a method so that it runs once per object; later calls return its first result."""
    attribute = f"_xpm_initialized_{method.__name__}"

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if attribute not in self.__dict__:
            self.__dict__[attribute] = method(self, *args, **kwargs)
        return self.__dict__[attribute]

    return wrapper


def config_only(method: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a method as meant for configurations, not job objects (documentation only in xpmfs).

    In experimaestro the configuration and the job's object are two classes; in xpmfs they are
    one, so the method stays available on both.
    """
    return method


class LightweightTask(Config):
    """A configuration run inside another task's job before it: an init task (``submit(init_tasks=...)``)."""

    def execute(self) -> None:
        raise NotImplementedError(f"{_qualname(self)}.execute() is not defined")


class Task(Config):
    """A configuration that runs as a job: ``submit()`` it inside an experiment, ``execute()`` runs it."""

    __xpm_task__: ClassVar[bool] = True  # recognised by xpmfs._types (a field typed with a task) without an import

    def execute(self) -> None:
        raise NotImplementedError(f"{_qualname(self)}.execute() is not defined")

    def task_outputs(self, dep: DependentMarker) -> Any:
        """What ``submit()`` returns; mark with ``dep(config)`` what depends on this task's job."""
        return dep(self)

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("This method can only be used during configuration")


class TaskConfig(ConfigMixin, Task):
    """``Task.C``: what configurations of tasks can do (submit, callbacks); every ``T.C`` derives from it."""

    __xpm_origin__ = Task

    def on_completed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` in the experiment process when this task's job ends well."""
        if not callable(callback):
            raise ConfigError(f"{_qualname(self)}.on_completed", f"expected a callable, got {callback!r}")
        self.__xpm__.completed_callbacks += (callback,)

    def watch_output(self, method: Callable[..., Any], callback: Callable[[Any], None]) -> None:
        """Call ``callback(output)`` for each output ``method`` registers while this task runs.

        ``method`` is a bound method ``(dep, **kwargs) -> Config`` of a configuration of this
        task's tree; the task calls ``register_task_output(method, **kwargs)``. Callbacks run in
        the experiment process, in a dedicated thread; earlier outputs are replayed when the
        experiment runs again.
        """
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", None)
        where = f"{_qualname(self)}.watch_output"
        if not isinstance(owner, ConfigMixin) or name is None:
            raise ConfigError(
                where, f"expected a method of a configuration, got {method!r}", "pass e.g. validation.checkpoint"
            )
        if not callable(callback):
            raise ConfigError(where, f"expected a callable, got {callback!r}")
        self.__xpm__.output_watchers += (OutputWatcher(owner, name, callback),)

    def submit(
        self,
        *,
        init_tasks: Iterable[Config] | None = None,
        launcher: Any = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Submit this task to the running experiment; returns its outputs (see :meth:`task_outputs`).

        Outside an experiment, ``submit(run_mode=RunMode.DRY_RUN)`` (or ``"dry-run"``) only seals the
        task and returns its outputs, as experimaestro does (handy to compare identifiers); a task
        with generated paths needs a workspace for them, so that fails.
        """
        if self.__xpm__.job is not None:
            raise ConfigError(
                f"{_qualname(self)}.submit()",
                "this task was already submitted: a configuration is submitted once (as in experimaestro)",
                "use what the first submit() returned, or build a new configuration with .C(...)",
            )
        handler = _SUBMIT_HANDLER.get()
        if handler is None and options.get("workspace") is not None:
            # experimaestro's Workspace(...) given outside an experiment: it submits (only dry runs
            # can do without an experiment; see xpmfs.experiment.ExperimentWorkspace.submit_alone).
            handler = getattr(options["workspace"], "submit_alone", None)
            if handler is None:
                raise ConfigError(
                    f"{_qualname(self)}.submit(workspace=...)",
                    f"expected an xpmfs ExperimentWorkspace, got {options['workspace']!r}",
                    "build it with ExperimentWorkspace(Settings(), WorkspaceSettings(id, path), run_mode=...)",
                )
        if handler is None:
            if _is_dry_run(options.get("run_mode")):
                return self._dry_submit_alone(init_tasks)
            raise NoExperimentError(_qualname(self))
        if init_tasks is not None:
            # Init tasks are part of the identifier: they must be in place before the handler hashes.
            self.__xpm__.set_init_tasks(init_tasks)
        return handler(
            self, init_tasks=list(self.__xpm__.init_tasks), launcher=launcher, max_retries=max_retries, **options
        )

    @property
    def job(self) -> Any:
        """The job handle (:class:`xpmfs.experiment.JobHandle`) of its latest submission, else ``None``."""
        return self.__xpm__.job

    def _submitted_job(self, what: str) -> Any:
        handle = self.__xpm__.job
        if handle is None:
            raise ConfigError(
                f"{_qualname(self)}.{what}", "this task was not submitted in an experiment", "submit it first"
            )
        return handle

    def stdout(self) -> Path:
        """Its job's standard output file (experimaestro's ``task.stdout()``)."""
        return cast(Path, self._submitted_job("stdout()").stdout)

    def stderr(self) -> Path:
        """Its job's standard error file (experimaestro's ``task.stderr()``)."""
        return cast(Path, self._submitted_job("stderr()").stderr)

    def wait(self) -> Any:
        """Block until its job has ended; return the job's state (see ``JobHandle.wait``)."""
        return self._submitted_job("wait()").wait()

    def _dry_submit_alone(self, init_tasks: Iterable[Config] | None) -> Any:
        info = self.__xpm__
        if init_tasks is not None:
            info.set_init_tasks(init_tasks)
        missing = _generated_unset(self)
        if missing is not None:
            raise ConfigError(
                f"{_qualname(self)}.submit(run_mode=RunMode.DRY_RUN)",
                f"{missing} is generated in the job's folder, and there is no workspace outside an experiment",
                "dry-run it inside `with experiment(workspace, name, run_mode=RunMode.DRY_RUN):`",
            )
        info.seal()
        print(f"[dry run, no experiment] {typeid(self)}/{self.__identifier__()}", file=sys.stderr)
        return task_outputs_of(self)


def _is_dry_run(run_mode: Any) -> bool:
    """Whether ``submit(run_mode=...)`` asks for a dry run (a :class:`~xpmfs.runmode.RunMode` or its value)."""
    if run_mode is None:
        return False
    from .runmode import RunMode, parse  # not at the top: the configuration layer imports no run machinery

    return parse(run_mode, "submit(run_mode=...)") in (RunMode.DRY_RUN, RunMode.PREPARE)


TaskConfig.__name__ = "Task.XPMConfig"
TaskConfig.__qualname__ = "Task.XPMConfig"
register_config_type(class_info(Task), TaskConfig)


# -- resumable tasks -------------------------------------------------------------------------

RemainingTimeProvider = Callable[[], "float | None"]
_REMAINING_TIME_TTL = 5.0  # seconds: squeue is slow; a countdown cached this long stays accurate


def _no_time_limit() -> float | None:
    return None


_remaining_time_provider: RemainingTimeProvider = _no_time_limit


def set_remaining_time_provider(provider: RemainingTimeProvider | None) -> None:
    """Install how ``ResumableTask.remaining_time()`` learns the time left (the job runner does)."""
    global _remaining_time_provider
    _remaining_time_provider = provider or _no_time_limit


class ResumableTask(Task):
    """A task that checkpoints, and is retried (up to ``max_retries``) when it ends by timeout."""

    def remaining_time(self) -> float | None:
        """Seconds left before the job's time limit, or ``None`` when it has none."""
        now = time.monotonic()
        cached = self.__dict__.get("_xpm_remaining")
        if cached is not None and now - cached[0] < _REMAINING_TIME_TTL:
            asked_at, value = cached
            return None if value is None else max(0.0, value - (now - asked_at))
        value = _remaining_time_provider()
        self.__dict__["_xpm_remaining"] = (now, value)
        return value


# -- dynamic outputs -------------------------------------------------------------------------


class OutputWatcher:
    """``task.watch_output(owner.method, callback)``: what to call for outputs of ``owner.method``."""

    __slots__ = ("callback", "method", "owner")

    def __init__(self, owner: ConfigMixin, method: str, callback: Callable[[Any], None]) -> None:
        self.owner = owner
        self.method = method
        self.callback = callback

    def output(self, task: Task, kwargs: Mapping[str, Any]) -> Any:
        """Rebuild the output the running task announced (``method(dep, **kwargs)``)."""
        assert isinstance(task, TaskConfig), "the experiment's task is a configuration (X.C)"
        return getattr(self.owner, self.method)(DependentMarker(task, dynamic=True), **kwargs)


OutputHandler = Callable[[Config, str, Mapping[str, Any]], None]
_OUTPUT_HANDLER: OutputHandler | None = None


def set_output_handler(handler: OutputHandler | None) -> None:
    """Install where ``register_task_output`` sends outputs (the job runner does, for its task)."""
    global _OUTPUT_HANDLER
    _OUTPUT_HANDLER = handler


# -- submission ------------------------------------------------------------------------------

SubmitHandler = Callable[..., Any]
_SUBMIT_HANDLER: contextvars.ContextVar[SubmitHandler | None] = contextvars.ContextVar(
    "xpmfs_submit_handler", default=None
)


def set_submit_handler(handler: SubmitHandler) -> Token[SubmitHandler | None]:
    """Route ``Task.submit()`` to ``handler(task, init_tasks=, launcher=, max_retries=, **options)``.

    Returns the token to give :func:`reset_submit_handler`. The handler is a context variable:
    threads started afterwards do not see it unless they run in a copied context.
    """
    return _SUBMIT_HANDLER.set(handler)


def reset_submit_handler(token: Token[SubmitHandler | None]) -> None:
    _SUBMIT_HANDLER.reset(token)


class DependentMarker:
    """The ``dep`` given to ``task_outputs``: ``dep(config)`` makes ``config`` an output of the task.

    A configuration so marked carries the task in its identifier, and any task that uses it waits
    for the task's job.
    """

    __slots__ = ("dynamic", "task")

    def __init__(self, task: TaskConfig, *, dynamic: bool = False) -> None:
        self.task = task
        self.dynamic = dynamic
        """Marks dynamic outputs: they exist once announced, so using them waits for nothing."""

    def __call__(self, config: CfgT) -> CfgT:
        task = self.task
        if config is task:
            return config  # a task is its own output: its identifier is unchanged
        where = f"{_qualname(task)}.task_outputs"
        if not isinstance(config, ConfigMixin):
            raise ConfigError(where, f"dep() takes a configuration, got {config!r} ({type(config).__name__})")
        if isinstance(config, Task):
            raise ConfigError(
                where,
                f"dep() cannot mark another task ({_qualname(config)})",
                "return a configuration that wraps what that task produces",
            )
        info = config.__xpm__
        if info.task is task:
            return config
        if info.task is not None:
            raise ConfigError(
                where,
                f"{_qualname(config)} is already an output of {_qualname(info.task)}",
                "mark a new configuration built with .C(...)",
            )
        if info.sealed:
            raise SealedError(
                where,
                f"{_qualname(config)} is sealed (part of a submitted task); marking it would change its identifier",
                "mark a new configuration built with .C(...)",
            )
        info.task = task
        info.dynamic = self.dynamic
        return config


def task_outputs_of(task: TaskConfig) -> Any:
    """Call ``task.task_outputs`` with a real ``dep`` (what ``submit()`` returns)."""
    return task.task_outputs(DependentMarker(task))


def dependencies(config: ConfigMixin, init_tasks: Iterable[ConfigMixin] = ()) -> list[Task]:
    """Other tasks whose outputs appear in ``config``'s tree or in ``init_tasks``'s: the job's dependencies.

    A task counts when one of its outputs (a configuration marked by ``dep``) or the task object
    itself, submitted, is a value in the tree. The walk does not enter an output or a submitted
    task (what they need is their own job's business). A task never submitted has no job to wait
    for: as in experimaestro, it is a plain configuration there, and what it uses counts. Order:
    first met first.
    """
    found: dict[int, Task] = {}
    seen: set[int] = {id(config)}

    def visit(children: Iterable[ConfigMixin]) -> None:
        for child in children:
            if id(child) in seen:
                continue
            seen.add(id(child))
            if _has_job(child):
                found.setdefault(id(child), child)
                continue
            producer = child.__xpm__.task
            if producer is not None and producer is not config:
                # A stub stands for a task of a saved run, which this job cannot wait for.
                if not child.__xpm__.dynamic and not isinstance(producer, TaskStub):
                    found.setdefault(id(producer), producer)
                continue
            visit(_children(child))

    visit(_children(config))
    visit(init_tasks)  # an init task not submitted runs inside this job: what it uses counts
    return list(found.values())


def tags(config: ConfigMixin) -> TagDict:
    """All tags of the tree, producing tasks included; a configuration's tags override its children's.

    Values wrapped in :func:`stop_tags` (fields or init tasks) are not visited. When two parts of
    the tree give one tag different values, the one nearer the root (or met last) wins, with a
    warning naming both places.
    """
    collected: dict[str, tuple[Any, str]] = {}
    seen: set[int] = set()

    def visit(current: ConfigMixin) -> None:
        seen.add(id(current))
        info = current.__xpm__
        stopped = info.stop_tags
        nested: list[ConfigMixin] = []
        for name, value in info.values.items():
            if name not in stopped and _may_hold_configs(value):
                nested.extend(_configs_in(value))
        nested.extend(t for t in info.init_tasks if id(t) not in stopped)
        if isinstance(info.task, ConfigMixin):  # not a TaskStub: its tags were not loaded
            nested.append(info.task)
        for child in nested:
            if id(child) not in seen:
                visit(child)
        for name, value in info.own_tags.items():
            source = info.tag_sources.get(name, "?")
            if name in collected and collected[name][0] != value:
                old_value, old_source = collected[name]
                _log.warning(
                    "Tag %r has conflicting values in %s: %r (set at %s) and %r (set at %s); using %r",
                    name,
                    _qualname(config),
                    old_value,
                    old_source,
                    value,
                    source,
                    value,
                )
            collected[name] = (value, source)

    visit(config)
    return TagDict({name: value for name, (value, _) in collected.items()})


def tagspath(config: ConfigMixin) -> str:
    """The tags as a path component: ``"epochs=100_lr=0.001"`` (sorted; ``/`` in text becomes ``-``)."""

    def text(value: Any) -> Any:
        return value.replace("/", "-") if isinstance(value, str) else value

    return "_".join(f"{text(name)}={text(value)}" for name, value in tags(config).items())


def copyconfig(config: CfgT, **values: Any) -> CfgT:
    """A new, unsealed configuration of the same class, with ``config``'s values and then ``values``.

    Generated values are left out (the copy generates its own when submitted); tags, the task
    whose output ``config`` was, and init tasks are not copied.
    """
    info = config.__xpm__
    merged = {name: value for name, value in info.values.items() if info.cls_info.fields[name].generator is None}
    merged.update(values)
    return type(config)(**merged)


def sealed_set(*elements: Any) -> set[Any]:
    """A ``set`` of configurations (and plain values): each configuration is sealed first.

    A sealed configuration hashes by its identifier, so equal configurations are one member.
    """
    for element in elements:
        if isinstance(element, ConfigMixin):
            element.__xpm__.seal()
    return set(elements)


def setmeta(config: CfgT, meta: bool | None = True) -> CfgT:
    """Mark ``config`` meta (``True``: left out of identifiers wherever it is used) and return it."""
    config.__xpm__.set_meta(meta)
    return config


def typeid(config: Config | type[Config]) -> str:
    """The type id: ``__xpmid__`` if the class sets one, else ``module.qualname``; lower-cased."""
    if isinstance(config, type):
        return class_info(config).typeid
    info = config.__dict__.get("__xpm__")
    if isinstance(info, ObjectInfo):
        return info.typeid  # an object built from a configuration (its class may be a value class)
    return class_info(type(config)).typeid


def fields_of(config: Config | type[Config]) -> Mapping[str, Field]:
    """The fields of a configuration class (read-only), inherited ones included."""
    cls = config if isinstance(config, type) else type(config)
    return MappingProxyType(class_info(cls).fields)


# -- submit hooks ----------------------------------------------------------------------------


class SubmitHook:
    """Changes a job's environment or launcher when a task using the decorated class is submitted.

    Subclass it, implement :meth:`spec` (a hashable value: hooks with the same class and spec are
    applied once) and :meth:`process`, and decorate a configuration class with an instance::

        @needs_java(11)
        class IndexCollection(Config): ...
    """

    def spec(self) -> Any:
        raise NotImplementedError

    def process(self, job: Any, launcher: Any) -> None:
        raise NotImplementedError

    def __call__(self, cls: type[CfgT]) -> type[CfgT]:
        if not (isinstance(cls, type) and issubclass(cls, Config)):
            raise ConfigError(_qualname(self), f"decorates Config classes, not {cls!r}")
        cls.__xpm_hooks__ = _unique_hooks((*cls.__xpm_hooks__, self))
        return cls

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.spec() == self.spec()

    def __hash__(self) -> int:
        return hash((type(self), self.spec()))


def _unique_hooks(hooks: Iterable[SubmitHook]) -> tuple[SubmitHook, ...]:
    return tuple(dict.fromkeys(hooks))  # SubmitHook equality is (type, spec())


def submit_hooks(config: ConfigMixin) -> list[SubmitHook]:
    """The hooks of every class in ``config``'s tree, each once (by ``spec()``).

    As in experimaestro, the walk goes through every value and init task, tasks given as values
    included (submitted or not), but not to the task an output comes from. Children come first:
    the hooks of a class apply after those of what it uses, so the task's own win where two set
    the same variable (experimaestro applies them in a set's order).
    """
    hooks: list[SubmitHook] = []
    seen: set[int] = set()

    def visit(current: ConfigMixin) -> None:
        seen.add(id(current))
        for child in _children(current):
            if id(child) not in seen:
                visit(child)
        hooks.extend(type(current).__xpm_hooks__)

    visit(config)
    return list(_unique_hooks(hooks))


__all__ = [
    "MISSING",
    "Config",
    "ConfigInfo",
    "ConfigMixin",
    "Constant",
    "DependentMarker",
    "DeprecatedAttribute",
    "Field",
    "InstanceConfig",
    "LightweightTask",
    "Meta",
    "ObjectInfo",
    "Option",
    "OutputWatcher",
    "Param",
    "PathGenerator",
    "ResumableTask",
    "SetInfo",
    "SubmitHook",
    "TagDict",
    "TaggedValue",
    "Task",
    "TaskConfig",
    "TaskStub",
    "config_only",
    "config_type",
    "copyconfig",
    "dependencies",
    "deprecate",
    "field",
    "fields_of",
    "initializer",
    "instantiate_job",
    "post_init",
    "reset_submit_handler",
    "sealed_set",
    "set_output_handler",
    "set_remaining_time_provider",
    "set_submit_handler",
    "setmeta",
    "stop_tags",
    "submit_hooks",
    "tag",
    "tags",
    "tagspath",
    "task_outputs_of",
    "typeid",
]
