"""Ask/tell search algorithms over a finite candidate set (``kdnas.core.Optimizer``).

All of them maximise the validation accuracy of ``EvalResult`` (``valid_acc``), never do I/O
or training, and take a seed. ``ask`` may be called several times before the matching
``tell`` (parallel workers): a pending suggestion is never suggested again at the same
fidelity, and the GP-based optimizers account for pending points by "kriging believer"
(each pending point is added to the data with the posterior mean as its value). Failed or
diverged results are told like any other: they cost budget, are never suggested again, and
never enter a GP fit.

``ask`` returns None when it cannot propose anything now: either the optimizer is
``finished`` (budget spent, target reached, candidates exhausted) or it waits for pending
results (Algorithm 1 before its fit, Algorithm 2 before it knows its low-fidelity best).

Algorithms (Trofimov et al., Section 3.2):
    RandomSearch          a random order of the candidates at one fidelity.
    LowFidelityGP         Algorithm 1: n_lf random evaluations at a low fidelity, a GP fitted
                          to them, recommendation = argmax of the posterior mean over all
                          candidates (optionally evaluated at a final fidelity).
    GPUCB                 GP-UCB: argmax of mean + beta * std over unseen candidates.
    MultiFidelityGPUCB    Algorithm 2: n_lf GP-UCB steps at a low fidelity (the first random),
                          then GP-UCB at high fidelity from the best low-fidelity point.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy.linalg import LinAlgError

from kdnas.core import HIGH_FIDELITY, Architecture, EvalResult, Fidelity, Suggestion
from kdnas.search.candidates import CandidateSet, random_subsets
from kdnas.search.gp import FittedGP, GPConfig, fit_gp, upper_confidence_bound

__all__ = [
    "GPUCB",
    "Budget",
    "LowFidelityGP",
    "MultiFidelityGPUCB",
    "RandomSearch",
    "TrialPool",
]

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


class RandomSearch:
    """Evaluates the candidates in a random order (without repetition) at one fidelity.

    Args:
        candidates: the architectures.
        fidelity: where to evaluate them (default: high fidelity).
        seed: seeds the order.
        budget: when to stop (default: after every candidate).
    """

    def __init__(
        self,
        candidates: CandidateSet,
        fidelity: Fidelity = HIGH_FIDELITY,
        seed: int | None = None,
        budget: Budget | None = None,
    ) -> None:
        self._pool = TrialPool(candidates, seed, budget)
        self.fidelity = fidelity
        self._order = self._pool.rng.permutation(len(candidates))

    @property
    def seed(self) -> int:
        return self._pool.seed

    @property
    def finished(self) -> bool:
        return self._pool.asked >= len(self._order) or not self._pool.budget_left()

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        return self._pool.suggest(int(self._order[self._pool.asked]), self.fidelity)

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self._pool.tell(suggestion, result)

    def best(self) -> EvalResult | None:
        return self._pool.best(self.fidelity)


class LowFidelityGP:
    """Algorithm 1: random low-fidelity evaluations, a GP on them, the argmax of its mean.

    Args:
        candidates: the architectures and their standardised features.
        n_lf: low-fidelity evaluations (the paper used 30).
        fidelity: the low fidelity, e.g. ``Fidelity(part=27, method="nst")``.
        seed: seeds the random subset (drawn as ``random_subsets(default_rng(seed), 1, N,
            n_lf)``, the same draw as the batched engine's per-seed subsets).
        gp: defaults to the paper's (``GPConfig.paper_algorithm1()``).
        final_fidelity: if given, the recommendation is then evaluated there (one more ask).
    """

    def __init__(
        self,
        candidates: CandidateSet,
        n_lf: int,
        fidelity: Fidelity,
        seed: int | None = None,
        gp: GPConfig | None = None,
        final_fidelity: Fidelity | None = None,
    ) -> None:
        if not 1 <= n_lf <= len(candidates):
            raise ValueError(f"n_lf must lie in [1, {len(candidates)}], got {n_lf}")
        self._pool = TrialPool(candidates, seed, Budget())
        self.fidelity = fidelity
        self.final_fidelity = final_fidelity
        self.gp = gp or GPConfig.paper_algorithm1()
        self._subset = random_subsets(self._pool.rng, 1, len(candidates), n_lf)[0]
        self._choice: int | None = None
        self._final_asked = False
        self.model: FittedGP | None = None

    @property
    def seed(self) -> int:
        return self._pool.seed

    @property
    def finished(self) -> bool:
        if self._choice is None:
            return False
        return self.final_fidelity is None or (self._final_asked and not self._pool.pending)

    def ask(self) -> Suggestion | None:
        if self._pool.asked < len(self._subset):
            return self._pool.suggest(int(self._subset[self._pool.asked]), self.fidelity)
        if self._choice is None or self.final_fidelity is None or self._final_asked:
            return None
        self._final_asked = True
        return self._pool.suggest(self._choice, self.final_fidelity)

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self._pool.tell(suggestion, result)
        ready = self._pool.asked == len(self._subset) and not self._pool.pending
        if self._choice is None and ready:
            self._fit()

    def _fit(self) -> None:
        idx, val = self._pool.observations(self.fidelity)
        if len(idx) == 0:
            logger.warning("Algorithm 1: every low-fidelity evaluation failed; choosing at random")
            self._choice = int(self._pool.rng.integers(len(self._pool.candidates)))
            return
        features = self._pool.candidates.features
        try:
            self.model = fit_gp(features[idx], val, self.gp, self._pool.rng)
        except (LinAlgError, ValueError) as error:
            logger.warning("Algorithm 1: GP fit failed (%s); choosing the best evaluated", error)
            self._choice = int(idx[np.argmax(val)])
            return
        mean, _ = self.model.predict(features)
        self._choice = int(np.argmax(mean))

    def recommendation(self) -> Architecture | None:
        """The chosen architecture (None until every low-fidelity result is told)."""
        return None if self._choice is None else self._pool.candidates.archs[self._choice]

    def best(self) -> EvalResult | None:
        """The final evaluation of the recommendation if made, else the best low-fidelity one."""
        if self.final_fidelity is not None:
            final = self._pool.best(self.final_fidelity)
            if final is not None:
                return final
        return self._pool.best(self.fidelity)


class GPUCB:
    """GP-UCB over the candidates at one fidelity: evaluate argmax(mean + beta * std).

    Args:
        candidates: the architectures and their standardised features.
        fidelity: where to evaluate (default: high fidelity).
        seed: seeds the random first point and the GP's restarts.
        beta: weight of the posterior std (the paper: 0.5).
        gp: defaults to the paper's (``GPConfig.paper_gp_ucb()``, mean-centred targets).
        start: the first architecture (default: a random one).
        budget: evaluation or seconds budget.
        target_value: stop once a result reaches this valid_acc.
        pool: share this ``TrialPool`` (a phase of a larger optimizer; seed and budget are
            then the pool's).
        max_evaluations: stop after this many evaluations at ``fidelity`` (a phase's length).
    """

    def __init__(
        self,
        candidates: CandidateSet,
        fidelity: Fidelity = HIGH_FIDELITY,
        seed: int | None = None,
        beta: float = 0.5,
        gp: GPConfig | None = None,
        start: Architecture | None = None,
        budget: Budget | None = None,
        target_value: float | None = None,
        pool: TrialPool | None = None,
        max_evaluations: int | None = None,
    ) -> None:
        if not beta >= 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if max_evaluations is not None and max_evaluations < 1:
            raise ValueError(f"max_evaluations must be >= 1, got {max_evaluations}")
        self._pool = pool or TrialPool(candidates, seed, budget)
        self.fidelity = fidelity
        self.beta = beta
        self.gp = gp or GPConfig.paper_gp_ucb()
        self.target_value = target_value
        self._start = None if start is None else candidates.index_of(start)
        self.max_evaluations = max_evaluations
        self.model: FittedGP | None = None

    @property
    def seed(self) -> int:
        return self._pool.seed

    def _count(self) -> int:
        return sum(1 for _, r in self._pool.told if r.fidelity == self.fidelity) + sum(
            1 for _, f in self._pool.pending.values() if f == self.fidelity
        )

    @property
    def target_reached(self) -> bool:
        best = self._pool.best(self.fidelity)
        return (
            self.target_value is not None
            and best is not None
            and best.valid_acc >= self.target_value
        )

    @property
    def finished(self) -> bool:
        if self.target_reached or not self._pool.budget_left():
            return True
        if self.max_evaluations is not None and self._count() >= self.max_evaluations:
            return True
        return len(self._pool.used(self.fidelity)) >= len(self._pool.candidates)

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        return self._pool.suggest(self._choose(), self.fidelity)

    def _choose(self) -> int:
        used = self._pool.used(self.fidelity)
        if not used and self._start is not None:
            return self._start
        free = np.array(sorted(set(range(len(self._pool.candidates))) - used))
        idx, val = self._pool.observations(self.fidelity)
        if len(idx) == 0:
            # Nothing to model yet (the start is pending, or every result failed).
            return int(self._pool.rng.choice(free))
        features = self._pool.candidates.features
        try:
            model = fit_gp(features[idx], val, self.gp, self._pool.rng)
            pending = [i for i, f in self._pool.pending.values() if f == self.fidelity]
            if pending:
                # Kriging believer: pretend each pending point returned the posterior mean.
                believed, _ = model.predict(features[pending])
                all_idx = np.concatenate([idx, pending])
                model = fit_gp(
                    features[all_idx], np.concatenate([val, believed]), self.gp, self._pool.rng
                )
        except (LinAlgError, ValueError) as error:
            logger.warning("GP-UCB: GP fit failed (%s); choosing at random", error)
            return int(self._pool.rng.choice(free))
        self.model = model
        mean, std = model.predict(features, return_std=True)
        score = upper_confidence_bound(mean, std, self.beta)
        score[list(used)] = -np.inf
        return int(np.argmax(score))

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self._pool.tell(suggestion, result)

    def best(self) -> EvalResult | None:
        return self._pool.best(self.fidelity)


class MultiFidelityGPUCB:
    """Algorithm 2: GP-UCB at a low fidelity for ``n_lf`` evaluations (the first random), then
    GP-UCB at high fidelity starting from the best low-fidelity architecture.

    Args:
        candidates: the architectures and their standardised features.
        n_lf: low-fidelity evaluations in all (the paper: 10).
        low_fidelity: e.g. ``Fidelity(part=27, method="kd")``.
        high_fidelity: default ``HIGH_FIDELITY``.
        seed: seeds the random first point and the GP restarts.
        beta, gp: as for ``GPUCB`` (one GP setting for both phases).
        budget: over both phases (evaluations, seconds).
        target_value: stop once a high-fidelity result reaches this valid_acc.
        start: the first low-fidelity architecture (default: a random one).
    """

    def __init__(
        self,
        candidates: CandidateSet,
        n_lf: int,
        low_fidelity: Fidelity,
        high_fidelity: Fidelity = HIGH_FIDELITY,
        seed: int | None = None,
        beta: float = 0.5,
        gp: GPConfig | None = None,
        budget: Budget | None = None,
        target_value: float | None = None,
        start: Architecture | None = None,
    ) -> None:
        if not 1 <= n_lf <= len(candidates):
            raise ValueError(f"n_lf must lie in [1, {len(candidates)}], got {n_lf}")
        if low_fidelity == high_fidelity:
            raise ValueError("Algorithm 2 needs a low fidelity different from the high one")
        self._pool = TrialPool(candidates, seed, budget)
        self.n_lf = n_lf
        self.low_fidelity = low_fidelity
        self.high_fidelity = high_fidelity
        self.beta = beta
        self.gp = gp or GPConfig.paper_gp_ucb()
        self.target_value = target_value
        self.low = GPUCB(
            candidates,
            low_fidelity,
            beta=beta,
            gp=self.gp,
            start=start,
            pool=self._pool,
            max_evaluations=n_lf,
        )
        self.high: GPUCB | None = None

    @property
    def seed(self) -> int:
        return self._pool.seed

    @property
    def finished(self) -> bool:
        return self.high is not None and self.high.finished

    def _low_done(self) -> bool:
        told = sum(1 for _, r in self._pool.told if r.fidelity == self.low_fidelity)
        return told >= self.n_lf or (self.low.finished and not self._pending(self.low_fidelity))

    def _pending(self, fidelity: Fidelity) -> bool:
        return any(f == fidelity for _, f in self._pool.pending.values())

    def ask(self) -> Suggestion | None:
        if self.high is None:
            if not self.low.finished:
                return self.low.ask()
            if not self._low_done():
                return None  # waiting for low-fidelity results
            self._start_high()
        assert self.high is not None
        return self.high.ask()

    def _start_high(self) -> None:
        idx, val = self._pool.observations(self.low_fidelity)
        if len(idx):
            start = self._pool.candidates.archs[int(idx[np.argmax(val)])]
        else:
            logger.warning("Algorithm 2: every low-fidelity evaluation failed; random HF start")
            start = None
        self.high = GPUCB(
            self._pool.candidates,
            self.high_fidelity,
            beta=self.beta,
            gp=self.gp,
            start=start,
            target_value=self.target_value,
            pool=self._pool,
        )

    @property
    def high_start(self) -> Architecture | None:
        """The architecture the high-fidelity phase started from (None before it starts)."""
        if self.high is None or self.high._start is None:
            return None
        return self._pool.candidates.archs[self.high._start]

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self._pool.tell(suggestion, result)

    def best(self) -> EvalResult | None:
        return self._pool.best(self.high_fidelity)
