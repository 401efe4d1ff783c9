"""``python -m definition_pkg save|load FOLDER`` (see the package's docstring)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from definition_pkg import (
    Leaf,
    LoadWeights,
    Scores,
    Train,
    build,
    deserialize,
    experiment,
    load,
    save,
    serialize,
    summary,
)


def main(mode: str, folder: Path) -> dict[str, object]:
    if mode == "run":  # one job run for real in workspace ``folder``
        with experiment(folder, "definition") as xp:
            if os.environ.get("XPM_LIB") == "experimaestro":  # its jobs do not inherit PYTHONPATH
                xp.workspace.launcher.setenv("PYTHONPATH", str(Path(__file__).parents[1]))
                xp.workspace.launcher.setenv("XPM_LIB", "experimaestro")
            task = Train.C(epochs=3, scores=Scores.C(leaf=Leaf.C(n=7)))
            task.submit()
        return {"job": str(task.__xpm__.job.path), "scores": str(task.scores.path)}
    if mode == "save":
        model = build(folder)
        (folder / "saved").mkdir()
        save(model, folder / "saved")
        (folder / "serialized").mkdir()
        weights = folder / "more.bin"
        weights.write_text("w2")
        serialize(model, folder / "serialized", init_tasks=[LoadWeights.C(value=model, path=weights)])
        return {"identifier": model.__xpm__.identifier.all.hex()}
    loaded = load(folder / "saved")
    instance = load(folder / "saved", as_instance=True)
    config, init_tasks = deserialize(folder / "serialized")
    obj = deserialize(folder / "serialized", as_instance=True)
    return {
        "identifier": loaded.__xpm__.identifier.all.hex(),
        "config": summary(loaded),
        "instance": summary(instance),
        "init_tasks": [type(task).__name__ for task in init_tasks],
        "deserialized_identifier": config.__xpm__.identifier.all.hex(),
        "deserialized_instance": summary(obj),
    }


if __name__ == "__main__":
    logging.disable(logging.CRITICAL)
    print("RESULT " + json.dumps(main(sys.argv[1], Path(sys.argv[2]).absolute()), sort_keys=True))
