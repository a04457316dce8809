"""Searches replayed on a tabular benchmark, and the seconds they need to reach its optimum.

Every measure of a search here is its *time to the optimum*: the seconds of every evaluation
it made (low and high fidelity, charged the benchmark's stored ``wall_time``) until the
architecture with the best high-fidelity ``valid_acc`` has been evaluated at high fidelity.
``run_on_arrays`` measures it for any optimizer through the evaluation loop; the paper's own
algorithms also have batched forms (``gp_ucb_hf_times``, ``algorithm2_times``,
``random_search_times``) built on ``kdnas.replay.engine``, tested equal to the loop.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kdnas.core import Optimizer
from kdnas.loop import InProcessWorkers, LoopLimits, Trace, TraceStep, run_loop
from kdnas.replay.arrays import ArraysObjective, SpaceArrays
from kdnas.search.candidates import CandidateSet
from kdnas.search.gp import GPConfig

__all__ = [
    "OptimizerFactory",
    "SimulatedRuns",
    "algorithm2_times",
    "anytime_curve",
    "gp_ucb_hf_times",
    "random_search_times",
    "run_on_arrays",
    "simulate_runs",
    "time_to_optimum",
    "time_to_optimum_of_orders",
]


def _order_times(order: np.ndarray, times: np.ndarray) -> np.ndarray:
    return np.where(order >= 0, times[np.maximum(order, 0)], 0.0).sum(1)


def time_to_optimum_of_orders(arrays: SpaceArrays, orders: np.ndarray) -> np.ndarray:
    """[runs] seconds one worker needs to reach the optimum evaluating, at high fidelity, each
    row of ``orders`` [runs, N] (permutations of the space) in turn: what the loop measures
    for ``RandomSearch`` with those orders (tests/loop/test_loop.py)."""
    orders = np.asarray(orders)
    position = np.argmax(orders == arrays.optimum, axis=1)
    costs = np.cumsum(arrays.hf_time[orders], axis=1)
    return costs[np.arange(len(orders)), position]


def random_search_times(arrays: SpaceArrays, runs: int, rng: np.random.Generator) -> np.ndarray:
    """[runs] seconds random search (a random order at high fidelity) needs to reach the
    optimum: uniformly random orders, timed by ``time_to_optimum_of_orders``."""
    return time_to_optimum_of_orders(arrays, np.argsort(rng.random((runs, arrays.size)), axis=1))


def gp_ucb_hf_times(
    arrays: SpaceArrays,
    runs: int,
    rng: np.random.Generator,
    beta: float = 0.5,
    gp: GPConfig | None = None,
    return_order: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """[runs] seconds GP-UCB at high fidelity only (random start) needs to reach the optimum
    (with ``return_order``, also the [runs, T] evaluation order)."""
    from kdnas.replay.engine import simulate_gp_ucb_phase  # torch, only for the batched runs

    first = rng.integers(0, arrays.size, runs)
    order = simulate_gp_ucb_phase(
        arrays.features,
        arrays.hf_valid,
        first,
        target=arrays.optimum,
        beta=beta,
        rng=rng,
        gp=gp or GPConfig.paper_gp_ucb(),
    )
    times = _order_times(order, arrays.hf_time)
    return (times, order) if return_order else times


def algorithm2_times(
    arrays: SpaceArrays,
    method: str,
    part: int,
    runs: int,
    n_lf: int,
    rng: np.random.Generator,
    beta: float = 0.5,
    gp: GPConfig | None = None,
    return_orders: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[runs] seconds Algorithm 2 needs to reach the optimum (low-fidelity phase included).

    With ``return_orders``, also the [runs, n_lf] low-fidelity and [runs, T] high-fidelity
    evaluation orders.
    """
    from kdnas.replay.engine import simulate_gp_ucb_phase  # torch, only for the batched runs

    gp = gp or GPConfig.paper_gp_ucb()
    valid = arrays.low_column(method, part, "valid_acc")
    cost = arrays.low_column(method, part, "wall_time")
    first = rng.integers(0, arrays.size, runs)
    low = simulate_gp_ucb_phase(
        arrays.features, valid, first, steps=n_lf, beta=beta, rng=rng, gp=gp
    )
    start = low[np.arange(runs), np.argmax(np.where(low >= 0, valid[np.maximum(low, 0)], -1), 1)]
    high = simulate_gp_ucb_phase(
        arrays.features,
        arrays.hf_valid,
        start,
        target=arrays.optimum,
        beta=beta,
        rng=rng,
        gp=gp,
    )
    times = _order_times(low, cost) + _order_times(high, arrays.hf_time)
    return (times, low, high) if return_orders else times


#: (candidates, arrays, seed) -> a fresh optimizer for one simulated run on one space. The
#: candidates are ``arrays.placeholder_candidates()``; the arrays give what a factory may need
#: besides the features (a zero-cost proxy, which low fidelities exist).
OptimizerFactory = Callable[[CandidateSet, SpaceArrays, int], Optimizer]


