"""Launchers: how a claimed job gets run. Plugged into the worker and the runner (DESIGN, "Launchers").

``submit(launcher=...)`` takes one of them; the spec records ``launcher.to_json()`` and every
process reads it back with :func:`from_json`. A launcher never touches the configuration layer.

- :class:`DirectLauncher` (the default): the claiming worker runs the job as its own child.
- :class:`SlurmLauncher`: the claiming worker hands the job to ``sbatch`` (``spec/slurm.md``).

A worker runs them through objects behind one small protocol (:mod:`xpmfs.launchers.base`):
:class:`~xpmfs.launchers.direct.Direct` and :class:`~xpmfs.launchers.slurm.Slurm`, which
:class:`Launchers` makes (:mod:`xpmfs.launchers.kinds`). A job's runner asks :func:`inside` for
the scheduler job it runs in.

Each name below is imported from its module when first used (PEP 562), as in :mod:`xpmfs`: a
fresh runner (``python <name>.py``) asks :func:`inside` and must not pay for loading SLURM's
module (~10 ms) when it does not run under SLURM.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Context, Handle, Inside
    from .direct import DirectLauncher
    from .kinds import KINDS, Launcher, Launchers, from_json
    from .slurm import SlurmError, SlurmLauncher

#: Public name -> the module (under xpmfs.launchers) that defines it.
_EXPORTS = {
    "Context": "base",
    "Handle": "base",
    "Inside": "base",
    "DirectLauncher": "direct",
    "KINDS": "kinds",
    "Launcher": "kinds",
    "Launchers": "kinds",
    "from_json": "kinds",
    "SlurmError": "slurm",
    "SlurmLauncher": "slurm",
}

#: The environment variable that tells a runner it runs in a scheduler's job -> the launcher
#: module that knows that scheduler (its ``inside()`` answers for it).
_SCHEDULERS = {"SLURM_JOB_ID": "slurm"}


def inside() -> Inside | None:
    """The scheduler job this process (a job's runner) runs in, by the launcher that knows it;
    ``None`` when it runs on its own (started by a worker's direct launcher, or by hand)."""
    for variable, module in _SCHEDULERS.items():
        if os.environ.get(variable):
            found: Inside | None = importlib.import_module(f"{__name__}.{module}").inside()
            return found
    return None


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "KINDS",
    "Context",
    "DirectLauncher",
    "Handle",
    "Inside",
    "Launcher",
    "Launchers",
    "SlurmError",
    "SlurmLauncher",
    "from_json",
    "inside",
]
