"""The user's settings file: per-workspace defaults, in experimaestro's ``settings.yaml`` format.

Where it is read from, first found wins:

1. ``$XPMFS_SETTINGS``, if set and not empty: the path of the file (it must exist);
2. ``~/.config/xpmfs/settings.yaml``;
3. ``~/.config/experimaestro/settings.yaml`` (the seed's location), so that one file serves both.

No file at all is fine: every workspace gets the defaults. The format (other keys, such as
experimaestro's ``server`` or ``history``, are ignored)::

    env:                      # given to every job (experimaestro's global env)
      HF_HOME: ${env:HOME}/hf
    workspaces:
      - id: my_workspace
        path: /path/to/workspace
        env:                  # given to this workspace's jobs; wins over the global env
          CUDA_HOME: /opt/cuda
        max_retries: 5        # timeout retries of resumable tasks; default 3
        launcher:             # launcher of tasks submitted without one; default direct
          type: slurm         # any launcher record of a spec (spec/slurm.md)
          time: 120
          partition: gpu

As in experimaestro, ``${env:VAR}`` (also ``${env.VAR}``, ``${oc.env:VAR}``, ``${oc.env.VAR}``) in
any string is replaced by the variable's value in the process reading the file; an unset variable
is left as written. Numbers and booleans in an ``env`` are written as strings.

A workspace entry matches a workspace whose path resolves (``~`` expanded, symbolic links
followed) to the same folder; the first matching entry wins. ``experiment("my_workspace", ...)``
names an entry by its id (:func:`resolve_workspace`). A file that is not valid YAML, or a field of
the wrong type, raises :class:`~xpmfs.errors.SettingsError` naming the file and the field.

The experiment uses :func:`max_retries_for` when a task is submitted without ``max_retries``,
:func:`launcher_for` when neither ``submit()`` nor ``experiment()`` names a launcher, and
:func:`environment_for` as the first layers of its jobs' environment.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SettingsError

log = logging.getLogger("xpmfs.settings")

ENV_SETTINGS = "XPMFS_SETTINGS"
USER_SETTINGS = Path("~/.config/xpmfs/settings.yaml")
EXPERIMAESTRO_SETTINGS = Path("~/.config/experimaestro/settings.yaml")
DEFAULT_MAX_RETRIES = 3

_FIX = "correct the file (format: `workspaces: [{id: ..., path: ..., max_retries: 3}]`)"
# experimaestro's interpolation: ${env:VAR}, ${env.VAR}, ${oc.env:VAR}, ${oc.env.VAR}.
_INTERPOLATION = re.compile(r"\$\{(?:oc\.)?env[:.]([^}]+)\}")


@dataclass(frozen=True)
class WorkspaceSettings:
    """One entry of ``workspaces`` (fields in experimaestro's order); ``path`` is resolved.

    Also what ``experiment()`` accepts in place of a path, as experimaestro's does:
    ``experiment(WorkspaceSettings("mine", Path("/data/ws")), "name")``.
    """

    id: str
    path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    max_retries: int = DEFAULT_MAX_RETRIES
    launcher: Any = None  # a launcher object (xpmfs.launchers), or None: direct

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", _resolve(self.path))


@dataclass(frozen=True)
class Settings:
    """The settings read from ``path`` (``None``: no file, all defaults)."""

    path: Path | None = None
    workspaces: tuple[WorkspaceSettings, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def workspace(self, workspace_path: str | os.PathLike[str]) -> WorkspaceSettings | None:
        """The first entry whose path is ``workspace_path`` (both resolved), or ``None``."""
        wanted = _resolve(workspace_path)
        return next((entry for entry in self.workspaces if entry.path == wanted), None)

    def by_id(self, workspace_id: str) -> WorkspaceSettings | None:
        """The entry whose id is ``workspace_id``, or ``None``."""
        return next((entry for entry in self.workspaces if entry.id == workspace_id), None)

    def max_retries_for(self, workspace_path: str | os.PathLike[str]) -> int:
        """``max_retries`` of the workspace at ``workspace_path``; :data:`DEFAULT_MAX_RETRIES` if unlisted."""
        entry = self.workspace(workspace_path)
        return entry.max_retries if entry is not None else DEFAULT_MAX_RETRIES

    def environment_for(self, entry: WorkspaceSettings | None) -> dict[str, str]:
        """The global ``env``, then ``entry``'s over it: what its jobs get before ``xp.setenv``."""
        return {**self.env, **(entry.env if entry is not None else {})}


def launcher_for(workspace_path: str | os.PathLike[str]) -> Any:
    """The default launcher of the workspace at ``workspace_path`` (``None``: direct)."""
    entry = load().workspace(workspace_path)
    return entry.launcher if entry is not None else None


def environment_for(workspace_path: str | os.PathLike[str]) -> dict[str, str]:
    """The environment the settings give the jobs of the workspace at ``workspace_path``."""
    settings = load()
    return settings.environment_for(settings.workspace(workspace_path))


def settings_path() -> Path | None:
    """The settings file to read (see the module's documentation), or ``None`` if there is none."""
    chosen = os.environ.get(ENV_SETTINGS)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            raise SettingsError(
                path,
                "",
                f"does not exist (it is named by ${ENV_SETTINGS})",
                f"create it, or unset {ENV_SETTINGS} to use ~/.config/xpmfs/settings.yaml",
            )
        return path
    for candidate in (USER_SETTINGS, EXPERIMAESTRO_SETTINGS):
        path = candidate.expanduser()
        if path.is_file():
            return path
    return None


# The experiment asks a few times per run: parse a file again only when it changed. The YAML
# document is kept, not the settings built from it: ${env:VAR} takes the environment of each load.
_cache: dict[Path, tuple[tuple[int, int], Any]] = {}
_cache_guard = threading.Lock()


def load(path: str | os.PathLike[str] | None = None) -> Settings:
    """The settings in ``path``, or in the file :func:`settings_path` finds (none: defaults)."""
    where = Path(path).expanduser() if path is not None else settings_path()
    if where is None:
        return Settings()
    try:
        info = where.stat()
        key = (info.st_mtime_ns, info.st_size)
        with _cache_guard:
            cached = _cache.get(where)
        if cached is not None and cached[0] == key:
            return _build(cached[1], where)
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(where, "", f"cannot be read ({error})", f"make it a readable UTF-8 file; {_FIX}") from error
    document = _yaml(text, where)
    settings = _build(document, where)  # a bad file is not cached: it raises every time
    with _cache_guard:
        _cache[where] = (key, document)
    return settings


#: experimaestro's name for :func:`load`.
get_settings = load


def max_retries_for(workspace_path: str | os.PathLike[str]) -> int:
    """How many timeout retries resumable tasks of the workspace at ``workspace_path`` get."""
    return load().max_retries_for(workspace_path)


def get_workspace(workspace_id: str | None = None) -> WorkspaceSettings | None:
    """The entry with id ``workspace_id`` (``None``: the first one, experimaestro's default), or ``None``."""
    settings = load()
    if workspace_id is None:
        return settings.workspaces[0] if settings.workspaces else None
    return settings.by_id(workspace_id)


def find_workspace(*, workspace: str | None = None, workdir: str | os.PathLike[str] | None = None) -> WorkspaceSettings:
    """experimaestro's choice of a workspace: the entry ``workspace`` (an id; ``workdir``, if
    given too, replaces its path), else a workspace at ``workdir``, else the first entry."""
    if workspace:
        entry = get_workspace(workspace)
        if entry is None:
            raise _unknown_id(load(), workspace, "")
        if workdir is not None:
            return WorkspaceSettings(entry.id, Path(workdir), entry.env, entry.max_retries, entry.launcher)
        return entry
    if workdir is not None:
        return load().workspace(workdir) or WorkspaceSettings("", Path(workdir))
    entry = get_workspace()
    if entry is None:
        settings = load()
        raise SettingsError(
            settings.path or USER_SETTINGS.expanduser(),
            "workspaces",
            "lists no workspace, and none was named",
            "give a workspace path, or add a workspace to the settings file",
        )
    return entry


def resolve_workspace(workspace: str | os.PathLike[str] | WorkspaceSettings) -> tuple[Path, WorkspaceSettings | None]:
    """The folder ``experiment(workspace, ...)`` works in, and its settings entry (``None``: none).

    - a :class:`WorkspaceSettings` (as experimaestro's ``experiment`` takes): its path and itself;
    - a plain name (no ``/``, not starting with ``.`` or ``~``) that is the id of an entry: that
      entry (a folder of the same name in the current directory is not used, and a warning says so);
    - a plain name that is neither an id nor an existing folder, while the settings file lists
      workspaces: :class:`SettingsError` naming the file and its ids (a mistyped id must not
      create a new workspace in the current directory);
    - anything else: a path (``~`` expanded); its entry is the one whose path is the same folder.
    """
    if isinstance(workspace, WorkspaceSettings):
        return workspace.path, workspace
    settings = load()
    if isinstance(workspace, str) and _plain_name(workspace):
        entry = settings.by_id(workspace)
        folder = Path(workspace)
        if entry is not None:
            if folder.is_dir() and folder.resolve() != entry.path:
                log.warning(
                    "workspace %r is the id of %s in %s; the folder %s is not used (name it './%s' to use it)",
                    workspace,
                    entry.path,
                    settings.path,
                    folder.absolute(),
                    workspace,
                )
            return entry.path, entry
        if settings.workspaces and not folder.exists():
            raise _unknown_id(settings, workspace, f" and ./{workspace} does not exist")
    path = Path(workspace).expanduser().absolute()
    return path, settings.workspace(path)


def _plain_name(text: str) -> bool:
    return bool(text) and "/" not in text and os.sep not in text and not text.startswith((".", "~"))


def _unknown_id(settings: Settings, workspace_id: str, also: str) -> SettingsError:
    ids = ", ".join(repr(entry.id) for entry in settings.workspaces) or "none"
    return SettingsError(
        settings.path or USER_SETTINGS.expanduser(),
        "workspaces",
        f"no workspace has the id {workspace_id!r}{also} (ids: {ids})",
        f"name one of these ids, or give a path such as './{workspace_id}' to create a new workspace there",
    )


def parse(text: str, path: Path) -> Settings:
    """Parse the content ``text`` of the settings file ``path`` (``path`` is for messages)."""
    return _build(_yaml(text, path), path)


def _yaml(text: str, path: Path) -> Any:
    import yaml  # only when a settings file exists: it is slow to import

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise SettingsError(path, "", f"is not valid YAML{where}: {problem}", _FIX) from error


def _build(document: Any, path: Path) -> Settings:
    if document is None:
        return Settings(path)  # an empty file
    if not isinstance(document, Mapping):
        raise SettingsError(path, "", f"must be a mapping of settings, not {_shown(document)}", _FIX)
    document = _interpolate(document)
    env = _env(document.get("env"), "env", path)
    entries = document.get("workspaces")
    if entries is None:
        return Settings(path, (), env)
    if not isinstance(entries, list):
        raise SettingsError(path, "workspaces", f"must be a list of workspaces, not {_shown(entries)}", _FIX)
    workspaces = tuple(_workspace(entry, f"workspaces[{i}]", path) for i, entry in enumerate(entries))
    return Settings(path, workspaces, env)


def _interpolate(value: Any) -> Any:
    """``${env:VAR}`` in every string replaced by ``$VAR`` (left as written when unset)."""
    if isinstance(value, Mapping):
        return {key: _interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item) for item in value]
    if isinstance(value, str) and "${" in value:
        return _INTERPOLATION.sub(lambda match: os.environ.get(match.group(1), match.group(0)), value)
    return value


