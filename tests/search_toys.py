"""Tiny synthetic candidate sets and objectives for the search tests (a helper module)."""

from __future__ import annotations

import math

import numpy as np

from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.search.candidates import CandidateSet


class TableObjective:
    """Looks up (valid_acc, test_acc, cost_s) per (index, fidelity) from plain arrays.

    ``fail`` holds indices whose evaluation returns status "failed" (NaN accuracies, the cost
    still charged).
    """

    def __init__(
        self,
        candidates: CandidateSet,
        valid: dict[Fidelity, np.ndarray],
        cost: dict[Fidelity, np.ndarray],
        fail: frozenset[int] = frozenset(),
        test: dict[Fidelity, np.ndarray] | None = None,
    ) -> None:
        self.candidates = candidates
        self.valid = valid
        self.cost = cost
        self.fail = fail
        self.test = test or valid
        self.calls: list[tuple[int, Fidelity]] = []

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        i = self.candidates.index_of(arch)
        self.calls.append((i, fidelity))
        cost = float(self.cost[fidelity][i])
        if i in self.fail:
            return EvalResult(arch.key(), fidelity, math.nan, math.nan, cost, status="failed")
        value, test = float(self.valid[fidelity][i]), float(self.test[fidelity][i])
        return EvalResult(arch.key(), fidelity, value, test, cost)


def make_candidates(n: int, d: int = 2, seed: int = 0) -> CandidateSet:
    rng = np.random.default_rng(seed)
    archs = [Architecture("toy", (i,)) for i in range(n)]
    return CandidateSet.from_raw(archs, rng.normal(size=(n, d)))


def toy() -> tuple[CandidateSet, np.ndarray]:
    """40 candidates in 2-d; a smooth objective with its maximum near the origin."""
    candidates = make_candidates(40)
    values = 0.7 - 0.05 * (candidates.features**2).sum(1)
    return candidates, values
