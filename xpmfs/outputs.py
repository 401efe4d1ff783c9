"""Dynamic task outputs: ``register_task_output`` in a running task, ``watch_output`` in an experiment.

The running task appends one event per output to ``<job>/.experimaestro/task-outputs.jsonl``
(the path the seed documents; single writer: the task's process)::

    {"config": "<identifier of the configuration owning the method>", "method": "checkpoint",
     "kwargs": {"step": 10}, "time": 1764000000.0}

The experiment follows that file for every job it watches, rebuilds each output with
``method(dep, **kwargs)`` on its own copy of the configuration, and calls the watchers' callbacks
in one dedicated thread. Events already in the file when the experiment starts are replayed, each
once per experiment run, so a restarted experiment sees every output.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _atomic, journal
from .config import Config, OutputWatcher, ResumableTask, Task, set_output_handler
from .errors import ConfigError
from .job import Job

log = logging.getLogger("xpmfs.outputs")


def install_writer(job: Job, task: Task) -> None:
    """Send the running ``task``'s ``register_task_output`` calls to its job's journal.

    The journal is opened at the first call: most tasks register nothing, and every job runs this.
    """
    writer: journal.Journal | None = None

    def handle(owner: Config, method: str, kwargs: Mapping[str, Any]) -> None:
        nonlocal writer
        if not isinstance(task, ResumableTask):
            raise ConfigError(
                f"{type(task).__qualname__}.register_task_output",
                "only a ResumableTask may register dynamic outputs (they are replayed when it resumes)",
                f"derive {type(task).__qualname__} from ResumableTask instead of Task",
            )
        if writer is None:
            path = job.task_outputs_path
            try:
                path.parent.mkdir(exist_ok=True)
            except OSError as error:
                raise _atomic.write_error(path.parent, error) from error
            writer = journal.Journal(path)  # its appends name the file when they fail
        writer.append({"config": owner.__identifier__(), "method": method, "kwargs": dict(kwargs), "time": time.time()})

    set_output_handler(handle)


@dataclass
class _Followed:
    job: Job
    task: Task
    watchers: list[OutputWatcher]
    offset: int = 0


@dataclass
class OutputFollower:
    """Follows the task-outputs journals of watched jobs and runs callbacks in its own thread.

    :meth:`drain` is how ``experiment.wait()`` knows that no callback is pending: each call asks
    for a *round*, a run of passes begun after the call, until a pass finds nothing new. Events
    written before the call are then handled, and the callbacks they called have returned (with
    whatever they submitted in the experiment's jobs).
    """

    poll: float = 0.2
    _followed: list[_Followed] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _wake: threading.Event = field(default_factory=threading.Event)
    _rounds: threading.Condition = field(default_factory=threading.Condition)
    _asked: int = 0  # the last round drain() asked for
    _done: int = 0  # the last round the thread completed
    _stop: bool = False
    _thread: threading.Thread | None = None
    errors: list[BaseException] = field(default_factory=list)

    def follow(self, job: Job, task: Task) -> None:
        """Watch ``job`` for the outputs its task's watchers asked for."""
        watchers = list(task.__xpm__.output_watchers)
        if not watchers:
            return
        with self._lock:
            self._followed.append(_Followed(job, task, watchers))
        if self._thread is None:
            # A copied context: callbacks may submit tasks to this experiment.
            context = contextvars.copy_context()
            self._thread = threading.Thread(target=context.run, args=(self._run,), name="xpmfs-outputs", daemon=True)
            self._thread.start()
        self._wake.set()

    def drain(self) -> None:
        """Return once every event written before this call has been handled, and its callbacks
        have returned (call after the jobs ended)."""
        thread = self._thread
        if thread is None:
            return
        with self._rounds:
            self._asked += 1
            wanted = self._asked
            self._wake.set()
            while self._done < wanted and thread.is_alive():
                self._rounds.wait(0.5)

    def stop(self) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop:
            with self._rounds:
                # Every round asked for so far began before the passes below: they complete it.
                round_ = self._asked
                self._wake.clear()
            while self._pass():
                pass
            with self._rounds:
                self._done = round_
                self._rounds.notify_all()
            self._wake.wait(self.poll)

    def _pass(self) -> bool:
        """Handle what is new in every followed journal; return whether anything was."""
        with self._lock:
            followed = list(self._followed)
        progressed = False
        for item in followed:
            for offset, event in journal.read(item.job.task_outputs_path, offset=item.offset):
                item.offset = offset
                progressed = True
                self._handle(item, event)
        return progressed

    def _handle(self, item: _Followed, event: Mapping[str, Any]) -> None:
        for watcher in item.watchers:
            if watcher.method != event.get("method") or watcher.owner.__identifier__() != event.get("config"):
                continue
            try:
                output = watcher.output(item.task, event.get("kwargs") or {})
                watcher.callback(output)
            except Exception as error:  # a callback's bug must not stop the others
                log.exception("callback for %s.%s of %s failed", type(watcher.owner).__name__, watcher.method, item.job)
                self.errors.append(error)
