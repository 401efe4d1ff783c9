"""Declaring, building, validating, sealing and submitting configurations (xpmfs.config)."""

from __future__ import annotations

import enum
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, TypeVar

import pytest

import xpmfs.config as config_module
from xpmfs.config import (
    Config,
    Constant,
    DependentMarker,
    LightweightTask,
    Meta,
    Option,
    Param,
    ResumableTask,
    SubmitHook,
    Task,
    dependencies,
    field,
    fields_of,
    reset_submit_handler,
    set_remaining_time_provider,
    set_submit_handler,
    setmeta,
    submit_hooks,
    tag,
    tags,
    task_outputs_of,
    typeid,
)
from xpmfs.errors import ConfigError, NoExperimentError, ReadOnlyError, SealedError
from xpmfs.generators import PathGenerator

# -- classes under test (module level: annotations are strings, some name later classes) -----


class ModelLearn(Task):
    epochs: Param[int] = 100
    """Number of passes over the data"""

    model: Param[Model]  # defined below: resolved on first use
    parameters: Meta[Path] = field(default_factory=PathGenerator("parameters.pth"))

    def execute(self) -> None:
        """Called when this task is run"""

    def describe(self) -> str:
        return f"learn {self.model.hidden} for {self.epochs}"


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


TaskT = TypeVar("TaskT", bound=Task)


class Model(Config):
    hidden: Param[int] = 3
    rate: Param[float] = 0.5
    name: Param[str] = "m"
    bias: Param[bool] = True
    color: Param[Color] = Color.RED
    data: Param[Path | None] = None


class Containers(Config):
    ints: Param[list[int]] = field(default_factory=list)
    scores: Param[dict[str, float]] = field(default_factory=dict)
    labels: Param[set[str]] = field(default_factory=set)
    pair: Param[tuple[int, str]] = (0, "")
    many: Param[tuple[float, ...]] = ()
    models: Param[list[Model]] = field(default_factory=list)
    maybe: Param[Model | None] = None
    either: Param[int | str] = 0
    anything: Param[Any] = None
    mode: Param[Literal["fast", "slow"]] = "fast"


class Versioned(Config):
    version: Constant[int] = 2
    x: Param[int] = 0


class Child(Model):
    hidden: Param[int] = 10  # re-declared
    rate = 0.25  # default overridden without the annotation
    extra: Param[str] = "e"


class WithOption(Config):
    verbose: Option[bool] = False


class Topics(Config):
    path: Meta[Path]


class Documents(Config):
    path: Meta[Path]


class Dataset(Config):
    topics: Param[Topics]
    documents: Param[Documents]


class RandomFold(Task):
    """The seed's task_outputs example."""

    dataset: Param[Dataset]
    topics: Param[Path] = field(default_factory=PathGenerator("topics.tsv"))

    def task_outputs(self, dep: DependentMarker) -> Dataset:
        return dep(Dataset.C(topics=dep(Topics.C(path=self.topics)), documents=self.dataset.documents))


class UseDataset(Task):
    dataset: Param[Dataset]


class ModelLoader(LightweightTask):
    path: Meta[Path]
    model: Param[Model]

    def execute(self) -> None:
        pass


class Learner(Task):
    model: Param[Model]

    def task_outputs(self, dep: DependentMarker) -> ModelLoader:
        return dep(ModelLoader.C(model=self.model, path=Path("/learned")))


class Evaluate(Task):
    model: Param[Model]
    other: Param[Task | None] = None


class Learners(Task):
    many: Param[list[Learner]]
    named: Param[dict[str, Learner]] = field(default_factory=dict)


class UsesLoader(Task):
    loader: Param[ModelLoader]


class HoldsAnything(Task):
    value: Param[Config]


class Long(ResumableTask):
    epochs: Param[int] = 1000


# -- construction ---------------------------------------------------------------------------


