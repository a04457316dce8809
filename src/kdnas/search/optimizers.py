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

import numpy as np
from scipy.linalg import LinAlgError

from kdnas.core import HIGH_FIDELITY, Architecture, EvalResult, Fidelity, Suggestion
from kdnas.search.candidates import CandidateSet, random_subsets
from kdnas.search.gp import FittedGP, GPConfig, fit_gp, upper_confidence_bound
from kdnas.search.pool import Budget, PooledOptimizer, TrialPool

__all__ = [
    "GPUCB",
    "Budget",
    "LowFidelityGP",
    "MultiFidelityGPUCB",
    "RandomSearch",
]

logger = logging.getLogger(__name__)


class RandomSearch(PooledOptimizer):
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
        self._init_pool(candidates, seed, budget)
        self.fidelity = fidelity
        self._best_fidelity = fidelity
        self._order = self._pool.rng.permutation(len(candidates))

    @property
    def finished(self) -> bool:
        return self._pool.asked >= len(self._order) or not self._pool.budget_left()

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        return self._pool.suggest(int(self._order[self._pool.asked]), self.fidelity)


class LowFidelityGP(PooledOptimizer):
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
        self._init_pool(candidates, seed, Budget())
        self.fidelity = fidelity
        self.final_fidelity = final_fidelity
        self.gp = gp or GPConfig.paper_algorithm1()
        self._subset = random_subsets(self._pool.rng, 1, len(candidates), n_lf)[0]
        self._choice: int | None = None
        self._final_asked = False
        self.model: FittedGP | None = None

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


class GPUCB(PooledOptimizer):
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
        self._best_fidelity = fidelity
        self.beta = beta
        self.gp = gp or GPConfig.paper_gp_ucb()
        self.target_value = target_value
        self._start = None if start is None else candidates.index_of(start)
        self.max_evaluations = max_evaluations
        self.model: FittedGP | None = None

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


class MultiFidelityGPUCB(PooledOptimizer):
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
        self._init_pool(candidates, seed, budget)
        self._best_fidelity = high_fidelity
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
