"""Saving and loading configurations in experimaestro 2.7's definition format (xpmfs.definition),
and loading a job folder's configuration back (from_task_dir), both ways with experimaestro.

``tests/definition_pkg`` runs with either library (``XPM_LIB=experimaestro`` in the side venv
``.bench/venv-experimaestro``); the tests that need experimaestro are skipped without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXPERIMAESTRO_PYTHON

from xpmfs import (
    Config,
    DataPath,
    Param,
    SerializationContext,
    Task,
    deserialize,
    field,
    from_state_dict,
    from_task_dir,
    load,
    save,
    sealed_set,
    serialize,
    state_dict,
)
from xpmfs.config import TaskStub
from xpmfs.definition import SerializationLWTask, from_parameters, load_objects
from xpmfs.errors import ConfigError

TESTS = Path(__file__).resolve().parent
needs_experimaestro = pytest.mark.usefixtures("experimaestro_python")  # installs it, or skips saying why
TRAIN_JOB = "definition.train/a357c7a04fcef9331d228fa203669e0dc28469fe633939cb35ce49579578e74d"  # experimaestro's


def _run(lib: str, *args: str) -> dict[str, object]:
    python = EXPERIMAESTRO_PYTHON if lib == "experimaestro" else Path(sys.executable)
    env = {**os.environ, "PYTHONPATH": str(TESTS), "XPM_LIB": lib}
    result = subprocess.run(
        [str(python), "-m", "definition_pkg", *args], capture_output=True, text=True, env=env, check=False, timeout=300
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-2000:] + result.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])  # type: ignore[no-any-return]


EXPECTED = {
    "color": "BLUE",
    "kinds": ["a"],
    "leaves": [1, 2],
    "rate": 0.5,
    "shared": True,
    "weights": "w1",
}


def _check_loaded(found: dict[str, object], identifier: object) -> None:
    assert found["identifier"] == found["deserialized_identifier"] == identifier
    assert found["config"] == {**EXPECTED, "loaded": None}
    assert found["instance"] == {**EXPECTED, "loaded": False}  # __post_init__ ran
    assert found["deserialized_instance"] == {**EXPECTED, "loaded": "w2"}  # the init task ran
    assert found["init_tasks"] == ["LoadWeights.XPMConfig"]


def test_xpmfs_loads_what_it_saved(tmp_path: Path) -> None:
    saved = _run("xpmfs", "save", str(tmp_path))
    _check_loaded(_run("xpmfs", "load", str(tmp_path)), saved["identifier"])


@needs_experimaestro
@pytest.mark.parametrize(("saver", "loader"), [("xpmfs", "experimaestro"), ("experimaestro", "xpmfs")])
def test_one_tool_loads_what_the_other_saved(tmp_path: Path, saver: str, loader: str) -> None:
    saved = _run(saver, "save", str(tmp_path))
    _check_loaded(_run(loader, "load", str(tmp_path)), saved["identifier"])


def _check_job(job: Path) -> None:
    config = from_task_dir(job)
    assert config.__identifier__() == job.name and config.jobpath == job
    assert config.epochs == 3 and config.scores.leaf.n == 7
    assert config.model == job / "model.txt" and config.model.read_text() == "trained 3"
    # The nested configuration's generated path, where experimaestro puts it: <job>/out/scores/.
    assert config.scores.path == job / "out" / "scores" / "scores.txt" and config.scores.path.read_text() == "leaf 7"
    obj = from_task_dir(job, as_instance=True)
    assert type(obj).__name__ == "Train" and obj.scores.path == config.scores.path and obj.__taskdir__ == job


@needs_experimaestro
def test_from_task_dir_reads_an_experimaestro_job_folder(tmp_path: Path) -> None:
    found = _run("experimaestro", "run", str(tmp_path / "ws"))
    job = tmp_path / "ws" / "jobs" / TRAIN_JOB
    assert found["job"] == str(job) and (job / "params.json").exists() and (job / "train.done").exists()
    sys.path.insert(0, str(TESTS))  # definition_pkg, as the job imported it
    try:
        _check_job(job)
    finally:
        sys.path.remove(str(TESTS))


def test_from_task_dir_reads_an_xpmfs_job_folder(tmp_path: Path) -> None:
    found = _run("xpmfs", "run", str(tmp_path / "ws"))
    job = tmp_path / "ws" / "jobs" / TRAIN_JOB  # the same identifier as experimaestro's
    assert found["job"] == str(job) and (job / "__xpm__" / "done").exists()
    sys.path.insert(0, str(TESTS))
    try:
        _check_job(job)
    finally:
        sys.path.remove(str(TESTS))


# -- in one process ---------------------------------------------------------------------------


class Object1(Config):
    pass


class Object2(Config):
    object: Param[Object1]


class WithData(Config):
    name: Param[str]
    data: DataPath


class Renamed(Config):
    data: DataPath

    def __xpm_serialize__(self, context: SerializationContext) -> dict[str, object]:
        return {"data": context.serialize([*context.var_path, "custom"], self.data, self)}


class Producer(Task):
    value: Param[int]


class Output(Config):
    name: Param[str]


class TaskUsing(Task):
    dep: Param[Object1]


def test_state_dict_keeps_sharing_and_builds_objects() -> None:
    obj1 = Object1.C()
    data = state_dict(SerializationContext(), [obj1, Object2.C(object=obj1)])
    assert data["data"] == [
        {"type": "python", "value": id(obj1)},
        {"type": "python", "value": data["objects"][-1]["id"]},
    ]
    one, two = from_state_dict(data)
    assert isinstance(one, Object1.C) and two.object is one and two.__xpm__.sealed
    one, two = from_state_dict(data, as_instance=True)
    assert type(one) is Object1 and type(two) is Object2 and two.object is one


def test_data_paths_are_copied_and_found_again(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("hello")
    (tmp_path / "saved").mkdir()
    save(WithData.C(name="n", data=tmp_path / "src.txt"), tmp_path / "saved")
    record = json.loads((tmp_path / "saved" / "experimaestro.json").read_text())["objects"][-1]
    assert record["fields"]["data"] == {"type": "path.serialized", "value": "data", "is_folder": False}
    assert (tmp_path / "saved" / "data").read_text() == "hello"
    assert load(tmp_path / "saved").data == tmp_path / "saved" / "data"
    (tmp_path / "custom").mkdir()
    save(Renamed.C(data=tmp_path / "src.txt"), tmp_path / "custom")
    assert (tmp_path / "custom" / "custom").read_text() == "hello"
    with pytest.raises(ValueError, match="Serialization path conflict"):
        context = SerializationContext(save_directory=tmp_path / "custom2")
        context.serialize(["x"], tmp_path / "src.txt", None)
        context.serialize(["x"], tmp_path / "src.txt", None)


def test_partial_loading_leaves_out_the_producing_task() -> None:
    task = Producer.C(value=1)
    output = Output.C(name="o")
    output.__xpm__.task = task
    identifier = output.__identifier__()
    data = state_dict(SerializationContext(), output)
    assert [r["type"] for r in data["objects"]] == ["Producer", "Output"]
    full = from_state_dict(data)
    assert isinstance(full.__xpm__.task, Producer.C) and full.__identifier__() == identifier
    partial = from_state_dict(data, partial_loading=True)
    stub = partial.__xpm__.task
    assert isinstance(stub, TaskStub) and partial.__identifier__() == identifier  # the saved identifier
    assert stub.identifier.all == task.__xpm__.digest() and stub.typename == "test_definition.Producer"
    # Hashed again, the stub counts as the task would: same identifier.
    again = from_parameters(data["objects"], as_instance=False, discard_id=True, partial_loading=True)
    assert isinstance(again.__xpm__.task, TaskStub) and again.__xpm__.identifier_cache is None
    assert again.__identifier__() == identifier


def test_partial_loading_gives_stubs_for_what_only_the_task_uses() -> None:
    dep = Object1.C()
    task = TaskUsing.C(dep=dep)
    output = Output.C(name="o")
    output.__xpm__.task = task
    shared = Object1.C()
    root = Object2.C(object=shared)
    root.__xpm__.task = task
    records = state_dict(SerializationContext(), [output, root])["objects"]
    by_type = {r["type"]: r["id"] for r in records}
    loaded = load_objects(records, as_instance=False, partial_loading=True)
    assert set(loaded) == {r["id"] for r in records}  # every saved object has an entry
    assert isinstance(loaded[by_type["TaskUsing"]], TaskStub)
    assert isinstance(loaded[by_type["Object2"]], Object2) and isinstance(loaded[records[0]["id"]], TaskStub)
    assert loaded[by_type["Object2"]].__xpm__.task == loaded[by_type["TaskUsing"]]


def test_a_producing_task_is_a_stub_even_when_loaded_for_another_reason() -> None:
    task = Producer.C(value=1)
    output = Output.C(name="o")
    output.__xpm__.task = task
    loaded_task, loaded_output = from_state_dict(
        state_dict(SerializationContext(), [task, output]), partial_loading=True
    )
    assert isinstance(loaded_task, Producer.C) and isinstance(loaded_output.__xpm__.task, TaskStub)


def test_a_stub_is_saved_back_and_reloads_without_its_class() -> None:
    output = Output.C(name="o")
    output.__xpm__.task = Producer.C(value=1)
    identifier = output.__identifier__()
    loaded = from_state_dict(state_dict(SerializationContext(), output), partial_loading=True)
    again = state_dict(SerializationContext(), loaded)
    stub_record = again["objects"][0]
    assert stub_record["stub"] is True and stub_record["fields"] == {}
    assert stub_record["identifier"] == loaded.__xpm__.task.identifier.hex()
    stub_record["module"] = "no_such_module"  # not imported: a stub record is never loaded as a class
    reloaded = from_state_dict(again, partial_loading=False)
    assert reloaded.__xpm__.task == loaded.__xpm__.task and reloaded.__identifier__() == identifier


class Bag(Config):
    items: Param[set[Object1 | Output]]


def test_a_set_of_configurations_reloads_with_its_identifier() -> None:
    # The set's members must be sealed before the set is built (they hash by identifier).
    bag = Bag.C(items=sealed_set(Output.C(name="a"), Output.C(name="b"), Object1.C()))
    identifier = bag.__identifier__()
    records = json.loads(bag.__xpm__.__json__())
    for discard_id in (False, True):
        loaded = from_parameters(records, as_instance=False, discard_id=discard_id)
        assert (loaded.__xpm__._identifier is None) == discard_id  # read back, or computed on first use
        assert loaded.__identifier__() == identifier and len(loaded.items) == 3
    assert from_state_dict(state_dict(SerializationContext(), bag)).__identifier__() == identifier


def test_get_objects_appends_what_the_context_has_not_written() -> None:
    # experimaestro's __xpm__.__get_objects__(objects, context), then fromParameters (as an object).
    shared = Object1.C()
    context = SerializationContext()
    objects = Object2.C(object=shared).__xpm__.__get_objects__([], context)
    assert [o["type"] for o in objects] == ["Object1", "Object2"]
    again = Object2.C(object=shared).__xpm__.__get_objects__(objects, context)
    assert again is objects and [o["type"] for o in objects] == ["Object1", "Object2", "Object2"]
    built = from_parameters(objects)
    assert type(built) is Object2 and type(built.object) is Object1


def test_serialize_and_deserialize_run_init_tasks(tmp_path: Path) -> None:
    model = Object2.C(object=Object1.C())
    (tmp_path / "out").mkdir()
    serialize(model, tmp_path / "out", init_tasks=[SerializationLWTask.C(value=model)])
    config, init_tasks = deserialize(tmp_path / "out")
    assert config.__identifier__() == model.__identifier__() and type(init_tasks[0]) is SerializationLWTask.C
    assert init_tasks[0].value is config


def test_the_lw_tasks_keep_experimaestros_type_ids() -> None:
    from xpmfs.config import typeid
    from xpmfs.definition import PathSerializationLWTask

    assert typeid(SerializationLWTask) == "experimaestro.core.serializers.serializationlwtask"
    assert typeid(PathSerializationLWTask) == "experimaestro.core.serializers.pathserializationlwtask"


def test_json_of_a_configuration_is_its_objects() -> None:
    config = Object2.C(object=Object1.C())
    objects = json.loads(config.__xpm__.__json__())
    assert [o["type"] for o in objects] == ["Object1", "Object2"]
    assert objects[-1]["identifier"] == config.__identifier__()


def test_a_missing_definition_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"definition\.json: cannot be read"):
        load(tmp_path)


class Grown(Config):
    """A class that gained ``added`` (a default factory) after ``kept`` was saved."""

    kept: Param[int]
    added: Param[list[str]] = field(default_factory=list)


def test_load_objects_and_from_parameters_as_experimaestro_names_them() -> None:
    from xpmfs.config import ConfigInfo

    model = Object2.C(object=Object1.C())
    identifier = model.__identifier__()
    objects = json.loads(model.__xpm__.__json__())
    loaded = ConfigInfo.load_objects(objects, as_instance=False)
    assert set(loaded) == {o["id"] for o in objects}
    root = loaded[objects[-1]["id"]]
    assert root.object is loaded[objects[0]["id"]] and root.__xpm__.identifier_cache == bytes.fromhex(identifier)
    again = ConfigInfo.fromParameters(objects, as_instance=False, discard_id=True)
    assert again.__xpm__.sealed and again.__xpm__.identifier_cache is None  # not read: computed again
    assert again.__identifier__() == identifier
    built = ConfigInfo.fromParameters(objects)
    assert type(built) is Object2 and type(built.object) is Object1


def test_a_field_added_since_saving_gets_its_default_on_loading() -> None:
    from xpmfs.config import ConfigInfo

    (record,) = json.loads(Grown.C(kept=1, added=["x"]).__xpm__.__json__())
    del record["fields"]["added"]
    (loaded,) = ConfigInfo.load_objects([record]).values()
    assert loaded.kept == 1 and loaded.added == []