def test_C_returns_an_instance_with_methods_and_defaults() -> None:
    learn = ModelLearn.C(model=Model.C(hidden=4))
    assert isinstance(learn, ModelLearn) and isinstance(learn, Task)
    assert learn.epochs == 100 and learn.model.hidden == 4
    assert learn.describe() == "learn 4 for 100"
    assert ModelLearn.epochs == 100  # the class attribute still reads the default
    assert learn.jobpath is None and learn.__taskdir__ is None


def test_values_are_validated_and_normalised() -> None:
    model = Model.C(rate=1, data="/data/x", color=Color.BLUE)
    assert model.rate == 1.0 and type(model.rate) is float
    assert model.data == Path("/data/x")
    boxes = Containers.C(ints=[1, 2], labels={"a"}, pair=[1, "x"], many=[1, 2.5], either="s", mode="slow")
    assert boxes.ints == [1, 2] and boxes.labels == {"a"} and boxes.pair == (1, "x") and boxes.many == (1.0, 2.5)
    assert boxes.either == "s" and boxes.mode == "slow"
    assert Containers.C(either=3.0).either == 3  # an integral float is an int, as in experimaestro


@pytest.mark.parametrize(
    ("hint", "given", "stored"),
    [
        (int, True, 1),
        (int, 1.0, 1),
        (int, " 5 ", 5),
        (int, "5.0", 5),
        (int, b"5", 5),
        (float, 1, 1.0),
        (float, True, 1.0),
        (float, "1.5", 1.5),
        (bool, 1, True),
        (bool, 0.0, False),
        (bool, "false", False),
        (bool, "Yes", True),
        (list[int], [1.0, "2"], [1, 2]),
        (set[int], {"1"}, {1}),
        (dict[str, int], {"a": "2"}, {"a": 2}),
        (tuple[int, str], ["1", "a"], (1, "a")),
        (float | int, 1, 1.0),  # left to right: the first option that accepts the value wins
        (int | str, "1", 1),
        (bool | int, 2, 2),
    ],
)
def test_values_are_coerced_as_experimaestro_does(hint: Any, given: Any, stored: Any) -> None:
    holder = type("Holder", (Config,), {"__annotations__": {"x": Param[hint]}})  # a hint from a variable
    value = holder.C(x=given).x
    assert value == stored and type(value) is type(stored)


def test_given_lists_are_copied() -> None:
    ints = [1, 2]
    boxes = Containers.C(ints=ints)
    ints.append(3)
    assert boxes.ints == [1, 2]


@pytest.mark.parametrize(
    ("cls", "name", "value", "expected", "given"),
    [
        (Model, "hidden", "3.5", "expected int", "'3.5' (str)"),
        (Model, "hidden", [1], "expected int", "[1] (list)"),
        (Model, "hidden", 2.5, "expected int", "2.5 (float)"),
        (Model, "rate", "x", "expected float", "'x' (str)"),
        (Model, "rate", None, "expected float", "None (NoneType)"),
        (Model, "name", 3, "expected str", "3 (int)"),
        (Model, "bias", 2, "expected bool", "2 (int)"),
        (Containers, "ints", (1, 2), "expected list[int]", "(1, 2) (tuple)"),
        (Containers, "labels", ["a"], "expected set[str]", "['a'] (list)"),
        (Model, "color", "red", "expected Color (one of Color.RED, Color.BLUE)", "'red' (str)"),
        (Model, "data", 3, "expected Path | None", "3 (int)"),
        (ModelLearn, "model", Containers.C(), "expected Model", "Containers.C("),
        (Containers, "ints", "12", "expected list[int]", "'12' (str)"),
        (Containers, "scores", [1], "expected dict[str, float]", "[1] (list)"),
        (Containers, "pair", (1, 2, 3), "expected tuple[int, str] (2 items)", "3 items"),
        (Containers, "either", None, "expected int | str", "None (NoneType)"),
        (Containers, "mode", "medium", "expected Literal['fast', 'slow']", "'medium' (str)"),
    ],
)
def test_wrong_types_are_refused_naming_field_expected_and_given(cls, name, value, expected, given) -> None:
    with pytest.raises(ConfigError) as caught:
        cls.C(**{name: value})
    message = str(caught.value)
    assert message.startswith(f"{cls.__qualname__}.{name}"), message
    assert expected in message and given in message, message


