"""xpmfs: experiments as typed, content-addressed tasks; the workspace directory is the database.

The names below are the public API; the seed documentation's ``from experimaestro import ...``
examples run with ``from xpmfs import ...``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from ._classinfo import DataPath, Identifier, OptionalDataPath, help
from ._types import Array
from .cache import cache
from .checkers import Choices
from .config import (
    Config,
    Constant,
    DependentMarker,
    InstanceConfig,
    LightweightTask,
    Meta,
    Option,
    Param,
    ResumableTask,
    SubmitHook,
    TagDict,
    Task,
    config_only,
    copyconfig,
    field,
    initializer,
    sealed_set,
    setmeta,
    stop_tags,
    tag,
    tags,
    tagspath,
)
from .errors import Error, FailedExperiment, GracefulTimeout
from .experiment import experiment
from .generators import STDERR, STDOUT, DirectoryContext, PathGenerator, pathgenerator
from .launchers import DirectLauncher, SlurmLauncher
from .progress import progress, tqdm

__version__ = "0.1.0"

__all__ = [
    "STDERR",
    "STDOUT",
    "Annotated",
    "Array",
    "Choices",
    "Config",
    "Constant",
    "DataPath",
    "DependentMarker",
    "DirectLauncher",
    "DirectoryContext",
    "Error",
    "FailedExperiment",
    "GracefulTimeout",
    "Identifier",
    "InstanceConfig",
    "LightweightTask",
    "Meta",
    "Option",
    "OptionalDataPath",
    "Param",
    "Path",
    "PathGenerator",
    "ResumableTask",
    "SlurmLauncher",
    "SubmitHook",
    "TagDict",
    "Task",
    "__version__",
    "cache",
    "config_only",
    "copyconfig",
    "experiment",
    "field",
    "help",
    "initializer",
    "pathgenerator",
    "progress",
    "sealed_set",
    "setmeta",
    "stop_tags",
    "tag",
    "tags",
    "tagspath",
    "tqdm",
]
