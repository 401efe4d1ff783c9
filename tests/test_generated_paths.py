"""Generated paths go where experimaestro 2.7 puts them (spec/workspace.md, "Generated paths").

The vectors were computed by experimaestro 2.7.0 running ``tests/generated_paths_xp.py``; the
same script runs here with xpmfs, and again with experimaestro when its side venv is there
(``.bench/venv-experimaestro``, made by ``tools/compat/run --reference`` or tests/test_adopt.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xpmfs import Config, DirectoryContext, Meta, Param, PathGenerator, Task, field
from xpmfs.generators import ConfigWalkContext

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS / "generated_paths_xp.py"

_C = "jobs/gp.c/41ff9eb6a1c5d8c1e0a4c71db6905d0ca7be0ae78a24566ff8ad9b17ccc5ad55"
_PLAIN = "jobs/gp.plain/57a06bbd7aae006bb134a319755aeff7eedf35ea8b086bb38cc5b787a4bb016b"
_LOGGED = "jobs/gp.useslogged/9f50ff799122f5dee35e310a1bb42755af0f87b62a2ec9e4ce6ad6797e50093a"
_HOLDS = "jobs/gp.holds/c6dec5370646f5fcefeee1aa895ba398b6e6b2114cf5aa38d2a8b8991bdc3f6b"
_CONSUMER = "jobs/gp.consumer/91a4cff7a91d2cb0498c70bed189bfd6b3e4dacc9726661aa6d93e1f768c8f51"

# Computed by experimaestro 2.7.0 (XPM_LIB=experimaestro python tests/generated_paths_xp.py WS).
VECTORS = {
    "nested": "out/b/a/test.txt",
    "list": ["out/items/0/test.txt", "out/items/1/test.txt"],
    "dict": "out/d/k/test.txt",
    "dict_of_lists": "out/nested/x/0/test.txt",
    "task_own": "own",
    "shared_first_declared_wins": ["out/z/test.txt", "out/z/test.txt"],
    "job_nested": f"{_C}/out/b/a/test.txt",
    "job_init_task": [f"{_PLAIN}/out/__init_tasks__/0/init.bin", f"{_PLAIN}/out/__init_tasks__/0/a/test.txt"],
    "job_init_task_not_lightweight": [
        "jobs/gp.plain/89116331b4c8252b70ef9fb89d8353214427a31fd0efc42ffa552c62900b46c9/out/__init_tasks__/0/t.bin",
        "jobs/gp.plain/89116331b4c8252b70ef9fb89d8353214427a31fd0efc42ffa552c62900b46c9/out/__init_tasks__/1/a/test.txt",
    ],
    "job_partial": [
        "partials/gp.pt/cks/f39955e702edb7eadffe11598695e9e5c9633a38777bb8fb60838a9823c500ca/ck",
        "partials/gp.pa/cks/0c7e05ebc58e088d3e0290a08baabb88f4f75449d990c3a45f206f33c2cd9515/ck",
    ],
    "job_stdout_nested": f"{_LOGGED}/out/logged/useslogged.out",
    "job_task_output_in_consumer": f"{_CONSUMER}/out/a/test.txt",
    "job_unsubmitted_task_in_field": [f"{_HOLDS}/out/any/w.txt", f"{_HOLDS}/out/any/a/test.txt"],
}


def _run(python: Path, ws: Path, **env: str) -> dict[str, object]:
    environ = {**os.environ, **env}
    environ.pop("PYTHONPATH", None)
    result = subprocess.run(
        [str(python), str(SCRIPT), str(ws)], capture_output=True, text=True, env=environ, check=False, timeout=300
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stderr[-2000:]
    return json.loads(lines[-1][len("RESULT ") :])  # type: ignore[no-any-return]


def test_xpmfs_generates_paths_where_experimaestro_does(tmp_path: Path) -> None:
    assert _run(Path(sys.executable), tmp_path / "ws") == VECTORS


def test_the_vectors_are_experimaestros(tmp_path: Path, experimaestro_python: Path) -> None:
    assert _run(experimaestro_python, tmp_path / "ws", XPM_LIB="experimaestro") == VECTORS


class Leaf(Config):
    path: Meta[Path] = field(default_factory=PathGenerator("leaf"))


class Pair(Task):
    items: Param[tuple[Leaf, Leaf]]
    keyed: Param[dict[int, Leaf]]


def test_tuples_and_non_text_keys_take_their_index_and_key(tmp_path: Path) -> None:
    # experimaestro 2.7 fails on both (NotImplementedError, TypeError); xpmfs places them as a list
    # item and a dict value.
    obj = Pair.C(items=(Leaf.C(), Leaf.C()), keyed={3: Leaf.C()}).instance(DirectoryContext(tmp_path))
    assert [leaf.path for leaf in obj.items] == [tmp_path / "out/items/0/leaf", tmp_path / "out/items/1/leaf"]
    assert obj.keyed[3].path == tmp_path / "out/keyed/3/leaf"


_SEEN: list[Path] = []


def _name(context: ConfigWalkContext, config: object) -> str:
    _SEEN.append(context.currentpath())
    return "f"


class Here(Config):
    path: Meta[Path] = field(default_factory=PathGenerator(_name))


class Holder(Task):
    here: Param[Here]


def test_a_name_function_sees_the_nested_position(tmp_path: Path) -> None:
    seen = _SEEN
    seen.clear()
    obj = Holder.C(here=Here.C()).instance(DirectoryContext(tmp_path))
    assert seen == [tmp_path / "out" / "here"] and obj.here.path == tmp_path / "out/here/f"


def test_a_bare_walk_context_seals_a_tree_without_generated_paths() -> None:
    # experimaestro's test_identifier_loop seals with ConfigWalkContext(): no job folder then.
    class Plain(Config):
        x: Param[int]

    class Generates(Config):
        out: Meta[Path] = field(default_factory=PathGenerator("out.txt"))

    plain = Plain.C(x=1)
    plain.__xpm__.seal(ConfigWalkContext())
    assert plain.__xpm__.sealed and plain.__xpm__.jobpath is None
    with pytest.raises(NotImplementedError):  # as experimaestro: a generated path needs a job folder
        Generates.C().__xpm__.seal(ConfigWalkContext())