def test_nested_element_errors_name_the_position() -> None:
    with pytest.raises(ConfigError, match=r"^Containers\.ints\[1\]: expected int, got 'x' \(str\)"):
        Containers.C(ints=[1, "x"])
    with pytest.raises(ConfigError, match=r"^Containers\.scores\['a'\]: expected float, got None"):
        Containers.C(scores={"a": None})
    with pytest.raises(ConfigError, match=r"^Containers\.models\[0\]: expected Model, got 3 \(int\)"):
        Containers.C(models=[3])


def test_assignment_is_validated_like_construction() -> None:
    model = Model.C()
    model.hidden = 5
    assert model.hidden == 5
    with pytest.raises(ConfigError, match=r"^Model\.hidden: expected int, got 'many' \(str\)"):
        model.hidden = "many"
    assert model.hidden == 5
    model.not_a_field = "free"  # ordinary attributes stay ordinary
    assert model.not_a_field == "free"


def test_unknown_keyword_is_refused_at_C() -> None:
    with pytest.raises(ConfigError) as caught:
        Model.C(hiden=3)
    assert str(caught.value).startswith("Model.hiden: unknown parameter")
    assert "did you mean hidden? known parameters: bias, color, data, hidden, name, rate" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Model.C(zzz=3)
    assert str(caught.value).endswith("unknown parameter; known parameters: bias, color, data, hidden, name, rate")


def test_missing_required_parameter_is_reported_when_validated() -> None:
    learn = ModelLearn.C()  # fields may be set after C(): no error yet
    with pytest.raises(ConfigError, match=r"^ModelLearn\.model: required parameter is not set"):
        learn.__xpm__.validate()
    with pytest.raises(AttributeError, match=r"ModelLearn\.model is not set"):
        _ = learn.model
    learn.model = Model.C()
    learn.__xpm__.validate()


def test_missing_nested_parameter_names_the_path() -> None:
    use = UseDataset.C(dataset=Dataset.C(topics=Topics.C(), documents=Documents.C(path="/d")))
    with pytest.raises(
        ConfigError,
        match=r"^Topics\.path: required parameter is not set \(reached through UseDataset\.dataset\.topics\)",
    ):
        use.__xpm__.seal()
    assert not use.__xpm__.sealed


def test_constants_cannot_be_overridden() -> None:
    assert Versioned.C().version == 2
    assert Versioned.C(version=2).version == 2  # the same value is harmless
    with pytest.raises(ConfigError, match=r"^Versioned\.version: is a constant \(2\) and cannot be set to 3"):
        Versioned.C(version=3)
    config = Versioned.C()
    with pytest.raises(ConfigError, match=r"^Versioned\.version: is a constant"):
        config.version = 3


def test_generated_fields_cannot_be_set() -> None:
    with pytest.raises(
        ConfigError, match=r"^ModelLearn\.parameters: is generated \(PathGenerator\('parameters.pth'\)\)"
    ):
        ModelLearn.C(model=Model.C(), parameters="/elsewhere")
    # Read before the task is submitted: None, as in experimaestro (the path does not exist yet).
    assert ModelLearn.C().parameters is None


def test_mutable_defaults_are_per_instance() -> None:
    first, second = Containers.C(), Containers.C()
    first.ints.append(1)
    first.scores["a"] = 1.0
    assert second.ints == [] and second.scores == {}


class ListDefault(Config):
    xs: Param[list[int]] = [1, 2]


def test_list_default_is_copied() -> None:
    first = ListDefault.C()
    first.xs.append(3)
    assert ListDefault.C().xs == [1, 2]


