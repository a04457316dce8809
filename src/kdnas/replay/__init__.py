"""Searches replayed on a tabular benchmark: its spaces as arrays, and the time to the optimum.

- ``kdnas.replay.arrays``: ``SpaceArrays`` (one space of the benchmark as arrays),
  ``ArraysObjective`` (an objective answering from them), ``load_space_arrays``, the paper's
  ``percentile_in_space``, ``cell_rng`` (an independent stream per experiment cell).
- ``kdnas.replay.runs``: ``run_on_arrays`` (any optimizer through the evaluation loop until
  the optimum is evaluated at high fidelity), ``simulate_runs``, the batched times of the
  paper's algorithms, anytime curves.
- ``kdnas.replay.benchmark_requests``: registered optimizers on a benchmark space.
- ``kdnas.replay.engine``: many runs of the paper's GP searches at once, batched in torch
  (imported only by what needs it).
- ``kdnas.replay.regimes``: sub-spaces drawn where the zero-cost proxy misleads.
"""

from __future__ import annotations

from kdnas.replay.arrays import (
    ArraysObjective,
    SpaceArrays,
    cell_rng,
    load_space_arrays,
    percentile_in_space,
)
from kdnas.replay.runs import (
    OptimizerFactory,
    SimulatedRuns,
    run_on_arrays,
    simulate_runs,
    time_to_optimum,
)

__all__ = [
    "ArraysObjective",
    "OptimizerFactory",
    "SimulatedRuns",
    "SpaceArrays",
    "cell_rng",
    "load_space_arrays",
    "percentile_in_space",
    "run_on_arrays",
    "simulate_runs",
    "time_to_optimum",
]
