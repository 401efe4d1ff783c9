"""Configurations saved to a folder, in experimaestro 2.7's definition format, and loaded back.

``save(cfg, folder)`` writes ``folder/experimaestro.json``; ``load(folder)`` reads it (or
``definition.json``) back; ``serialize``/``deserialize`` do the same with init tasks to run on
loading; ``state_dict``/``from_state_dict`` are the same data in memory. The file is the one
experimaestro 2.7 writes and reads (spec/configuration.md, "Saving and loading"), so a
configuration saved by either tool loads in the other:

- ``{"objects": [...], "data": <value>}``: each object is a configuration, written after what it
  refers to, as ``{"id", "module", "type", "typename", "identifier", "fields", ["file"],
  ["task"], ["init-tasks"], ["meta"]}``; a value refers to an object as
  ``{"type": "python", "value": <id>}``;
- ``DataPath`` fields are copied into the folder (hard links when possible), at the field's place
  in the tree (``<field>/<field or index>/...``), and written as ``{"type": "path.serialized"}``;
  a class may override ``__xpm_serialize__(context)`` to choose what is copied where.

This is not the job spec (``__xpm__/spec.json``, :mod:`xpmfs.serialization`): it is the format
for configurations handed between people and tools (a trained model and how to rebuild it).
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import _atomic
from ._classinfo import DataPath, class_info, public_module
from .config import Config, ConfigInfo, ConfigMixin, LightweightTask, Param, Task, TaskStub, _instance
from .errors import ConfigError
from .identifier import ConfigIdentifier
from .serialization import load_class

DEFINITION_FILE = "experimaestro.json"
"""What :func:`save` and :func:`serialize` write; :func:`load` falls back to :data:`OLD_DEFINITION_FILE`."""

OLD_DEFINITION_FILE = "definition.json"


# -- the context ----------------------------------------------------------------------------


class SerializedPath:
    """A data path copied into a save folder: ``path`` is relative to it."""

    def __init__(self, path: str | os.PathLike[str], is_folder: bool | None = None) -> None:
        self.path = Path(path)
        self.is_folder = self.path.is_dir() if is_folder is None else is_folder

    def __repr__(self) -> str:
        return f"SerializedPath({str(self.path)!r}, is_folder={self.is_folder})"


SerializedPathLoader = Callable[[Path | str | SerializedPath], Path]
"""Where a saved data path is: ``loader(relative path or SerializedPath) -> Path``."""


def _shallow_copy(source: Path, target: Path) -> None:
    """Copy a file (a hard link when possible) or a folder of them."""
    if source.is_file():
        try:
            target.hardlink_to(source)
        except OSError:
            shutil.copy(source, target)
        return
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    for child in source.iterdir():
        _shallow_copy(child, target / child.name)


class SerializationContext:
    """Where data paths are copied while saving (``save_directory``; ``None``: not copied)."""

    job_path: Path | None = None
    """If set, paths under it are written relative to it (``"base": "job"``)."""
    workspace_path: Path | None = None
    """If set, paths under it are written relative to it (``"base": "workspace"``)."""

    def __init__(self, *, save_directory: Path | None = None) -> None:
        self.save_directory = None if save_directory is None else Path(save_directory)
        self.var_path: list[str] = []
        self.serialized: set[int] = set()
        self.serialized_paths: set[str] = set()

    def serialize(self, var_path: list[str], data_path: Path, config: Any) -> SerializedPath:
        """Copy ``data_path`` to ``save_directory / var_path`` and return where it went.

        Raises :class:`ValueError` when two data paths would go to one place.
        """
        if self.save_directory is None:
            return SerializedPath(data_path)
        path = Path(*var_path)
        if str(path) in self.serialized_paths:
            raise ValueError(f"Serialization path conflict: '{path}' is already used")
        self.serialized_paths.add(str(path))
        target = self.save_directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        _shallow_copy(Path(data_path), target)
        return SerializedPath(path, Path(data_path).is_dir())

    @contextmanager
    def push(self, name: str) -> Iterator[list[str]]:
        self.var_path.append(name)
        try:
            yield self.var_path
        finally:
            self.var_path.pop()

    @property
    def depth(self) -> int:
        """How deep in the tree the walk is (the root: 0)."""
        return len(self.var_path)


def serialize_data(config: Any, context: SerializationContext) -> dict[str, SerializedPath]:
    """``Config.__xpm_serialize__``'s default: each set ``DataPath`` field, copied at its place."""
    info = config.__xpm__
    found: dict[str, SerializedPath] = {}
    for name, f in info.cls_info.fields.items():
        value = info.values.get(name)
        if f.is_data and value is not None:
            if not isinstance(value, Path):
                raise ConfigError(info.where(name), f"a data field holds a path, not {value!r}")
            found[name] = context.serialize([*context.var_path, name], value, config)
    return found