def test_inheritance_keeps_fields_and_overrides_defaults() -> None:
    child = Child.C()
    assert isinstance(child, Model)
    assert (child.hidden, child.rate, child.name, child.extra) == (10, 0.25, "m", "e")
    assert Model.C().hidden == 3 and Model.C().rate == 0.5
    assert set(fields_of(Child)) == {"hidden", "rate", "name", "bias", "color", "data", "extra"}


def test_option_is_meta() -> None:
    assert WithOption.C(verbose=True).__identifier__() == WithOption.C().__identifier__()


def test_field_help_comes_from_the_docstring_after_it() -> None:
    fields = fields_of(ModelLearn)
    assert fields["epochs"].help == "Number of passes over the data"
    assert fields["model"].help is None


def test_field_help_tolerates_classes_without_source() -> None:
    dynamic = type("Dynamic", (Config,), {"__module__": __name__, "__annotations__": {"x": Param[int]}})
    assert fields_of(dynamic)["x"].help is None
    assert dynamic.C(x=1).x == 1


def test_type_id_is_module_and_qualname_lower_cased() -> None:
    assert typeid(ModelLearn) == f"{__name__}.modellearn".lower()
    assert typeid(ModelLearn.C()) == typeid(ModelLearn)


class BadDefault(Config):
    x: Param[int] = "three"


class Unresolvable(Config):
    x: Param[DefinedNowhere]  # noqa: F821 - the point of the test


class Unsupported(Config):
    x: Param[lambda: 1]  # not a type: the point of the test


class NoConstant(Config):
    v: Constant[int]


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (BadDefault, r"^BadDefault\.x \(default\): expected int, got 'three' \(str\); fix the default"),
        (Unresolvable, r"^Unresolvable\.x: cannot resolve the annotation 'Param\[DefinedNowhere\]'"),
        (Unsupported, r"^Unsupported\.x: cannot use .* as a field type"),
        (NoConstant, r"^NoConstant\.v: a Constant needs a value"),
    ],
)
def test_bad_declarations_are_reported_on_first_use(cls, message) -> None:
    with pytest.raises(ConfigError, match=message):
        cls.C()


def test_field_arguments_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"^field\(\): default and default_factory exclude each other"):
        field(default=1, default_factory=list)
    with pytest.raises(
        ConfigError, match=r"^field\(\): with default=\.\.\. or default_factory=\.\.\., ignore_default must be"
    ):
        field(default=1, ignore_default=2)


def test_configs_pickle_and_keep_their_identifier() -> None:
    learn = ModelLearn.C(model=Model.C(hidden=4), epochs=tag(3))
    copy = pickle.loads(pickle.dumps(learn))
    assert copy.__identifier__() == learn.__identifier__()
    assert tags(copy) == {"epochs": 3}


# -- tags -----------------------------------------------------------------------------------


def test_tags_are_collected_from_the_whole_tree() -> None:
    model = Model.C(hidden=tag(8))
    learn = ModelLearn.C(model=model, epochs=tag(5))
    learn.tag("run", "a")
    assert learn.epochs == 5
    assert tags(learn) == {"hidden": 8, "epochs": 5, "run": "a"}
    assert learn.__tags__ == tags(learn)
    assert tags(model) == {"hidden": 8}


def test_outer_tags_override_inner_ones() -> None:
    learn = ModelLearn.C(model=Model.C(hidden=tag(8))).tag("hidden", "outer")
    assert tags(learn) == {"hidden": "outer"}


def test_tags_of_a_producing_task_reach_its_outputs() -> None:
    learner = Learner.C(model=Model.C(hidden=tag(8)))
    loader = task_outputs_of(learner)
    assert tags(Evaluate.C(model=loader.model)) == {"hidden": 8}
    assert tags(loader) == {"hidden": 8}


# -- sealing --------------------------------------------------------------------------------


class Inner(Config):
    out: Meta[Path] = field(default_factory=PathGenerator("inner.bin"))


