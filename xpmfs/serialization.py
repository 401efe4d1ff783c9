"""A configuration tree as JSON-compatible data, and back (format: ``spec/configuration.md``).

``to_dict(cfg)`` flattens the tree into a table of objects, so shared configurations stay shared
and cycles are possible; values reference objects with ``{"$ref": id}``. ``from_dict`` rebuilds the
same tree in another process: same classes, values, task outputs, init tasks, tags, meta flags and
sealed state, hence the same identifiers.

Classes are named by module and qualified name. A class defined in the experiment script
(module ``__main__``) also records the script's path; another process loads that file as module
``__xpm_main__``, so the script's ``if __name__ == "__main__":`` block does not run there.
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import math
import os
import sys
from pathlib import Path, PurePath
from types import ModuleType
from typing import Any

import orjson

from ._classinfo import class_info, public_module
from .config import Config, ConfigInfo, ConfigMixin, Task, TaskStub, _qualname
from .errors import ConfigError
from .identifier import ConfigIdentifier

FORMAT = "xpmfs.config/1"
"""Written as ``"format"``; :func:`from_dict` refuses anything else."""

LOADED_MAIN = "__xpm_main__"
"""Module name under which another process loads an experiment script."""

_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1  # orjson and the identifier both need 64-bit integers


# -- encoding -------------------------------------------------------------------------------


def to_dict(config: Config) -> dict[str, Any]:
    """The tree rooted at ``config`` as a JSON-compatible dict (encode it with orjson)."""
    encoder = _Encoder()
    root = encoder.ref(config)
    return {"format": FORMAT, "root": root, "objects": encoder.objects}


_TYPE_REFS: dict[type, dict[str, str]] = {}


def type_ref(cls: type) -> dict[str, str]:
    """How ``cls`` is found again: ``module``, ``qualname`` and, for a script's class, ``file``."""
    ref = _TYPE_REFS.get(cls)
    if ref is not None:
        return ref
    if "<locals>" in cls.__qualname__:
        raise ConfigError(
            cls.__qualname__,
            "is defined inside a function, so another process cannot load it",
            "define the class at the top level of a module or of the experiment script",
        )
    module = public_module(cls)
    ref = {"module": module, "qualname": cls.__qualname__}
    if module == "__main__":
        file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if not file:
            raise ConfigError(
                cls.__qualname__,
                "is defined in an interactive session, so another process cannot load it",
                "define the class in a module or in the experiment script file",
            )
        ref["file"] = os.path.abspath(file)
    _TYPE_REFS[cls] = ref
    return ref


