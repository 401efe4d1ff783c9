"""What a configuration class declares: its fields, their types and defaults, and its type id.

Declarations are read lazily, the first time a class is used (``X.C()``, an identifier, a type
id), so that annotations may be strings (``from __future__ import annotations``) naming classes
defined further down the module. The result is cached per class: building thousands of
configurations never re-reads annotations.

Resolving a class also replaces each of its fields' class attributes (the bare default, or the
``field(...)`` object) by a :class:`FieldDescriptor`, so that ``cfg.epochs`` reads the instance's
value and ``cfg.epochs = 3`` is validated.
"""

from __future__ import annotations

import ast
import builtins
import copy
import enum
import inspect
import logging
import re
import sys
import textwrap
import threading
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Optional, TypeVar

from . import _generics, _types
from ._annotation import FieldAnnotation
from .errors import ConfigError
from .generators import Generator

T = TypeVar("T")


class _Missing:
    """The absence of a value (``None`` is a value); its one instance is :data:`MISSING`."""

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # unpickles as the module's MISSING: identity checks keep working


MISSING: Any = _Missing()


class Kind(str, enum.Enum):
    """How a field takes part in the identifier."""

    PARAM = "param"  # hashed
    META = "meta"  # not hashed
    CONSTANT = "constant"  # always hashed, never set: it versions the class


@dataclass(frozen=True)
class _Marker:
    kind: Kind
    is_data: bool = False

    def __repr__(self) -> str:
        return f"xpmfs.{self.kind.name.capitalize()}"


Param = Annotated[T, _Marker(Kind.PARAM)]
"""``x: Param[int]``: a parameter; it is part of the identifier."""

Meta = Annotated[T, _Marker(Kind.META)]
"""``x: Meta[Path]``: a meta-parameter (paths, runtime knobs); never part of the identifier."""

Option = Meta
"""Old name of :data:`Meta`."""

Constant = Annotated[T, _Marker(Kind.CONSTANT)]
"""``version: Constant[int] = 2``: fixed by the class, always part of the identifier."""

DataPath = Annotated[Path, _Marker(Kind.META, is_data=True)]
"""``weights: DataPath``: a path to data that belongs with the configuration; never hashed."""

OptionalDataPath = Annotated[Optional[Path], _Marker(Kind.META, is_data=True)]  # noqa: UP045 (a runtime type)
"""``weights: OptionalDataPath``: :data:`DataPath` or ``None``."""


