"""Ask/tell optimizers: no repeats, pending points, failures, budgets, seeds, Algorithm 2."""

from __future__ import annotations

import numpy as np
import pytest

import search_toys
from kdnas.core import HIGH_FIDELITY, Fidelity, Optimizer
from kdnas.loop import run_optimizer
from kdnas.search import GPUCB, Budget, LowFidelityGP, MultiFidelityGPUCB, RandomSearch
from search_toys import TableObjective, make_candidates

LOW = Fidelity(part=27, method="kd")


def _objective(candidates, values, low_values=None, fail=frozenset()):
    low_values = values[::-1].copy() if low_values is None else low_values
    n = len(candidates)
    return TableObjective(
        candidates,
        {HIGH_FIDELITY: values, LOW: low_values},
        {HIGH_FIDELITY: np.full(n, 10.0), LOW: np.full(n, 1.0)},
        fail,
    )


def test_all_implement_the_protocol() -> None:
    toy = search_toys.toy()
    candidates, _ = toy
    for optimizer in (
        RandomSearch(candidates, seed=0),
        LowFidelityGP(candidates, 5, LOW, seed=0),
        GPUCB(candidates, seed=0),
        MultiFidelityGPUCB(candidates, 5, LOW, seed=0),
    ):
        assert isinstance(optimizer, Optimizer)


def test_gp_ucb_never_repeats_and_exhausts_the_space() -> None:
    candidates = make_candidates(15, seed=3)
    values = np.linspace(0.5, 0.6, 15)
    objective = _objective(candidates, values)
    trace = run_optimizer(GPUCB(candidates, seed=1), objective)
    indices = [candidates.index_of(step.suggestion.arch) for step in trace.steps]
    assert sorted(indices) == list(range(15))


def test_pending_suggestions_are_distinct_and_believed() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    objective = _objective(candidates, values)
    optimizer = GPUCB(candidates, seed=0)
    first = optimizer.ask()
    optimizer.tell(first, objective.evaluate(first.arch, first.fidelity))
    batch = [optimizer.ask() for _ in range(6)]  # six parallel workers
    keys = [s.arch for s in batch] + [first.arch]
    assert len(set(keys)) == 7
    for suggestion in batch:
        optimizer.tell(suggestion, objective.evaluate(suggestion.arch, suggestion.fidelity))
    assert optimizer.ask().arch not in keys


def test_failed_results_are_skipped_and_never_resuggested() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    fail = frozenset(range(0, 40, 3))
    objective = _objective(candidates, values, fail=fail)
    trace = run_optimizer(GPUCB(candidates, seed=2), objective, max_evaluations=20)
    indices = [candidates.index_of(s.suggestion.arch) for s in trace.steps]
    assert len(indices) == len(set(indices)) == 20
    assert any(i in fail for i in indices)
    assert not trace.steps[-1].result.ok or trace.steps[-1].result.valid_acc > 0


def test_budget_in_seconds_and_target_value() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    objective = _objective(candidates, values)
    # Each HF evaluation costs 10 s: a 35 s budget allows 4 evaluations (the 4th crosses it).
    trace = run_optimizer(GPUCB(candidates, seed=0, budget=Budget(max_cost_s=35.0)), objective)
    assert len(trace.steps) == 4 and trace.cost_s == 40.0
    target = float(np.sort(values)[-3])
    optimizer = GPUCB(candidates, seed=0, target_value=target)
    trace = run_optimizer(optimizer, objective)
    assert trace.steps[-1].result.valid_acc >= target
    assert all(s.result.valid_acc < target for s in trace.steps[:-1])
    assert optimizer.finished and optimizer.ask() is None


def test_same_seed_same_result() -> None:
    toy = search_toys.toy()
    candidates, values = toy

    def run(seed: int) -> list[int]:
        optimizer = MultiFidelityGPUCB(candidates, 6, LOW, seed=seed, target_value=values.max())
        trace = run_optimizer(optimizer, _objective(candidates, values))
        return [candidates.index_of(s.suggestion.arch) for s in trace.steps]

    assert run(5) == run(5)
    assert run(5) != run(6)
    a = LowFidelityGP(candidates, 8, LOW, seed=9)
    b = LowFidelityGP(candidates, 8, LOW, seed=9)
    for optimizer in (a, b):
        run_optimizer(optimizer, _objective(candidates, values))
    assert a.recommendation() == b.recommendation() is not None


def test_algorithm2_starts_high_fidelity_at_the_low_fidelity_best() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    low_values = np.random.default_rng(4).uniform(0.1, 0.3, len(candidates))
    objective = _objective(candidates, values, low_values)
    optimizer = MultiFidelityGPUCB(candidates, 7, LOW, seed=3, target_value=values.max())
    trace = run_optimizer(optimizer, objective)
    low = [s for s in trace.steps if s.result.fidelity == LOW]
    high = [s for s in trace.steps if s.result.fidelity == HIGH_FIDELITY]
    assert len(low) == 7 and trace.steps[:7] == tuple(low)
    best_low = max(low, key=lambda s: s.result.valid_acc).suggestion.arch
    assert high[0].suggestion.arch == best_low == optimizer.high_start
    assert high[-1].result.valid_acc == values.max()


def test_algorithm2_waits_for_low_fidelity_results() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    objective = _objective(candidates, values)
    optimizer = MultiFidelityGPUCB(candidates, 3, LOW, seed=0)
    asked = [optimizer.ask() for _ in range(3)]
    assert all(s.fidelity == LOW for s in asked)
    assert optimizer.ask() is None and not optimizer.finished  # waiting, not done
    for s in asked:
        optimizer.tell(s, objective.evaluate(s.arch, s.fidelity))
    assert optimizer.ask().fidelity == HIGH_FIDELITY


def test_algorithm1_recommends_argmax_of_the_fit() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    # The low fidelity equals the high one here: the GP's argmax must land near the optimum.
    objective = _objective(candidates, values, values)
    optimizer = LowFidelityGP(candidates, 20, LOW, seed=0, final_fidelity=HIGH_FIDELITY)
    trace = run_optimizer(optimizer, objective)
    assert len(trace.steps) == 21 and trace.steps[-1].result.fidelity == HIGH_FIDELITY
    chosen = candidates.index_of(optimizer.recommendation())
    assert values[chosen] >= np.sort(values)[-3]


def test_random_search_is_a_permutation() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    trace = run_optimizer(RandomSearch(candidates, seed=1), _objective(candidates, values))
    assert sorted(candidates.index_of(s.suggestion.arch) for s in trace.steps) == list(range(40))


def test_tell_rejects_unknown_trials() -> None:
    toy = search_toys.toy()
    candidates, values = toy
    optimizer = GPUCB(candidates, seed=0)
    suggestion = optimizer.ask()
    result = _objective(candidates, values).evaluate(suggestion.arch, suggestion.fidelity)
    optimizer.tell(suggestion, result)
    with pytest.raises(ValueError, match="already told"):
        optimizer.tell(suggestion, result)
