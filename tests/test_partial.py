"""Partial identifiers and folders (experimaestro 2.7's ``param_group``/``partial``), and loading results back."""

from __future__ import annotations

from pathlib import Path

import pytest
from partial_tasks import Learn, Sub

from xpmfs import experiment
from xpmfs.identifier import IdentifierComputer
from xpmfs.partial import Partial, param_group, partial
from xpmfs.results import from_task_dir

# Computed by experimaestro 2.7.0 with the same classes (spec/identifiers.md, "Partial identifiers").
VECTORS = [
    (
        dict(max_iter=10, learning_rate=0.1, seed=3, x=2),
        "c4fc89e92bee0a812a07b8f4003e0d4d20132d86c0d499c1c1f3a6ed4d1f318e",
        {
            "checkpoints": "17d844ff6c47fa1a56399834a4873883ba123fbb429c5bc4961a60a06d411f5d",
            "only_lr": "0532a833380997be0fdf2b768c68ed66f3ba90af0c5370efab4b7407603121d5",
            "no_group": "6a5cde8c459f2c08b0955759f698a9031cd9c33d430cf10886bb4b788bdf2d75",
        },
    ),
    (
        dict(max_iter=20, learning_rate=0.1, seed=3, x=2),
        "9dd2499896445595dae5be310dd90728dd180f5c7a9b0968326a438c20faaf63",
        {
            "checkpoints": "17d844ff6c47fa1a56399834a4873883ba123fbb429c5bc4961a60a06d411f5d",
            "only_lr": "0532a833380997be0fdf2b768c68ed66f3ba90af0c5370efab4b7407603121d5",
            "no_group": "26e576cc7d2d04f85f837369e20dd7ddc53477fcff1c8888a9c4b3d10e4aac12",
        },
    ),
    (
        dict(max_iter=10, learning_rate=0.5, seed=3, x=5),
        "6235f92b70abb2c28736a6c1b37cd3c77a9aa971e17579ec1b6afc0913ad25d1",
        {
            "checkpoints": "c856a8f6ff20a569e036e222696504cabb9ece106e037006a34c577a923c7610",
            "only_lr": "f5167b6abf320d1a7c13b0ec86010194134ab2c08ef016b9e2c5d9408e5d8ef5",
            "no_group": "255f61e0a7f1a21e007b532a6270c6299ea658ac3ca39dadeee923275ee5713a",
        },
    ),
]


def _learn(max_iter: int, learning_rate: float, seed: int, x: int) -> Learn:
    return Learn.C(max_iter=max_iter, learning_rate=learning_rate, seed=seed, sub=Sub.C(x=x))


@pytest.mark.parametrize(("values", "full", "partials"), VECTORS)
def test_partial_identifiers_are_experimaestros(values: dict, full: str, partials: dict[str, str]) -> None:
    config = _learn(**values)
    assert config.__identifier__() == full
    for name, expected in partials.items():
        found = config.__xpm__.get_partial_identifier(getattr(Learn, name))
        assert found.all.hex() == expected == IdentifierComputer.compute_partial(config, getattr(Learn, name)).hex()


def test_partial_rules_and_names() -> None:
    a, b = param_group("a"), param_group("b")
    assert Learn.checkpoints.name == "checkpoints" and isinstance(Learn.checkpoints, Partial)
    rule = partial(exclude_groups=[a], include_groups=[b], exclude_no_group=True)
    assert rule.is_excluded({a}) and not rule.is_excluded({a, b}) and rule.is_excluded(set())
    assert partial(exclude_all=True).is_excluded({b}) and not partial().is_excluded({a})
    with pytest.raises(TypeError, match="param_group"):
        from xpmfs import field

        field(groups=["a"])


def test_tasks_differing_in_excluded_groups_share_the_partial_folder(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    with experiment(ws, "partials"):
        first = _learn(10, 0.1, 3, 2)
        second = _learn(20, 0.1, 3, 2)
        other = _learn(10, 0.5, 3, 5)
        for task in (first, second, other):
            task.submit()
    shared = ws / "partials" / "test.partial.learn" / "checkpoints" / VECTORS[0][2]["checkpoints"]
    assert first.path == second.path == shared / "ckpt"
    assert sorted(p.name for p in (shared / "ckpt").iterdir()) == ["10.txt", "20.txt"]
    assert other.path == ws / "partials" / "test.partial.learn" / "checkpoints" / VECTORS[2][2]["checkpoints"] / "ckpt"


def test_from_task_dir_loads_a_job_config_or_its_object(tmp_path: Path) -> None:
    with experiment(tmp_path / "ws", "load"):
        task = _learn(10, 0.1, 3, 2)
        task.submit()
    loaded = from_task_dir(task.jobpath)
    assert type(loaded) is Learn.C and loaded.__identifier__() == task.__identifier__()
    assert loaded.jobpath == task.jobpath and loaded.path == task.path
    obj = from_task_dir(task.jobpath, as_instance=True)
    assert type(obj) is Learn and obj.sub.x == 2 and obj.__taskdir__ == task.jobpath
    with pytest.raises(ValueError, match="is not a job folder"):
        from_task_dir(tmp_path)