# -- writing --------------------------------------------------------------------------------


def _module_file(cls: type) -> str | None:
    """The file to record for a class whose module is not in a package (a script, a top-level module)."""
    module = sys.modules.get(cls.__module__)
    if module is not None and module.__package__:
        return None
    file = getattr(module, "__file__", None)
    return None if file is None else os.path.abspath(file)


class _Writer:
    def __init__(self, context: SerializationContext) -> None:
        self.context = context
        self.objects: list[dict[str, Any]] = []

    def collect(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, ConfigMixin):
            self.config(value)
        elif isinstance(value, TaskStub):
            self.stub(value)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for index, item in enumerate(value):
                with self.context.push(str(index)):
                    self.collect(item)
        elif isinstance(value, dict):
            for key, item in value.items():
                with self.context.push(str(key)):
                    self.collect(item)

    def config(self, config: Any) -> None:  # a ConfigMixin (every one is also a Config)
        context = self.context
        if id(config) in context.serialized:
            return
        context.serialized.add(id(config))
        info = config.__xpm__
        values = [(name, info.values[name]) for name in info.cls_info.fields if name in info.values]
        for name, value in values:
            if value is not None:
                with context.push(name):
                    self.collect(value)
        if info.task is not None and info.task is not config:
            self.collect(info.task)
        self.collect(list(info.init_tasks))
        cls = info.cls_info.cls
        record: dict[str, Any] = {
            "id": id(config),
            "module": public_module(cls),
            "type": info.cls_info.value_type.__qualname__,
            "typename": f"{info.cls_info.value_type.__module__}.{info.cls_info.value_type.__qualname__}",
            "identifier": info.digest().hex(),
        }
        if info.init_tasks:
            record["init-tasks"] = [id(task) for task in info.init_tasks]
        if info.meta:
            record["meta"] = info.meta
        if info.task is not None:
            record["task"] = id(info.task)
        elif isinstance(config, Task) and info.job is not None:
            record["task"] = id(config)  # a submitted task is its own output, as experimaestro records it
        file = _module_file(cls)
        if file is not None:
            record["file"] = file
        data = config.__xpm_serialize__(context)
        fields = record["fields"] = {}
        for name, value in values:
            with context.push(name):
                fields[name] = self.value(data.pop(name) if name in data else value)
        for name, extra in data.items():  # entries of __xpm_serialize__ that are not fields
            fields[name] = self.value(extra)
        self.objects.append(record)

    def stub(self, stub: TaskStub) -> None:
        """A task partial loading left out, written back as it was read (``"stub": true``)."""
        if id(stub) in self.context.serialized:
            return
        self.context.serialized.add(id(stub))
        module, _, qualname = stub.typename.rpartition(".")
        self.objects.append(
            {
                "id": id(stub),
                "module": module,
                "type": qualname,
                "typename": stub.typename,
                "identifier": stub.identifier.hex(),
                "fields": {},
                "stub": True,
            }
        )

    def value(self, value: Any) -> Any:
        context = self.context
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        if isinstance(value, (set, frozenset)):
            return {"type": "set", "items": [self.value(item) for item in value]}
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, Path):
            for base, anchor in (("job", context.job_path), ("workspace", context.workspace_path)):
                if anchor is not None and value.is_relative_to(anchor):
                    return {"type": "path", "value": str(value.relative_to(anchor)), "base": base}
            return {"type": "path", "value": str(value)}
        if isinstance(value, SerializedPath):
            return {"type": "path.serialized", "value": str(value.path), "is_folder": value.is_folder}
        if isinstance(value, (int, float, str)):  # before Enum, as experimaestro: an IntEnum is its int
            return value
        if isinstance(value, enum.Enum):
            cls = type(value)
            return {"type": "enum", "module": cls.__module__, "enum": cls.__qualname__, "value": value.name}
        if isinstance(value, ConfigMixin):
            return {"type": "python", "value": id(value)}
        raise ConfigError("state_dict", f"cannot serialize a value of type {type(value).__qualname__}: {value!r:.80}")


