"""Crash-point injection, for the test suite only.

``XPMFS_CRASH_AT=<point>[@<n>][,<point>[@<n>]...]`` makes a process kill itself with SIGKILL the
``n``-th time (default: the first) it reaches a named step, so tests can prove that a crash
between any two writes leaves a workspace that a restart completes. Child processes inherit the
variable; each point is reached by one kind of process only (its prefix says which), so setting
it on a worker arms the worker's and its runners' points, not the experiment's.

Points, in the order a job meets them:

=========================  ==========  ===================================================
point                      process     reached
=========================  ==========  ===================================================
``submit.after-spec``      experiment  job folder in place (spec, status, script); no entry
``submit.after-status``    experiment  a failed job resubmitted: status reset (lock held); no entry
``submit.after-queue``     experiment  queue entry written; no journal line
``claim.after-lock``       worker      job lock taken; nothing written
``claim.after-spawn``      worker      runner started (it dies with the worker)
``start.after-running``    runner      ``running`` written; task not started
``complete.after-status``  runner      ``done``/``failed`` in status.json; no marker
``complete.after-marker``  runner      terminal marker written; queue entry still there
``retry.after-ready``      runner      a resumable timeout put the job back to ``ready``
``reap.after-failed``      worker      a dead runner's job recorded ``failed``; entry kept
=========================  ==========  ===================================================
"""

from __future__ import annotations

import os
import signal

ENV = "XPMFS_CRASH_AT"


def _parse(value: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, count = item.partition("@")
        armed[name] = int(count) if count else 1
    return armed


_armed = _parse(os.environ.get(ENV, ""))


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no clean-up at all) if the test suite armed this point."""
    if not _armed or name not in _armed:
        return
    _armed[name] -= 1
    if _armed[name] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
