"""Time-to-optimum accounting on a hand-made five-architecture benchmark."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kdnas.core import HIGH_FIDELITY, Fidelity, Suggestion
from kdnas.loop import run_optimizer
from kdnas.replay import percentile_in_space
from kdnas.replay.arrays import SpaceArrays
from kdnas.replay.runs import algorithm2_times, random_search_times
from search_toys import TableObjective, make_candidates

LOW = Fidelity(part=9, method="nst")
# Five architectures. High fidelity: index 3 is the optimum (valid 0.74).
HF_VALID = np.array([0.70, 0.71, 0.69, 0.74, 0.72])
HF_TEST = np.array([0.69, 0.72, 0.68, 0.73, 0.71])
HF_COST = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
# Low fidelity: index 3 is also the best; costs 1..5 s.
LF_VALID = np.array([0.30, 0.20, 0.25, 0.40, 0.35])
LF_COST = np.array([1.0, 2.0, 3.0, 4.0, 5.0])


def _arrays() -> SpaceArrays:
    candidates = make_candidates(5, seed=1)
    low = {("nst", 9): {"valid_acc": LF_VALID, "test_acc": LF_VALID, "wall_time": LF_COST}}
    return SpaceArrays("toy", candidates.features, HF_VALID, HF_TEST, HF_COST, low)


class Scripted:
    """Asks a fixed list of (index, fidelity), one at a time."""

    def __init__(self, candidates, plan) -> None:
        self.candidates, self.plan, self.next = candidates, plan, 0

    def ask(self):
        if self.next == len(self.plan):
            return None
        index, fidelity = self.plan[self.next]
        self.next += 1
        return Suggestion(self.next - 1, self.candidates.archs[index], fidelity)

    def tell(self, suggestion, result) -> None:
        pass


def test_trace_time_to_optimum_and_anytime_curve_by_hand() -> None:
    candidates = make_candidates(5, seed=1)
    objective = TableObjective(
        candidates,
        {HIGH_FIDELITY: HF_VALID, LOW: LF_VALID},
        {HIGH_FIDELITY: HF_COST, LOW: LF_COST},
        test={HIGH_FIDELITY: HF_TEST, LOW: LF_VALID},
    )
    plan = [(0, LOW), (3, LOW), (1, HIGH_FIDELITY), (4, HIGH_FIDELITY), (3, HIGH_FIDELITY)]
    trace = run_optimizer(Scripted(candidates, plan), objective)
    # LF 1 + 4 s, then HF 200 + 500 + 400 s: the optimum (3) is reached after 1105 s.
    assert trace.time_to(candidates.archs[3]) == 1105.0
    # Its low-fidelity evaluation does not count as finding it.
    assert trace.time_to(candidates.archs[3], LOW) == 5.0
    assert trace.time_to(candidates.archs[2]) == np.inf
    times, tests = trace.incumbent_curve(metric="test_acc")
    np.testing.assert_array_equal(times, [205.0, 705.0, 1105.0])
    # Incumbents (best valid so far): 1 (test 0.72), then 4 (0.71), then 3 (0.73).
    np.testing.assert_array_equal(tests, [0.72, 0.71, 0.73])


def test_algorithm2_time_by_hand() -> None:
    # n_lf = 5 evaluates every architecture at low fidelity (1+2+3+4+5 = 15 s); its best, index
    # 3, is the high-fidelity optimum, so the high-fidelity phase costs exactly 400 s.
    times = algorithm2_times(_arrays(), "nst", 9, 50, 5, np.random.default_rng(0))
    np.testing.assert_array_equal(times, np.full(50, 415.0))


def test_random_search_time_matches_enumeration() -> None:
    # Exact expectation over all 120 orders: the optimum's cost plus, for every other
    # architecture, its cost times the chance (1/2) it comes first.
    exact = np.mean(
        [
            sum(HF_COST[i] for i in order[: order.index(3) + 1])
            for order in itertools.permutations(range(5))
        ]
    )
    assert exact == pytest.approx(400 + 0.5 * (100 + 200 + 300 + 500))
    times = random_search_times(_arrays(), 40000, np.random.default_rng(0))
    # Standard error 0.2 %: generator seeds 0-4 land -0.45 % to +0.06 % off (seed 0: -0.07 %).
    assert times.mean() == pytest.approx(exact, rel=0.01)
    assert set(np.unique(times)) <= {
        400 + sum(c) for k in range(5) for c in itertools.combinations([100, 200, 300, 500], k)
    }


def test_percentile_in_space() -> None:
    # Test accuracies 0.69 0.72 0.68 0.73 0.71: index 3 is best (1 of 5 -> 20%), index 2 worst.
    np.testing.assert_allclose(percentile_in_space(HF_TEST, [3, 1, 2]), [20.0, 40.0, 100.0])
    assert percentile_in_space(HF_TEST, 4) == 60.0