class Outer(Task):
    inner: Param[Inner]
    shared: Param[Inner | None] = None
    out: Meta[Path] = field(default_factory=PathGenerator("out/main.bin"))


def test_seal_generates_paths_and_freezes_the_tree(tmp_path: Path) -> None:
    already = Inner.C()
    already.__xpm__.seal()  # sealed without a job directory: nothing generated
    task = Outer.C(inner=Inner.C(), shared=already)
    task.__xpm__.seal(tmp_path / "job")
    assert task.out == tmp_path / "job" / "out" / "main.bin"
    assert task.inner.out == tmp_path / "job" / "out" / "inner" / "inner.bin"  # experimaestro's layout
    assert "out" not in task.shared.__xpm__.values  # sealed before: kept as it was
    assert task.jobpath == task.__taskdir__ == task.__maintaskdir__ == tmp_path / "job"
    assert task.inner.__maintaskdir__ == tmp_path / "job"
    for config in (task, task.inner):
        assert config.__xpm__.sealed
    with pytest.raises(SealedError, match=r"^Outer\.shared: the configuration is sealed"):
        task.shared = None
    with pytest.raises(SealedError, match=r"^Inner\.out: the configuration is sealed"):
        del task.inner.out


def test_a_configuration_with_another_jobs_paths_is_refused(tmp_path: Path) -> None:
    earlier = Inner.C()
    earlier.__xpm__.seal(tmp_path / "earlier")  # its `out` points into that job's folder
    with pytest.raises(ReadOnlyError, match=r"^Outer\.shared: .*generated for another job \(shared\.out\)"):
        Outer.C(inner=Inner.C(), shared=earlier)
    with pytest.raises(AttributeError):  # experimaestro's exception
        Outer.C(inner=earlier)
    # Built before `earlier` was sealed: refused when the task is sealed.
    fresh = Inner.C()
    task = Outer.C(inner=Inner.C(), shared=fresh)
    fresh.__xpm__.seal(tmp_path / "other")
    with pytest.raises(ReadOnlyError, match=r"^Outer\.shared: holds paths generated for another job"):
        task.__xpm__.seal(tmp_path / "job")


def test_ignore_generated_accepts_another_jobs_paths(tmp_path: Path) -> None:
    class Loader(Config):
        inner: Param[Inner] = field(ignore_generated=True)

    earlier = Inner.C()
    earlier.__xpm__.seal(tmp_path / "earlier")
    loader = Loader.C(inner=earlier)
    loader.__xpm__.seal(tmp_path / "job")
    assert loader.inner.out == tmp_path / "earlier" / "inner.bin"


def test_seal_without_a_job_directory_generates_nothing() -> None:
    task = Outer.C(inner=Inner.C())
    task.__xpm__.seal()
    assert task.__xpm__.sealed and "out" not in task.__xpm__.values


def test_set_jobpath_sets_the_main_task_directory(tmp_path: Path) -> None:
    task = Outer.C(inner=Inner.C())
    task.__xpm__.set_jobpath(tmp_path)
    assert task.jobpath == tmp_path and task.inner.__maintaskdir__ == tmp_path and task.inner.jobpath is None


# -- task outputs and dependencies ----------------------------------------------------------


def make_fold(tmp_path: Path) -> RandomFold:
    fold = RandomFold.C(dataset=Dataset.C(topics=Topics.C(path="/t"), documents=Documents.C(path="/d")))
    fold.__xpm__.seal(tmp_path / "fold")
    return fold


def test_dep_marks_outputs_as_the_seed_describes(tmp_path: Path) -> None:
    fold = make_fold(tmp_path)
    output = task_outputs_of(fold)
    assert isinstance(output, Dataset) and output.__xpm__.task is fold
    assert output.topics.__xpm__.task is fold and output.topics.path == tmp_path / "fold" / "topics.tsv"
    assert output.documents is fold.dataset.documents and output.documents.__xpm__.task is None


