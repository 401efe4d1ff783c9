"""The experimaestro 2.7 configuration API in xpmfs: each behaviour a migrating user relies on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Generic, TypeVar

import pytest

from xpmfs import (
    STDOUT,
    Array,
    Choices,
    Config,
    Constant,
    DirectoryContext,
    Meta,
    Param,
    PathGenerator,
    RunMode,
    TagDict,
    Task,
    copyconfig,
    field,
    help,
    initializer,
    pathgenerator,
    sealed_set,
    stop_tags,
    tag,
    tags,
    tagspath,
)
from xpmfs.config import DependentMarker, fields_of
from xpmfs.errors import ConfigError, NoExperimentError, ReadOnlyError

T = TypeVar("T")


class Inner(Config):
    value: Param[int]


class Outer(Config):
    inner: Param[Inner]
    x: Param[int] = field(default=0, ignore_default=True)


def test_stop_tags_keeps_a_subtree_s_tags_out() -> None:
    inner = Inner.C(value=tag(1)).tag("model", "bert")
    assert Outer.C(inner=inner).tags() == {"value": 1, "model": "bert"}
    stopped = Outer.C(inner=stop_tags(inner), x=tag(2))
    assert stopped.tags() == {"x": 2}
    assert stopped.inner is inner  # the wrapper is gone once stored
    both = Outer.C(inner=stop_tags(Inner.C(value=tag(5))), x=tag(3))
    assert tags(both) == {"x": 3}


def test_conflicting_tags_warn_and_the_outer_value_wins(caplog: pytest.LogCaptureFixture) -> None:
    outer = Outer.C(inner=Inner.C(value=1).tag("lr", 1), x=1).tag("lr", 2)
    with caplog.at_level(logging.WARNING, logger="xpmfs"):
        assert outer.tags()["lr"] == 2
    message = " ".join(r.getMessage() for r in caplog.records)
    assert "'lr' has conflicting values" in message and "test_config_compat.py" in message
    caplog.clear()
    same = Outer.C(inner=Inner.C(value=1).tag("lr", 1), x=1).tag("lr", 1)
    with caplog.at_level(logging.WARNING, logger="xpmfs"):
        same.tags()
    assert not caplog.records


def test_tag_dict_and_tags_path() -> None:
    config = Outer.C(inner=Inner.C(value=tag(3)), x=tag(2)).tag("name", "a/b")
    found = tags(config)
    assert isinstance(found, TagDict) and list(found) == ["name", "value", "x"]
    assert hash(found) == hash(TagDict({"x": 2, "value": 3, "name": "a/b"}))
    with pytest.raises(TypeError, match="read-only"):
        found["x"] = 1
    assert tagspath(config) == "name=a-b_value=3_x=2"


def test_choices_checks_values() -> None:
    class Opt(Config):
        name: Param[Annotated[str, Choices(["adam", "sgd"])]]

    Opt.C(name="adam")
    with pytest.raises(ValueError, match=r"^.*Opt\.name: 'lbfgs' is not allowed: expected one of 'adam', 'sgd'"):
        Opt.C(name="lbfgs")


def test_help_annotation_and_array() -> None:
    class Documented(Config):
        epochs: Param[Annotated[int, help("number of passes")]]
        sizes: Param[Array(int)]  # type: ignore[valid-type]

    assert fields_of(Documented)["epochs"].help == "number of passes"
    assert Documented.C(epochs=1, sizes=[1, 2]).sizes == [1, 2]
    with pytest.raises(TypeError):
        Documented.C(epochs=1, sizes=["a"])


def test_a_constant_refuses_assignment_as_attribute_error() -> None:
    class Versioned(Config):
        version: Constant[int] = 2

    config = Versioned.C()
    with pytest.raises(AttributeError, match=r"Versioned\.version: is a constant \(2\)"):
        config.version = 3
    with pytest.raises(ReadOnlyError):
        config.version = 3


def test_a_wrong_value_is_both_type_and_value_error() -> None:
    with pytest.raises(ValueError, match=r"^Inner\.value: expected int, got 'a' \(str\)"):
        Inner.C(value="a")
    with pytest.raises(TypeError):
        Inner.C(value="a")


def test_default_factory_with_ignore_default_is_accepted() -> None:
    class Factory(Config):
        a: Param[int] = field(default_factory=lambda: 1, ignore_default=True)

    assert Factory.C().a == 1
    assert Factory.C().__identifier__() == Factory.C(a=1).__identifier__() != Factory.C(a=2).__identifier__()


def test_overriding_a_parameter_warns_unless_declared(caplog: pytest.LogCaptureFixture) -> None:
    class Base(Config):
        inner: Param[Config]

    with caplog.at_level(logging.WARNING, logger="xpmfs"):

        class Warned(Base):
            inner: Param[Inner]

        Warned.C(inner=Inner.C(value=1))
    assert any("field(overrides=True)" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="xpmfs"):

        class Quiet(Base):
            inner: Param[Inner] = field(overrides=True)

        Quiet.C(inner=Inner.C(value=1))
    assert not caplog.records

    class Bad(Outer):
        inner: Param[Outer] = field(overrides=True)

    with pytest.raises(TypeError, match="is not a subtype"):
        Bad.C()


def test_copyconfig_copies_values_but_not_generated_ones(tmp_path: Path) -> None:
    class Learn(Config):
        lr: Param[float]
        out: Meta[Path] = field(default_factory=PathGenerator("model.pt"))

    learn = Learn.C(lr=0.1)
    learn.__xpm__.seal(tmp_path)
    copy = copyconfig(learn, lr=0.2)
    assert copy.lr == 0.2 and not copy.__xpm__.sealed and "out" not in copy.__xpm__.values


def test_sealed_set_and_hashing() -> None:
    a, b = Inner.C(value=1), Inner.C(value=1)
    with pytest.raises(TypeError, match="not sealed; use sealed_set"):
        {a}  # noqa: B018
    assert a == b
    assert len(sealed_set(a, b, 3)) == 2


class Derived(Config):
    inner: Param[Inner]

    def __post_init__(self) -> None:
        self.double = 2 * self.inner.value


ORDER: list[str] = []


class Leaf(Config):
    def __post_init__(self) -> None:
        ORDER.append("leaf")


class Root(Config):
    leaf: Param[Leaf]

    def __post_init__(self) -> None:
        ORDER.append("root")


def test_instance_runs_post_init_children_first() -> None:
    order = ORDER
    order.clear()
    config = Root.C(leaf=Leaf.C())
    obj = config.instance()
    assert order == ["leaf", "root"] and obj.xpmconfig is config and obj.leaf.xpmconfig is config.leaf
    assert config.xpmconfig is config
    with pytest.raises(AttributeError, match="has no configuration tracked"):
        _ = config.instance(keep=False).xpmconfig
    assert not hasattr(Derived.C(inner=Inner.C(value=2)), "double")  # not in the experiment


def test_post_init_runs_on_a_loaded_tree() -> None:
    # What the job runner does with the tree it loaded (xpmfs/runner.py).
    config = Derived.C(inner=Inner.C(value=21))
    config.__xpm__.post_init()
    assert config.double == 42


def test_generic_type_variables_are_bound_per_instance() -> None:
    class Pair(Config, Generic[T]):
        x: Param[T]
        y: Param[T]

    Pair.C(x=1, y=1)
    with pytest.raises(TypeError, match=r"Pair\.y: ~T is bound to int in this configuration, got a str"):
        Pair.C(x=1, y="a")
    pair = Pair.C(x=Inner.C(value=1))
    pair.y = Config.C()  # a superclass widens the binding
    pair.x = Outer.C(inner=Inner.C(value=1))
    Pair.C(x="a", y="b")  # another instance, another binding

    class Holder(Config, Generic[T]):
        held: Param[Pair[T]]
        other: Param[T]

    with pytest.raises(TypeError):
        Holder.C(held=Pair.C(x=1, y=2), other="s")


class GenPair(Config, Generic[T]):
    x: Param[T]
    y: Param[T]


Bounded = TypeVar("Bounded", bound=Inner)


class BoundHolder(Config, Generic[Bounded]):
    x: Param[Bounded]


class Converter(Config, Generic[T]):
    pass


class IntConverter(Converter[int]):
    pass


class StrConverter(Converter[str]):
    pass


def test_a_configuration_given_for_a_type_variable_brings_its_bindings() -> None:
    with pytest.raises(TypeError, match="bound to GenPair"):
        GenPair.C(x=GenPair.C(x=1, y=2), y=GenPair.C(x=3, y=4))  # T is GenPair, and int inside
    GenPair.C(x=Inner.C(value=1), y=Inner.C(value=2))  # a non-generic value brings nothing


def test_a_type_variable_s_bound_is_checked() -> None:
    class Child(Inner):
        pass

    holder = BoundHolder.C(x=Child.C(value=1))
    holder.x = Inner.C(value=2)
    with pytest.raises(TypeError, match="declared bound"):
        BoundHolder.C(x=Outer.C(inner=Inner.C(value=1)))


def test_a_class_that_fixes_type_arguments_must_fit_the_field() -> None:
    class Uses(Config):
        converter: Param[Converter[str | list[str]]]

    Uses.C(converter=StrConverter.C())  # str is a member of the union
    with pytest.raises(TypeError, match="int is not compatible"):
        Uses.C(converter=IntConverter.C())


def test_pathgenerator_annotation_and_stdout(tmp_path: Path) -> None:
    class Job(Config):
        out: Annotated[Path, pathgenerator("result.json")]
        log: Meta[Path] = field(default_factory=PathGenerator(STDOUT))

    folder = tmp_path / "jobs" / "pkg.mytask" / "abc"
    job = Job.C()
    job.__xpm__.seal(DirectoryContext(folder))
    assert job.out == folder / "result.json" and job.log == folder / "mytask.out"


def test_initializer_runs_once() -> None:
    calls: list[int] = []

    class Lazy(Config):
        @initializer
        def model(self) -> str:
            calls.append(1)
            return "loaded"

    lazy = Lazy.C()
    assert lazy.model() == lazy.model() == "loaded" and calls == [1]


def test_a_tagged_init_task_is_refused() -> None:
    from xpmfs import LightweightTask, Task

    class Init(LightweightTask):
        pass

    class Main(Task):
        pass

    with pytest.raises(ConfigError, match="an init task cannot be tagged"):
        Main.C().__xpm__.set_init_tasks([tag(Init.C())])
    main = Main.C()
    main.__xpm__.set_init_tasks([stop_tags(Init.C().tag("a", 1))])
    assert main.tags() == {}


def test_post_init_runs_in_the_job(tmp_path: Path) -> None:
    from compat_tasks import Scaled, WriteDerived

    from xpmfs import experiment

    with experiment(tmp_path / "ws", "post-init"):
        task = WriteDerived.C(inner=Scaled.C(value=4))
        task.submit()
    assert task.out.read_text() == "41"


def test_task_cancelled_is_an_exception_and_catching_it_does_not_make_the_job_done(tmp_path: Path) -> None:
    from compat_tasks import CatchesCancel
    from conftest import job_of

    from xpmfs import FailedExperiment, TaskCancelled, experiment, status

    assert issubclass(TaskCancelled, Exception)
    with pytest.raises(FailedExperiment), experiment(tmp_path / "ws", "cancel"):
        task = CatchesCancel.C()
        task.submit()
    assert task.out.read_text() == "Job cancelled by SIGTERM"
    job = job_of(tmp_path / "ws", task)
    assert status.read_failure(job.xpm_dir)["reason"] == "cancelled"


def test_a_configuration_can_be_tagged_and_tag_sources_are_kept() -> None:
    inner = Inner.C(value=tag(3))
    outer = Outer.C(inner=stop_tags(tag(inner)))
    assert outer.tags() == {"inner": inner}  # the tag is the configuration; its own tags stop
    outer.x = tag(5)
    value, source = outer.__xpm__._tags["x"]
    assert value == 5 and source.startswith(__file__) and source.rsplit(":", 1)[1].isdigit()
    outer.tag("name", "run")
    assert outer.__xpm__._tags["name"][0] == "run" and __file__ in outer.__xpm__._tags["name"][1]


@pytest.mark.parametrize(
    ("value", "wanted", "matches"),
    [
        (0.0001, "1e-4", True),
        (0.0001, "0.0001", True),
        (0.0001, "0.001", False),
        (3.0, "3", True),
        (3, "3.0", True),
        (True, "true", True),
        (True, "1", False),
        (1, "true", False),
        ("1e-4", "1e-4", True),  # a text tag compares as text
        ("1e-4", "0.0001", False),
        ([1, 2], "[1,2]", True),
        (None, "null", True),
        (0.1, "x", False),
    ],
)
def test_tag_filters_compare_values(value: object, wanted: str, matches: bool) -> None:
    from xpmfs._tagvalue import tag_matches

    assert tag_matches(value, wanted) is matches


# -- a dry run outside any experiment (experimaestro's test_identifier and test_tags use it) -------


class DryOut(Config):
    a: Param[int]


class DryTask(Task):
    x: Param[int]

    def task_outputs(self, dep: DependentMarker) -> DryOut:
        return dep(DryOut.C(a=self.x))


class DryGenerated(Task):
    out: Meta[Path] = field(default_factory=PathGenerator("out.txt"))


def test_a_dry_run_outside_an_experiment_seals_and_returns_the_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    task = DryTask.C(x=tag(1))
    output = task.submit(run_mode=RunMode.DRY_RUN)
    assert task.__xpm__.sealed and isinstance(output, DryOut) and output.__xpm__.task is task
    assert output.tags() == {"x": 1}
    assert DryTask.C(x=1).submit(run_mode="dry-run").__identifier__() == output.__identifier__()
    assert f"[dry run, no experiment] test_config_compat.drytask/{task.__identifier__()}" in capsys.readouterr().err
    with pytest.raises(NoExperimentError):
        DryTask.C(x=1).submit()
    with pytest.raises(NoExperimentError):
        DryTask.C(x=1).submit(run_mode=RunMode.GENERATE_ONLY)
    with pytest.raises(ConfigError, match=r"DryGenerated\.out is generated in the job's folder"):
        DryGenerated.C().submit(run_mode=RunMode.DRY_RUN)


# -- docstrings (experimaestro reads them with docstring_parser) ----------------------------------


class Documented(Config):
    """Description of A

    Long description of A.

    Arguments:

        y: Parameter y
        z (int): Parameter z,
            on two lines
    """

    x: Param[int]
    """Parameter x"""

    y: Param[int]
    z: Param[int]
    """Overrides the docstring's"""


class Undocumented(Config):
    __xpmid__ = "test.undocumented"


def test_title_description_and_argument_help_come_from_the_docstrings() -> None:
    xpmtype = Documented.__getxpmtype__()
    assert xpmtype.title == "Description of A" and xpmtype.description == "Long description of A."
    fields = fields_of(Documented)
    assert fields["x"].help == "Parameter x" and fields["y"].help == "Parameter y"
    assert fields["z"].help == "Overrides the docstring's"
    assert Undocumented.__getxpmtype__().title == "test.undocumented"  # the type id, as experimaestro
    assert Undocumented.__getxpmtype__().description is None
