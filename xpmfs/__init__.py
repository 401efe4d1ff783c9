"""xpmfs: experiments as typed, content-addressed tasks; the workspace directory is the database.

The names below are the public API; the seed documentation's ``from experimaestro import ...``
examples run with ``from xpmfs import ...``.

Each name is imported from its module when first used (PEP 562): ``import xpmfs``, which every job
runner and every ``xpmfs`` command does, then loads only what it uses. A job forked from the warm
runner must not load the experiment's watcher (watchdog, filelock): filelock's fork hooks alone
cost every fork 0.5 ms.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType  # not `import types`: xpmfs.types is a submodule of this package
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module (under xpmfs) that defines it.
_EXPORTS: dict[str, str] = {
    "ParameterGroup": "partial",
    "Partial": "partial",
    "param_group": "partial",
    "partial": "partial",
    "from_task_dir": "results",
    "PathSerializationLWTask": "definition",
    "SerializationContext": "definition",
    "SerializationLWTask": "definition",
    "deserialize": "definition",
    "from_state_dict": "definition",
    "load": "definition",
    "save": "definition",
    "serialize": "definition",
    "state_dict": "definition",
    "ConfigWalkContext": "generators",
    "EmptyContext": "generators",
    "Config": "config",
    "Constant": "config",
    "DependentMarker": "config",
    "LightweightTask": "config",
    "Meta": "config",
    "Option": "config",
    "Param": "config",
    "ResumableTask": "config",
    "SubmitHook": "config",
    "Task": "config",
    "field": "config",
    "forwardoption": "forwardoption",
    "setmeta": "config",
    "tag": "config",
    "tags": "config",
    "InstanceConfig": "config",
    "TagDict": "config",
    "config_only": "config",
    "copyconfig": "config",
    "deprecate": "config",
    "initializer": "config",
    "sealed_set": "config",
    "stop_tags": "config",
    "tagspath": "config",
    "Annotated": "_classinfo",  # typing.Annotated, as experimaestro re-exports it
    "DataPath": "_classinfo",
    "Identifier": "_classinfo",
    "OptionalDataPath": "_classinfo",
    "Path": "_classinfo",  # pathlib.Path, as experimaestro re-exports it
    "help": "_classinfo",
    "Array": "_types",
    "Choices": "checkers",
    "cache": "cache",
    "Error": "errors",
    "FailedExperiment": "errors",
    "GracefulTimeout": "errors",
    "TaskCancelled": "errors",
    "experiment": "experiment",
    "ExperimentWorkspace": "experiment",
    "PathGenerator": "generators",
    "STDERR": "generators",
    "STDOUT": "generators",
    "DirectoryContext": "generators",
    "pathgenerator": "generators",
    "DirectLauncher": "launchers",
    "SlurmLauncher": "launchers",
    "progress": "progress",
    "tqdm": "progress",
    "RunMode": "runmode",
}

# Spelled out for linters and type checkers; a test checks it is _EXPORTS plus __version__.
__all__ = [
    "STDERR",
    "STDOUT",
    "Annotated",
    "Array",
    "Choices",
    "Config",
    "ConfigWalkContext",
    "Constant",
    "DataPath",
    "DependentMarker",
    "DirectLauncher",
    "DirectoryContext",
    "EmptyContext",
    "Error",
    "ExperimentWorkspace",
    "FailedExperiment",
    "GracefulTimeout",
    "Identifier",
    "InstanceConfig",
    "LightweightTask",
    "Meta",
    "Option",
    "OptionalDataPath",
    "Param",
    "ParameterGroup",
    "Partial",
    "Path",
    "PathGenerator",
    "PathSerializationLWTask",
    "ResumableTask",
    "RunMode",
    "SerializationContext",
    "SerializationLWTask",
    "SlurmLauncher",
    "SubmitHook",
    "TagDict",
    "Task",
    "TaskCancelled",
    "__version__",
    "cache",
    "config_only",
    "copyconfig",
    "deprecate",
    "deserialize",
    "experiment",
    "field",
    "forwardoption",
    "from_state_dict",
    "from_task_dir",
    "help",
    "initializer",
    "load",
    "param_group",
    "partial",
    "pathgenerator",
    "progress",
    "save",
    "sealed_set",
    "serialize",
    "setmeta",
    "state_dict",
    "stop_tags",
    "tag",
    "tags",
    "tagspath",
    "tqdm",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xpmfs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # next time, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


class _Package(ModuleType):
    """The import system binds each submodule as an attribute of its package once imported; where a
    public name is spelled like its module (``cache``, ``experiment``, ``progress``), the public
    name must win, whichever is imported first."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
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
        deprecate,
        field,
        initializer,
        sealed_set,
        setmeta,
        stop_tags,
        tag,
        tags,
        tagspath,
    )
    from .definition import (
        PathSerializationLWTask,
        SerializationContext,
        SerializationLWTask,
        deserialize,
        from_state_dict,
        load,
        save,
        serialize,
        state_dict,
    )
    from .errors import Error, FailedExperiment, GracefulTimeout, TaskCancelled
    from .experiment import ExperimentWorkspace, experiment
    from .forwardoption import forwardoption
    from .generators import (
        STDERR,
        STDOUT,
        ConfigWalkContext,
        DirectoryContext,
        EmptyContext,
        PathGenerator,
        pathgenerator,
    )
    from .launchers import DirectLauncher, SlurmLauncher
    from .partial import ParameterGroup, Partial, param_group, partial
    from .progress import progress, tqdm
    from .results import from_task_dir
    from .runmode import RunMode
