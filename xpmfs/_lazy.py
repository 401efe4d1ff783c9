"""Modules loaded on first use: a command line that offers many commands loads, per command, only
the modules that command uses (``xpmfs worker``, started for every embedded worker, does not pay
for ``xpmfs top``'s rich or ``xpmfs kill``'s psutil)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """The module ``name`` (absolute), executed when one of its attributes is first read.

    The standard library's :class:`importlib.util.LazyLoader`: the module is found now (a missing
    one fails here, not in the middle of a command) and registered, so a later ``import`` of it
    gets the same object.
    """
    found = sys.modules.get(name)
    if found is not None:
        return found
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


__all__ = ["lazy_module"]
