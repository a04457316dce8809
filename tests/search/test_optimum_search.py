"""Optimum search (``kdnas.search.experimental.optimum_search``): closed forms, the model,
the loop."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest

from kdnas.core import HIGH_FIDELITY, Fidelity
from kdnas.loop import run_optimizer
from kdnas.reproduction.table4 import table4_rows
from kdnas.search.experimental import OptimumSearch, OptimumSearchConfig
from kdnas.search.experimental.optimum_search import (
    expected_search_seconds,
    finite_posterior,
    normal_scores,
    optimum_probabilities,
    screening_value,
    search_config_for,
    shrunk_rank_correlation,
)
from search_toys import TableObjective, toy

LOW = Fidelity(part=9, method="kd")


# ---------------------------------------------------------------------------- closed forms


def test_the_finite_posterior_is_gaussian_conditioning() -> None:
    prior = np.array([[2.0, 1.2, 0.0], [1.2, 1.5, 0.0], [0.0, 0.0, 1.0]])
    mean0 = np.array([0.1, -0.2, 0.3])
    mean, cov = finite_posterior(prior, mean0, np.array([0]), np.array([1.1]), np.array([0.5]))
    # One noisy observation y of entry 0: gain k = C[:, 0] / (C00 + v).
    gain = prior[:, 0] / (2.0 + 0.5)
    np.testing.assert_allclose(mean, mean0 + gain * (1.1 - 0.1))
    np.testing.assert_allclose(cov, prior - np.outer(gain, prior[0]))
    # Correlation 0 leaves entry 2 as it was; an exact observation is reproduced.
    assert mean[2] == pytest.approx(0.3) and cov[2, 2] == pytest.approx(1.0)
    exact, exact_cov = finite_posterior(prior, mean0, np.array([0]), np.array([1.1]), np.zeros(1))
    assert exact[0] == pytest.approx(1.1) and exact_cov[0, 0] == pytest.approx(0.0, abs=1e-9)


def test_fully_correlated_entries_are_fixed_by_one_exact_observation() -> None:
    prior = np.ones((3, 3))
    mean, cov = finite_posterior(prior, np.zeros(3), np.array([1]), np.array([0.7]), np.zeros(1))
    np.testing.assert_allclose(mean, 0.7, rtol=1e-6)
    np.testing.assert_allclose(cov, 0.0, atol=1e-6)


def test_a_shared_unknown_level_makes_one_result_uninformative_and_two_tell_their_order() -> None:
    prior = np.eye(2)
    one, _ = finite_posterior(
        prior, np.zeros(2), np.array([0]), np.array([3.0]), np.zeros(1), np.full((1, 1), 1e8)
    )
    np.testing.assert_allclose(one, 0.0, atol=1e-6)
    two, _ = finite_posterior(
        prior,
        np.zeros(2),
        np.array([0, 1]),
        np.array([3.0, 1.0]),
        np.zeros(2),
        np.full((2, 2), 1e8),
    )
    # Only the difference 2 is known: split evenly around the prior mean.
    np.testing.assert_allclose(two, [1.0, -1.0], atol=1e-3)


def test_optimum_probabilities_count_the_winners_that_beat_the_incumbent() -> None:
    samples = np.array([[1.0, 0.0], [0.0, 2.0], [0.5, 0.1], [3.0, 0.0]])
    np.testing.assert_allclose(optimum_probabilities(samples, -np.inf), [0.75, 0.25])
    np.testing.assert_allclose(optimum_probabilities(samples, 0.8), [0.5, 0.25])


def test_expected_search_seconds_follow_the_probability_per_second_order() -> None:
    p = np.array([0.5, 0.3, 0.2])
    # Unit costs: 1 + (1 - 0.5) + (1 - 0.8) seconds.
    assert expected_search_seconds(p, np.ones(3)) == pytest.approx(1.7)
    # With unequal costs the p / c order is the best of all orders (search theory).
    cost = np.array([4.0, 1.0, 0.5])
    best = min(
        sum(cost[k] * (1.0 - p[list(order[:i])].sum()) for i, k in enumerate(order))
        for order in itertools.permutations(range(3))
    )
    assert expected_search_seconds(p, cost) == pytest.approx(best)


def test_screening_an_uncertain_entry_saves_seconds_and_a_useless_screen_none() -> None:
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(4000, 5)) * np.array([1.0, 1.0, 1.0, 1.0, 0.01])
    cost = np.ones(5)
    precise = screening_value(samples, 0, 0.05, cost)
    noisy = screening_value(samples, 0, 100.0, cost)
    # T is concave in p (a minimum of linear functions), so information never costs in
    # expectation: near-exact screening of a contender saves most of an evaluation
    # (0.55-0.65 over seeds 0-4), a screen drowned in noise saves nothing.
    assert precise > 0.4
    assert abs(noisy) < 0.01
    assert screening_value(samples, 4, 0.05, cost) < 0.05  # a known loser: nothing to learn


def test_normal_scores_are_ranks_on_the_normal_scale() -> None:
    assert normal_scores(np.array([0.4])).tolist() == [0.0]
    scores = normal_scores(np.array([0.3, 0.1, 0.2]))
    assert scores[1] < scores[2] < scores[0] and scores.sum() == pytest.approx(0.0)


# ---------------------------------------------------------------------------- the optimizer


def _objective(seed: int) -> tuple[object, TableObjective]:
    """The 40-candidate toy with one KD fidelity: HF x 0.8 - 0.1 plus noise, 1/9 the cost."""
    candidates, values = toy()
    rng = np.random.default_rng(seed)
    low = 0.8 * values - 0.1 + 0.002 * rng.normal(size=len(values))
    cost = rng.uniform(900.0, 1100.0, len(values))
    objective = TableObjective(
        candidates, {HIGH_FIDELITY: values, LOW: low}, {HIGH_FIDELITY: cost, LOW: cost / 9}
    )
    return candidates, objective


@pytest.mark.parametrize("workers", [1, 4])
def test_it_runs_through_the_loop_and_never_repeats_an_evaluation(workers: int) -> None:
    for seed in range(2):
        candidates, objective = _objective(seed)
        optimizer = OptimumSearch(
            candidates, search_config_for((LOW,), samples=128), seed=seed, proxy=None
        )
        trace = run_optimizer(optimizer, objective, max_evaluations=25, workers=workers)
        asked = [(s.suggestion.arch, s.suggestion.fidelity) for s in trace.steps]
        assert len(trace.steps) == 25
        assert len(set(asked)) == len(asked)
        assert sum(optimizer.fidelity_counts().values()) == 25
        # KD seconds stay under the cap: 0.1 of the HF seconds, plus the run that crossed it.
        low_cost = sum(s.result.cost_s for s in trace.steps if s.result.fidelity == LOW)
        high_cost = sum(s.result.cost_s for s in trace.steps if s.result.fidelity.is_high)
        assert low_cost <= 0.1 * high_cost + 1100 / 9 * workers


def test_the_probe_runs_the_proxy_favourite_and_anti_favourite_at_low_fidelity_first() -> None:
    candidates, objective = _objective(0)
    proxy = np.arange(40.0)
    config = search_config_for((LOW,), probe=True, samples=128)
    optimizer = OptimumSearch(candidates, config, seed=0, proxy=proxy)
    trace = run_optimizer(optimizer, objective, max_evaluations=3)
    asked = [(candidates.index_of(s.suggestion.arch), s.suggestion.fidelity) for s in trace.steps]
    assert asked[:2] == [(39, LOW), (0, LOW)]
    assert asked[2][1].is_high


@pytest.mark.parametrize("choice", ["ucb", "probability"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_trust_in_the_proxy_follows_its_sign(sign: float, choice: str) -> None:
    candidates, values = toy()
    objective = TableObjective(
        candidates, {HIGH_FIDELITY: values}, {HIGH_FIDELITY: np.full(len(values), 100.0)}
    )
    config = OptimumSearchConfig(
        low_fidelities=(), low_prior_rho=(), samples=128, high_choice=choice
    )
    optimizer = OptimumSearch(candidates, config, seed=0, proxy=sign * values)
    assert optimizer.proxy_trust() == 0.5
    run_optimizer(optimizer, objective, max_evaluations=8)
    # Trust (from the prior's 0.5) for the proxy equal to f: 0.92 by UCB (a deterministic
    # path), 0.61-0.99 over seeds 0-4 by P(optimum); reversed: 0.00 with a slope of -0.70 to
    # -0.78.
    if sign > 0:
        assert optimizer.proxy_trust() > 0.55
    else:
        assert optimizer.proxy_trust() < 0.2 and optimizer.slope() < 0.0


def test_the_first_pick_is_the_proxy_favourite_at_high_fidelity() -> None:
    candidates, _ = toy()
    proxy = np.arange(40.0)
    first = OptimumSearch(candidates, seed=0, proxy=proxy).ask()
    assert first is not None and first.fidelity.is_high and first.arch == candidates.archs[39]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"low_prior_rho": (0.5,)}, "one value per fidelity"),
        ({"proxy_prior_rho": 1.0}, "(-1, 1)"),
        ({"trust_prior": 0.0}, "trust_prior"),
        ({"unexplained_share": 1.0}, "unexplained_share"),
        ({"doubt_slope_spread": math.nan}, "doubt_slope_spread"),
        ({"samples": 0}, "samples"),
        ({"high_choice": "greedy"}, "high_choice"),
        ({"low_fidelities": (HIGH_FIDELITY,), "low_prior_rho": (0.5,)}, "high_fidelity"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        OptimumSearchConfig(**overrides)  # type: ignore[arg-type]


def test_a_proxy_of_the_wrong_length_is_refused_and_it_is_a_table4_row() -> None:
    candidates, _ = toy()
    with pytest.raises(ValueError, match="one value per candidate"):
        OptimumSearch(candidates, proxy=np.zeros(3))
    assert "optimum-search" in table4_rows()


# ---------------------------------------------------------------------------- the benchmark


def test_on_the_whole_mobilenet_space_the_first_hf_run_is_the_optimum(
    paper_data_dir: Path,
) -> None:
    from kdnas.bench import TabularBenchmark
    from kdnas.replay.arrays import load_space_arrays
    from kdnas.replay.benchmark_requests import optimizer_on_arrays
    from kdnas.replay.runs import run_on_arrays
    from kdnas.search import get_optimizer

    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    arrays = load_space_arrays(bench, "mobilenet", paper_data_dir)
    optimum = arrays.placeholder_candidates().archs[arrays.optimum]
    entry = get_optimizer("optimum-search")
    optimizer = optimizer_on_arrays(entry, arrays.placeholder_candidates(), arrays, seed=0)
    trace = run_on_arrays(arrays, optimizer, 1)
    # The largest network by multiply-adds is the optimum: one HF run, the floor.
    assert trace.time_to(optimum) == pytest.approx(float(arrays.hf_time[arrays.optimum]))


def test_shrunk_rank_correlation_starts_at_the_prior_and_follows_the_pairs() -> None:
    x = np.arange(10.0)
    assert shrunk_rank_correlation(x[:2], x[:2], 0.4, 4.0) == pytest.approx(0.4)
    # 10 pairs in perfect reverse order against 4 pseudo-pairs at 0.4: (10 * -1 + 4 * 0.4) / 14.
    assert shrunk_rank_correlation(x, -x, 0.4, 4.0) == pytest.approx((-10 + 1.6) / 14)
    assert shrunk_rank_correlation(x, x, 0.9, 0.001) == 0.99  # clipped below 1
