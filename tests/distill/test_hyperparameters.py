"""`loss_hyperparameters`: the paper's Appendix A defaults per space, overrides, bad names."""

from __future__ import annotations

import pytest

from kdnas.core import METHODS
from kdnas.distill import loss_hyperparameters
from kdnas.paper import paper_figures


@pytest.mark.parametrize("space", ["mobilenetv2", "shufflenetv2"])
@pytest.mark.parametrize("method", [m for m in METHODS if m not in ("nokd", "kd")])
def test_defaults_are_appendix_a_per_space(method: str, space: str) -> None:
    column = "mobilenet" if space == "mobilenetv2" else "shufflenet"
    published = paper_figures()["appendix_a_kd_hyperparameters"][method][column]
    resolved = loss_hyperparameters(method, space)
    assert resolved["beta"] == published["beta"]
    assert resolved["ce_weight"] == 1.0


def test_kd_defaults_and_overrides() -> None:
    assert loss_hyperparameters("kd", "shufflenetv2") == {"tau": 32.0, "lambda": 1.0}
    assert loss_hyperparameters("kd", "mobilenetv2", {"tau": 4}) == {"tau": 4.0, "lambda": 1.0}
    assert loss_hyperparameters("nst", "shufflenetv2", {"beta": 1})["beta"] == 1.0
    assert loss_hyperparameters("nokd") == {}


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid: lambda, tau"):
        loss_hyperparameters("kd", "mobilenetv2", {"beta": 1.0})
    with pytest.raises(ValueError, match="valid: none"):
        loss_hyperparameters("nokd", None, {"tau": 1.0})
    with pytest.raises(ValueError, match="valid methods: nokd, kd"):
        loss_hyperparameters("distill")
    with pytest.raises(ValueError, match="finite"):
        loss_hyperparameters("nst", "mobilenetv2", {"beta": float("nan")})