def test_dependencies_come_only_from_marked_outputs(tmp_path: Path) -> None:
    fold = make_fold(tmp_path)
    output = task_outputs_of(fold)
    assert dependencies(UseDataset.C(dataset=output)) == [fold]
    # Only the documents (not marked): no dependency, as the seed explains.
    unmarked = Dataset.C(topics=Topics.C(path="/x"), documents=output.documents)
    assert dependencies(UseDataset.C(dataset=unmarked)) == []


def submitted(task: TaskT) -> TaskT:
    """``task`` as its submission leaves it for the configuration layer: with a job."""
    task.__xpm__.job = object()
    return task


def test_a_task_used_as_a_value_is_a_dependency() -> None:
    other = submitted(Learner.C(model=Model.C()))
    evaluate = Evaluate.C(model=Model.C(), other=other)
    assert dependencies(evaluate) == [other]
    assert dependencies(other) == []


def test_a_task_given_as_a_value_must_be_submitted_first() -> None:
    # As experimaestro ("The value must be submitted before giving it"): wherever the field's type
    # is a task class, in a union, a list or a dict too. The job would wait for a job that does
    # not exist. A sealed task (loaded from its folder) stands for a job already made.
    refusal = r"the Learner task given is not submitted: the job that uses it would wait for a job that does not exist"
    with pytest.raises(ConfigError, match=rf"^Evaluate\.other: {refusal} \(parameter 'other', set at .*\); submit it"):
        Evaluate.C(model=Model.C(), other=Learner.C(model=Model.C()))
    with pytest.raises(ConfigError, match=rf"^Learners\.many\[1\]: {refusal}"):
        Learners.C(many=[submitted(Learner.C(model=Model.C())), Learner.C(model=Model.C())])
    with pytest.raises(ConfigError, match=rf"^Learners\.named\['b'\]: {refusal}"):
        Learners.C(many=[], named={"b": Learner.C(model=Model.C())})
    evaluate = Evaluate.C(model=Model.C())
    with pytest.raises(ConfigError, match=rf"^Evaluate\.other: {refusal}"):
        evaluate.other = Learner.C(model=Model.C())
    assert evaluate.other is None
    loaded = Learner.C(model=Model.C())
    loaded.__xpm__.seal()
    assert Evaluate.C(model=Model.C(), other=loaded).other is loaded


def test_a_task_not_submitted_in_a_configuration_field_is_a_plain_configuration() -> None:
    # As experimaestro: where the field's type is not a task class, a task never submitted is
    # accepted; it has no job to wait for, so it is no dependency, but what it uses is.
    producer = submitted(Learner.C(model=Model.C()))
    inner = Evaluate.C(model=Model.C(), other=producer)
    holder = HoldsAnything.C(value=inner)
    assert dependencies(holder) == [producer]
    assert dependencies(HoldsAnything.C(value=Evaluate.C(model=Model.C()))) == []


def test_init_tasks_bring_their_dependencies() -> None:
    learner = Learner.C(model=Model.C())
    loader = task_outputs_of(learner)
    evaluate = Evaluate.C(model=loader.model)
    assert dependencies(evaluate) == []
    assert dependencies(evaluate, [loader]) == [learner]
    evaluate.__xpm__.set_init_tasks([loader])
    assert dependencies(evaluate) == [learner]


def test_a_task_is_its_own_output_and_never_its_own_dependency() -> None:
    learn = ModelLearn.C(model=Model.C())
    assert task_outputs_of(learn) is learn
    assert learn.__xpm__.task is None
    assert dependencies(learn) == []


