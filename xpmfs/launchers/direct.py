"""The direct launcher: the worker that claims a job runs it as its own child, on its own host."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class DirectLauncher:
    """Run the job as a child of the worker that claims it (the default).

    The worker holds the job's lock for the whole run and the runner dies with it
    (``spec/workspace.md``, "A worker's loop"). By default the worker forks the job from its warm
    runner (``xpmfs.zygote``), which has imported xpmfs and the task's modules already;
    ``isolate=True`` starts a fresh interpreter instead (``python <name>.py``), for tasks that
    change interpreter-wide state at import or need a clean process.
    """

    TYPE: ClassVar[str] = "direct"
    isolate: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``launcher`` record of ``spec.json``."""
        record: dict[str, Any] = {"type": self.TYPE}
        if self.isolate:
            record["isolate"] = True
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> DirectLauncher:
        """Read a ``launcher`` record; unknown keys are ignored (newer writers)."""
        return cls(isolate=bool(record.get("isolate", False)))
