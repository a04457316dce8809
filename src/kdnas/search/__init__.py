"""Search algorithms over a finite set of candidate architectures, and the paper's experiments.

- ``kdnas.search.gp``: the GP (isotropic RBF on standardised features, marginal likelihood).
- ``kdnas.search.optimizers``: ask/tell optimizers (random search, Algorithm 1, GP-UCB,
  Algorithm 2) implementing ``kdnas.core.Optimizer``.
- ``kdnas.search.loop``: the one evaluation loop (ask, evaluate, tell, store, stop) with
  pluggable workers; ``InProcessWorkers`` simulates N asynchronous workers on a clock.
- ``kdnas.search.harness``: run statistics (``Trace``) and the paper's percentile.
- ``kdnas.search.engine``: the batched simulation of many runs at once (torch).
- ``kdnas.search.reproduction``: the paper's Tables 2 and 4 and its figures' data.
- ``kdnas.search.multifidelity``: proxy-prior and screening GP-UCB (beyond the paper), with
  their Table 4 rows.
- ``kdnas.search.adaptive``: adaptive-fidelity GP-UCB, which weighs the proxy and KD
  fidelities by how well each has ranked this search's HF results (with its Table 4 row).
- ``kdnas.search.optimum_search``: optimum search, which evaluates at HF what is most likely
  the optimum per second and runs KD fidelities by their value of information (Table 4 row).
"""

from __future__ import annotations

from kdnas.search.adaptive import AdaptiveConfig, AdaptiveFidelityGPUCB
from kdnas.search.candidates import CandidateSet, random_subsets, standardize_columns
from kdnas.search.gp import NORMALIZATIONS, FittedGP, GPConfig, fit_gp
from kdnas.search.harness import Trace, TraceStep, percentile_in_space
from kdnas.search.loop import (
    InProcessWorkers,
    LoopLimits,
    Workers,
    run_loop,
    run_many,
    run_optimizer,
)
from kdnas.search.multifidelity import (
    ScreeningConfig,
    ScreeningGPUCB,
    multiply_add_proxy,
    register_table4_rows,
    simulate_screening,
)
from kdnas.search.optimizers import GPUCB, Budget, LowFidelityGP, MultiFidelityGPUCB, RandomSearch
from kdnas.search.optimum_search import OptimumSearch, OptimumSearchConfig

__all__ = [
    "GPUCB",
    "NORMALIZATIONS",
    "AdaptiveConfig",
    "AdaptiveFidelityGPUCB",
    "Budget",
    "CandidateSet",
    "FittedGP",
    "GPConfig",
    "InProcessWorkers",
    "LoopLimits",
    "LowFidelityGP",
    "MultiFidelityGPUCB",
    "OptimumSearch",
    "OptimumSearchConfig",
    "RandomSearch",
    "ScreeningConfig",
    "ScreeningGPUCB",
    "Trace",
    "TraceStep",
    "Workers",
    "fit_gp",
    "multiply_add_proxy",
    "percentile_in_space",
    "random_subsets",
    "register_table4_rows",
    "run_loop",
    "run_many",
    "run_optimizer",
    "simulate_screening",
    "standardize_columns",
]