class _Encoder:
    def __init__(self) -> None:
        self.ids: dict[int, int] = {}
        self.objects: list[dict[str, Any]] = []

    def ref(self, config: Config) -> int:
        key = id(config)
        number = self.ids.get(key)
        if number is not None:
            return number
        number = self.ids[key] = len(self.ids)  # numbered on first visit, so cycles can refer to it
        info = config.__xpm__
        cls = info.cls_info.cls  # X, not X.XPMConfig: the class as declared
        record: dict[str, Any] = {"id": number, "type": type_ref(cls)}
        record["fields"] = {name: self.value(value, info.where(name)) for name, value in sorted(info.values.items())}
        if isinstance(info.task, TaskStub):
            # A task partial loading left out: its identifier is all the output's needs. Not a
            # number, so that an older reader fails instead of hashing the output without it.
            record["task"] = {"$stub": {"identifier": info.task.identifier.hex(), "typename": info.task.typename}}
        elif info.task is not None and info.task is not config:
            record["task"] = self.ref(info.task)
        if info.init_tasks:
            record["init_tasks"] = [self.ref(task) for task in info.init_tasks]
        if info.own_tags:
            where = f"{cls.__qualname__} tag"
            record["tags"] = {name: self.value(value, f"{where} {name}") for name, value in info.own_tags.items()}
        if info.meta is not None:
            record["meta"] = info.meta
        if info.sealed:
            record["sealed"] = True
        if info.jobpath is not None:
            record["jobpath"] = str(info.jobpath)
        self.objects.append(record)  # after its children: the table reads bottom-up
        return number

    def value(self, value: Any, where: str) -> Any:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, enum.Enum):  # before int and str: IntEnum and StrEnum members stay members
            return {"$enum": {**type_ref(type(value)), "name": value.name}}
        if isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                raise ConfigError(where, f"the integer {value} does not fit in 64 bits")
            return int(value)
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if isinstance(value, str):
            return str(value)
        if isinstance(value, ConfigMixin):
            return {"$ref": self.ref(value)}
        if isinstance(value, PurePath):
            return {"$path": str(value)}
        if isinstance(value, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(value)]
        if isinstance(value, tuple):
            return {"$tuple": [self.value(x, f"{where}[{i}]") for i, x in enumerate(value)]}
        if isinstance(value, (set, frozenset)):
            items = [self.value(x, where) for x in value]
            # A set has no order; sort so the same set is always written the same way.
            items.sort(key=lambda item: orjson.dumps(item, option=orjson.OPT_SORT_KEYS))
            return {"$set": items}
        if isinstance(value, dict):
            if all(isinstance(k, str) and not k.startswith("$") for k in value):
                return {k: self.value(v, f"{where}[{k!r}]") for k, v in value.items()}
            return {"$dict": [[self.value(k, where), self.value(v, f"{where}[{k!r}]")] for k, v in value.items()]}
        raise ConfigError(where, f"cannot serialize a value of type {type(value).__qualname__}: {value!r:.80}")


# -- decoding -------------------------------------------------------------------------------