def run_on_arrays(
    arrays: SpaceArrays,
    optimizer: Optimizer,
    workers: int = 1,
    max_cost_s: float | None = None,
    horizon_s: float | None = None,
) -> Trace:
    """One run of ``optimizer`` through the evaluation loop on one benchmark space, with
    ``workers`` simulated asynchronous workers, until the optimum (best high-fidelity
    valid_acc) has been evaluated at high fidelity, the optimizer stops, ``max_cost_s``
    evaluation seconds are spent, or an evaluation ends after ``horizon_s`` on the workers'
    clock. ``trace.time_to(optimum)`` is then its time to the optimum (inf if not found).

    The optimizer must be built over ``arrays.placeholder_candidates()``. An optimizer with a
    ``close`` method (the peers' adapters) is closed at the end, also after an error.
    """
    objective = ArraysObjective(arrays)
    optimum = objective.candidates.archs[arrays.optimum]

    def found(step: TraceStep) -> bool:
        if step.result.fidelity.is_high and step.suggestion.arch == optimum:
            return True
        return horizon_s is not None and step.elapsed_s >= horizon_s

    try:
        return run_loop(
            optimizer,
            InProcessWorkers(objective, workers),
            limits=LoopLimits(max_cost_s=max_cost_s),
            stop=found,
        )
    finally:
        close = getattr(optimizer, "close", None)
        if close is not None:
            close()


def time_to_optimum(arrays: SpaceArrays, trace: Trace) -> float:
    """Seconds ``trace`` (a run on ``arrays``) needed to evaluate the optimum at high
    fidelity; inf if it never did."""
    return trace.time_to(arrays.placeholder_candidates().archs[arrays.optimum])


@dataclass(frozen=True)
class SimulatedRuns:
    """Runs of one optimizer on a tabular benchmark space, one per seed.

    Args:
        seeds: [R] the optimizer seed of each run.
        time_to_optimum_s: [R] seconds until the optimum had been evaluated at high fidelity
            (inf if a run's budget ended first).
        high_events: per run, (clock seconds after the evaluation, architecture index) of each
            high-fidelity evaluation, in order.
        low_counts: [R] low-fidelity evaluations per run.
    """

    seeds: tuple[int, ...]
    time_to_optimum_s: np.ndarray
    high_events: tuple[tuple[tuple[float, int], ...], ...]
    low_counts: np.ndarray


def simulate_runs(
    arrays: SpaceArrays,
    factory: OptimizerFactory,
    seeds: Sequence[int] = tuple(range(100)),
    workers: int = 1,
) -> SimulatedRuns:
    """Run ``factory(candidates, arrays, seed)`` once per seed through the evaluation loop on
    ``arrays`` (``run_on_arrays``), charging every evaluation its benchmark ``wall_time``,
    until the optimum has been evaluated at high fidelity."""
    candidates = arrays.placeholder_candidates()
    times = np.full(len(seeds), math.inf)
    events: list[tuple[tuple[float, int], ...]] = []
    lows = np.zeros(len(seeds), dtype=int)
    for run, seed in enumerate(seeds):
        trace = run_on_arrays(arrays, factory(candidates, arrays, int(seed)), workers)
        times[run] = time_to_optimum(arrays, trace)
        events.append(
            tuple(
                (step.elapsed_s, candidates.index_of(step.suggestion.arch))
                for step in trace.steps
                if step.result.fidelity.is_high
            )
        )
        lows[run] = sum(not step.result.fidelity.is_high for step in trace.steps)
    return SimulatedRuns(tuple(int(s) for s in seeds), times, tuple(events), lows)


# ---------------------------------------------------------------------------- curves


def anytime_curve(
    arrays: SpaceArrays,
    high_order: np.ndarray,
    grid_s: np.ndarray,
    offset_s: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean anytime curves of many runs on a time grid.

    The incumbent of a run at time t is its best high-fidelity valid_acc so far; once a run
    stopped (it found the optimum) its incumbent stays. Before a run's first high-fidelity
    result its value is NaN and is left out of the mean.

    Args:
        high_order: [R, T] high-fidelity evaluation order (-1 padded).
        grid_s: [G] seconds.
        offset_s: [R] seconds spent before the high-fidelity phase (low-fidelity evaluations).

    Returns:
        (mean incumbent valid_acc [G], mean incumbent test_acc [G]), fractions.
    """
    runs = len(high_order)
    offset = np.zeros(runs) if offset_s is None else np.asarray(offset_s, float)
    ok = high_order >= 0
    safe = np.maximum(high_order, 0)
    elapsed = offset[:, None] + np.cumsum(np.where(ok, arrays.hf_time[safe], 0.0), axis=1)
    valid = np.where(ok, arrays.hf_valid[safe], -np.inf)
    running = np.maximum.accumulate(valid, axis=1)
    # Index of the incumbent after each evaluation.
    best_at = np.maximum.accumulate(
        np.where(valid >= running, np.arange(valid.shape[1])[None, :], 0), axis=1
    )
    incumbent = safe[np.arange(runs)[:, None], best_at]
    out_valid = np.full((runs, len(grid_s)), np.nan)
    out_test = np.full((runs, len(grid_s)), np.nan)
    for r in range(runs):
        count = int(ok[r].sum())
        position = np.searchsorted(elapsed[r, :count], grid_s, side="right") - 1
        has = position >= 0
        chosen = incumbent[r, np.maximum(position, 0)]
        out_valid[r, has] = arrays.hf_valid[chosen[has]]
        out_test[r, has] = arrays.hf_test[chosen[has]]
    with warnings.catch_warnings():
        # Grid points before any run's first result are all-NaN columns: NaN is the answer.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(out_valid, 0), np.nanmean(out_test, 0)
