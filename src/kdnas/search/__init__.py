"""Search algorithms over a finite set of candidate architectures, and the paper's experiments.

- ``kdnas.search.gp``: the GP (isotropic RBF on standardised features, marginal likelihood).
- ``kdnas.search.optimizers``: ask/tell optimizers (random search, Algorithm 1, GP-UCB,
  Algorithm 2) implementing ``kdnas.core.Optimizer``.
- ``kdnas.search.harness``: the serial evaluation loop and run statistics.
- ``kdnas.search.engine``: the batched simulation of many runs at once (torch).
- ``kdnas.search.reproduction``: the paper's Tables 2 and 4 and its figures' data.
"""

from __future__ import annotations

from kdnas.search.candidates import CandidateSet, random_subsets, standardize_columns
from kdnas.search.gp import NORMALIZATIONS, FittedGP, GPConfig, fit_gp
from kdnas.search.harness import Trace, TraceStep, percentile_in_space, run_many, run_optimizer
from kdnas.search.optimizers import GPUCB, Budget, LowFidelityGP, MultiFidelityGPUCB, RandomSearch

__all__ = [
    "GPUCB",
    "NORMALIZATIONS",
    "Budget",
    "CandidateSet",
    "FittedGP",
    "GPConfig",
    "LowFidelityGP",
    "MultiFidelityGPUCB",
    "RandomSearch",
    "Trace",
    "TraceStep",
    "fit_gp",
    "percentile_in_space",
    "random_subsets",
    "run_many",
    "run_optimizer",
    "standardize_columns",
]
