"""Configuration identifiers: SHA-256 over a type-tagged byte stream (experimaestro 2.7 compatible).

The stream, byte tags and skipping rules are specified in ``spec/identifiers.md``; this module is
the one implementation. Outline of one configuration's stream::

    00  [08 00 <producing task digest>]  <type id>  (03 <name> 05 <value>)*  [0c (00 <init task digest>)*]

A nested configuration is written ``00`` + its own 32-byte digest, or ``00 0b`` + the distance to
the configuration being hashed that it refers back to (a cycle). A digest that depended on such a
back-reference is relative to where it was computed and is never cached.
"""

from __future__ import annotations

import struct
from enum import Enum
from pathlib import PurePath
from typing import Any

try:
    # CPython's own SHA-256 (3.12 renamed its module), not OpenSSL's: a job forked by the warm
    # runner hashes its configuration once, and OpenSSL's first use in a fresh fork costs it
    # 173 µs, this 46 µs (measured: `tools/bench/profile_jobs.py first-call`; saves ~0.13 ms a job).
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - depends on the Python version
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]
    except ImportError:
        from hashlib import sha256

from typing import TYPE_CHECKING

from ._classinfo import MISSING, public_module
from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config


def _is_config(value: Any) -> bool:
    # Configuration objects (``X.C``, a ConfigMixin) are recognised by their class flag, so that
    # this module needs no import of xpmfs.config (which uses it).
    return getattr(type(value), "__xpm_configobject__", False) is True


OBJECT = b"\x00"
INT = b"\x01"
FLOAT = b"\x02"
STR = b"\x03"
PATH = b"\x04"  # reserved by experimaestro; never written
NAME = b"\x05"
NONE = b"\x06"
LIST = b"\x07"
TASK = b"\x08"
DICT = b"\x09"
ENUM = b"\x0a"
CYCLE = b"\x0b"
INIT_TASKS = b"\x0c"
INSTANCE = b"\x0d"  # rank of a distinct InstanceConfig equal to one met before
SET = b"\x0e"

_int64 = struct.Struct(">q").pack
_float64 = struct.Struct(">d").pack


class _Trail:
    """The configurations being hashed, outermost first, to detect references back up (cycles).

    It also numbers the distinct :class:`~xpmfs.config.InstanceConfig` objects met with the same
    digest, in the order the whole computation meets them.
    """

    __slots__ = ("depth_of", "instances", "looped")

    def __init__(self) -> None:
        self.depth_of: dict[int, int] = {}
        self.looped: list[bool] = []  # looped[i]: the digest at depth i depends on a back-reference
        self.instances: dict[bytes, list[int]] = {}

    def instance_rank(self, config: Config, digest: bytes) -> int:
        """0 for the first object with this digest, 1 for the second distinct one..."""
        seen = self.instances.setdefault(digest, [])
        if id(config) not in seen:
            seen.append(id(config))
        return seen.index(id(config))

    def back_reference(self, config: Config) -> int | None:
        depth = self.depth_of.get(id(config))
        if depth is None:
            return None
        for i in range(depth, len(self.looped)):
            self.looped[i] = True
        return len(self.looped) - depth


class ConfigIdentifier:
    """A configuration's identifier as experimaestro exposes it (``cfg.__xpm__.identifier``)."""

    __slots__ = ("all",)

    def __init__(self, digest: bytes) -> None:
        self.all = digest
        """The 32-byte digest."""

    @property
    def main(self) -> bytes:
        return self.all

    def hex(self) -> str:
        return self.all.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConfigIdentifier) and other.all == self.all

    def __hash__(self) -> int:
        return hash(self.all)

    def __repr__(self) -> str:
        return f"<identifier {self.all.hex()}>"


class IdentifierComputer:
    """experimaestro's spelling: ``IdentifierComputer.compute(cfg)`` is ``cfg.__xpm__.identifier``."""

    @staticmethod
    def compute(config: Config, config_path: Any = None, version: Any = None) -> ConfigIdentifier:
        return ConfigIdentifier(digest(config))

    @staticmethod
    def compute_partial(config: Config, partial: Any, config_path: Any = None, version: Any = None) -> ConfigIdentifier:
        return ConfigIdentifier(partial_digest(config, partial))


def digest(config: Config) -> bytes:
    """The 32-byte identifier of ``config`` (``config.__identifier__()`` is its hex form)."""
    cached = config.__xpm__.identifier_cache
    return cached if cached is not None else _digest(config, _Trail())


def identifier(config: Config) -> str:
    """The identifier as 64 hex characters."""
    return digest(config).hex()


def _digest(config: Config, trail: _Trail) -> bytes:
    info = config.__xpm__
    cached = info.identifier_cache
    if cached is not None:
        return cached
    key = id(config)
    trail.depth_of[key] = len(trail.looped)
    trail.looped.append(False)
    try:
        out: list[bytes] = []
        _config_stream(config, out, trail)
        result = sha256(b"".join(out)).digest()
        looped = trail.looped[-1]
    finally:
        trail.looped.pop()
        del trail.depth_of[key]
    if info.sealed and not looped:
        info.identifier_cache = result
    return result


