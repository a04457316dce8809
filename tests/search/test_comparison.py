"""A new optimizer joins Table 4 by registering one factory (the example of docs/search.md)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from search_toys import make_candidates

from kdnas.search import GPUCB
from kdnas.search.reproduction import (
    TABLE4_ROW_STEPS,
    TABLE4_ROWS,
    SpaceArrays,
    Table4Settings,
    comparison_seeds,
    run_on_arrays,
    run_table4,
    table4_steps,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "search.md"


def _toy() -> SpaceArrays:
    candidates = make_candidates(12, d=2, seed=8)
    rng = np.random.default_rng(8)
    valid = 0.6 + 0.03 * np.sin(2 * candidates.features[:, 0]) + 0.002 * rng.normal(size=12)
    return SpaceArrays("toy", candidates.features, valid, valid, rng.uniform(50, 150, 12), {})


def test_the_documented_factory_puts_a_row_into_table4() -> None:
    (example,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
        if "register_optimizer(" in block
    ]
    assert len(example.strip().splitlines()) <= 10
    try:
        exec(compile(example, str(DOCS), "exec"), {})
        arrays, settings = _toy(), Table4Settings(runs=3)
        result = run_table4({"toy": arrays}, settings, rows=["explorative"])
        stats = result["toy"]["GP-UCB beta=2 (HF only)"]
        # The same runs by hand through the loop: seeds from comparison_seeds, beta 2.
        candidates = arrays.placeholder_candidates()
        by_hand = [
            run_on_arrays(arrays, GPUCB(candidates, seed=seed, beta=2.0)).time_to(
                candidates.archs[arrays.optimum]
            )
            for seed in comparison_seeds(settings)
        ]
        assert stats.runs == 3 and stats.mean == np.mean(by_hand)
        # hf_only, random_search and this row report one step each on a space without low
        # fidelities or proxy (Algorithm 2, screening and proxy rows do not apply).
        assert table4_steps({"toy": arrays}, settings) == 3
    finally:
        TABLE4_ROWS.pop("explorative", None)
        TABLE4_ROW_STEPS.pop("explorative", None)


def test_rows_beyond_the_paper_are_registered_by_importing_kdnas_search() -> None:
    assert list(TABLE4_ROWS)[:3] == ["hf_only", "algorithm2", "random_search"]
    assert {"screening", "proxy"} <= set(TABLE4_ROWS)
    # A row that does not apply to a space (no low fidelity, no proxy) adds nothing there.
    assert TABLE4_ROWS["proxy"](_toy(), Table4Settings(runs=2), None) == {}
