"""``forwardoption``: click options from configuration fields, as experimaestro's ``experimaestro.click``."""

from __future__ import annotations

import click
import pytest

from xpmfs import Config, Param, field, forwardoption


class Optimizer(Config):
    epsilon: Param[float] = 1e-8
    """Numerical stability term"""


class Learn(Config):
    epochs: Param[int] = field(default=100, ignore_default=True)
    """Number of learning epochs"""
    learning_rate: Param[float] = 0.1
    optimizer: Param[Optimizer]


def _run(command: click.Command, *args: str) -> object:
    return command.main(list(args), standalone_mode=False)


def test_an_option_named_as_the_field_with_its_default_and_help() -> None:
    @forwardoption.epochs(Learn)
    @forwardoption.learning_rate(Learn)
    @click.command()
    def cli(epochs: int, learning_rate: float) -> tuple[int, float]:
        return epochs, learning_rate

    assert _run(cli, "--epochs", "5") == (5, 0.1)
    assert _run(cli) == (100, 0.1)
    helps = {p.name: p.help for p in cli.params if isinstance(p, click.Option)}
    assert helps["epochs"] == "Number of learning epochs"


def test_renamed_nested_and_default_overridden() -> None:
    @forwardoption.optimizer.epsilon(Learn, "eps", default=0.5)
    @click.command()
    def cli(eps: float) -> float:
        return eps

    assert _run(cli) == 0.5 and _run(cli, "--eps", "2") == 2.0


def test_an_unknown_field_is_named() -> None:
    with pytest.raises(AttributeError, match="Learn has no field 'epoch'"):
        forwardoption.epoch(Learn)
