"""benchmarks/do_no_harm.py pools several draws as if they were one: each sub-space counts once,
and the per-draw ratios are those of each draw alone."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def do_no_harm(benchmark_script):
    with benchmark_script("do_no_harm") as module:
        yield module


def _cells(hf_only: list[float], after: list[float]) -> dict:
    return {("mobilenet", 1): {"random": {"hf_only": np.array(hf_only), "after": np.array(after)}}}


def test_pooled_draws_weigh_each_sub_space_once(do_no_harm) -> None:
    first = _cells([100.0, 300.0], [50.0, 50.0])
    second = _cells([200.0, 200.0, 200.0], [100.0, 100.0, np.nan])
    pooled = do_no_harm.pool_draws([first, second])
    values = pooled[("mobilenet", 1)]["random"]
    np.testing.assert_array_equal(values["hf_only"], [100.0, 300.0, 200.0, 200.0, 200.0])
    np.testing.assert_array_equal(values["after"][:4], [50.0, 50.0, 100.0, 100.0])
    assert np.isnan(values["after"][4])
    # The pooled ratio pairs HF-only with the sub-spaces the row ran on: (100 + 300 + 200 +
    # 200) / 4 = 200 s against (50 + 50 + 100 + 100) / 4 = 75 s, 2.67x; neither draw's own
    # ratio (4.00x, 2.00x) nor their mean (3.00x).
    text = do_no_harm.table(pooled, {"after": "after"}, ["random"])
    assert "(2.67x)" in text
    spread = do_no_harm.ratios_by_draw({3: first, 4: second}, {"after": "after"}, ["random"])
    assert "| mobilenet, 1, random | after | 4.00x | 2.00x |" in spread
