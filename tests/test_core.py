"""The shared value types: canonical keys, validation, immutability."""

from __future__ import annotations

import dataclasses
import math

import pytest

from kdnas.core import HIGH_FIDELITY, METHODS, Architecture, EvalResult, Fidelity


def test_architecture_key_is_canonical_for_dict_order_and_list_vs_tuple() -> None:
    a = Architecture("shufflenetv2", {"out_channels": [116, 232], "num_blocks": [3, 7]})
    b = Architecture("shufflenetv2", {"num_blocks": (3, 7), "out_channels": (116, 232)})
    assert a == b
    assert hash(a) == hash(b)
    assert a.key() == b.key()
    assert len(a.key()) == 16


def test_architecture_key_differs_between_spaces_and_genotypes() -> None:
    rows = [[1, 16, 1, 1], [6, 24, 2, 2]]
    assert Architecture("x", rows).key() != Architecture("y", rows).key()
    assert Architecture("x", rows).key() != Architecture("x", [[1, 16, 1, 1]]).key()


def test_architecture_json_round_trip() -> None:
    arch = Architecture("mobilenetv2", [[1, 16, 1, 1], [0, 1280, 2, 0]])
    assert Architecture.from_json(arch.to_json()) == arch


def test_architecture_rejects_non_integer_genes_and_bad_json() -> None:
    with pytest.raises(TypeError):
        Architecture("x", [1.5])
    with pytest.raises(TypeError):
        Architecture("x", [True])
    with pytest.raises(ValueError, match="not an architecture"):
        Architecture.from_json("{broken")


def test_architecture_is_immutable() -> None:
    arch = Architecture("x", [1, 2])
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.space = "y"  # type: ignore[misc]


def test_fidelity_validation_lists_valid_methods() -> None:
    with pytest.raises(ValueError) as error:
        Fidelity(part=27, method="distill")
    for method in METHODS:
        assert method in str(error.value)
    with pytest.raises(ValueError):
        Fidelity(part=0)
    with pytest.raises(ValueError):
        Fidelity(part=3, epochs=0)


def test_high_fidelity_is_full_data_plain_cross_entropy() -> None:
    assert HIGH_FIDELITY.is_high
    assert not Fidelity(part=27, method="nokd").is_high
    assert not Fidelity(part=1, method="kd").is_high
    assert Fidelity(part=27, method="nst", epochs=5).label() == "1/27 nst 5ep"


def test_eval_result_checks_ranges_but_lets_failures_carry_nan() -> None:
    ok = EvalResult("k", HIGH_FIDELITY, valid_acc=0.5, test_acc=0.4, cost_s=3.0)
    assert ok.ok
    with pytest.raises(ValueError, match="valid_acc"):
        EvalResult("k", HIGH_FIDELITY, valid_acc=1.5, test_acc=0.4, cost_s=3.0)
    with pytest.raises(ValueError, match="cost_s"):
        EvalResult("k", HIGH_FIDELITY, valid_acc=0.5, test_acc=0.4, cost_s=-1.0)
    with pytest.raises(ValueError, match="status"):
        EvalResult("k", HIGH_FIDELITY, 0.5, 0.4, 1.0, status="exploded")
    diverged = EvalResult("k", HIGH_FIDELITY, math.nan, math.nan, 2.0, status="diverged")
    assert not diverged.ok and diverged.cost_s == 2.0