def state_dict(context: SerializationContext, obj: Any) -> dict[str, Any]:
    """``obj`` (a configuration, or a list, tuple or dict of them) as ``{"objects": [...], "data": ...}``."""
    if not isinstance(obj, (ConfigMixin, list, tuple, dict)):
        raise ConfigError("state_dict", f"expected configurations, got {type(obj).__qualname__}")
    writer = _Writer(context)
    writer.collect(obj)
    return {"objects": writer.objects, "data": writer.value(obj)}


def _write(data: Any, path: Path) -> None:
    _atomic.write_bytes(path, json.dumps(data).encode())  # whole or absent: a reader never sees half of it


def save(obj: Any, save_directory: str | os.PathLike[str], definition_filename: str = DEFINITION_FILE) -> None:
    """Write ``obj`` to ``save_directory/experimaestro.json``, copying its ``DataPath`` data beside it."""
    folder = Path(save_directory)
    _write(state_dict(SerializationContext(save_directory=folder), obj), folder / definition_filename)


def serialize(
    obj: Any,
    save_directory: str | os.PathLike[str],
    *,
    init_tasks: list[LightweightTask] | None = None,
    definition_filename: str = DEFINITION_FILE,
) -> None:
    """As :func:`save`, with init tasks that :func:`deserialize` runs when it builds objects."""
    folder = Path(save_directory)
    data = state_dict(SerializationContext(save_directory=folder), (obj, list(init_tasks or [])))
    _write(data, folder / definition_filename)


# -- reading --------------------------------------------------------------------------------

# experimaestro's own classes that xpmfs provides under another module.
_RENAMED: dict[tuple[str, str], str] = {
    ("experimaestro.core.serializers", "SerializationLWTask"): "SerializationLWTask",
    ("experimaestro.core.serializers", "PathSerializationLWTask"): "PathSerializationLWTask",
}


def _data_loader(path: str | os.PathLike[str] | SerializedPathLoader | None) -> SerializedPathLoader:
    if path is None:

        def missing(_: Path | str | SerializedPath) -> Path:
            raise ConfigError("load", "a saved data path needs the folder it was saved in", "pass path=folder")

        return missing
    if callable(path):
        return path
    folder = Path(path)

    def loader(name: Path | str | SerializedPath) -> Path:
        return folder / (name.path if isinstance(name, SerializedPath) else Path(name))

    return loader


def _class_of(record: dict[str, Any]) -> type[Config]:
    module, qualname = record.get("module"), record.get("type")
    where = f"saved object {record.get('id')}"
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise ConfigError(where, "has no 'module' and 'type'")
    renamed = _RENAMED.get((module, qualname))
    if renamed is not None:
        return globals()[renamed]
    ref = {"module": module, "qualname": qualname}
    file = record.get("file")
    if isinstance(file, str):
        ref["file"] = file
        if module != "__main__" and module not in sys.modules and importlib.util.find_spec(module) is None:
            # experimaestro records the file of a module outside any package: load it from there.
            spec = importlib.util.spec_from_file_location(module, file)
            if spec is not None and spec.loader is not None:
                loaded = importlib.util.module_from_spec(spec)
                sys.modules[module] = loaded
                spec.loader.exec_module(loaded)
    cls = load_class(ref, where)
    if not (isinstance(cls, type) and issubclass(cls, Config)):
        raise ConfigError(f"{module}.{qualname}", "is not a Config class")
    return cls


def _skipped(records: list[dict[str, Any]], roots: list[Any]) -> set[Any]:
    """Objects reachable from ``roots`` only through a ``task`` link (left out by partial loading)."""
    by_id = {record["id"]: record for record in records}
    reachable: set[Any] = set()
    todo = list(roots)
    while todo:
        number = todo.pop()
        if number in reachable or number not in by_id:
            continue
        reachable.add(number)
        record = by_id[number]
        todo.extend(record.get("init-tasks", ()))
        todo.extend(_refs(record.get("fields", {})))
    return set(by_id) - reachable


