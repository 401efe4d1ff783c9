"""xpmfs: experiments as typed, content-addressed tasks; the workspace directory is the database.

The names below are the public API; the seed documentation's ``from experimaestro import ...``
examples run with ``from xpmfs import ...``.
"""

from __future__ import annotations

from .cache import cache
from .config import (
    Config,
    Constant,
    DependentMarker,
    LightweightTask,
    Meta,
    Option,
    Param,
    ResumableTask,
    SubmitHook,
    Task,
    field,
    setmeta,
    tag,
    tags,
)
from .errors import Error, FailedExperiment, GracefulTimeout
from .experiment import experiment
from .generators import PathGenerator
from .launchers import DirectLauncher, SlurmLauncher
from .progress import progress, tqdm

__version__ = "0.1.0"

__all__ = [
    "Config",
    "Constant",
    "DependentMarker",
    "DirectLauncher",
    "Error",
    "FailedExperiment",
    "GracefulTimeout",
    "LightweightTask",
    "Meta",
    "Option",
    "Param",
    "PathGenerator",
    "ResumableTask",
    "SlurmLauncher",
    "SubmitHook",
    "Task",
    "__version__",
    "cache",
    "experiment",
    "field",
    "progress",
    "setmeta",
    "tag",
    "tags",
    "tqdm",
]
