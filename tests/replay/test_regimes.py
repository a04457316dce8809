"""The proxy-hostile regimes: every sub-space drawn has the property its regime promises."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from kdnas.bench import TabularBenchmark
from kdnas.replay.arrays import SpaceArrays, cell_rng, load_space_arrays
from kdnas.replay.regimes import (
    CORRELATION_BANDS,
    REGIMES,
    draw_spaces,
    draw_subspace,
    proxy_correlation,
)


def _space(size: int = 120, seed: int = 0) -> SpaceArrays:
    """A space whose proxy ranks HF accuracy well (Spearman about 0.8, like the paper's)."""
    rng = np.random.default_rng(seed)
    multiply_adds = np.exp(rng.normal(18.0, 0.5, size))
    accuracy = 0.6 + 0.02 * np.log(multiply_adds) + rng.normal(0.0, 0.005, size)
    return SpaceArrays(
        "toy",
        rng.normal(size=(size, 3)),
        accuracy,
        accuracy,
        np.full(size, 100.0),
        {},
        multiply_adds=multiply_adds,
    )


def test_the_toy_space_has_a_good_proxy() -> None:
    # Spearman over seeds 0-4 of the toy: 0.86, 0.82, 0.87, 0.89, 0.87.
    assert proxy_correlation(_space()) > 0.6


@pytest.mark.parametrize("regime", sorted(CORRELATION_BANDS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_banded_regimes_hold_their_correlation_band(regime: str, seed: int) -> None:
    arrays = _space()
    rows = draw_subspace(arrays, regime, np.random.default_rng(seed))
    low, high = CORRELATION_BANDS[regime]
    assert low <= proxy_correlation(arrays.subset(rows)) <= high
    assert len(rows) == arrays.size // (3 if regime == "low" else 6)
    assert np.all(np.diff(rows) > 0)  # sorted and distinct


def test_nofav_leaves_out_the_proxy_favourites_and_keeps_two_thirds() -> None:
    arrays = _space()
    rows = draw_subspace(arrays, "nofav", np.random.default_rng(3))
    favourites = np.argsort(-arrays.multiply_adds)[: arrays.size // 10]
    assert not set(rows) & set(favourites)
    assert len(rows) == 2 * arrays.size // 3 - len(favourites)


@pytest.mark.parametrize("seed", [0, 1, 3])
def test_decoy_puts_poor_architectures_at_the_top_of_the_proxy(seed: int) -> None:
    arrays = _space(seed=seed)
    rows = draw_subspace(arrays, "decoy", np.random.default_rng(seed))
    assert len(rows) == arrays.size // 3 and len(np.unique(rows)) == len(rows)
    count = max(3, arrays.size // 30)
    top = rows[np.argsort(-arrays.multiply_adds[rows])[:count]]
    median = np.median(arrays.hf_valid)
    # The proxy's favourites of the sub-space are all below the whole space's median...
    assert np.all(arrays.hf_valid[top] <= median)
    # ...and came from the proxy's top 40 % of the whole space.
    assert np.all(stats.rankdata(arrays.multiply_adds)[top] / arrays.size > 0.6)
    assert arrays.hf_valid[rows].argmax() not in set(np.searchsorted(rows, top))


def test_decoy_without_enough_poor_favourites_is_a_clear_error() -> None:
    # Seed 2 of the toy has 3 poor architectures in the proxy's top 40 %, and 4 are needed.
    with pytest.raises(RuntimeError, match="3 poor high-proxy architectures, need 4"):
        draw_subspace(_space(seed=2), "decoy", np.random.default_rng(2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_buried_hides_the_optimum_in_the_lower_half_of_the_proxy(seed: int) -> None:
    arrays = _space(seed=seed)
    rows = draw_subspace(arrays, "buried", np.random.default_rng(seed))
    sub = arrays.subset(rows)
    assert sub.size == arrays.size // 3
    assert sub.multiply_adds[sub.optimum] <= np.median(sub.multiply_adds)
    # The proxy still ranks the rest (Spearman 0.61-0.75 over seeds 0-4 of the toy).
    assert proxy_correlation(sub) > 0.3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_narrow_is_a_window_of_consecutive_multiply_adds_below_the_top_sixth(seed: int) -> None:
    arrays = _space(seed=seed)
    rows = draw_subspace(arrays, "narrow", np.random.default_rng(seed))
    order = np.argsort(arrays.multiply_adds, kind="stable")
    positions = np.sort(np.flatnonzero(np.isin(order, rows)))
    assert len(rows) == arrays.size // 3
    assert np.all(np.diff(positions) == 1)  # consecutive in the proxy's order
    assert positions[-1] < arrays.size - arrays.size // 6


def test_random_and_whole() -> None:
    arrays = _space()
    assert np.array_equal(draw_subspace(arrays, "whole", np.random.default_rng(0)), np.arange(120))
    rows = draw_subspace(arrays, "random", np.random.default_rng(0))
    assert len(rows) == 80 and len(np.unique(rows)) == 80


def test_a_draw_is_reproducible_from_its_cell_seed() -> None:
    arrays = _space()
    first = draw_subspace(arrays, "negative", cell_rng(1, "adaptive-subspaces", "toy", "negative"))
    again = draw_subspace(arrays, "negative", cell_rng(1, "adaptive-subspaces", "toy", "negative"))
    assert np.array_equal(first, again)


def test_bad_input_is_a_clear_error() -> None:
    arrays = _space()
    with pytest.raises(ValueError, match="unknown regime 'hostile'; choose one of whole"):
        draw_subspace(arrays, "hostile", np.random.default_rng(0))
    without_proxy = SpaceArrays(
        "toy", arrays.features, arrays.hf_valid, arrays.hf_test, arrays.hf_time, {}
    )
    with pytest.raises(ValueError, match="needs the multiply-adds"):
        draw_subspace(without_proxy, "low", np.random.default_rng(0))
    assert set(REGIMES) == {
        "whole",
        "random",
        "low",
        "negative",
        "nofav",
        "decoy",
        "buried",
        "narrow",
    }


def test_an_impossible_band_gives_up_with_a_clear_error() -> None:
    # A proxy equal to the accuracy cannot be made to rank it backwards.
    arrays = _space()
    exact = SpaceArrays(
        "toy",
        arrays.features,
        arrays.hf_valid,
        arrays.hf_test,
        arrays.hf_time,
        {},
        multiply_adds=np.exp(arrays.hf_valid * 10),
    )
    with pytest.raises(RuntimeError, match="no negative sub-space in 50 draws"):
        draw_subspace(exact, "negative", np.random.default_rng(0), max_attempts=50)
    assert stats.spearmanr(exact.multiply_adds, exact.hf_valid).statistic == pytest.approx(1.0)


def test_on_the_paper_spaces_the_proxy_is_good_and_hostile_draws_hold_their_band(
    paper_data_dir: Path,
) -> None:
    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    for space in ("mobilenet", "shufflenet"):
        arrays = load_space_arrays(bench, space, paper_data_dir)
        # Spearman's rho from its definition: Pearson's correlation of the average ranks.
        ranks = [stats.rankdata(v) for v in (arrays.multiply_adds, arrays.hf_valid)]
        rho = float(np.corrcoef(*ranks)[0, 1])
        assert rho > 0.75  # a good proxy on the whole space (0.768 and 0.806)
        assert proxy_correlation(arrays) == pytest.approx(rho, abs=1e-12)
        rng = cell_rng(1, "adaptive-subspaces", space, "negative")
        for _ in range(3):
            sub = arrays.subset(draw_subspace(arrays, "negative", rng))
            assert sub.size == arrays.size // 6 and proxy_correlation(sub) <= -0.3
        for regime in ("decoy", "buried"):
            rng = cell_rng(1, "adaptive-subspaces", space, regime)
            for _ in range(3):
                sub = arrays.subset(draw_subspace(arrays, regime, rng))
                # Either way the proxy's favourite of the sub-space is not its optimum.
                assert np.argmax(sub.multiply_adds) != sub.optimum


def test_draw_spaces_fixes_seeds_and_sub_spaces_per_draw() -> None:
    arrays = _space()
    first = list(draw_spaces(arrays, "low", 3, draw=1))
    again = list(draw_spaces(arrays, "low", 3, draw=1))
    assert [seed for seed, _ in first] == [20_000, 20_001, 20_002]
    for (_, a), (_, b) in zip(first, again, strict=True):
        assert np.array_equal(a.hf_valid, b.hf_valid)
    other = [seed for seed, _ in draw_spaces(arrays, "low", 3, draw=2)]
    assert not set(other) & {20_000, 20_001, 20_002}
    whole = list(draw_spaces(arrays, "whole", 2, draw=0))
    assert all(space is arrays for _, space in whole)
    with pytest.raises(ValueError, match="count >= 1"):
        list(draw_spaces(arrays, "low", 0, draw=0))