def _refs(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        if value.get("type") == "python":
            yield value.get("value")
        else:
            for item in value.values():
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _saved_identifier(record: dict[str, Any]) -> bytes | None:
    """The identifier an object was saved with (experimaestro writes a hex string or ``{"main": hex}``)."""
    identifier = record.get("identifier")
    if isinstance(identifier, dict):
        identifier = identifier.get("main")
    return bytes.fromhex(identifier) if isinstance(identifier, str) else None


def _stub(record: dict[str, Any]) -> TaskStub:
    identifier = _saved_identifier(record)
    if identifier is None:
        raise ConfigError(f"saved object {record.get('id')}", "a task left out by partial loading needs its identifier")
    typename = record.get("typename") or f"{record.get('module')}.{record.get('type')}"
    return TaskStub(ConfigIdentifier(identifier), str(typename))


class _Reader:
    def __init__(self, loader: SerializedPathLoader, job_path: Path | None, workspace_path: Path | None) -> None:
        self.loader = loader
        self.job_path = job_path
        self.workspace_path = workspace_path
        self.objects: dict[Any, ConfigMixin] = {}
        self.stubs: dict[Any, TaskStub] = {}
        """Objects left out (partial loading, or saved as ``"stub": true``), as experimaestro gives them."""

    def load(
        self, records: list[dict[str, Any]], skipped: set[Any], keep_ids: bool = True, partial: bool = False
    ) -> None:
        """Load ``records`` (each after the objects it refers to, as both tools write them).

        ``skipped`` objects become :class:`TaskStub`; with ``partial``, so does every output's
        producing task, even one loaded because something else refers to it.
        """
        by_id = {record["id"]: record for record in records}
        for record in records:
            if record["id"] in skipped or record.get("stub"):
                self.stubs[record["id"]] = _stub(record)
                continue
            config_type = _class_of(record).C
            instance = object.__new__(config_type)
            instance.__dict__["__xpm__"] = ConfigInfo(instance, class_info(config_type))
            if record["id"] in self.objects:
                raise ConfigError(f"saved object {record['id']}", "the id is used twice")
            self.objects[record["id"]] = instance
        # Each object is filled and sealed in turn: a set of configurations hashes its members, so
        # they must be sealed (the objects they refer to come earlier and are complete) first.
        for record in records:
            config = self.objects.get(record["id"])
            if config is None:
                continue
            info = config.__xpm__
            for name, raw in record.get("fields", {}).items():
                value = self.value(raw)
                f = info.field(name)
                if f.is_data and isinstance(value, SerializedPath):
                    # Saved without a folder (save_directory=None): the path is where the data was.
                    value = value.path if value.path.is_absolute() else self.loader(value)
                info.set_loaded(name, value)
            for f in info.cls_info.factories:
                if f.name not in info.values:  # saved before the field existed: its default, as experimaestro
                    info.values[f.name] = f.check(f.factory(), info.where(f.name))  # type: ignore[misc]
            info.meta = True if record.get("meta") else None
            task_id = record.get("task")
            if task_id is not None and task_id != record["id"]:
                stub = self.stubs.get(task_id)
                if stub is None and partial and task_id in by_id:
                    stub = self.stubs[task_id] = _stub(by_id[task_id])
                info.task = stub or self.objects.get(task_id)  # type: ignore[assignment]
            init_tasks = [self.objects[n] for n in record.get("init-tasks", ()) if n in self.objects]
            if init_tasks:
                info.set_init_tasks(init_tasks)
            info.sealed = True
            # As experimaestro: the identifier it was saved with (a producer left out could not
            # be hashed again before stubs; hashing costs a walk of the tree).
            info.identifier_cache = _saved_identifier(record) if keep_ids else None

    def value(self, raw: Any) -> Any:
        if isinstance(raw, list):
            return [self.value(item) for item in raw]
        if not isinstance(raw, dict):
            return raw
        kind = raw.get("type")
        if kind is None:
            return {key: self.value(item) for key, item in raw.items()}
        if kind == "python":
            number = raw.get("value")
            found: ConfigMixin | TaskStub | None = self.objects.get(number) or self.stubs.get(number)
            if found is None:
                raise ConfigError("load", f"refers to object {raw.get('value')!r}, which is not loaded")
            return found
        if kind == "path":
            base = raw.get("base")
            anchor = {"job": self.job_path, "workspace": self.workspace_path}.get(base) if base else None
            if base and anchor is None:
                raise ConfigError("load", f"cannot resolve the {base}-relative path {raw.get('value')!r}")
            return Path(raw["value"]) if anchor is None else anchor / raw["value"]
        if kind == "path.serialized":
            return SerializedPath(raw["value"], raw.get("is_folder"))
        if kind == "set":
            return {self.value(item) for item in raw.get("items", ())}
        if kind == "enum":
            cls = load_class({"module": raw.get("module"), "qualname": raw.get("enum")}, "load")
            return cls[raw["value"]]
        raise ConfigError("load", f"unknown value type {kind!r}")


def from_state_dict(
    state: dict[str, Any],
    path: str | os.PathLike[str] | SerializedPathLoader | None = None,
    *,
    as_instance: bool = False,
    partial_loading: bool | None = None,
) -> Any:
    """Rebuild what :func:`state_dict` wrote: configurations (sealed, with the identifiers they were
    saved with), or with ``as_instance`` the objects built from them.

    ``path`` is the folder data paths were saved in (or a function giving their location).
    ``partial_loading`` (by default ``as_instance``) leaves out the objects reachable only as the
    task that produced an output (their classes need not be importable); an output's ``task`` is
    then a :class:`~xpmfs.config.TaskStub` (its identifier and type name).
    """
    return _from_state(state, path, as_instance=as_instance, partial_loading=partial_loading)


def _from_state(
    state: dict[str, Any],
    path: str | os.PathLike[str] | SerializedPathLoader | None,
    *,
    as_instance: bool,
    partial_loading: bool | None,
    job_path: Path | None = None,
    workspace_path: Path | None = None,
) -> Any:
    records = state.get("objects") if isinstance(state, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "id" in r for r in records):
        raise ConfigError("from_state_dict", "expected {'objects': [{'id': ...}, ...], 'data': ...}")
    data = state.get("data")
    partial = as_instance if partial_loading is None else partial_loading
    skipped = _skipped(records, list(_refs(data))) if partial else set()
    reader = _Reader(_data_loader(path), job_path, workspace_path)
    reader.load(records, skipped, partial=partial)
    result = reader.value(data)
    if as_instance:
        objects: dict[int, Any] = {}
        result = _instances(result, objects)
    return result


def load_objects(
    definitions: list[dict[str, Any]],
    as_instance: bool = True,
    data_loader: str | os.PathLike[str] | SerializedPathLoader | None = None,
    discard_id: bool = False,
    partial_loading: bool = False,
) -> dict[Any, Any]:
    """experimaestro's ``ConfigInformation.load_objects``: the saved objects (``state_dict(...)["objects"]``,
    the root last) by their ``id``: sealed configurations, or with ``as_instance`` the objects built.

    ``discard_id``: identifiers are computed again rather than read. ``partial_loading``: the objects
    reachable from the root only as the task that produced an output are not loaded: they are
    :class:`~xpmfs.config.TaskStub` objects, and so is every output's producing task.
    """
    roots = [definitions[-1]["id"]] if definitions else []
    skipped = _skipped(definitions, roots) if partial_loading else set()
    reader = _Reader(_data_loader(data_loader), None, None)
    reader.load(definitions, skipped, keep_ids=not discard_id, partial=partial_loading)
    loaded: dict[Any, Any] = {}
    built: dict[int, Any] = {}
    for record in definitions:  # in the file's order, stubs included (experimaestro's)
        number = record["id"]
        config = reader.objects.get(number)
        if config is None:
            loaded[number] = reader.stubs[number]
        else:
            loaded[number] = _instances(config, built) if as_instance else config
    return loaded


def from_parameters(
    definitions: list[dict[str, Any]],
    as_instance: bool = True,
    data_loader: str | os.PathLike[str] | SerializedPathLoader | None = None,
    discard_id: bool = False,
    return_tasks: bool = False,
    partial_loading: bool | None = None,
) -> Any:
    """experimaestro's ``ConfigInformation.fromParameters``: the root (the last of ``definitions``).

    With ``as_instance``, its init tasks' ``execute()`` runs first; with ``return_tasks`` (and not
    ``as_instance``), ``(root, init tasks)``. ``partial_loading`` defaults to ``as_instance``.
    """
    partial = as_instance if partial_loading is None else partial_loading
    objects = load_objects(definitions, as_instance, data_loader, discard_id, partial)
    root = definitions[-1]
    obj = objects[root["id"]]
    if not (as_instance or return_tasks):
        return obj
    init_tasks = [objects[number] for number in root.get("init-tasks", ())]
    if not as_instance:
        return obj, init_tasks
    for task in init_tasks:
        task.execute()
    return obj


def _instances(value: Any, objects: dict[int, Any]) -> Any:
    if isinstance(value, ConfigMixin):
        return _instance(value, objects, False)
    if isinstance(value, list):
        return [_instances(item, objects) for item in value]
    if isinstance(value, dict):
        return {key: _instances(item, objects) for key, item in value.items()}
    return value


def _definition(loader: SerializedPathLoader, definition_filename: str | None) -> dict[str, Any]:
    if definition_filename is None:
        definition_filename = DEFINITION_FILE if loader(DEFINITION_FILE).exists() else OLD_DEFINITION_FILE
    file = loader(definition_filename)
    try:
        with file.open() as stream:
            data = json.load(stream)
    except (OSError, ValueError) as error:
        raise ConfigError(str(file), f"cannot be read ({error})", "was it written by save() or serialize()?") from error
    if isinstance(data, list):  # ConfigInformation.serialize(): the objects alone, the last one the root
        data = {"objects": data, "data": {"type": "python", "value": data[-1]["id"]}}
    return data


def load(
    path: str | os.PathLike[str] | SerializedPathLoader,
    as_instance: bool = False,
    partial_loading: bool | None = None,
    definition_filename: str | None = None,
) -> Any:
    """What :func:`save` wrote in folder ``path`` (``experimaestro.json``, else ``definition.json``)."""
    loader = _data_loader(path)
    return from_state_dict(
        _definition(loader, definition_filename), loader, as_instance=as_instance, partial_loading=partial_loading
    )


def deserialize(
    path: str | os.PathLike[str] | SerializedPathLoader,
    as_instance: bool = False,
    partial_loading: bool | None = None,
    definition_filename: str | None = None,
) -> Any:
    """What :func:`serialize` wrote: ``(configuration, init_tasks)``; with ``as_instance``, the object,
    after running each init task's ``execute()``."""
    loader = _data_loader(path)
    obj, init_tasks = from_state_dict(
        _definition(loader, definition_filename), loader, as_instance=as_instance, partial_loading=partial_loading
    )
    if as_instance:
        for task in init_tasks:
            task.execute()
        return obj
    return obj, init_tasks


def deserialize_root(
    path: Any, as_instance: bool, return_tasks: bool, partial_loading: bool | None, definition_filename: str | None
) -> Any:
    """``ConfigInfo.deserialize``: a file of objects whose last one is the root (its init tasks too)."""
    if as_instance and return_tasks:
        raise ConfigError("deserialize", "as_instance and return_tasks cannot both be true")
    loader = _data_loader(path)
    data = _definition(loader, definition_filename)
    records = data["objects"]
    root = records[-1] if records else {}
    data["data"] = [{"type": "python", "value": root.get("id")}]
    data["data"] += [{"type": "python", "value": n} for n in root.get("init-tasks", ())]
    partial = as_instance if partial_loading is None else partial_loading
    obj, *init_tasks = from_state_dict(data, loader, as_instance=as_instance, partial_loading=partial)
    if return_tasks:
        return obj, init_tasks
    if as_instance:
        for task in init_tasks:
            task.execute()
    return obj


# -- init tasks that load a saved configuration -------------------------------------------------


class SerializationLWTask(LightweightTask):
    """An init task that loads something into a configuration (``value``) when the job starts."""

    __xpmid__ = "experimaestro.core.serializers.serializationlwtask"  # experimaestro's: same identifiers

    value: Param[Config]
    """The configuration to load into."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.registered: list[Any] = []

    def register(self, config: Any) -> None:
        self.registered.append(config)


class PathSerializationLWTask(SerializationLWTask):
    """A :class:`SerializationLWTask` whose data is a path (copied along by :func:`save`)."""

    __xpmid__ = "experimaestro.core.serializers.pathserializationlwtask"

    path: DataPath
    """Where the data is."""


def json_objects(config: ConfigMixin, context: SerializationContext | None = None) -> list[dict[str, Any]]:
    """The objects :func:`state_dict` writes for ``config`` alone (experimaestro's ``__json__`` body)."""
    writer = _Writer(context or SerializationContext())
    writer.collect(config)
    return writer.objects


__all__ = [
    "DEFINITION_FILE",
    "OLD_DEFINITION_FILE",
    "PathSerializationLWTask",
    "SerializationContext",
    "SerializationLWTask",
    "SerializedPath",
    "SerializedPathLoader",
    "deserialize",
    "deserialize_root",
    "from_parameters",
    "from_state_dict",
    "json_objects",
    "load",
    "load_objects",
    "save",
    "serialize",
    "serialize_data",
    "state_dict",
]
