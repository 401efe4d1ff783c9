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

import contextvars
import reprlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ._classinfo import (
    MISSING,
    ClassInfo,
    Constant,
    Field,
    Meta,
    Option,
    Param,
    class_info,
    field,
)
from .errors import ConfigError, NoExperimentError, SealedError
from .generators import PathGenerator

if TYPE_CHECKING:
    from contextvars import Token

C = TypeVar("C", bound="Config")

# -- tags ----------------------------------------------------------------------------------


class TaggedValue:
    """A value wrapped by :func:`tag`: stored as the value, and recorded as a tag of its field."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"tag({self.value!r})"


def tag(value: Any) -> Any:
    """``X.C(lr=tag(0.1))`` sets ``lr`` to 0.1 and tags the configuration ``lr=0.1``.

    Tags label results (``tags(cfg)``, job listings); they never change an identifier.
    """
    return TaggedValue(value)


# -- per-instance state ----------------------------------------------------------------------


class ConfigInfo:
    """The configuration layer's state for one instance: ``cfg.__xpm__``."""

    __slots__ = (
        "cls_info",
        "completed_callbacks",
        "config",
        "dynamic",
        "identifier_cache",
        "init_tasks",
        "job",
        "jobpath",
        "main_jobpath",
        "meta",
        "output_watchers",
        "sealed",
        "tags",
        "task",
        "values",
    )

    def __init__(self, config: Config, cls_info: ClassInfo) -> None:
        self.config = config
        self.cls_info = cls_info
        self.values: dict[str, Any] = cls_info.initial_values()
        self.sealed = False
        self.task: Task | None = None
        """The task this configuration is an output of (set by ``dep``); ``None`` otherwise."""
        self.init_tasks: tuple[LightweightTask, ...] = ()
        self.tags: dict[str, Any] = {}
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
        self.completed_callbacks: list[Callable[[], None]] = []
        self.output_watchers: list[OutputWatcher] = []

    _NOT_PICKLED = ("cls_info", "completed_callbacks", "output_watchers")

    def __getstate__(self) -> dict[str, Any]:
        # The class information is rebuilt from the class, not copied (it may hold lambdas);
        # callbacks belong to the experiment process that registered them.
        return {name: getattr(self, name) for name in self.__slots__ if name not in self._NOT_PICKLED}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            setattr(self, name, value)
        self.cls_info = class_info(type(self.config))
        self.completed_callbacks = []
        self.output_watchers = []

    # -- values --

    def where(self, name: str) -> str:
        return f"{type(self.config).__qualname__}.{name}"

    def field(self, name: str) -> Field:
        found = self.cls_info.fields.get(name)
        if found is None:
            known = ", ".join(sorted(self.cls_info.fields)) or "none"
            import difflib  # here: only a mistake pays for importing it

            close = difflib.get_close_matches(name, self.cls_info.fields, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(self.where(name), "unknown parameter", f"{hint}known parameters: {known}")
        return found

    def set(self, name: str, value: Any) -> None:
        """Validate and store ``value`` (``cfg.name = value`` and ``X.C(name=value)`` come here)."""
        f = self.field(name)
        where = self.where(name)
        if self.sealed:
            raise SealedError(
                where,
                "the configuration is sealed (it was submitted) and cannot change",
                "build a new one with .C(...)",
            )
        tagged = isinstance(value, TaggedValue)
        if tagged:
            value = value.value
        if f.generator is not None:
            raise ConfigError(where, f"is generated ({f.generator!r}) when the task is submitted", f"do not set {name}")
        value = f.check(value, where)
        if f.constant and value != f.default:
            raise ConfigError(
                where, f"is a constant ({f.default!r}) and cannot be set to {value!r}", f"do not set {name}"
            )
        self.values[name] = value
        if tagged:
            self.tags[name] = value

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

    def add_tag(self, name: str, value: Any) -> None:
        self.tags[name] = value

    def set_meta(self, meta: bool | None) -> None:
        if self.sealed:
            raise SealedError(
                type(self.config).__qualname__, "the configuration is sealed; its meta flag cannot change"
            )
        self.meta = meta

    def set_init_tasks(self, init_tasks: Iterable[LightweightTask]) -> None:
        tasks = tuple(init_tasks)
        name = type(self.config).__qualname__
        for i, task in enumerate(tasks):
            if not isinstance(task, LightweightTask):
                raise ConfigError(
                    f"{name}.submit(init_tasks[{i}])",
                    f"expected a LightweightTask, got {task!r} ({type(task).__name__})",
                    "init tasks are LightweightTask configurations",
                )
        if tasks == self.init_tasks:
            return
        if self.sealed:
            raise SealedError(
                f"{name}.submit()", "the task was submitted with other init tasks", "build a new task with .C(...)"
            )
        self.init_tasks = tasks

    # -- lifecycle --

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first required field left unset in this tree."""
        _validate(self.config, type(self.config).__qualname__, set())

    def seal(self, jobpath: Path | None = None) -> None:
        """Validate, generate values for ``jobpath`` (if given), then freeze the whole tree.

        Nested configurations already sealed (shared with an earlier task) keep their values;
        other tasks met in the tree are left alone (they are their own jobs).
        """
        if self.sealed:
            if jobpath is not None and self.jobpath is None:
                self.jobpath = Path(jobpath)
            return
        self.validate()
        path = None if jobpath is None else Path(jobpath)
        self.jobpath = path
        _seal(self.config, self.config, path, set())

    def set_jobpath(self, jobpath: Path) -> None:
        """Tell a loaded task where its job directory is (the job runner calls this)."""
        self.jobpath = Path(jobpath)
        _set_main_jobpath(self.config, self.config, self.jobpath, set())

    def digest(self) -> bytes:
        """The 32-byte identifier (cached once sealed)."""
        cached = self.identifier_cache
        return cached if cached is not None else _identifier.digest(self.config)


def _configs_in(value: Any) -> Iterator[Config]:
    """Configurations directly inside a value (through lists, tuples, sets and dict values)."""
    if isinstance(value, Config):
        yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _configs_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _configs_in(item)


def _children(config: Config) -> Iterator[Config]:
    info = config.__xpm__
    for value in info.values.values():
        yield from _configs_in(value)
    yield from info.init_tasks


def _validate(config: Config, trail: str, seen: set[int]) -> None:
    seen.add(id(config))
    info = config.__xpm__
    values = info.values
    for f in info.cls_info.fields.values():
        if f.required and f.name not in values:
            where = info.where(f.name)
            through = f" (reached through {trail})" if trail != type(config).__qualname__ else ""
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


def _seal(config: Config, root: Config, jobpath: Path | None, seen: set[int]) -> None:
    seen.add(id(config))
    info = config.__xpm__
    producer = info.task
    if producer is not None and producer is not root:
        # Another task's output: its generated values belong in that task's directory.
        jobpath = producer.__xpm__.jobpath
    if jobpath is not None:
        for f in info.cls_info.generated:
            if f.name not in info.values:
                info.values[f.name] = f.check(f.generator(config, jobpath), info.where(f.name))  # type: ignore[misc]
    if config is not root and info.main_jobpath is None:
        info.main_jobpath = root.__xpm__.jobpath
    for child in _children(config):
        if id(child) in seen or child.__xpm__.sealed or isinstance(child, Task):
            continue
        _seal(child, root, jobpath, seen)
    info.sealed = True


def _set_main_jobpath(config: Config, root: Config, jobpath: Path, seen: set[int]) -> None:
    seen.add(id(config))
    if config is not root:
        config.__xpm__.main_jobpath = jobpath
    for child in _children(config):
        if id(child) not in seen and not isinstance(child, Task):
            _set_main_jobpath(child, root, jobpath, seen)


# -- configurations --------------------------------------------------------------------------


class Config:
    """Base of every configuration: declare fields with ``Param``/``Meta``/``Constant``."""

    __xpm_config__: ClassVar[bool] = True
    __xpm_hooks__: ClassVar[tuple[SubmitHook, ...]] = ()
    __xpm__: ConfigInfo

    def __init__(self, **values: Any) -> None:
        info = ConfigInfo(self, class_info(type(self)))
        self.__xpm__ = info
        for name, value in values.items():
            info.set(name, value)
        for f in info.cls_info.factories:
            if f.name not in info.values:
                info.values[f.name] = f.check(f.factory(), info.where(f.name))  # type: ignore[misc]

    @classmethod
    def C(cls: type[C], **values: Any) -> C:
        """A new configuration of this class with the given values (validated)."""
        return cls(**values)

    def __identifier__(self) -> str:
        """The identifier: 64 hex characters (SHA-256), cached once sealed."""
        return self.__xpm__.digest().hex()

    def tag(self: C, name: str, value: Any) -> C:
        """Add tag ``name=value`` (it does not change the identifier)."""
        self.__xpm__.add_tag(name, value)
        return self

    def register_task_output(self, method: Callable[..., Any], **kwargs: Any) -> None:
        """Announce a dynamic output while the task runs: ``method(dep, **kwargs)`` builds it.

        ``method`` is a bound method of a configuration in the running task's tree; ``kwargs`` must
        be JSON values. Experiments watching the output (``task.watch_output``) get it at once;
        only a :class:`ResumableTask` may do this (checked by the job runner).
        """
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", None)
        if not isinstance(owner, Config) or name is None or getattr(type(owner), name, None) is None:
            raise ConfigError(
                f"{type(self).__qualname__}.register_task_output",
                f"expected a method of a configuration, got {method!r}",
                "pass a bound method such as self.checkpoint",
            )
        handler = _OUTPUT_HANDLER
        if handler is None:
            raise ConfigError(
                f"{type(self).__qualname__}.register_task_output",
                "no task is running in this process",
                "call it from a task's execute(), inside a job",
            )
        handler(owner, name, kwargs)

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
            return f"<{type(self).__qualname__} (not initialised)>"
        values = ", ".join(f"{k}={v!r}" for k, v in info.values.items())
        return f"{type(self).__qualname__}.C({values})"


class LightweightTask(Config):
    """A configuration run inside another task's job before it: an init task (``submit(init_tasks=...)``)."""

    def execute(self) -> None:
        raise NotImplementedError(f"{type(self).__qualname__}.execute() is not defined")


class Task(Config):
    """A configuration that runs as a job: ``submit()`` it inside an experiment, ``execute()`` runs it."""

    def execute(self) -> None:
        raise NotImplementedError(f"{type(self).__qualname__}.execute() is not defined")

    def task_outputs(self, dep: DependentMarker) -> Any:
        """What ``submit()`` returns; mark with ``dep(config)`` what depends on this task's job."""
        return dep(self)

    def on_completed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` in the experiment process when this task's job ends well."""
        if not callable(callback):
            raise ConfigError(f"{type(self).__qualname__}.on_completed", f"expected a callable, got {callback!r}")
        self.__xpm__.completed_callbacks.append(callback)

    def watch_output(self, method: Callable[..., Any], callback: Callable[[Any], None]) -> None:
        """Call ``callback(output)`` for each output ``method`` registers while this task runs.

        ``method`` is a bound method ``(dep, **kwargs) -> Config`` of a configuration of this
        task's tree; the task calls ``register_task_output(method, **kwargs)``. Callbacks run in
        the experiment process, in a dedicated thread; earlier outputs are replayed when the
        experiment runs again.
        """
        owner = getattr(method, "__self__", None)
        name = getattr(method, "__name__", None)
        where = f"{type(self).__qualname__}.watch_output"
        if not isinstance(owner, Config) or name is None:
            raise ConfigError(
                where, f"expected a method of a configuration, got {method!r}", "pass e.g. validation.checkpoint"
            )
        if not callable(callback):
            raise ConfigError(where, f"expected a callable, got {callback!r}")
        self.__xpm__.output_watchers.append(OutputWatcher(owner, name, callback))

    def submit(
        self,
        *,
        init_tasks: Iterable[LightweightTask] | None = None,
        launcher: Any = None,
        max_retries: int | None = None,
        **options: Any,
    ) -> Any:
        """Submit this task to the running experiment; returns its outputs (see :meth:`task_outputs`)."""
        handler = _SUBMIT_HANDLER.get()
        if handler is None:
            raise NoExperimentError(type(self).__qualname__)
        if init_tasks is not None:
            # Init tasks are part of the identifier: they must be in place before the handler hashes.
            self.__xpm__.set_init_tasks(init_tasks)
        return handler(
            self, init_tasks=list(self.__xpm__.init_tasks), launcher=launcher, max_retries=max_retries, **options
        )


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

    def __init__(self, owner: Config, method: str, callback: Callable[[Any], None]) -> None:
        self.owner = owner
        self.method = method
        self.callback = callback

    def output(self, task: Task, kwargs: Mapping[str, Any]) -> Any:
        """Rebuild the output the running task announced (``method(dep, **kwargs)``)."""
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

    def __init__(self, task: Task, *, dynamic: bool = False) -> None:
        self.task = task
        self.dynamic = dynamic
        """Marks dynamic outputs: they exist once announced, so using them waits for nothing."""

    def __call__(self, config: C) -> C:
        task = self.task
        if config is task:
            return config  # a task is its own output: its identifier is unchanged
        where = f"{type(task).__qualname__}.task_outputs"
        if not isinstance(config, Config):
            raise ConfigError(where, f"dep() takes a configuration, got {config!r} ({type(config).__name__})")
        if isinstance(config, Task):
            raise ConfigError(
                where,
                f"dep() cannot mark another task ({type(config).__qualname__})",
                "return a configuration that wraps what that task produces",
            )
        info = config.__xpm__
        if info.task is task:
            return config
        if info.task is not None:
            raise ConfigError(
                where,
                f"{type(config).__qualname__} is already an output of {type(info.task).__qualname__}",
                "mark a new configuration built with .C(...)",
            )
        if info.sealed:
            raise SealedError(
                where,
                f"{type(config).__qualname__} is sealed (part of a submitted task); "
                "marking it would change its identifier",
                "mark a new configuration built with .C(...)",
            )
        info.task = task
        info.dynamic = self.dynamic
        return config


def task_outputs_of(task: Task) -> Any:
    """Call ``task.task_outputs`` with a real ``dep`` (what ``submit()`` returns)."""
    return task.task_outputs(DependentMarker(task))


def dependencies(config: Config, init_tasks: Iterable[Config] = ()) -> list[Task]:
    """Other tasks whose outputs appear in ``config``'s tree or in ``init_tasks``'s: the job's dependencies.

    A task counts when one of its outputs (a configuration marked by ``dep``) or the task object
    itself is a value in the tree. The walk does not enter an output or a task (what they need is
    their own job's business). Order: first met first.
    """
    found: dict[int, Task] = {}
    seen: set[int] = {id(config)}

    def visit(children: Iterable[Config]) -> None:
        for child in children:
            if id(child) in seen:
                continue
            seen.add(id(child))
            if isinstance(child, Task):
                found.setdefault(id(child), child)
                continue
            producer = child.__xpm__.task
            if producer is not None and producer is not config:
                if not child.__xpm__.dynamic:
                    found.setdefault(id(producer), producer)
                continue
            visit(_children(child))

    visit(_children(config))
    visit(init_tasks)
    return list(found.values())


def tags(config: Config) -> dict[str, Any]:
    """All tags of the tree, producing tasks included; a configuration's tags override its children's."""
    collected: dict[str, Any] = {}
    seen: set[int] = set()

    def visit(current: Config) -> None:
        seen.add(id(current))
        info = current.__xpm__
        nested = list(_children(current))
        if info.task is not None:
            nested.append(info.task)
        for child in nested:
            if id(child) not in seen:
                visit(child)
        collected.update(info.tags)

    visit(config)
    return collected


def setmeta(config: C, meta: bool | None = True) -> C:
    """Mark ``config`` meta (``True``: left out of identifiers wherever it is used) and return it."""
    config.__xpm__.set_meta(meta)
    return config


def typeid(config: Config | type[Config]) -> str:
    """The type id: ``__xpmid__`` if the class sets one, else ``module.qualname``; lower-cased."""
    cls = config if isinstance(config, type) else type(config)
    return class_info(cls).typeid


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

    def __call__(self, cls: type[C]) -> type[C]:
        if not (isinstance(cls, type) and issubclass(cls, Config)):
            raise ConfigError(type(self).__qualname__, f"decorates Config classes, not {cls!r}")
        cls.__xpm_hooks__ = _unique_hooks((*cls.__xpm_hooks__, self))
        return cls

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.spec() == self.spec()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.spec()))


def _unique_hooks(hooks: Iterable[SubmitHook]) -> tuple[SubmitHook, ...]:
    return tuple(dict.fromkeys(hooks))  # SubmitHook equality is (type, spec())


def submit_hooks(config: Config) -> list[SubmitHook]:
    """The hooks of every class in ``config``'s tree (not crossing into other tasks), each once."""
    hooks: list[SubmitHook] = []
    seen: set[int] = set()

    def visit(current: Config) -> None:
        seen.add(id(current))
        hooks.extend(type(current).__xpm_hooks__)
        for child in _children(current):
            if id(child) not in seen and not isinstance(child, Task):
                visit(child)

    visit(config)
    return list(_unique_hooks(hooks))


# Imported last: xpmfs.identifier needs Config, defined above.
from . import identifier as _identifier

__all__ = [
    "MISSING",
    "Config",
    "ConfigInfo",
    "Constant",
    "DependentMarker",
    "Field",
    "LightweightTask",
    "Meta",
    "Option",
    "OutputWatcher",
    "Param",
    "PathGenerator",
    "ResumableTask",
    "SubmitHook",
    "Task",
    "dependencies",
    "field",
    "fields_of",
    "reset_submit_handler",
    "set_output_handler",
    "set_remaining_time_provider",
    "set_submit_handler",
    "setmeta",
    "submit_hooks",
    "tag",
    "tags",
    "task_outputs_of",
    "typeid",
]
