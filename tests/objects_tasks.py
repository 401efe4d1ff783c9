"""Tasks of tests/test_config_objects.py: importable by the job runner."""

from __future__ import annotations

from pathlib import Path

from xpmfs import Config, Meta, Param, PathGenerator, Task, field


class Module:
    """A stand-in for ``torch.nn.Module``: its ``__init__`` must run, and it keeps what it is given."""

    def __init__(self) -> None:
        self.__dict__["_modules"] = {}
        self.__dict__["init_ran"] = True

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, Module):
            self._modules[name] = value  # as nn.Module registers a submodule
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> object:
        modules = self.__dict__.get("_modules", {})
        if name in modules:
            return modules[name]
        raise AttributeError(name)


class Encoder(Config, Module):
    size: Param[int] = 4


class Model(Config, Module):
    encoder: Param[Encoder]
    hidden: Param[int] = 8

    def __post_init__(self) -> None:
        self.total = self.hidden + self.encoder.size


class Learn(Task):
    model: Param[Model]
    out: Meta[Path] = field(default_factory=PathGenerator("result.txt"))

    def execute(self) -> None:
        model = self.model
        self.out.write_text(
            f"{type(model).__name__} {model.init_ran} {sorted(model._modules)} {model.total} "
            f"{type(self).__name__} {self.__taskdir__ == self.out.parent}"
        )
