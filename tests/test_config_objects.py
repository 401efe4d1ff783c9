"""Configurations (``X.C``, an ``X.XPMConfig``) and the objects built from them (``X``), as experimaestro 2.7."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from objects_tasks import Encoder, Learn, Model, Module

from xpmfs import Config, DirectoryContext, Meta, Param, PathGenerator, field, tags
from xpmfs.config import ConfigMixin, SetInfo
from xpmfs.errors import ConfigError
from xpmfs.generators import EmptyContext
from xpmfs.serialization import from_dict, to_dict


class A(Config):
    x: Param[int] = 1


class B(A):
    y: Param[int] = 2


def test_a_configuration_is_an_xpmconfig_of_its_class() -> None:
    a = B.C(x=3)
    assert type(a) is B.C is B.XPMConfig
    assert type(a).__name__ == "B.XPMConfig" and type(a).__qualname__ == "B.XPMConfig"
    assert isinstance(a, ConfigMixin) and isinstance(a, B) and isinstance(a, A) and isinstance(a, A.C)
    assert not issubclass(B, ConfigMixin)
    assert B.C.C is B.C and B.__xpmtype__.config_type is B.C and B.__xpmtype__.value_type is B
    assert repr(a) == "B.C(x=3, y=2)"
    assert B.x == 1  # the class still tells the default
    with pytest.raises(TypeError):
        B(x=1)  # type: ignore[call-arg]  # objects are built from configurations


def test_type_ids_identifiers_and_the_spec_name_the_declared_class() -> None:
    a = B.C(x=3)
    assert B.__xpmtype__.identifier.name.endswith("test_config_objects.b")
    record = to_dict(a)["objects"][-1]
    assert record["type"]["qualname"] == "B"
    loaded = from_dict(to_dict(a))
    assert type(loaded) is B.C and loaded.__identifier__() == a.__identifier__()


def test_instance_builds_objects_of_the_class_and_runs_its_bases_init() -> None:
    config = Model.C(encoder=Encoder.C(size=2), hidden=3)
    model = config.instance()
    assert type(model) is Model and not isinstance(model, ConfigMixin)
    assert model.init_ran and model.total == 5
    assert type(model.encoder) is Encoder and model._modules == {"encoder": model.encoder}
    assert model.hidden == 3 and "hidden" in model.__dict__
    assert model.xpmconfig is config and model.__config__ is config
    assert config.__xpm__.sealed  # instance() seals, as in experimaestro
    assert model.__identifier__() == config.__identifier__()
    assert config.instance(keep=False).__dict__.get("__config__") is None
    with pytest.raises(AttributeError, match=r"instance\(keep=True\)"):
        _ = A.C().instance(keep=False).xpmconfig


def test_objects_share_and_cycle_as_their_configurations() -> None:
    encoder = Encoder.C()
    first = Model.C(encoder=encoder).instance()
    objects: dict[int, object] = {}
    m1 = Model.C(encoder=encoder).instance(objects=objects)
    m2 = Model.C(encoder=encoder, hidden=1).instance(objects=objects)
    assert m1.encoder is m2.encoder and first.encoder is not m1.encoder


def test_an_object_cannot_be_given_where_a_configuration_is_expected() -> None:
    model = Model.C(encoder=Encoder.C()).instance()
    with pytest.raises(AttributeError, match=r"configurations \(and not objects\)"):
        Learn.C(model=model)


class ValueBase(Config):
    x: Param[int] = 1


@ValueBase.value_class()
class ValueImpl(ValueBase, Module):
    def double(self) -> int:
        return 2 * self.x


class ValueChild(ValueBase):
    y: Param[int] = 2


def test_value_class_is_what_instance_builds() -> None:
    assert ValueBase.XPMValue is ValueImpl and ValueChild.XPMValue is ValueChild
    obj = ValueBase.C(x=4).instance()
    assert type(obj) is ValueImpl and obj.double() == 8 and obj.init_ran
    assert obj.__identifier__() == ValueBase.C(x=4).__identifier__()
    with pytest.raises(TypeError, match="must be a subclass of"):
        ValueBase.value_class()(A)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="parent value class"):

        @ValueChild.value_class()
        class Missing(ValueChild):  # not a ValueImpl
            pass


def test_the_job_builds_objects_with_their_bases_init(tmp_path: Path) -> None:
    from xpmfs import experiment

    with experiment(tmp_path / "ws", "objects"):
        task = Learn.C(model=Model.C(encoder=Encoder.C(size=1), hidden=2))
        task.submit()
    assert task.out.read_text() == "Model True ['encoder'] 3 Learn True"


class Generated(Config):
    path: Meta[Path] = field(default_factory=PathGenerator("file.txt"))


def test_a_generated_path_reads_none_before_submit_and_needs_a_folder_to_instantiate(tmp_path: Path) -> None:
    config = Generated.C()
    assert config.path is None
    with pytest.raises(AssertionError, match="does not define a path"):
        config.instance()
    with pytest.raises(AssertionError, match="does not define a path"):
        _ = EmptyContext().path
    assert Generated.C().instance(DirectoryContext(tmp_path)).path == tmp_path / "file.txt"
    sealed = A.C()
    sealed.__xpm__.seal(EmptyContext())
    with pytest.raises(AttributeError):
        sealed.x = 2


def test_provenance_names_where_each_value_was_set() -> None:
    a = B.C(x=2)
    line = a.__xpm__.provenance_of("x").location  # type: ignore[union-attr]
    assert line.startswith(str(Path(__file__).resolve())) and isinstance(a.__xpm__.provenance_of("x"), SetInfo)
    assert a.__xpm__.provenance_of("x").kind == "explicit"  # type: ignore[union-attr]
    assert a.__xpm__.provenance_of("y").kind == "default"  # type: ignore[union-attr]
    a.y = 5
    assert a.__xpm__.provenance_of("y").kind == "explicit"  # type: ignore[union-attr]
    with pytest.raises(
        ConfigError, match=r"^B\.x: expected int, got 'no' \(str\) \(parameter 'x', set at .*test_config"
    ):
        B.C(x="no")
    assert B.C(x=2).__identifier__() == B.C(x=2).__identifier__()  # provenance is never hashed


def test_composition_sets_the_one_parameter_that_takes_the_value() -> None:
    encoder = Encoder.C()
    model = Model.C() @ encoder
    assert model.encoder is encoder
    assert model.__xpm__.provenance_of("encoder").kind == "composed"  # type: ignore[union-attr]
    location = model.__xpm__.provenance_of("encoder").location  # type: ignore[union-attr]
    assert location.endswith(f"test_config_objects.py:{sys._getframe().f_lineno - 4}")  # the `@` line
    with pytest.raises(ValueError, match="No parameter"):
        Model.C() @ A.C()


def test_tags_of_an_object_are_its_configurations() -> None:
    config = Model.C(encoder=Encoder.C()).tag("run", 1)
    assert config.instance().__tags__ == tags(config) == {"run": 1}