def _env(value: Any, where: str, path: Path) -> dict[str, str]:
    """An ``env`` mapping: names to strings (numbers and booleans written as strings, as experimaestro)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SettingsError(path, where, f"must be a mapping of variable names to values, not {_shown(value)}", _FIX)
    env: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name or "=" in name:
            raise SettingsError(path, f"{where}.{name}", "is not a valid environment variable name", _FIX)
        if not isinstance(item, (str, int, float)):  # bool is an int: True is written "True"
            raise SettingsError(
                path, f"{where}.{name}", f"must be a string, a number or a boolean, not {_shown(item)}", _FIX
            )
        env[name] = str(item)
    return env


def _workspace(entry: Any, where: str, path: Path) -> WorkspaceSettings:
    if not isinstance(entry, Mapping):
        raise SettingsError(path, where, f"must be a mapping with id and path, not {_shown(entry)}", _FIX)
    for name in ("id", "path"):
        if name not in entry:
            raise SettingsError(path, f"{where}.{name}", "is missing", f"add it; {_FIX}")
        if not isinstance(entry[name], str) or not entry[name]:
            raise SettingsError(path, f"{where}.{name}", f"must be a non-empty string, not {_shown(entry[name])}", _FIX)
    retries = entry.get("max_retries", DEFAULT_MAX_RETRIES)
    # bool is an int to Python, but `max_retries: yes` is a mistake worth reporting.
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SettingsError(
            path,
            f"{where}.max_retries",
            f"must be a whole number, 0 or more, not {_shown(retries)}",
            f"write e.g. `max_retries: 3` (the default); {_FIX}",
        )
    launcher = None
    if entry.get("launcher") is not None:
        from .launchers import from_json

        record = entry["launcher"]
        try:
            if not isinstance(record, Mapping):
                raise TypeError(f"must be a mapping such as {{type: slurm, time: 60}}, not {_shown(record)}")
            launcher = from_json(record)
        except (TypeError, ValueError) as error:
            raise SettingsError(path, f"{where}.launcher", str(error), _FIX) from error
    return WorkspaceSettings(
        id=entry["id"],
        path=Path(entry["path"]),
        env=_env(entry.get("env"), f"{where}.env", path),
        max_retries=retries,
        launcher=launcher,
    )


def _resolve(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{text[:57]}..." if len(text) > 60 else text


__all__ = [
    "DEFAULT_MAX_RETRIES",
    "ENV_SETTINGS",
    "EXPERIMAESTRO_SETTINGS",
    "USER_SETTINGS",
    "Settings",
    "WorkspaceSettings",
    "environment_for",
    "find_workspace",
    "get_settings",
    "get_workspace",
    "launcher_for",
    "load",
    "max_retries_for",
    "parse",
    "resolve_workspace",
    "settings_path",
]
