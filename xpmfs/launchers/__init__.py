"""Launchers: how a claimed job gets run. Plugged into the worker and the runner (DESIGN, "Launchers").

``submit(launcher=...)`` takes one of them; the spec records ``launcher.to_json()`` and every
process reads it back with :func:`from_json`. A launcher never touches the configuration layer.

- :class:`DirectLauncher` (the default): the claiming worker runs the job as its own child.
- :class:`SlurmLauncher`: the claiming worker hands the job to ``sbatch`` (``spec/slurm.md``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .direct import DirectLauncher
from .slurm import SlurmError, SlurmLauncher

Launcher = DirectLauncher | SlurmLauncher

_TYPES: dict[str, type[DirectLauncher] | type[SlurmLauncher]] = {
    DirectLauncher.TYPE: DirectLauncher,
    SlurmLauncher.TYPE: SlurmLauncher,
}


def from_json(record: Mapping[str, Any] | None) -> Launcher:
    """The launcher a spec's ``launcher`` record describes (``None`` or ``{}``: direct).

    :raises ValueError: an unknown ``type`` (a newer writer's launcher) or bad options. A worker
        must then leave the job alone: running it directly would ignore what was asked.
    """
    if not record:
        return DirectLauncher()
    kind = record.get("type", DirectLauncher.TYPE)
    launcher = _TYPES.get(kind)
    if launcher is None:
        raise ValueError(f"unknown launcher type {kind!r} (known: {', '.join(sorted(_TYPES))}); upgrade xpmfs")
    return launcher.from_json(record)


__all__ = ["DirectLauncher", "Launcher", "SlurmError", "SlurmLauncher", "from_json"]
