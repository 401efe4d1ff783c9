"""The user's settings file: per-workspace defaults, in experimaestro's ``settings.yaml`` format.

Where it is read from, first found wins:

1. ``$XPMFS_SETTINGS``, if set and not empty: the path of the file (it must exist);
2. ``~/.config/xpmfs/settings.yaml``;
3. ``~/.config/experimaestro/settings.yaml`` (the seed's location), so that one file serves both.

No file at all is fine: every workspace gets the defaults. The format (other keys, such as
experimaestro's ``server`` or ``env``, are ignored)::

    workspaces:
      - id: my_workspace
        path: /path/to/workspace
        max_retries: 5        # timeout retries of resumable tasks; default 3
        launcher:             # launcher of tasks submitted without one; default direct
          type: slurm         # any launcher record of a spec (spec/slurm.md)
          time: 120
          partition: gpu

A workspace entry matches a workspace whose path resolves (``~`` expanded, symbolic links
followed) to the same folder; the first matching entry wins. A file that is not valid YAML, or a
field of the wrong type, raises :class:`~xpmfs.errors.SettingsError` naming the file and the field.

The experiment uses :func:`max_retries_for` when a task is submitted without ``max_retries``, and
:func:`launcher_for` when neither ``submit()`` nor ``experiment()`` names a launcher.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SettingsError

ENV_SETTINGS = "XPMFS_SETTINGS"
USER_SETTINGS = Path("~/.config/xpmfs/settings.yaml")
EXPERIMAESTRO_SETTINGS = Path("~/.config/experimaestro/settings.yaml")
DEFAULT_MAX_RETRIES = 3

_FIX = "correct the file (format: `workspaces: [{id: ..., path: ..., max_retries: 3}]`)"


@dataclass(frozen=True)
class WorkspaceSettings:
    """One entry of ``workspaces``; ``path`` is resolved."""

    id: str
    path: Path
    max_retries: int = DEFAULT_MAX_RETRIES
    launcher: Any = None  # a launcher object (xpmfs.launchers), or None: direct


@dataclass(frozen=True)
class Settings:
    """The settings read from ``path`` (``None``: no file, all defaults)."""

    path: Path | None = None
    workspaces: tuple[WorkspaceSettings, ...] = ()

    def workspace(self, workspace_path: str | os.PathLike[str]) -> WorkspaceSettings | None:
        """The first entry whose path is ``workspace_path`` (both resolved), or ``None``."""
        wanted = _resolve(workspace_path)
        return next((entry for entry in self.workspaces if entry.path == wanted), None)

    def max_retries_for(self, workspace_path: str | os.PathLike[str]) -> int:
        """``max_retries`` of the workspace at ``workspace_path``; :data:`DEFAULT_MAX_RETRIES` if unlisted."""
        entry = self.workspace(workspace_path)
        return entry.max_retries if entry is not None else DEFAULT_MAX_RETRIES


def launcher_for(workspace_path: str | os.PathLike[str]) -> Any:
    """The default launcher of the workspace at ``workspace_path`` (``None``: direct)."""
    entry = load().workspace(workspace_path)
    return entry.launcher if entry is not None else None


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


# The experiment asks once per submission: parse a file again only when it changed.
_cache: dict[Path, tuple[tuple[int, int], Settings]] = {}
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
            return cached[1]
        text = where.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise SettingsError(where, "", f"cannot be read ({error})", f"make it a readable UTF-8 file; {_FIX}") from error
    settings = parse(text, where)
    with _cache_guard:
        _cache[where] = (key, settings)
    return settings


def max_retries_for(workspace_path: str | os.PathLike[str]) -> int:
    """How many timeout retries resumable tasks of the workspace at ``workspace_path`` get."""
    return load().max_retries_for(workspace_path)


def parse(text: str, path: Path) -> Settings:
    """Parse the content ``text`` of the settings file ``path`` (``path`` is for messages)."""
    import yaml  # only when a settings file exists: it is slow to import

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise SettingsError(path, "", f"is not valid YAML{where}: {problem}", _FIX) from error
    if document is None:
        return Settings(path)  # an empty file
    if not isinstance(document, Mapping):
        raise SettingsError(path, "", f"must be a mapping of settings, not {_shown(document)}", _FIX)
    entries = document.get("workspaces")
    if entries is None:
        return Settings(path)
    if not isinstance(entries, list):
        raise SettingsError(path, "workspaces", f"must be a list of workspaces, not {_shown(entries)}", _FIX)
    return Settings(path, tuple(_workspace(entry, f"workspaces[{i}]", path) for i, entry in enumerate(entries)))


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
    return WorkspaceSettings(entry["id"], _resolve(entry["path"]), retries, launcher)


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
    "launcher_for",
    "load",
    "max_retries_for",
    "parse",
    "settings_path",
]