def from_dict(data: Any) -> Config:
    """Rebuild the tree written by :func:`to_dict`; raises :class:`ConfigError` on bad data."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(
            "configuration", f"expected format {FORMAT!r}, got {found!r}", "was it written by another xpmfs version?"
        )
    records = data.get("objects")
    if not isinstance(records, list) or not records:
        raise ConfigError("configuration", "'objects' must be a non-empty list")

    # Pass 1: one empty instance per record, so references (cycles included) can be resolved.
    instances: dict[int, Config] = {}
    for index, record in enumerate(records):
        if not isinstance(record, dict) or not isinstance(record.get("id"), int) or "type" not in record:
            raise ConfigError(f"configuration object #{index}", "needs an integer 'id' and a 'type'")
        cls = load_class(record["type"], f"configuration object #{index}")
        if not (isinstance(cls, type) and issubclass(cls, Config)):
            raise ConfigError(_type_name(record["type"]), "is not a Config class")
        if record["id"] in instances:
            raise ConfigError(_type_name(record["type"]), f"object id {record['id']} is used twice")
        config_type = cls.C
        instance = object.__new__(config_type)
        instance.__dict__["__xpm__"] = ConfigInfo(instance, class_info(config_type))
        instances[record["id"]] = instance

    # Pass 2: values, links and flags. Each object is sealed once filled: a set of configurations
    # hashes its members, so they must be sealed first; they come earlier in the table (written
    # bottom-up), complete. (Only a member reached again through a cycle could be incomplete here.)
    decoder = _Decoder(instances)
    for record in records:
        _fill(instances[record["id"]], record, decoder)
        if record.get("sealed"):
            instances[record["id"]].__xpm__.sealed = True

    root = data.get("root")
    if root not in instances:
        raise ConfigError("configuration", f"root {root!r} is not one of the objects")
    return instances[root]


def _fill(config: Config, record: dict[str, Any], decoder: _Decoder) -> None:
    info = config.__xpm__
    name = _qualname(config)
    fields = record.get("fields", {})
    if not isinstance(fields, dict):
        raise ConfigError(name, "'fields' must be an object")
    for field_name, raw in fields.items():
        where = info.where(field_name)
        if field_name not in info.cls_info.fields:
            known = ", ".join(sorted(info.cls_info.fields)) or "none"
            raise ConfigError(
                where,
                "is stored but the class has no such field",
                f"the class changed since this configuration was written (known fields: {known})",
            )
        info.set_loaded(field_name, decoder.value(raw, where))
    stub = record.get("task")
    if isinstance(stub, dict) and set(stub) == {"$stub"}:
        body = _expect(stub["$stub"], dict, "$stub", f"{name} task")
        try:
            info.task = TaskStub(ConfigIdentifier(bytes.fromhex(body["identifier"])), str(body["typename"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(
                f"{name} task", f"a $stub needs a hex identifier and a typename, got {body!r:.80}"
            ) from None
    elif "task" in record:
        producer = decoder.object(record["task"], f"{name} task")
        if not isinstance(producer, Task):
            raise ConfigError(f"{name} task", f"refers to {_qualname(producer)}, which is not a Task")
        info.task = producer
    if "init_tasks" in record:
        info.set_init_tasks(decoder.object(n, f"{name} init_tasks") for n in record["init_tasks"])
    for tag_name, raw in record.get("tags", {}).items():
        info.own_tags[tag_name] = decoder.value(raw, f"{name} tag {tag_name}")
    if "meta" in record:
        if record["meta"] not in (True, False, None):
            raise ConfigError(f"{name} meta", f"expected true, false or null, got {record['meta']!r}")
        info.meta = record["meta"]
    if "jobpath" in record:
        info.jobpath = Path(record["jobpath"])


class _Decoder:
    def __init__(self, instances: dict[int, Config]) -> None:
        self.instances = instances

    def object(self, number: Any, where: str) -> Config:
        instance = self.instances.get(number) if isinstance(number, int) else None
        if instance is None:
            raise ConfigError(where, f"refers to object {number!r}, which is not in the data")
        return instance

    def value(self, raw: Any, where: str) -> Any:
        if raw is None or isinstance(raw, (bool, int, float, str)):
            return raw
        if isinstance(raw, list):
            return [self.value(x, f"{where}[{i}]") for i, x in enumerate(raw)]
        if not isinstance(raw, dict):
            raise ConfigError(where, f"unexpected data {raw!r:.80}")
        special = [k for k in raw if k.startswith("$")]
        if not special:
            return {k: self.value(v, f"{where}[{k!r}]") for k, v in raw.items()}
        if len(raw) != 1:
            raise ConfigError(where, f"a tagged value must have exactly one key, got {sorted(raw)}")
        tag, body = next(iter(raw.items()))
        if tag == "$ref":
            return self.object(body, where)
        if tag == "$path":
            return Path(_expect(body, str, tag, where))
        if tag == "$tuple":
            return tuple(self.value(x, f"{where}[{i}]") for i, x in enumerate(_expect(body, list, tag, where)))
        if tag == "$set":
            return {self.value(x, where) for x in _expect(body, list, tag, where)}
        if tag == "$dict":
            pairs = _expect(body, list, tag, where)
            if not all(isinstance(pair, list) and len(pair) == 2 for pair in pairs):
                raise ConfigError(where, "$dict must hold [key, value] pairs")
            return {self.value(k, where): self.value(v, f"{where}[{k!r}]") for k, v in pairs}
        if tag == "$float":
            if body not in ("nan", "inf", "-inf"):
                raise ConfigError(where, f"$float must be nan, inf or -inf, got {body!r}")
            return float(body)
        if tag == "$enum":
            cls = load_class(body, where)
            if not (isinstance(cls, type) and issubclass(cls, enum.Enum)):
                raise ConfigError(where, f"{_type_name(body)} is not an Enum")
            try:
                return cls[body["name"]]
            except KeyError:
                raise ConfigError(where, f"{_type_name(body)} has no member {body.get('name')!r}") from None
        raise ConfigError(where, f"unknown tagged value {tag!r}")


def _expect(body: Any, kind: type, tag: str, where: str) -> Any:
    if not isinstance(body, kind):
        raise ConfigError(where, f"{tag} expects a {kind.__name__}, got {body!r:.80}")
    return body


# -- classes --------------------------------------------------------------------------------


def _type_name(ref: Any) -> str:
    if isinstance(ref, dict):
        return f"{ref.get('module')}.{ref.get('qualname')}"
    return repr(ref)


def load_class(ref: Any, where: str) -> Any:
    """The class a :func:`type_ref` names, importing its module (or experiment script) if needed."""
    if not isinstance(ref, dict) or not isinstance(ref.get("module"), str) or not isinstance(ref.get("qualname"), str):
        raise ConfigError(where, f"a type must be {{'module': ..., 'qualname': ...}}, got {ref!r:.80}")
    name = _type_name(ref)
    file = ref.get("file")
    if ref["module"] == "__main__":
        if not isinstance(file, str):
            raise ConfigError(name, "a class of the experiment script needs the script's 'file'")
        module = _script_module(file, name)
    else:
        try:
            # Loaded already, nearly always: skip importlib's machinery (a forked job pays for
            # every function it calls the first time).
            module = sys.modules.get(ref["module"]) or importlib.import_module(ref["module"])
        except Exception as error:
            raise ConfigError(
                name,
                f"cannot import module {ref['module']!r} ({type(error).__name__}: {error})",
                "run with the Python environment and sys.path of the experiment",
            ) from error
    found: Any = module
    for part in ref["qualname"].split("."):
        found = getattr(found, part, None)
        if found is None:
            raise ConfigError(
                name, f"module {module.__name__!r} has no {ref['qualname']!r}", "was the class renamed or removed?"
            )
    return found


def _script_module(file: str, name: str) -> ModuleType:
    """The experiment script ``file`` as a module: the running one, or loaded as ``__xpm_main__``."""
    # The same spelling first: realpath() looks at every folder on the way, and a warm runner's
    # jobs (whose __main__ is xpmfs.zygote) would pay for that on each class of the script.
    for resolve in (os.path.abspath, os.path.realpath):
        wanted = resolve(file)
        for module_name in ("__main__", LOADED_MAIN, "__mp_main__"):
            loaded_from = getattr(sys.modules.get(module_name), "__file__", None)
            if loaded_from and resolve(loaded_from) == wanted:
                return sys.modules[module_name]
    if LOADED_MAIN in sys.modules:
        raise ConfigError(
            name,
            f"needs script {file}, but {sys.modules[LOADED_MAIN].__file__} is already loaded as {LOADED_MAIN}",
            "load configurations of one experiment script per process",
        )
    spec = importlib.util.spec_from_file_location(LOADED_MAIN, file)
    if spec is None or spec.loader is None:
        raise ConfigError(name, f"cannot load the experiment script {file}", "is it a .py file?")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as an import would: classes and pickles inside it find their module.
    sys.modules[LOADED_MAIN] = module
    folder = os.path.dirname(os.path.abspath(file))
    if folder not in sys.path:
        sys.path.append(folder)  # the script imports its sibling modules, as when it ran
    try:
        spec.loader.exec_module(module)
    except BaseException as error:
        del sys.modules[LOADED_MAIN]
        if not isinstance(error, Exception):
            raise  # KeyboardInterrupt, SystemExit: not ours to translate
        if isinstance(error, FileNotFoundError) and not os.path.exists(file):
            raise ConfigError(
                name, f"the experiment script {file} does not exist", "was it moved or deleted?"
            ) from error
        raise ConfigError(
            name, f"loading the experiment script {file} failed ({type(error).__name__}: {error})"
        ) from error
    return module


__all__ = ["FORMAT", "LOADED_MAIN", "from_dict", "load_class", "to_dict", "type_ref"]
