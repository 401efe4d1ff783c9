"""Tasks for tests/test_deprecated.py: ``Renamed`` is deprecated (in favour of ``Current``) by the test,
after its jobs ran; the job runners import this module as it is written, undeprecated."""

from __future__ import annotations

from xpmfs import Param, Task


class Current(Task):
    __xpmid__ = "xpmfs.tests.deprecated.current"
    x: Param[int]

    def execute(self) -> None:
        pass


class Renamed(Current):
    __xpmid__ = "xpmfs.tests.deprecated.renamed"
