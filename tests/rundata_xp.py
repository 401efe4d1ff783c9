"""An experiment that saves a configuration with ``xp.save``, for experimaestro 2.7 or xpmfs.

``XPM_LIB=experimaestro`` imports experimaestro (run in its side venv), anything else xpmfs. Usage:
``python rundata_xp.py WORKSPACE EXPERIMENT VALUE`` saves ``[Saved.C(value=VALUE)]`` as ``default``
(tests/test_rundata.py).
"""

from __future__ import annotations

import os
import sys
from typing import Any

OPTIONS: dict[str, Any]
if os.environ.get("XPM_LIB") == "experimaestro":
    from experimaestro import Config, Param, experiment

    OPTIONS = {"port": None}
else:
    from xpmfs import Config, Param, experiment

    OPTIONS = {"workers": 0}


class Saved(Config):
    value: Param[int]


if __name__ == "__main__":
    # The module's class, not __main__'s: saved as rundata_xp.Saved, which the tests import.
    from rundata_xp import Saved as Named

    with experiment(sys.argv[1], sys.argv[2], **OPTIONS) as xp:
        xp.save([Named.C(value=int(sys.argv[3]))])
