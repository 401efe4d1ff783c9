"""Jobs of deprecated configurations: find them, and link their folders under their new identifiers.

When a class is deprecated (``@deprecate``, or ``X.__xpmtype__.deprecate()``), the configurations
that use it get the identifier of their replacement, so a job that ran before is looked for under
another folder: ``jobs/<typeid>/<jobid>`` as its spec now hashes. experimaestro's
``fix_deprecated`` (``experimaestro deprecated list --fix``) links that new folder to the old one;
so does :func:`fix_deprecated` here (``xpmfs deprecated WS --fix``)::

    WS/jobs/<new typeid>/<new jobid> -> ../../<old typeid>/<old jobid>    (a relative symbolic link)

A submission of the new configuration then finds the job done. Only jobs that ended well are
linked: a link makes the old folder the new job's, and an unfinished or failed job there would be
run under a name its spec does not describe (the runner refuses that; see ``xpmfs.runner``). Nothing
in the old folder is changed, so experimaestro's own job folders in an adopted workspace are safe.
experimaestro's ``cleanup`` (moving each folder to its new name and rewriting its parameters) is
not offered: a spec is immutable, and the link gives the same result.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import catalog
from .errors import CorruptedError, OptionError
from .job import Job
from .queue import JobRef
from .rehash import rehash
from .status import State
from .trust import Trust
from .workspace import Workspace

Action = Literal["found", "linked", "linked-already", "conflict", "not-done", "unloadable"]
"""What became of one job:

- ``found``: its configuration now has another identifier, whose folder does not exist (without
  ``fix``: nothing done);
- ``linked``: the new folder was made, a link to the old one;
- ``linked-already``: the new folder exists and is (a link to) the old one;
- ``conflict``: the new folder exists and is another job: left alone;
- ``not-done``: not linked, because the job did not end well (re-run it under its new identifier);
- ``unloadable``: its configuration cannot be rebuilt here (its task cannot be imported, or its
  spec cannot be read or is not trusted), so its new identifier is unknown.
"""


@dataclass(frozen=True)
class Deprecated:
    """One job whose folder is not where its configuration now hashes (or that could not be told)."""

    old: JobRef
    new: JobRef | None  # None when ``unloadable``
    action: Action
    detail: str = ""

    def __str__(self) -> str:
        target = f" -> {self.new.relpath}" if self.new is not None else ""
        return f"{self.old.relpath}{target}: {self.action}" + (f" ({self.detail})" if self.detail else "")


def fix_deprecated(
    workpath: str | os.PathLike[str] | Workspace,
    fix: bool = False,
    cleanup: bool = False,
    *,
    trust_users: Iterable[str | int] = (),
) -> list[Deprecated]:
    """Every job of the workspace whose configuration now hashes elsewhere; with ``fix``, link it.

    experimaestro's ``fix_deprecated(workpath, fix, cleanup)``; ``cleanup`` (move the folders
    instead of linking them) is refused with an :class:`~xpmfs.errors.OptionError` (see the module).
    Loading a spec imports its task's modules (from the import path it recorded): specs that
    another user owns (unless in ``trust_users``, names or uids) are not loaded (``unloadable``), as
    ``xpmfs check`` does not load them.
    """
    if cleanup:
        raise OptionError(
            "fix_deprecated(cleanup=True)",
            "moving job folders to their new identifiers is not supported (a job's spec is immutable)",
            "use fix=True alone: the new folder is a link to the old one, which gives the same result",
        )
    ws = workpath if isinstance(workpath, Workspace) else Workspace.open(workpath)
    trust = Trust.of(trust_users)
    found: list[Deprecated] = []
    for ref in catalog.iter_refs(ws):
        job = Job(ws, ref)
        if os.path.islink(job.path):
            continue  # a link made by an earlier fix (or by experimaestro): not a job of its own
        outcome = _examine(job, trust)
        if outcome is None:
            continue
        new = outcome.new
        if new is not None:
            target = ws.job_path(new.typeid, new.jobid)
            if os.path.lexists(target):
                outcome = _existing(job, new, target)
            elif fix:
                outcome = _link(job, new)
        found.append(outcome)
    return found


def _examine(job: Job, trust: Trust) -> Deprecated | None:
    """``found`` when ``job``'s configuration hashes to another folder now; ``None`` when it does not."""
    try:
        spec, owner = job.read_owned_spec()
    except (CorruptedError, OSError) as error:
        return Deprecated(job.ref, None, "unloadable", str(error))
    refused = trust.refusal(job.spec_path, owner)
    if refused is not None:
        return Deprecated(job.ref, None, "unloadable", str(refused))
    new, why = rehash(spec)
    if new is None:
        return Deprecated(job.ref, None, "unloadable", why)
    if new == job.ref:
        return None
    return Deprecated(job.ref, new, "found")


def _link(job: Job, new: JobRef) -> Deprecated:
    """Make ``new``'s folder a link to ``job``'s, if the job ended well and the name is free."""
    target = job.workspace.job_path(new.typeid, new.jobid)
    if job.marker() is not State.DONE:
        return Deprecated(job.ref, new, "not-done", "only jobs that ended well are linked; re-run it")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Relative: the workspace can be moved or mounted elsewhere. A symbolic link is created
        # whole or not at all; a job folder made meanwhile under that name wins.
        os.symlink(os.path.relpath(job.path, target.parent), target)
    except FileExistsError:
        return _existing(job, new, target)
    return Deprecated(job.ref, new, "linked")


def _existing(job: Job, new: JobRef, target: Path) -> Deprecated:
    if os.path.realpath(target) == os.path.realpath(job.path):
        return Deprecated(job.ref, new, "linked-already")
    return Deprecated(job.ref, new, "conflict", f"{target} exists and is another job folder; left alone")


__all__ = ["Action", "Deprecated", "fix_deprecated"]
