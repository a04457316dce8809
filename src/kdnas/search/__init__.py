"""Search policies over a finite set of candidate architectures, and their models.

Policies only: no training, no benchmark, no tables, no I/O, no torch (numpy and scipy). The
evaluation loop that drives them is ``kdnas.loop``; their replay on a tabular benchmark is
``kdnas.replay``; the paper's tables are ``kdnas.reproduction``.

- ``kdnas.search.candidates``: ``CandidateSet``, the architectures and their features.
- ``kdnas.search.gp``: the paper's GP (isotropic RBF on standardised features, marginal
  likelihood); ``kdnas.search.noisy_gp``: the same GP with per-point noise.
- ``kdnas.search.pool``: ``TrialPool`` and ``PooledOptimizer``, the bookkeeping every
  optimizer here shares; ``Budget``.
- ``kdnas.search.optimizers``: the paper's four (random search, Algorithm 1, GP-UCB,
  Algorithm 2).
- ``kdnas.search.proxy_prior``: proxy-prior GP-UCB, the paper's GP-UCB on a zero-cost prior
  (beyond the paper; the fastest measured).
- ``kdnas.search.registry``: the one registry of optimizers that ``kdnas search``, Table 4
  and the field leaderboard read.
- ``kdnas.search.experimental``: optimizers measured but not recommended (not re-exported).
"""

from __future__ import annotations

from kdnas.search.candidates import CandidateSet, random_subsets, standardize_columns
from kdnas.search.gp import NORMALIZATIONS, FittedGP, GPConfig, fit_gp
from kdnas.search.optimizers import GPUCB, LowFidelityGP, MultiFidelityGPUCB, RandomSearch
from kdnas.search.pool import Budget, PooledOptimizer, TrialPool
from kdnas.search.proxy_prior import ProxyPriorConfig, ProxyPriorGPUCB, multiply_add_proxy
from kdnas.search.registry import (
    OptimizerEntry,
    OptimizerRequest,
    get_optimizer,
    register_optimizer,
    registered_optimizers,
)

__all__ = [
    "GPUCB",
    "NORMALIZATIONS",
    "Budget",
    "CandidateSet",
    "FittedGP",
    "GPConfig",
    "LowFidelityGP",
    "MultiFidelityGPUCB",
    "OptimizerEntry",
    "OptimizerRequest",
    "PooledOptimizer",
    "ProxyPriorConfig",
    "ProxyPriorGPUCB",
    "RandomSearch",
    "TrialPool",
    "fit_gp",
    "get_optimizer",
    "multiply_add_proxy",
    "random_subsets",
    "register_optimizer",
    "registered_optimizers",
    "standardize_columns",
]