class help(FieldAnnotation):  # noqa: N801 (experimaestro's spelling)
    """``Param[Annotated[int, help("number of epochs")]]``: the field's help text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def annotate(self, options: dict[str, Any]) -> None:
        options["help"] = self.text


@dataclass(frozen=True)
class FieldSpec:
    """What ``field(...)`` returns; read when the class is resolved."""

    default: Any = MISSING
    default_factory: Callable[..., Any] | None = None
    ignore_default: bool = False
    ignore_generated: bool = False
    overrides: bool = False
    groups: frozenset[Any] = frozenset()


def field(
    *,
    default: Any = MISSING,
    default_factory: Callable[..., Any] | None = None,
    ignore_default: Any = MISSING,
    ignore_generated: bool = False,
    overrides: bool = False,
    groups: Any = None,
) -> Any:
    """Declare a field's default.

    - ``field(default=v)``: default ``v``, always hashed (even when the value equals ``v``);
    - ``field(ignore_default=v)`` (experimaestro's spelling) or ``field(default=v, ignore_default=True)``:
      default ``v``, not hashed while the value equals ``v`` (what a bare ``x: Param[int] = v`` does);
    - ``field(default_factory=PathGenerator("out.txt"))``: generated when the task is sealed for its
      job directory, never hashed; any other callable is called (without arguments) to build a
      default when the configuration is created, like a dataclass's ``default_factory``; with
      ``ignore_default=True`` the value is not hashed while it equals what the factory builds;
    - ``ignore_generated=True``: accepted for experimaestro (it only silences experimaestro's
      reproducibility warning about generated values; xpmfs never hashes them anyway);
    - ``overrides=True``: this field knowingly re-declares a field of a parent class (no warning);
    - ``groups=[param_group("name"), ...]``: the parameter groups a :func:`~xpmfs.partial.partial`
      identifier may leave out.
    """
    from .partial import groups_of

    where = "field()"
    if default_factory is not None and default is not MISSING:
        raise ConfigError(where, "default and default_factory exclude each other", "give only one of them")
    if default_factory is not None and not callable(default_factory):
        raise ConfigError(where, f"default_factory must be callable, got {default_factory!r}")
    extra: dict[str, Any] = {
        "ignore_generated": bool(ignore_generated),
        "overrides": bool(overrides),
        "groups": groups_of(FieldSpec(groups=tuple(groups or ()))),  # type: ignore[arg-type]
    }
    if default is MISSING and default_factory is None:
        if ignore_default is MISSING or isinstance(ignore_default, bool):
            return FieldSpec(**extra)
        return FieldSpec(default=ignore_default, ignore_default=True, **extra)
    if ignore_default is MISSING:
        ignore_default = False
    if not isinstance(ignore_default, bool):
        raise ConfigError(
            where,
            f"with default=... or default_factory=..., ignore_default must be True or False, got {ignore_default!r}",
            "write field(ignore_default=VALUE) or field(default=VALUE, ignore_default=True)",
        )
    return FieldSpec(default=default, default_factory=default_factory, ignore_default=ignore_default, **extra)


class Field:
    """One resolved field of a configuration class."""

    __slots__ = (
        "_help",
        "check",
        "compare_default",
        "default",
        "factory",
        "generator",
        "generic",
        "groups",
        "hash_prefix",
        "hint",
        "ignore_generated",
        "ignored",
        "is_data",
        "kind",
        "name",
        "options",
        "overrides",
        "owner",
        "required",
        "skip_none",
        "value_checker",
    )

    def __init__(
        self,
        *,
        name: str,
        owner: type,
        kind: Kind,
        hint: Any,
        check: _types.Type,
        default: Any,
        ignore_default: bool,
        factory: Callable[[], Any] | None,
        generator: Generator | None,
        required: bool,
        factory_default: Any = MISSING,
        options: Mapping[str, Any] | None = None,
        overrides: bool = False,
        ignore_generated: bool = False,
        is_data: bool = False,
        groups: frozenset[Any] = frozenset(),
    ) -> None:
        self.groups = groups
        """The parameter groups (``field(groups=...)``) partial identifiers select by."""
        options = dict(options or {})
        self.options = options
        self.value_checker = options.get("checker")
        """A :class:`xpmfs.checkers.Checker` from the annotation (``Choices``), or ``None``."""
        self.overrides = overrides
        self.ignore_generated = ignore_generated
        self.is_data = is_data
        self.generic = _generics.has_typevars(hint)
        """Whether values bind type variables (``Param[T]``, ``Param[Holder[T]]``)."""
        self.name = name
        self.owner = owner  # the class that declared (or last overrode) the field
        self.kind = kind
        self.hint = hint
        self.check = check
        self.default = default
        self.factory = factory
        self.generator = generator
        self.required = required
        self._help: str | None = options.get("help")
        constant = kind is Kind.CONSTANT
        # Meta arguments and Path parameters do not change what a task computes (experimaestro).
        self.ignored = kind is Kind.META or (kind is Kind.PARAM and _types.is_path_type(hint))
        # An absent optional is not hashed (so adding an optional field keeps old identifiers)...
        self.skip_none = not constant and not required and (default is MISSING or default is None)
        # ... nor a value equal to a default declared as ignorable.
        # With a factory, experimaestro builds the default once, with the class, to compare.
        default_for_identifier = factory_default if factory is not None and default is MISSING else default
        no_default = default_for_identifier is MISSING or default_for_identifier is None
        self.compare_default = MISSING if (constant or not ignore_default or no_default) else default_for_identifier
        self.hash_prefix = b"\x03" + name.encode("utf-8") + b"\x05"

    @property
    def constant(self) -> bool:
        return self.kind is Kind.CONSTANT

    @property
    def type(self) -> _types.Type:
        """The field's type object (:mod:`xpmfs.types`) without the ``None`` of ``Optional``, as in
        experimaestro (``int`` for ``Param[int | None]``); ``check``, which values go through, keeps it."""
        check = self.check
        return check.without_none() if isinstance(check, _types.UnionType) else check

    @property
    def checker(self) -> Any:
        """The value checker given in the annotation (``Choices``), as experimaestro names it."""
        return self.value_checker

    @property
    def help(self) -> str | None:
        """The docstring written right after the field's declaration, if any."""
        if self._help is None:
            self._help = field_docs(self.owner).get(self.name, "")
        return self._help or None

    def with_default(self, owner: builtins.type, spec: FieldSpec, where: str) -> Field:
        """A copy for subclass ``owner``, which overrides the default."""
        marker = _Marker(self.kind, self.is_data)
        return _make_field(self.name, owner, marker, self.hint, self.check, spec, where, self.options)

    def __repr__(self) -> str:
        default = "" if self.default is MISSING else f" = {self.default!r}"
        return f"<Field {self.owner.__qualname__}.{self.name}: {self.kind.value}[{self.check.describe()}]{default}>"


class FieldDescriptor:
    """Installed on each configuration class (``X.C``) for each field: values live in ``cfg.__xpm__.values``."""

    __slots__ = ("field",)

    def __init__(self, field: Field) -> None:
        self.field = field

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            default = self.field.default
            return self if default is MISSING else default
        try:
            return obj.__xpm__.values[self.field.name]
        except KeyError:
            if self.field.generator is not None:
                return None  # generated when the task is submitted; experimaestro reads None before
            raise obj.__xpm__.unset_error(self.field.name) from None

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__xpm__.set(self.field.name, value)

    def __delete__(self, obj: Any) -> None:
        obj.__xpm__.unset(self.field.name)


class FieldDefault:
    """Installed on the value class ``X`` for each field it declares: ``X.epochs`` reads the default.

    A non-data descriptor: the objects ``.instance()`` and the job build keep their field values
    as plain attributes (set with ``setattr``, so a base such as ``torch.nn.Module`` sees them),
    which take precedence. Reading an attribute such an object lacks raises ``AttributeError``, so
    that a base's ``__getattr__`` is asked next (``nn.Module`` keeps submodules there).
    """

    __slots__ = ("field", "spec_given")

    def __init__(self, field: Field, spec_given: bool = False) -> None:
        self.field = field
        self.spec_given = spec_given
        """Declared with ``field(...)`` (experimaestro's ``field_names``)."""

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            default = self.field.default
            return self if default is MISSING else default
        raise AttributeError(f"{type(obj).__qualname__} object has no attribute {self.field.name!r}")


# -- type ids -------------------------------------------------------------------------------

MAIN_MODULES = frozenset({"__main__", "__xpm_main__", "__mp_main__"})
"""Names the experiment script's module has: as run, as loaded by a job runner, in a spawned child."""


def public_module(obj: type) -> str:
    """The module name to record for a class: an experiment script's module is always ``__main__``."""
    module = obj.__module__
    return "__main__" if module in MAIN_MODULES else module


class Identifier:
    """A type-id namespace: ``ns = Identifier("my.project")``; ``__xpmid__ = ns.model`` → ``my.project.model``.

    Names are lower-cased. Unlike a string ``__xpmid__``, an ``Identifier`` (or a classmethod
    returning a name) is inherited: subclasses that do not set their own share the type id.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"Identifier(...) takes a str, got {name!r}")
        self.name = name.lower()

    def __call__(self, key: str) -> Identifier:
        return Identifier(f"{self.name}.{key}")

    def __getattr__(self, key: str) -> Identifier:
        if key.startswith("__"):
            raise AttributeError(key)
        return self(key)

    def __getitem__(self, key: str) -> Identifier:
        return self(key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Identifier) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> tuple[Any, ...]:
        return (Identifier, (self.name,))


class _TypeIdentifier(Identifier):
    """``X.__xpmtype__.identifier``: the class's type id, live; assigning ``.name`` renames the type.

    experimaestro allows the rename (its tests use it to give a class another's type id); the new
    name is hashed as given (not lower-cased, as there), for configurations hashed afterwards.
    """

    __slots__ = ("_info",)

    def __init__(self, info: ClassInfo) -> None:
        self._info = info

    @property  # a slot on Identifier, a live view here
    def name(self) -> str:
        return self._info.typeid

    @name.setter
    def name(self, name: str) -> None:
        if not isinstance(name, str):
            raise TypeError(f"a type id is a str, got {name!r}")
        self._info.typeid = name
        self._info.typeid_bytes = name.encode("utf-8")


def compute_typeid(cls: type) -> str:
    raw = getattr(cls, "__xpmid__", None)
    if isinstance(raw, Identifier):
        return raw.name  # inherited, as experimaestro does
    if inspect.ismethod(raw):
        return str(raw()).lower()  # a classmethod: inherited, computed for each class
    own = cls.__dict__.get("__xpmid__")  # a plain id is never inherited: a subclass is another type
    if own is not None:
        # Lower-cased like every type id: the reference identifiers (DESIGN.md) hash it so.
        return str(own).lower()
    return f"{public_module(cls)}.{cls.__qualname__}".lower()


# -- class resolution -----------------------------------------------------------------------


def is_config_class(cls: type) -> bool:
    return isinstance(cls, type) and getattr(cls, "__xpm_config__", False) is True


class ClassInfo:
    """Everything the configuration layer needs to know about one class, computed once."""

    __slots__ = (
        "_xpmtype",
        "cls",
        "config_type",
        "deprecation",
        "factories",
        "fields",
        "generated",
        "hashed",
        "immutable_defaults",
        "mutable_defaults",
        "own",
        "typeid",
        "typeid_bytes",
        "value_type",
    )

    def __init__(self, cls: type, own: dict[str, Field], fields: dict[str, Field]) -> None:
        self.cls = cls
        """The class as declared (``X``): type ids, serialized specs and messages name it."""
        self.config_type: type | None = None
        """``X.C`` (``X.XPMConfig``): the class of configuration objects, made on first use."""
        self.value_type: type = cls
        """The class ``.instance()`` and the job build objects of: ``X``, or its ``value_class``."""
        self.own = own
        self.fields = fields
        self.typeid = compute_typeid(cls)
        self.typeid_bytes = self.typeid.encode("utf-8")
        self.deprecation: DeprecationInfo | None = None
        """Set by :meth:`XPMType.deprecate` (``@deprecate``): the type id is then the target's."""
        # Identifier order: by name; generated fields never count.
        self.hashed = tuple(f for _, f in sorted(fields.items()) if f.generator is None)
        self.generated = tuple(f for f in fields.values() if f.generator is not None)
        self.factories = tuple(f for f in fields.values() if f.factory is not None)
        self._xpmtype: XPMType | None = None
        self.immutable_defaults: dict[str, Any] = {}
        self.mutable_defaults: list[tuple[str, Any]] = []
        for f in fields.values():
            if f.default is MISSING:
                if f.skip_none and f.factory is None and f.generator is None:
                    self.immutable_defaults[f.name] = None  # an optional without default reads None
            elif isinstance(f.default, (list, dict, set)):
                self.mutable_defaults.append((f.name, f.default))  # copied per instance
            else:
                self.immutable_defaults[f.name] = f.default

    @property
    def xpmtype(self) -> XPMType:
        if self._xpmtype is None:
            self._xpmtype = XPMType(self)
        return self._xpmtype

    def initial_values(self) -> dict[str, Any]:
        values = dict(self.immutable_defaults)
        for name, default in self.mutable_defaults:
            values[name] = copy.deepcopy(default)
        return values


@dataclass(frozen=True)
class DeprecationInfo:
    """How a deprecated class relates to the class that replaces it (``@deprecate``)."""

    original_identifier: Identifier
    """The class's own type id before it was deprecated (what jobs made with it are filed under)."""
    target: type
    """The class that replaces it: its type id is now the deprecated class's."""
    replace: bool = False
    """Whether ``.C(...)`` returns the converted configuration (``__convert__()``) right away."""


class XPMType:
    """What experimaestro exposes as ``X.__xpmtype__``: the type id and the arguments of a class."""

    def __init__(self, info: ClassInfo) -> None:
        self._info = info
        self.arguments: Mapping[str, Field] = MappingProxyType(info.fields)
        self.basetype = info.cls
        self.originaltype = info.cls
        parsed = parse_docstring(info.cls.__dict__.get("__doc__"))
        self._title = parsed.title
        self.description = parsed.description
        """The class docstring after its first line, up to its first section ("Arguments:"...)."""

    @property
    def title(self) -> str:
        """The first line of the class's own docstring, else the type id (experimaestro's rule)."""
        return self._title or str(self.identifier)

    @property
    def value_type(self) -> type:
        """The class objects are built of (``X``, or the class registered with ``X.value_class()``)."""
        return self._info.value_type

    @property
    def config_type(self) -> type:
        """The class of configuration objects: ``X.C`` (``X.XPMConfig``)."""
        return self._info.cls.XPMConfig  # type: ignore[attr-defined]  # a Config class: _classinfo cannot import config

    def __initialize__(self) -> None:
        """experimaestro gathers the class's arguments here; xpmfs has them already (no-op)."""

    @property
    def _partials(self) -> dict[str, Any]:
        """The partials the class declares itself (``name = partial(...)``), as experimaestro collects them."""
        from .partial import Partial

        return {name: value for name, value in vars(self._info.cls).items() if isinstance(value, Partial)}

    @property
    def field_names(self) -> frozenset[str]:
        """Names of the fields declared with ``field(...)`` on the class (not inherited)."""
        found = set()
        for name in self._info.fields:
            for klass in self._info.cls.__mro__:
                raw = klass.__dict__.get(name)
                if raw is not None:
                    if isinstance(raw, FieldDefault) and raw.spec_given:
                        found.add(name)
                    break
        return frozenset(found)

    @property
    def identifier(self) -> Identifier:
        """The type id (the target's once the class is deprecated); setting its ``name`` renames it."""
        return _TypeIdentifier(self._info)

    @property
    def task(self) -> bool:
        """Whether the class is a task (it has an ``execute`` and a ``submit``)."""
        return callable(getattr(self.value_type, "submit", None)) and callable(
            getattr(self.value_type, "execute", None)
        )

    def name(self) -> str:
        return self.identifier.name

    def getArgument(self, name: str) -> Field:  # experimaestro spells it so
        """The field ``name`` (a ``KeyError`` if the class has none)."""
        return self._info.fields[name]

    @property
    def _deprecation(self) -> DeprecationInfo | None:
        return self._info.deprecation

    @property
    def deprecated(self) -> bool:
        """Whether the class was deprecated (``@deprecate``)."""
        return self._info.deprecation is not None

    @property
    def _deprecated_identifier(self) -> Identifier | None:
        deprecation = self._info.deprecation
        return None if deprecation is None else deprecation.original_identifier

    def deprecate(self, target: type | None = None, replace: bool = False) -> None:
        """Deprecate the class in favour of ``target`` (default: its only base class).

        From now on the class's type id is the target's; with a ``__convert__()`` method, its
        identifier is the identifier of the configuration ``__convert__`` returns.
        """
        info = self._info
        where = info.cls.__qualname__
        if info.deprecation is not None:
            raise ConfigError(where, "is deprecated already")
        if target is None:
            bases = [b for b in info.cls.__bases__ if b is not typing.Generic]
            if len(bases) != 1 or not is_config_class(bases[0]):
                raise ConfigError(
                    where,
                    "a class deprecated without a target must have exactly one base class (the new one)",
                    "write @deprecate(NewClass) and define __convert__()",
                )
            target = bases[0]
        elif not is_config_class(target):
            raise ConfigError(where, f"cannot deprecate in favour of {target!r}: not a configuration class")
        original = Identifier(info.typeid)
        info.deprecation = DeprecationInfo(original, target, bool(replace))
        info.typeid = class_info(target).typeid
        info.typeid_bytes = info.typeid.encode("utf-8")

    def __repr__(self) -> str:
        return f"<XPMType {self.identifier.name}>"


_INFOS: dict[type, ClassInfo] = {}
_LOCK = threading.RLock()  # resolution recurses into base classes


def class_info(cls: type) -> ClassInfo:
    """The resolved :class:`ClassInfo` of configuration class ``cls`` (computed on first use).

    ``X.C`` (``X.XPMConfig``) shares ``X``'s: it is registered here when it is made.
    """
    info = _INFOS.get(cls)
    if info is None:
        with _LOCK:
            info = _INFOS.get(cls)
            if info is None:
                info = _resolve(cls)
                _INFOS[cls] = info
    return info


def register_config_type(info: ClassInfo, config_type: type) -> None:
    """Record ``config_type`` as the configuration class of ``info.cls`` (``class_info`` maps it back)."""
    with _LOCK:
        info.config_type = config_type
        _INFOS[config_type] = info


def _resolve(cls: type) -> ClassInfo:
    origin = cls.__dict__.get("__xpm_origin__")
    if origin is not None:  # X.XPMConfig made elsewhere (a pickle, a subclass): X's information
        return class_info(origin)
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        if is_config_class(base):
            inherited.update(class_info(base).own)
    own = _own_fields(cls, inherited)
    for name, f in own.items():
        setattr(cls, name, FieldDefault(f, isinstance(cls.__dict__.get(name), FieldSpec)))
    return ClassInfo(cls, own, {**inherited, **own})


_FIELD_LIKE = re.compile(r"\b(Param|Meta|Option|Constant)\s*\[")


def _own_annotations(cls: type) -> dict[str, Any]:
    try:
        return dict(inspect.get_annotations(cls))
    except NameError:  # Python >= 3.14 evaluates lazily; ask for forward references instead
        import annotationlib  # type: ignore[import-not-found]

        return dict(annotationlib.get_annotations(cls, format=annotationlib.Format.FORWARDREF))


def _own_fields(cls: type, inherited: Mapping[str, Field]) -> dict[str, Field]:
    module = sys.modules.get(cls.__module__)
    globalns = vars(module) if module is not None else {}
    localns = dict(vars(cls))
    localns.setdefault(cls.__name__, cls)

    def resolve(ref: Any) -> Any:
        text = ref.__forward_arg__ if isinstance(ref, typing.ForwardRef) else ref
        # What typing.get_type_hints does: an annotation is code from the class's own module.
        return eval(text, globalns, localns)

    own: dict[str, Field] = {}
    for name, annotation in _own_annotations(cls).items():
        where = f"{cls.__qualname__}.{name}"
        hint = annotation
        if isinstance(annotation, (str, typing.ForwardRef)):
            try:
                hint = resolve(annotation)
            except Exception as error:
                text = annotation if isinstance(annotation, str) else annotation.__forward_arg__
                if not _FIELD_LIKE.search(text):
                    continue  # an ordinary annotation we do not need
                raise ConfigError(
                    where,
                    f"cannot resolve the annotation {text!r} ({type(error).__name__}: {error})",
                    f"define every name it uses at the top level of module {cls.__module__}",
                ) from error
        marker, options = _marker_of(hint)
        if marker is None:
            continue
        inner = typing.get_args(hint)[0]
        raw = cls.__dict__.get(name, MISSING)
        if isinstance(raw, (FieldDescriptor, FieldDefault)):  # the class was resolved already (never expected)
            raw = raw.field.default
        spec = raw if isinstance(raw, FieldSpec) else FieldSpec(default=raw, ignore_default=True)
        parent = inherited.get(name)
        if parent is not None:
            _check_override(parent, inner, spec, where)
        try:
            check = _types.compile_type(inner, resolve)
        except Exception as error:
            raise ConfigError(
                where,
                f"cannot use {inner!r} as a field type ({error})",
                "use int, float, str, bool, Path, an Enum, a Config class, or list/dict/set/tuple/Optional of those",
            ) from error
        own[name] = _make_field(name, cls, marker, inner, check, spec, where, options)

    # A subclass may override an inherited default without repeating the annotation.
    for name, base_field in inherited.items():
        if name in own or name not in cls.__dict__:
            continue
        raw = cls.__dict__[name]
        if (
            isinstance(raw, (FieldDescriptor, FieldDefault))
            or inspect.isroutine(raw)
            or isinstance(raw, (property, classmethod, staticmethod))
        ):
            continue
        spec = raw if isinstance(raw, FieldSpec) else FieldSpec(default=raw, ignore_default=True)
        own[name] = base_field.with_default(cls, spec, f"{cls.__qualname__}.{name}")
    return own


def _marker_of(hint: Any) -> tuple[_Marker | None, dict[str, Any]]:
    """The field kind of an annotation, and the options its other metadata give (help, checker...).

    ``Annotated[T, help(...)]`` without ``Param``/``Meta`` is a parameter, as in experimaestro.
    """
    if typing.get_origin(hint) is not Annotated:
        return None, {}
    marker = None
    options: dict[str, Any] = {}
    for meta in hint.__metadata__:
        if isinstance(meta, _Marker):
            marker = meta
        elif isinstance(meta, FieldAnnotation):
            meta.annotate(options)
            marker = marker or _Marker(Kind.PARAM)
    return marker, options


_log = logging.getLogger("xpmfs")


def _check_override(parent: Field, hint: Any, spec: FieldSpec, where: str) -> None:
    """A subclass re-declares ``parent``: its type must be a subtype; say so unless ``overrides=True``."""
    if _is_subtype(hint, parent.hint) is False:
        raise ConfigError(
            where,
            f"{hint!r} is not compatible with {parent.hint!r}, the type {parent.owner.__qualname__} declares"
            " (it is not a subtype of it)",
            "keep the parent's type or narrow it to a subclass",
        )
    if not spec.overrides:
        _log.warning(
            "%s overrides parent parameter from %s; write field(overrides=True) if this is intended",
            where,
            parent.owner.__qualname__,
        )


def _is_subtype(new: Any, old: Any) -> bool | None:
    """Whether type ``new`` narrows ``old``: ``True``/``False`` when the classes tell, else ``None``."""
    if new == old:
        return True
    new_origin = typing.get_origin(new) or new
    old_origin = typing.get_origin(old) or old
    if not (isinstance(new_origin, type) and isinstance(old_origin, type)):
        return None
    if not issubclass(new_origin, old_origin):
        return False
    new_args, old_args = typing.get_args(new), typing.get_args(old)
    if new_args and len(new_args) == len(old_args):
        for a, b in zip(new_args, old_args, strict=True):
            if _is_subtype(a, b) is False:
                return False
    return True


def _make_field(
    name: str,
    owner: type,
    marker: _Marker,
    hint: Any,
    check: _types.Type,
    spec: FieldSpec,
    where: str,
    options: Mapping[str, Any] | None = None,
) -> Field:
    kind = marker.kind
    options = dict(options or {})
    default = spec.default
    factory_spec = spec.default_factory or options.get("generator")
    generator = factory_spec if isinstance(factory_spec, Generator) else None
    factory = factory_spec if generator is None else None
    if default is None and not _types.allows_none(hint):
        # ``x: Param[int] = None`` means "optional": accept None for it.
        check = _types.optional(check)
    elif default is not MISSING:
        try:
            default = check(default, f"{where} (default)")
        except ConfigError as error:
            raise ConfigError(error.where, error.problem, "fix the default value in the class") from None
    if kind is Kind.CONSTANT and (default is MISSING or default is None):
        raise ConfigError(where, "a Constant needs a value", f"write `{name}: Constant[...] = VALUE`")
    factory_default = MISSING
    if factory is not None and spec.ignore_default and kind is not Kind.META:
        # experimaestro calls the factory once, with the class, to know which value to leave out.
        factory_default = check(factory(), f"{where} (default_factory)")
    required = default is MISSING and factory is None and generator is None and not _types.allows_none(hint)
    return Field(
        name=name,
        owner=owner,
        kind=kind,
        hint=hint,
        check=check,
        default=default,
        ignore_default=spec.ignore_default,
        factory=factory,
        generator=generator,
        required=required,
        factory_default=factory_default,
        options=options,
        overrides=spec.overrides,
        ignore_generated=spec.ignore_generated,
        is_data=marker.is_data,
        groups=spec.groups,
    )


# -- field documentation --------------------------------------------------------------------

_DOCS: dict[type, dict[str, str]] = {}


def field_docs(cls: type) -> dict[str, str]:
    """The help of ``cls``'s fields: its docstring's "Arguments:" section (or ``:param x:`` lines),
    overridden by the docstrings written right after field declarations (experimaestro's order)."""
    docs = _DOCS.get(cls)
    if docs is None:
        docs = _DOCS[cls] = {**parse_docstring(cls.__dict__.get("__doc__")).params, **_parse_docs(cls)}
    return docs


@dataclass(frozen=True)
class Docstring:
    """What :func:`parse_docstring` finds: ``title`` (first line), ``description``, ``params``."""

    title: str | None
    description: str | None
    params: dict[str, str]


_PARAM_SECTIONS = frozenset({"args", "arguments", "parameters", "params", "attributes", "keyword args"})
_SECTION = re.compile(r"^([A-Za-z][A-Za-z ]*):\s*$")
_GOOGLE_PARAM = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_REST_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> Docstring:
    """A class docstring as experimaestro reads it (Google style sections or ``:param x:`` lines).

    The title is the first line, the description the text after it up to the first section; the
    params are the entries of an ``Args``/``Arguments``/``Parameters``/``Attributes`` section
    (``name: text`` or ``name (type): text``, more indented lines continuing it) or ``:param name:``.
    """
    if not doc or not doc.strip():
        return Docstring(None, None, {})
    lines = inspect.cleandoc(doc).splitlines()
    title = lines[0].strip() or None
    body: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    base_indent: int | None = None
    current: str | None = None
    for line in lines[1:]:
        stripped = line.strip()
        header = _SECTION.match(stripped) if line[: len(line) - len(line.lstrip())] == "" else None
        rest = _REST_PARAM.match(stripped)
        if header is not None:
            section, base_indent, current = header.group(1).lower(), None, None
            continue
        if rest is not None:
            section, current = ":param", rest.group(1)
            params[current] = rest.group(2).strip()
            continue
        if section is None:
            body.append(line)
            continue
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if section == ":param" or (base_indent is not None and indent > base_indent):
            if current is not None:  # a continuation line
                params[current] = f"{params[current]}\n{stripped}".strip()
            continue
        if section in _PARAM_SECTIONS:
            base_indent = indent
            entry = _GOOGLE_PARAM.match(stripped)
            current = entry.group(1) if entry else None
            if entry:
                params[current] = entry.group(2).strip()  # type: ignore[index]
    description = "\n".join(body).strip() or None
    return Docstring(title, description, params)


def _parse_docs(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError, IndentationError):
        return {}  # no source (interactive session, frozen app): help is optional
    body = next((n.body for n in tree.body if isinstance(n, ast.ClassDef)), [])
    docs: dict[str, str] = {}
    previous: str | None = None
    for node in body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            if previous is not None:
                docs[previous] = inspect.cleandoc(node.value.value)
            previous = None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            previous = node.target.id
        else:
            previous = None
    return docs


__all__ = [
    "MISSING",
    "ClassInfo",
    "Constant",
    "DeprecationInfo",
    "Field",
    "FieldDescriptor",
    "FieldSpec",
    "Kind",
    "Meta",
    "Option",
    "Param",
    "class_info",
    "compute_typeid",
    "field",
    "field_docs",
    "is_config_class",
    "parse_docstring",
    "public_module",
    "register_config_type",
]
