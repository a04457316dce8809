"""What every optimizer over a finite candidate set keeps: trials, pending asks, seconds spent.

``TrialPool`` is that bookkeeping; ``PooledOptimizer`` is the base class of the optimizers
built on it, holding the accessors they all share (``seed``, ``candidates``, ``cost_s``,
``tell``, ``best``), so that a policy writes only how it chooses (``ask``) and when it is done
(``finished``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from kdnas.core import EvalResult, Fidelity, Suggestion
from kdnas.search.candidates import CandidateSet

__all__ = ["Budget", "HighFidelitySearch", "PooledOptimizer", "TrialPool"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """When an optimizer stops asking.

    Args:
        max_evaluations: suggestions to make in all (None = no limit).
        max_cost_s: stop once the told results have cost this many seconds (None = no limit).
    """

    max_evaluations: int | None = None
    max_cost_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_evaluations is not None and self.max_evaluations < 1:
            raise ValueError(f"Budget.max_evaluations must be >= 1, got {self.max_evaluations}")
        if self.max_cost_s is not None and not self.max_cost_s > 0:
            raise ValueError(f"Budget.max_cost_s must be > 0 seconds, got {self.max_cost_s}")


def _draw_seed(seed: int | None) -> int:
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0])
        logger.info("drew seed %d", seed)
    return seed


class TrialPool:
    """The bookkeeping every optimizer here keeps: trial ids, pending and told suggestions,
    seconds spent, the seeded random stream. Optimizers made of phases (Algorithm 2's two
    GP-UCBs) share one pool, so trial ids and the budget run across the phases.

    Args:
        candidates: the architectures.
        seed: seeds ``rng`` (None draws one and logs it).
        budget: when ``budget_left`` turns False (default: never).
    """

    def __init__(self, candidates: CandidateSet, seed: int | None, budget: Budget | None):
        if not isinstance(candidates, CandidateSet):
            raise TypeError("candidates must be a kdnas.search.CandidateSet")
        self.candidates = candidates
        self.seed = _draw_seed(seed)
        self.rng = np.random.default_rng(self.seed)
        self.budget = budget or Budget()
        self.next_id = 0
        self.pending: dict[int, tuple[int, Fidelity]] = {}
        self.told: list[tuple[int, EvalResult]] = []
        self.cost_s = 0.0
        self.asked = 0

    def budget_left(self) -> bool:
        b = self.budget
        if b.max_evaluations is not None and self.asked >= b.max_evaluations:
            return False
        return b.max_cost_s is None or self.cost_s < b.max_cost_s

    def used(self, fidelity: Fidelity) -> set[int]:
        """Indices evaluated or pending at ``fidelity``."""
        out = {i for i, r in self.told if r.fidelity == fidelity}
        out |= {i for i, f in self.pending.values() if f == fidelity}
        return out

    def observations(self, fidelity: Fidelity) -> tuple[np.ndarray, np.ndarray]:
        """Indices and valid_acc of the ok results at ``fidelity``."""
        pairs = [
            (i, r.valid_acc)
            for i, r in self.told
            if r.fidelity == fidelity and r.ok and math.isfinite(r.valid_acc)
        ]
        if not pairs:
            return np.zeros(0, dtype=int), np.zeros(0)
        idx, val = zip(*pairs, strict=True)
        return np.asarray(idx, dtype=int), np.asarray(val, dtype=float)

    def suggest(self, index: int, fidelity: Fidelity) -> Suggestion:
        suggestion = Suggestion(self.next_id, self.candidates.archs[index], fidelity)
        self.pending[self.next_id] = (index, fidelity)
        self.next_id += 1
        self.asked += 1
        return suggestion

    def tell(self, suggestion: Suggestion, result: EvalResult) -> int:
        entry = self.pending.get(suggestion.trial_id)
        if entry is None:
            raise ValueError(f"trial {suggestion.trial_id} was not asked or was already told")
        if result.fidelity != entry[1]:
            # Checked before the trial leaves `pending`, so a wrong tell can be corrected.
            raise ValueError(
                f"trial {suggestion.trial_id} was asked at {entry[1].label()}, "
                f"told at {result.fidelity.label()}"
            )
        del self.pending[suggestion.trial_id]
        self.told.append((entry[0], result))
        self.cost_s += result.cost_s
        return entry[0]

    def best(self, fidelity: Fidelity | None = None) -> EvalResult | None:
        ok = [r for _, r in self.told if r.ok and (fidelity is None or r.fidelity == fidelity)]
        return max(ok, key=lambda r: r.valid_acc) if ok else None


class PooledOptimizer:
    """Base of the optimizers that keep their trials in a ``TrialPool``.

    A subclass sets ``self._pool`` (``_init_pool``) and ``self._best_fidelity`` (the fidelity
    whose best result ``best`` reports; None: any), and writes ``ask`` and ``finished``;
    ``tell`` records the result in the pool (override it to learn more from a result, calling
    ``super().tell`` first).
    """

    _pool: TrialPool
    _best_fidelity: Fidelity | None = None

    def _init_pool(
        self, candidates: CandidateSet, seed: int | None, budget: Budget | None
    ) -> TrialPool:
        self._pool = TrialPool(candidates, seed, budget)
        return self._pool

    @property
    def seed(self) -> int:
        """The seed of this optimizer's random stream (drawn and logged if none was given)."""
        return self._pool.seed

    @property
    def candidates(self) -> CandidateSet:
        return self._pool.candidates

    @property
    def cost_s(self) -> float:
        """Seconds of every result told so far."""
        return self._pool.cost_s

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self._pool.tell(suggestion, result)

    def best(self) -> EvalResult | None:
        """The best ok result at ``_best_fidelity`` told so far (the incumbent)."""
        return self._pool.best(self._best_fidelity)


class HighFidelitySearch(PooledOptimizer):
    """Base of the optimizers that search for the best architecture at one high fidelity,
    spending cheaper evaluations as they choose: a failed or diverged result takes its
    architecture out of the search, and the search ends at ``target_value``, when the budget
    is spent, or when every architecture is done at high fidelity (or failed). A subclass
    writes ``_choose`` -> (candidate index, fidelity) or None (nothing to ask now).
    """

    target_value: float | None = None

    def _init_search(
        self,
        candidates: CandidateSet,
        seed: int | None,
        budget: Budget | None,
        high_fidelity: Fidelity,
        target_value: float | None,
    ) -> None:
        self._init_pool(candidates, seed, budget)
        self._best_fidelity = high_fidelity
        self.target_value = target_value
        self._failed: set[int] = set()

    def _choose(self) -> tuple[int, Fidelity] | None:
        raise NotImplementedError

    @property
    def finished(self) -> bool:
        best = self.best()
        target = self.target_value
        if target is not None and best is not None and best.valid_acc >= target:
            return True
        if not self._pool.budget_left():
            return True
        assert self._best_fidelity is not None
        done = self._pool.used(self._best_fidelity) | self._failed
        return len(done) >= len(self.candidates)

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        choice = self._choose()
        return None if choice is None else self._pool.suggest(*choice)

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        index = self._pool.tell(suggestion, result)
        if not result.ok or not math.isfinite(result.valid_acc):
            self._failed.add(index)