def test_dep_refusals(tmp_path: Path) -> None:
    learner = Learner.C(model=Model.C())
    dep = DependentMarker(learner)
    with pytest.raises(ConfigError, match=r"^Learner\.task_outputs: dep\(\) takes a configuration, got 3"):
        dep(3)
    with pytest.raises(ConfigError, match=r"^Learner\.task_outputs: dep\(\) cannot mark another task \(Evaluate\)"):
        dep(Evaluate.C(model=Model.C()))
    taken = DependentMarker(Learner.C(model=Model.C()))(Model.C())
    with pytest.raises(ConfigError, match=r"^Learner\.task_outputs: Model is already an output of Learner"):
        dep(taken)
    sealed = Model.C()
    sealed.__xpm__.seal()
    with pytest.raises(SealedError, match=r"^Learner\.task_outputs: Model is sealed"):
        dep(sealed)


# -- submission -----------------------------------------------------------------------------


def test_submit_without_an_experiment_says_how_to_start_one() -> None:
    with pytest.raises(NoExperimentError) as caught:
        ModelLearn.C(model=Model.C()).submit()
    assert str(caught.value) == (
        "ModelLearn.submit() needs a running experiment; call it inside `with experiment(workspace, name):`"
    )


def test_submit_calls_the_handler_with_init_tasks_already_in_place() -> None:
    calls: list[tuple[Any, ...]] = []

    def handler(task: Task, *, init_tasks: list, launcher: Any, max_retries: int | None, **options: Any) -> Any:
        # The identifier computed here must already include the init tasks.
        calls.append((task, task.__identifier__(), list(init_tasks), launcher, max_retries, options))
        return task_outputs_of(task)

    model = Model.C()
    loader = ModelLoader.C(model=model, path="/p")
    plain_id = Evaluate.C(model=model).__identifier__()
    token = set_submit_handler(handler)
    try:
        evaluate = Evaluate.C(model=model)
        result = evaluate.submit(init_tasks=[loader], launcher="L", max_retries=5, priority=1)
    finally:
        reset_submit_handler(token)
    assert result is evaluate
    [(task, identifier, init_tasks, launcher, retries, options)] = calls
    assert task is evaluate and init_tasks == [loader] and launcher == "L" and retries == 5
    assert options == {"priority": 1}
    assert identifier == evaluate.__identifier__() != plain_id
    with pytest.raises(NoExperimentError):
        evaluate.submit()  # the handler is gone after reset


def test_init_tasks_are_configurations() -> None:
    # experimaestro accepts any configuration (a Task, a plain Config with execute()); not other values.
    token = set_submit_handler(lambda task, **kwargs: task)
    try:
        with pytest.raises(
            ConfigError, match=r"^Evaluate\.submit\(init_tasks\[0\]\): expected a configuration, got 42"
        ):
            Evaluate.C(model=Model.C()).submit(init_tasks=[42])
        model, learn = Model.C(), ModelLearn.C(model=Model.C())
        evaluate = Evaluate.C(model=model).submit(init_tasks=[model, learn])
    finally:
        reset_submit_handler(token)
    assert evaluate.__xpm__.init_tasks == (model, learn)


def test_an_init_task_that_is_a_task_is_a_dependency_once_submitted() -> None:
    # As experimaestro: a submitted task given as init task makes the job wait for its job; one not
    # submitted only runs inside this job, so what it uses counts instead.
    learner = Learner.C(model=Model.C())
    loader = task_outputs_of(learner)  # a ModelLoader, output of learner
    evaluate = Evaluate.C(model=Model.C())
    unsubmitted = UseDataset.C(dataset=Dataset.C(topics=Topics.C(path="/t"), documents=Documents.C(path="/d")))
    assert dependencies(evaluate, [unsubmitted]) == []
    assert dependencies(evaluate, [loader]) == [learner]
    assert dependencies(evaluate, [learner]) == []
    learner.__xpm__.job = object()  # what the experiment sets on submission
    assert dependencies(evaluate, [learner]) == [learner]
    assert dependencies(evaluate, [Evaluate.C(model=Model.C(), other=learner)]) == [learner]


