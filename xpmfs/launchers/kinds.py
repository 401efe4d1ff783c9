"""Each kind of launcher: its spec record class and the class a worker runs such jobs with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import base
from .base import Context
from .direct import Direct, DirectLauncher
from .slurm import Slurm, SlurmLauncher

#: A spec's launcher record, as ``submit(launcher=...)`` takes it (the seed's ``Launcher``).
Launcher = DirectLauncher | SlurmLauncher

#: Each kind of launcher, by the ``type`` of its spec record: the record class, and the class a
#: worker runs such jobs with (:class:`~xpmfs.launchers.base.Launcher`).
KINDS: dict[str, Callable[[Context], base.Launcher]] = {DirectLauncher.TYPE: Direct, SlurmLauncher.TYPE: Slurm}
_TYPES: dict[str, type[DirectLauncher] | type[SlurmLauncher]] = {
    DirectLauncher.TYPE: DirectLauncher,
    SlurmLauncher.TYPE: SlurmLauncher,
}


class Launchers:
    """A worker's launchers, one object per kind, made on first use."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self._made: dict[str, base.Launcher] = {}

    def of(self, record: Mapping[str, Any]) -> base.Launcher:
        """The launcher for a spec's ``launcher`` record; ``ValueError`` for a kind this xpmfs does
        not know (a newer writer's): running it otherwise would ignore what was asked."""
        kind = record.get("type", DirectLauncher.TYPE)
        launcher = self._made.get(kind)
        if launcher is None:
            make = KINDS.get(kind)
            if make is None:
                raise ValueError(f"unknown launcher {kind!r} (known: {', '.join(sorted(KINDS))}); upgrade xpmfs")
            launcher = self._made[kind] = make(self.context)
        return launcher

    def any_without_slot(self) -> bool:
        """Whether a kind of launcher that needs no worker slot can launch from this host."""
        return any(
            not self.of({"type": kind}).holds_slot and self.of({"type": kind}).problem() is None for kind in KINDS
        )

    def made(self) -> list[base.Launcher]:
        """The launchers made so far."""
        return list(self._made.values())

    def close(self) -> None:
        for launcher in self._made.values():
            launcher.close()


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


__all__ = ["KINDS", "Launcher", "Launchers", "from_json"]
