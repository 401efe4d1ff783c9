"""Configurations saved by one tool and loaded by the other (tests/test_definition.py).

``XPM_LIB=experimaestro`` imports experimaestro (run in its side venv), anything else xpmfs.
With ``tests`` on ``PYTHONPATH``, ``python -m definition_pkg save FOLDER`` saves a configuration
tree (data paths, a list, a dict, a set, an enum, init tasks) with ``save`` and ``serialize``;
``python -m definition_pkg load FOLDER`` loads both back and prints what it found as one JSON line
(``RESULT {...}``). The classes live in a package: experimaestro cannot load its own saves of
classes from a script or a module outside any package (it executes the file again for each object).
"""

from __future__ import annotations

import enum
import os
from pathlib import Path

if os.environ.get("XPM_LIB") == "experimaestro":
    from experimaestro import (
        Config,
        DataPath,
        LightweightTask,
        Meta,
        Param,
        PathGenerator,
        PathSerializationLWTask,
        Task,
        deserialize,
        experiment,
        field,
        load,
        save,
        serialize,
    )
else:
    from xpmfs import (
        Config,
        DataPath,
        LightweightTask,
        Meta,
        Param,
        PathGenerator,
        PathSerializationLWTask,
        Task,
        deserialize,
        experiment,
        field,
        load,
        save,
        serialize,
    )

__all__ = ["deserialize", "experiment", "load", "save", "serialize"]


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Leaf(Config):
    __xpmid__ = "definition.leaf"
    n: Param[int]


class Model(Config):
    __xpmid__ = "definition.model"
    leaves: Param[list[Leaf]]
    named: Param[dict[str, Leaf]]
    kinds: Param[set[str]]
    color: Param[Color]
    rate: Param[float] = 0.5
    weights: DataPath
    note: Meta[str] = "meta"

    def __post_init__(self) -> None:
        self.loaded = False


class Warm(LightweightTask):
    __xpmid__ = "definition.warm"
    model: Param[Model]

    def execute(self) -> None:
        self.model.loaded = True


class LoadWeights(PathSerializationLWTask):
    __xpmid__ = "definition.loadweights"

    def execute(self) -> None:
        self.value.loaded = self.path.read_text()


def build(folder: Path) -> Model:
    weights = folder / "weights.bin"
    weights.write_text("w1")
    shared = Leaf.C(n=1)
    return Model.C(
        leaves=[shared, Leaf.C(n=2)], named={"first": shared}, kinds={"a"}, color=Color.BLUE, weights=weights
    )


def summary(model: object) -> dict[str, object]:
    return {
        "leaves": [leaf.n for leaf in model.leaves],  # type: ignore[attr-defined]
        "shared": model.leaves[0] is model.named["first"],  # type: ignore[attr-defined]
        "kinds": sorted(model.kinds),  # type: ignore[attr-defined]
        "color": model.color.name,  # type: ignore[attr-defined]
        "rate": model.rate,  # type: ignore[attr-defined]
        "weights": Path(model.weights).read_text(),  # type: ignore[attr-defined]
        "loaded": getattr(model, "loaded", None),
    }


class Scores(Config):
    """A nested configuration with a generated path: experimaestro puts it in <job>/out/scores/."""

    __xpmid__ = "definition.scores"
    leaf: Param[Leaf]
    path: Meta[Path] = field(default_factory=PathGenerator("scores.txt"))


class Train(Task):
    __xpmid__ = "definition.train"
    epochs: Param[int]
    scores: Param[Scores]
    model: Meta[Path] = field(default_factory=PathGenerator("model.txt"))

    def execute(self) -> None:
        self.model.write_text(f"trained {self.epochs}")
        self.scores.path.parent.mkdir(parents=True, exist_ok=True)
        self.scores.path.write_text(f"leaf {self.scores.leaf.n}")