def test_sealed_task_keeps_its_init_tasks() -> None:
    model = Model.C()
    evaluate = Evaluate.C(model=model)
    evaluate.__xpm__.seal()
    evaluate.__xpm__.set_init_tasks([])  # unchanged: fine
    with pytest.raises(SealedError, match=r"^Evaluate\.submit\(\): the task was submitted with other init tasks"):
        evaluate.__xpm__.set_init_tasks([ModelLoader.C(model=model, path="/p")])


# -- resumable tasks ------------------------------------------------------------------------


def test_remaining_time_defaults_to_none_and_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Long.C().remaining_time() is None
    asked: list[int] = []

    def provider() -> float:
        asked.append(1)
        return 600.0

    clock = [1000.0]
    monkeypatch.setattr(config_module.time, "monotonic", lambda: clock[0])
    set_remaining_time_provider(provider)
    try:
        task = Long.C()
        assert task.remaining_time() == 600.0
        clock[0] += 2.0
        assert task.remaining_time() == 598.0  # cached, and still counting down
        assert len(asked) == 1
        clock[0] += 10.0
        assert task.remaining_time() == 600.0  # stale: asked again
        assert len(asked) == 2
    finally:
        set_remaining_time_provider(None)
    assert Long.C().remaining_time() is None


# -- submit hooks ---------------------------------------------------------------------------


class needs_java(SubmitHook):  # the seed's spelling
    def __init__(self, version: int) -> None:
        self.version = version

    def spec(self) -> int:
        return self.version

    def process(self, job: Any, launcher: Any) -> None:
        job.environ["JAVA_HOME"] = f"/java/{self.version}"


@needs_java(11)
class IndexCollection(Config):
    pass


@needs_java(11)
@needs_java(17)
class Indexer(Task):
    index: Param[IndexCollection]
    other: Param[Task | None] = None


@needs_java(8)
class OtherJava(Task):
    pass


def test_submit_hooks_are_collected_once_per_spec() -> None:
    assert IndexCollection.__xpm_hooks__ == (needs_java(11),)
    task = Indexer.C(index=IndexCollection.C(), other=submitted(OtherJava.C()))
    hooks = submit_hooks(task)
    # 11 once; OtherJava's too, as experimaestro gathers the hooks of a task given as a value
    # (side by side with experimaestro 2.7.0: a submitted task's hook applies to the job using it).
    assert sorted(hook.spec() for hook in hooks) == [8, 11, 17]

    jobs = [SimpleNamespace(environ={}) for _ in hooks]
    for hook, job in zip(hooks, jobs, strict=True):
        hook.process(job, None)
    assert sorted(job.environ["JAVA_HOME"] for job in jobs) == ["/java/11", "/java/17", "/java/8"]


@needs_java(8)
class JavaLearner(Learner):
    pass


def test_submit_hooks_do_not_come_from_the_task_an_output_comes_from() -> None:
    learner = submitted(JavaLearner.C(model=Model.C()))
    loader = task_outputs_of(learner)  # a ModelLoader, output of learner
    assert [hook.spec() for hook in submit_hooks(UsesLoader.C(loader=loader))] == []
    assert [hook.spec() for hook in submit_hooks(Evaluate.C(model=Model.C(), other=learner))] == [8]
    # What a task uses comes first: its own hooks apply last (11 is IndexCollection's already).
    task = Indexer.C(index=IndexCollection.C(), other=submitted(OtherJava.C()))
    assert [hook.spec() for hook in submit_hooks(task)] == [8, 11, 17]
    assert [hook.spec() for hook in submit_hooks(Indexer.C(index=IndexCollection.C()))] == [11, 17]


def test_submit_hook_decorates_only_configs() -> None:
    with pytest.raises(ConfigError, match=r"^needs_java: decorates Config classes"):
        needs_java(1)(dict)


def test_setmeta_refuses_sealed_configs() -> None:
    model = Model.C()
    model.__xpm__.seal()
    with pytest.raises(SealedError, match=r"^Model: the configuration is sealed; its meta flag cannot change"):
        setmeta(model)
