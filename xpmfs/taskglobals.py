"""The running task's globals, as experimaestro's ``taskglobals.Env`` gives them.

Inside a job, ``Env.instance()`` tells the task where it runs: ``wspath`` (the workspace folder),
``taskpath`` (the job folder) and ``current_task`` (the task object). The job runner sets them
before the init tasks run; elsewhere they are ``None``. Code written for experimaestro that reads
them works unchanged; xpmfs code can use ``self.__taskdir__`` and ``os.environ["XPMFS_JOB_DIR"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar


class Env:
    """The process's task globals: one instance, :meth:`instance`."""

    _instance: ClassVar[Env | None] = None

    def __init__(self) -> None:
        self.wspath: Path | None = None
        """The workspace folder of the running job."""
        self.taskpath: Path | None = None
        """The running job's folder."""
        self.current_task: Any = None
        """The task object being run (built from its configuration)."""
        self.slave = False
        """experimaestro's flag for a helper process of a task (it then reports no progress); xpmfs
        keeps it for code that sets or reads it, and does not act on it."""

    @staticmethod
    def instance() -> Env:
        """The process's :class:`Env`, made on first use."""
        if Env._instance is None:
            Env._instance = Env()
        return Env._instance


__all__ = ["Env"]
