"""Adaptive-fidelity GP-UCB (``kdnas.search.adaptive``): learned reliabilities, the loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from search_toys import TableObjective, toy

from kdnas.core import HIGH_FIDELITY, Fidelity
from kdnas.search import AdaptiveConfig, AdaptiveFidelityGPUCB, run_optimizer
from kdnas.search.adaptive import config_for, shrunk_rank_correlation
from kdnas.search.reproduction import TABLE4_ROWS

LOW = Fidelity(part=9, method="kd")


def _objective(seed: int, low_noise: float = 0.002) -> tuple[AdaptiveFidelityGPUCB, object]:
    """The 40-candidate toy with one KD fidelity: HF x 0.8 - 0.1 plus noise, 1/9 of the cost."""
    candidates, values = toy()
    rng = np.random.default_rng(seed)
    low = 0.8 * values - 0.1 + low_noise * rng.normal(size=len(values))
    cost = rng.uniform(900.0, 1100.0, len(values))
    objective = TableObjective(
        candidates, {HIGH_FIDELITY: values, LOW: low}, {HIGH_FIDELITY: cost, LOW: cost / 9}
    )
    return candidates, objective


def test_shrunk_rank_correlation_starts_at_the_prior_and_follows_the_pairs() -> None:
    x = np.arange(10.0)
    assert shrunk_rank_correlation(x[:2], x[:2], 0.4, 4.0) == pytest.approx(0.4)
    assert shrunk_rank_correlation(x, -x, 0.4, 4.0) == pytest.approx((-10 + 1.6) / 14)
    assert shrunk_rank_correlation(x, x, 0.9, 0.001) == 0.99  # clipped below 1


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_proxy_weight_follows_the_sign_of_its_rank_correlation(sign: float) -> None:
    candidates, values = toy()
    objective = TableObjective(
        candidates, {HIGH_FIDELITY: values}, {HIGH_FIDELITY: np.full(len(values), 100.0)}
    )
    config = AdaptiveConfig(low_fidelities=(), low_prior_rho=(), proxy_prior_rho=0.5)
    optimizer = AdaptiveFidelityGPUCB(candidates, config, seed=0, proxy=sign * values)
    assert optimizer.proxy_reliability() == pytest.approx(0.5)
    run_optimizer(optimizer, objective, max_evaluations=6)
    # Six exact HF results against a proxy equal (or reversed) to f: the observed Spearman
    # is +-1, so the shrunk weight is (6 * (+-1) + 4 * 0.5) / 10 = 0.8 or -0.4.
    expected = (6 * sign + 4 * 0.5) / 10
    assert optimizer.proxy_reliability() == pytest.approx(expected)


@pytest.mark.parametrize(("workers", "standardise"), [(1, False), (4, False), (1, True)])
def test_it_runs_through_the_loop_and_never_repeats_an_evaluation(
    workers: int, standardise: bool
) -> None:
    for seed in range(3):
        candidates, objective = _objective(seed)
        config = config_for((LOW,), standardise_targets=standardise)
        optimizer = AdaptiveFidelityGPUCB(
            candidates, config, seed=seed, proxy=np.zeros(len(candidates))
        )
        trace = run_optimizer(optimizer, objective, max_evaluations=30, workers=workers)
        asked = [(s.suggestion.arch, s.suggestion.fidelity) for s in trace.steps]
        assert len(trace.steps) == 30
        assert len(set(asked)) == len(asked)
        counts = optimizer.fidelity_counts()
        assert sum(counts.values()) == 30
        # The KD fidelity is ranked right (rho ~ 1 on its pairs), so it is used, and low-
        # fidelity seconds stay under the cap (0.2 of the HF seconds, plus the last one).
        assert counts.get(LOW.label(), 0) >= 1
        low_cost = sum(s.result.cost_s for s in trace.steps if s.result.fidelity == LOW)
        high_cost = sum(s.result.cost_s for s in trace.steps if s.result.fidelity.is_high)
        assert low_cost <= 0.2 * high_cost + 1100 / 9


def test_a_reliable_kd_fidelity_is_learned_and_an_unreliable_one_is_not_trusted() -> None:
    reliable = []
    for noise in (0.0, 1.0):
        candidates, objective = _objective(0, low_noise=noise)
        if noise:  # accuracies must stay in [0, 1]: replace with a random ranking instead
            objective.valid[LOW] = np.random.default_rng(1).uniform(0.3, 0.5, len(candidates))
        optimizer = AdaptiveFidelityGPUCB(candidates, config_for((LOW,)), seed=0)
        run_optimizer(optimizer, objective, max_evaluations=40)
        reliable.append(optimizer.low_reliability(LOW))
    # Over seeds 0-3 (seed also drawing the random ranking): 0.88-0.90 against -0.15-0.23.
    assert reliable[0] > 0.6 > reliable[1]


def test_without_a_proxy_or_results_the_first_pick_is_seeded_and_at_hf() -> None:
    candidates, _ = toy()
    firsts = {
        AdaptiveFidelityGPUCB(candidates, seed=seed).ask().arch  # type: ignore[union-attr]
        for seed in range(5)
    }
    assert len(firsts) > 1
    first = AdaptiveFidelityGPUCB(candidates, seed=0, proxy=np.arange(40.0)).ask()
    assert first is not None and first.fidelity.is_high and first.arch == candidates.archs[39]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"beta": -1.0}, "beta"),
        ({"low_prior_rho": (0.5,)}, "one value per low fidelity"),
        ({"proxy_prior_rho": 1.0}, "(-1, 1)"),
        ({"low_share": math.nan}, "low_share"),
        ({"low_fidelities": (HIGH_FIDELITY,), "low_prior_rho": (0.5,)}, "high_fidelity"),
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        AdaptiveConfig(**overrides)  # type: ignore[arg-type]


def test_a_proxy_of_the_wrong_length_is_refused_and_the_table4_row_is_registered() -> None:
    candidates, _ = toy()
    with pytest.raises(ValueError, match="one value per candidate"):
        AdaptiveFidelityGPUCB(candidates, proxy=np.zeros(3))
    assert "adaptive" in TABLE4_ROWS
