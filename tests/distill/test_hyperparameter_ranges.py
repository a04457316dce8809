"""Loss hyperparameters are checked by value before anything trains, not only by name."""

from __future__ import annotations

import pytest

from kdnas.distill import loss_hyperparameters


@pytest.mark.parametrize(
    ("method", "name", "value", "expected"),
    [
        ("kd", "tau", 0.0, "> 0"),
        ("kd", "tau", -4.0, "> 0"),
        ("kd", "lambda", 1.5, "in [0, 1]"),
        ("kd", "lambda", -0.1, "in [0, 1]"),
        ("crd", "tau", 0.0, "> 0"),
        ("crd", "momentum", 2.0, "in [0, 1]"),
        ("crd", "num_negatives", 0.5, "a positive integer"),
        ("correlation", "embed_dim", 0.0, "a positive integer"),
        ("vid", "init_variance", 0.0, "> 0"),
        ("nst", "beta", -1.0, ">= 0"),
        ("hint", "ce_weight", -1.0, ">= 0"),
    ],
)
def test_a_value_out_of_range_is_refused_naming_the_range(
    method: str, name: str, value: float, expected: str
) -> None:
    with pytest.raises(ValueError) as caught:
        loss_hyperparameters(method, "mobilenetv2", {name: value})
    message = str(caught.value)
    assert message.startswith(method) and name in message and expected in message


def test_values_in_range_and_the_defaults_pass() -> None:
    assert loss_hyperparameters("kd", "mobilenetv2", {"tau": 4.0, "lambda": 0.9})["tau"] == 4.0
    for method in ("kd", "hint", "attention", "similarity", "correlation", "vid", "pkt", "nst"):
        loss_hyperparameters(method, "shufflenetv2")
    assert loss_hyperparameters("crd", "mobilenetv2", {"num_negatives": 64.0})
