"""What a job's spec hashes to with the code here (``xpmfs check``, ``xpmfs deprecated``).

The spec records where its task's modules were found when it was submitted; the runner imports
them from there, so a tool that rebuilds the configuration must too, or every user task would be
"cannot verify". Loading a configuration imports its task's modules: callers check the spec's
owner first (:mod:`xpmfs.trust`).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from .job import Spec
from .queue import JobRef


@contextlib.contextmanager
def spec_import_path(entries: tuple[str, ...]) -> Iterator[None]:
    """Put a spec's recorded import path (``entries``) first on ``sys.path`` while in the block."""
    saved = list(sys.path)
    sys.path[:0] = [entry for entry in entries if entry not in sys.path]
    try:
        yield
    finally:
        sys.path[:] = saved


def rehash(spec: Spec) -> tuple[JobRef | None, str]:
    """The job ``spec``'s configuration is, with the code here; or ``None`` and why it cannot be told."""
    try:
        from .config import typeid  # not at the top: tools that never rebuild one do not load it
        from .serialization import from_dict
    except ImportError as error:  # the configuration layer itself is unavailable
        return None, f"xpmfs cannot load configurations ({error})"
    with spec_import_path(spec.sys_path):
        try:
            config = from_dict(spec.config)
        except ImportError as error:
            return None, f"its task cannot be imported here ({error})"
        except Exception as error:
            return None, f"its configuration cannot be rebuilt with the code here ({type(error).__name__}: {error})"
        identifier = config.__identifier__()
    return JobRef(typeid(config), identifier if isinstance(identifier, str) else bytes(identifier).hex()), ""


__all__ = ["rehash", "spec_import_path"]
