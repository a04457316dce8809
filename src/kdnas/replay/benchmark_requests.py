"""Registered optimizers on a tabular benchmark space: what a replayed search asks of them.

On the benchmark the candidates are ``arrays.placeholder_candidates()``, the zero-cost proxy
is the log of the stored multiply-adds, and an optimizer's low fidelities are those of its
``benchmark_fidelities`` preset that the benchmark holds. Table 4 and the field leaderboard
both build their kdnas rows here, so a registered optimizer runs the same way in each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from kdnas.core import Optimizer
from kdnas.replay.arrays import SpaceArrays
from kdnas.replay.runs import OptimizerFactory, SimulatedRuns, simulate_runs
from kdnas.search.candidates import CandidateSet
from kdnas.search.pool import Budget
from kdnas.search.proxy_prior import ProxyPriorConfig, ProxyPriorGPUCB
from kdnas.search.registry import OptimizerEntry, OptimizerRequest

__all__ = [
    "applies_to",
    "benchmark_proxy",
    "optimizer_on_arrays",
    "proxy_prior_factory",
    "simulate_proxy_prior",
]


def benchmark_proxy(arrays: SpaceArrays) -> np.ndarray:
    """[N] the zero-cost proxy on a benchmark space: log multiply-adds per image.

    Raises:
        ValueError: the space has no multiply-adds (its architectures were not listed).
    """
    if arrays.multiply_adds is None:
        raise ValueError(f"{arrays.space}: the multiply-adds proxy needs listed architectures")
    return np.log(arrays.multiply_adds)


def _held_fidelities(entry: OptimizerEntry, arrays: SpaceArrays) -> tuple:
    return tuple(
        f for f in entry.benchmark_fidelities(arrays.space) if (f.method, f.part) in arrays.low
    )


def applies_to(entry: OptimizerEntry, arrays: SpaceArrays) -> bool:
    """Whether ``entry`` can run on ``arrays``: its proxy is known and, if it evaluates at a
    low fidelity, the benchmark holds one of its preset's."""
    if entry.uses_proxy and arrays.multiply_adds is None:
        return False
    return not entry.uses_low_fidelity or bool(_held_fidelities(entry, arrays))


def optimizer_on_arrays(
    entry: OptimizerEntry,
    candidates: CandidateSet,
    arrays: SpaceArrays,
    seed: int,
    budget: Budget | None = None,
) -> Optimizer:
    """A fresh optimizer of ``entry`` for one replayed run on ``arrays`` (its own beta)."""
    request = OptimizerRequest(
        candidates,
        seed=seed,
        low_fidelities=_held_fidelities(entry, arrays),
        budget=budget,
        proxy=benchmark_proxy(arrays) if entry.uses_proxy else None,
    )
    return entry.make(request)


def proxy_prior_factory(
    config: ProxyPriorConfig | None = None, max_cost_s: float = 1e6
) -> OptimizerFactory:
    """(candidates, arrays, seed) -> ``ProxyPriorGPUCB`` with ``config`` (default: the
    proxy-prior preset), the benchmark's proxy when the config uses one, and a seconds
    budget, for ``simulate_runs``."""
    config = config or ProxyPriorConfig()

    def make(candidates: CandidateSet, arrays: SpaceArrays, seed: int) -> Optimizer:
        proxy = benchmark_proxy(arrays) if config.uses_proxy else None
        return ProxyPriorGPUCB(
            candidates, config, seed=seed, budget=Budget(max_cost_s=max_cost_s), proxy=proxy
        )

    return make


def simulate_proxy_prior(
    arrays: SpaceArrays,
    config: ProxyPriorConfig | None = None,
    seeds: Sequence[int] = tuple(range(100)),
    max_cost_s: float = 1e6,
    workers: int = 1,
) -> SimulatedRuns:
    """Runs of ``ProxyPriorGPUCB`` (``config``, default the proxy-prior preset) on one
    benchmark space, one per seed (``simulate_runs``): about 50 runs per second on one core.

    Raises:
        ValueError: the config's screening fidelity is not in the benchmark, or its high
            fidelity is not the benchmark's (part 1, nokd).
    """
    config = config or ProxyPriorConfig()
    if not config.high_fidelity.is_high:
        raise ValueError("simulate_proxy_prior: the benchmark's high fidelity is part 1, nokd")
    return simulate_runs(arrays, proxy_prior_factory(config, max_cost_s), seeds, workers)