def partial_digest(config: Config, partial: Any) -> bytes:
    """The 32-byte partial identifier: ``config``'s stream without the fields ``partial`` excludes.

    Only ``config``'s own fields are filtered; nested configurations are written with their full
    identifiers (as experimaestro computes it). Never cached here.
    """
    trail = _Trail()
    key = id(config)
    trail.depth_of[key] = 0
    trail.looped.append(False)
    out: list[bytes] = []
    _config_stream(config, out, trail, partial)
    return sha256(b"".join(out)).digest()


def _config_stream(config: Config, out: list[bytes], trail: _Trail, partial: Any = None) -> None:
    info = config.__xpm__
    if info.cls_info.deprecation is not None:
        convert = getattr(config, "__convert__", None)
        if convert is not None:
            # A deprecated class is hashed as what it converts to (experimaestro's @deprecate).
            _config_stream(convert(), out, trail, partial)
            return
    out.append(OBJECT)
    producer = info.task
    if producer is not None and producer is not config:
        out.append(TASK)
        if getattr(type(producer), "__xpm_taskstub__", False):
            # A task partial loading left out (config.TaskStub): written as the task would be.
            out.append(OBJECT + producer.identifier.all)
        else:
            _value(producer, out, trail, type(config).__qualname__)
    cls_info = info.cls_info
    out.append(cls_info.typeid_bytes)
    values = info.values
    for f in cls_info.hashed:  # sorted by name; generated fields excluded
        if partial is not None and partial.is_excluded(f.groups):
            continue
        value = values.get(f.name, MISSING)
        # A Meta (or Path) value is skipped, unless it is a configuration explicitly marked meta=False.
        if f.ignored and not (_is_config(value) and value.__xpm__.meta is False):
            continue
        if value is MISSING:
            if f.required:
                raise ConfigError(
                    info.where(f.name),
                    "required parameter is not set",
                    f"pass {f.name}=... to .C() or assign it before computing the identifier",
                )
            value = None
        if f.skip_none and value is None:
            continue
        default = f.compare_default
        if default is not MISSING and default == _without_meta(value):
            continue
        if _is_config(value) and value.__xpm__.meta:
            continue
        out.append(f.hash_prefix)
        _value(value, out, trail, info.where(f.name))
    if info.init_tasks:
        out.append(INIT_TASKS)
        for init_task in info.init_tasks:
            _value(init_task, out, trail, f"{type(config).__qualname__}.init_tasks")


def _is_meta(value: Any) -> bool:
    return _is_config(value) and bool(value.__xpm__.meta)


def _without_meta(value: Any) -> Any:
    """``value`` as hashed: configurations marked meta are dropped from lists and dicts."""
    if isinstance(value, list):
        return [x for x in value if not _is_meta(x)]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if not _is_meta(v)}
    return value


def _value(value: Any, out: list[bytes], trail: _Trail, where: str) -> None:
    # The order of the tests is part of the format: an IntEnum is an int, a str Enum a str.
    if value is None:
        out.append(NONE)
    elif isinstance(value, float):
        out.append(FLOAT + _float64(value))
    elif isinstance(value, int):
        try:
            out.append(INT + _int64(value))
        except struct.error:
            raise ConfigError(where, f"the integer {value} does not fit in 64 bits", "use a float or a str") from None
    elif isinstance(value, str):
        out.append(STR + value.encode("utf-8"))
    elif isinstance(value, (list, tuple)):
        items = [x for x in value if not _is_meta(x)]
        out.append(LIST + _float64(len(items)))
        for item in items:
            _value(item, out, trail, where)
    elif isinstance(value, (set, frozenset)):
        encoded = []
        for item in value:
            if _is_meta(item):
                continue
            part: list[bytes] = []
            _value(item, part, trail, where)
            encoded.append(b"".join(part))
        encoded.sort(key=lambda chunk: sha256(chunk).digest())
        out.append(SET + _float64(len(encoded)))
        out.extend(encoded)
    elif isinstance(value, Enum):
        cls = type(value)
        out.append(ENUM + f"{public_module(cls)}.{cls.__qualname__}:{value.name}".encode())
    elif isinstance(value, dict):
        out.append(DICT)
        try:
            items = sorted((kv for kv in value.items() if not _is_meta(kv[1])), key=lambda kv: kv[0])
        except TypeError as error:
            raise ConfigError(where, f"dict keys must be comparable to be hashed ({error})") from None
        for key, item in items:
            _value(key, out, trail, where)
            _value(item, out, trail, where)
    elif _is_config(value):
        out.append(OBJECT)
        distance = trail.back_reference(value)
        if distance is not None:
            out.append(CYCLE + _int64(distance))
        else:
            nested = _digest(value, trail)
            out.append(nested)
            if getattr(type(value), "__xpm_instance__", False):
                rank = trail.instance_rank(value, nested)
                if rank > 0:
                    out.append(INSTANCE + _int64(rank))
    elif isinstance(value, PurePath):
        raise ConfigError(
            where,
            f"a path ({value}) inside a parameter cannot be part of an identifier",
            "declare the field Meta[...], or put the path in a Config field of type Meta[Path] or Param[Path]",
        )
    else:
        raise ConfigError(where, f"cannot hash a value of type {type(value).__qualname__}: {value!r}")


__all__ = ["ConfigIdentifier", "IdentifierComputer", "digest", "identifier", "partial_digest"]
