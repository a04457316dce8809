"""Adaptive-fidelity GP-UCB: learns online how far to trust the proxy and each KD fidelity.

``ScreeningGPUCB`` (``kdnas.search.multifidelity``) trusts its sources by fixed settings: a
proxy slope chosen on the benchmark, a screening fidelity every candidate passes. Here every
cheap source earns its weight from this search's own results:

    f(a)          the high-fidelity valid_acc of architecture a (what is maximised)
    sources       the zero-cost proxy z(a) (free, known for every candidate; standardised) and
                  each low fidelity L of ``low_fidelities`` (a method x part, e.g. 1/27 KD)
    reliability   rho_s: the Spearman rank correlation between source s and f over the
                  architectures seen at both, shrunk towards a prior (``prior_rho``) by
                  ``prior_pairs`` pseudo-pairs: rho_s = (n rho_obs + n0 rho_0) / (n + n0).
                  Ranks, not values, so fidelities on different scales compare alike; signed,
                  so a reversed proxy is used reversed.
    spread        sd_f: the std of f over the candidates, from the HF results seen (shrunk
                  towards ``accuracy_spread``).
    trend         m(a) = rho_proxy * sd_f * z(a): the proxy's prior mean of f.
    imputation    an architecture seen at low fidelity L but not at HF enters the GP with
                  target mean_f + rho_L * sd_f * zL(a) (zL standardised over L's results) and
                  noise variance sd_f^2 (1 - rho_L^2): a Gaussian copula with rank correlation
                  rho_L, the most reliable L when several were run.
    model         the GP of ``kdnas.search._noisy_gp`` (the paper's unit-amplitude RBF) of
                  f - m on exact HF results and imputed low-fidelity results.
    arm           a* = argmax UCB over the architectures not yet at HF and not pending.
    fidelity      a* goes to HF unless a low-fidelity result of it is worth its seconds:
                  screening a* at L saves the HF run c_H when the HF run would not have
                  improved the incumbent (probability p = P(f(a*) < best so far) under
                  N(GP mean, sd_f^2 (1 - rho_proxy^2))) and L says so (weight rho_L^2). L is
                  run when rho_L^2 p c_H > c_L, the best L by rho_L^2 p c_H - c_L; costs are
                  the means of the results seen (before any: c_H / part). Before any HF
                  result there is no incumbent, so the first run is HF at the proxy's
                  favourite, as for proxy-prior GP-UCB.

With ``low_fidelities=()`` it is proxy-prior GP-UCB whose proxy weight is learned (the
ablation without KD fidelities). ``fidelity_counts`` reports how often each fidelity was
chosen. Parallel use: ``ask`` may be called before earlier suggestions are told; an
architecture with a pending evaluation is not suggested again until it is told, and an
(architecture, fidelity) already evaluated is never asked again. Failed or diverged results
cost budget and take their architecture out of the search.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
from scipy import stats

from kdnas.core import HIGH_FIDELITY, EvalResult, Fidelity, Suggestion
from kdnas.search._noisy_gp import fit_noisy_gp
from kdnas.search.candidates import CandidateSet
from kdnas.search.gp import upper_confidence_bound
from kdnas.search.multifidelity import standardise_proxy
from kdnas.search.optimizers import Budget, TrialPool
from kdnas.search.reproduction import TABLE4_ROWS, SpaceArrays, register_optimizer

__all__ = [
    "AdaptiveConfig",
    "AdaptiveFidelityGPUCB",
    "config_for",
    "prior_rho_for",
    "register_table4_rows",
    "shrunk_rank_correlation",
]


@dataclass(frozen=True)
class AdaptiveConfig:
    """Settings of ``AdaptiveFidelityGPUCB``.

    Args:
        low_fidelities: the KD fidelities it may spend seconds on (empty: proxy only).
        high_fidelity: the fidelity whose accuracy is maximised.
        beta: UCB weight of the posterior std.
        proxy_prior_rho: prior rank correlation of the proxy with f (0: no trust a priori).
        low_prior_rho: prior rank correlation of each low fidelity with f, in the order of
            ``low_fidelities`` (more data, more trust: chosen on draw 0, docs/results.md).
        prior_pairs: n0, the pseudo-pairs the priors weigh against observed pairs.
        accuracy_spread: prior std of f over the candidates (fraction of accuracy).
        promote_probability: send the screened architecture most likely to beat the
            incumbent to HF once that probability reaches this (1: only through the UCB).
        low_share: low-fidelity seconds may reach at most this share of the HF seconds; a
            cap, so that a screening that never promotes cannot sweep the whole space
            (0.2: chosen from 0.2, 0.5, 1 on draw 0, docs/results.md).
        standardise_targets: fit the GP in units of sd_f (False: in accuracy fractions
            with unit amplitude, as the paper's GP-UCB, where the std dominates the UCB).
    """

    low_fidelities: tuple[Fidelity, ...] = (
        Fidelity(part=27, method="kd"),
        Fidelity(part=9, method="kd"),
        Fidelity(part=3, method="kd"),
    )
    high_fidelity: Fidelity = HIGH_FIDELITY
    beta: float = 1.0
    proxy_prior_rho: float = 0.5
    low_prior_rho: tuple[float, ...] = (0.3, 0.5, 0.8)
    prior_pairs: float = 4.0
    accuracy_spread: float = 0.016
    standardise_targets: bool = False
    promote_probability: float = 0.3
    low_share: float = 0.2

    def __post_init__(self) -> None:
        if self.high_fidelity in self.low_fidelities:
            raise ValueError("AdaptiveConfig: high_fidelity must not be one of low_fidelities")
        if len(set(self.low_fidelities)) != len(self.low_fidelities):
            raise ValueError("AdaptiveConfig: low_fidelities must be distinct")
        if not self.beta >= 0.0:
            raise ValueError(f"AdaptiveConfig.beta must be >= 0, got {self.beta}")
        if len(self.low_prior_rho) != len(self.low_fidelities):
            raise ValueError("AdaptiveConfig: low_prior_rho needs one value per low fidelity")
        for value in (self.proxy_prior_rho, *self.low_prior_rho):
            if not -1.0 < value < 1.0:
                raise ValueError(f"AdaptiveConfig: prior correlations lie in (-1, 1), got {value}")
        if not (math.isfinite(self.prior_pairs) and self.prior_pairs > 0.0):
            raise ValueError(f"AdaptiveConfig.prior_pairs must be > 0, got {self.prior_pairs}")
        if not 0.0 < self.promote_probability <= 1.0:
            raise ValueError(
                "AdaptiveConfig.promote_probability must lie in (0, 1], got "
                f"{self.promote_probability}"
            )
        if not (math.isfinite(self.low_share) and self.low_share >= 0.0):
            raise ValueError(f"AdaptiveConfig.low_share must be >= 0, got {self.low_share}")
        if not (math.isfinite(self.accuracy_spread) and self.accuracy_spread > 0.0):
            raise ValueError(
                f"AdaptiveConfig.accuracy_spread must be > 0, got {self.accuracy_spread}"
            )


#: Prior rank correlation with f of a KD fidelity on 1/part of the data, by part (less data,
#: less trust); 0.5 for other parts.
PRIOR_RHO_BY_PART: dict[int, float] = {27: 0.3, 9: 0.5, 3: 0.8}


def config_for(
    low_fidelities: Sequence[Fidelity], high_fidelity: Fidelity = HIGH_FIDELITY, **overrides
) -> AdaptiveConfig:
    """The preset for other fidelities (``kdnas search``): each low fidelity's prior
    correlation from its part (``PRIOR_RHO_BY_PART``)."""
    fidelities = tuple(low_fidelities)
    return AdaptiveConfig(
        low_fidelities=fidelities,
        high_fidelity=high_fidelity,
        low_prior_rho=prior_rho_for(fidelities),
        **overrides,
    )


def prior_rho_for(low_fidelities: Sequence[Fidelity]) -> tuple[float, ...]:
    """Each low fidelity's prior rank correlation with HF, from its part
    (``PRIOR_RHO_BY_PART``; 0.5 for a part it does not list)."""
    return tuple(PRIOR_RHO_BY_PART.get(f.part, 0.5) for f in low_fidelities)


def shrunk_rank_correlation(
    x: np.ndarray, y: np.ndarray, prior: float, prior_pairs: float
) -> float:
    """Spearman correlation of ``x`` and ``y`` shrunk towards ``prior`` by ``prior_pairs``
    pseudo-pairs; fewer than 3 pairs (or a constant side) carry no evidence. In (-1, 1)."""
    n = len(x)
    observed = 0.0
    if n >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        observed = float(stats.spearmanr(x, y).statistic)
    else:
        n = 0
    value = (n * observed + prior_pairs * prior) / (n + prior_pairs)
    # Never exactly +-1: the imputation's noise variance sd^2 (1 - rho^2) must stay positive.
    return float(np.clip(value, -0.99, 0.99))


class AdaptiveFidelityGPUCB:
    """Ask/tell GP-UCB that weighs a zero-cost proxy and KD fidelities by how well each has
    ranked the high-fidelity results of this search, and spends seconds on a KD fidelity only
    when that is expected to save more than it costs (module docstring).

    Args:
        candidates: the architectures and their standardised features.
        config: see ``AdaptiveConfig``.
        seed: seeds the random first architecture when there is no proxy.
        budget: evaluations or seconds over all fidelities.
        target_value: stop once a high-fidelity result reaches this valid_acc.
        proxy: [N] zero-cost proxy per candidate, larger = expected better (e.g.
            ``multiply_add_proxy``), or None. Standardised over the candidates.
    """

    def __init__(
        self,
        candidates: CandidateSet,
        config: AdaptiveConfig | None = None,
        seed: int | None = None,
        budget: Budget | None = None,
        target_value: float | None = None,
        proxy: np.ndarray | Sequence[float] | None = None,
    ) -> None:
        self._pool = TrialPool(candidates, seed, budget)
        self.config = config or AdaptiveConfig()
        self.target_value = target_value
        self._failed: set[int] = set()
        self._proxy = self._standardised(proxy, len(candidates))

    @staticmethod
    def _standardised(proxy: np.ndarray | Sequence[float] | None, size: int) -> np.ndarray:
        if proxy is None:
            return np.zeros(size)
        return standardise_proxy(proxy, size, "AdaptiveFidelityGPUCB")

    @property
    def seed(self) -> int:
        return self._pool.seed

    @property
    def candidates(self) -> CandidateSet:
        return self._pool.candidates

    @property
    def cost_s(self) -> float:
        """Seconds of every told evaluation."""
        return self._pool.cost_s

    @property
    def finished(self) -> bool:
        best = self.best()
        target = self.target_value
        if target is not None and best is not None and best.valid_acc >= target:
            return True
        if not self._pool.budget_left():
            return True
        done = self._pool.used(self.config.high_fidelity) | self._failed
        return len(done) >= len(self.candidates)

    def best(self) -> EvalResult | None:
        """The best high-fidelity result so far (the incumbent)."""
        return self._pool.best(self.config.high_fidelity)

    def fidelity_counts(self) -> dict[str, int]:
        """How many evaluations were asked at each fidelity (label -> count)."""
        counts = Counter(result.fidelity.label() for _, result in self._pool.told)
        counts.update(fidelity.label() for _, fidelity in self._pool.pending.values())
        return dict(counts)

    # ------------------------------------------------------------------ reliabilities

    def _high(self) -> tuple[np.ndarray, np.ndarray]:
        return self._pool.observations(self.config.high_fidelity)

    def _spread(self, high_val: np.ndarray) -> float:
        """sd_f: the HF results' std shrunk towards the prior spread."""
        cfg = self.config
        n = len(high_val)
        sum_sq = float(((high_val - high_val.mean()) ** 2).sum()) if n else 0.0
        dof = max(n - 1, 0)
        return math.sqrt(
            (sum_sq + cfg.prior_pairs * cfg.accuracy_spread**2) / (dof + cfg.prior_pairs)
        )

    def proxy_reliability(self) -> float:
        """rho_proxy, the shrunk rank correlation of the proxy with the HF results so far
        (the prior's before 3 results; 0 without a proxy)."""
        if not self._proxy.any():
            return 0.0
        high_idx, high_val = self._high()
        cfg = self.config
        return shrunk_rank_correlation(
            self._proxy[high_idx], high_val, cfg.proxy_prior_rho, cfg.prior_pairs
        )

    def low_reliability(self, fidelity: Fidelity) -> float:
        """rho_L of a low fidelity: its shrunk rank correlation with the HF results over the
        architectures seen at both."""
        high_idx, high_val = self._high()
        low_idx, low_val = self._pool.observations(fidelity)
        low_of = dict(zip(low_idx.tolist(), low_val.tolist(), strict=True))
        pairs = [
            (low_of[i], v)
            for i, v in zip(high_idx.tolist(), high_val.tolist(), strict=True)
            if i in low_of
        ]
        x = np.array([p[0] for p in pairs])
        y = np.array([p[1] for p in pairs])
        cfg = self.config
        prior = cfg.low_prior_rho[cfg.low_fidelities.index(fidelity)]
        return shrunk_rank_correlation(x, y, prior, cfg.prior_pairs)

    def _mean_cost(self, fidelity: Fidelity) -> float | None:
        costs = [r.cost_s for _, r in self._pool.told if r.fidelity == fidelity]
        return float(np.mean(costs)) if costs else None

    # ------------------------------------------------------------------ ask / tell

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        choice = self._choose()
        if choice is None:
            return None
        return self._pool.suggest(*choice)

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        index = self._pool.tell(suggestion, result)
        if not result.ok or not math.isfinite(result.valid_acc):
            self._failed.add(index)

    def _choose(self) -> tuple[int, Fidelity] | None:
        cfg = self.config
        size = len(self.candidates)
        pending = {i for i, _ in self._pool.pending.values()}
        blocked = self._pool.used(cfg.high_fidelity) | self._failed | pending
        free = np.array([i for i in range(size) if i not in blocked], dtype=int)
        if len(free) == 0:
            return None
        high_idx, high_val = self._high()
        rho_proxy = self.proxy_reliability()
        spread = self._spread(high_val)
        trend = rho_proxy * spread * self._proxy
        idx, targets, noise = self._training_data(high_idx, high_val, spread)
        promoted = self._promotion(idx[len(high_idx) :], targets, noise, len(high_idx), free)
        if promoted is not None:
            return promoted, cfg.high_fidelity
        # Screened architectures reach HF by promotion; the UCB proposes the others while
        # there are any.
        unscreened = np.setdiff1d(free, idx[len(high_idx) :])
        if len(unscreened) and self._may_screen():
            free = unscreened
        score = np.full(size, -np.inf)
        if len(idx) == 0:
            if not self._proxy.any():
                return int(self._pool.rng.choice(free)), cfg.high_fidelity
            # The prior alone: constant GP std, so the UCB ranks by the trend.
            score[free] = trend[free]
        else:
            # In units of sd_f with ``standardise_targets``: the GP's unit amplitude is then
            # the spread of f, so results and the trend move the UCB as much as its std.
            unit = spread if cfg.standardise_targets else 1.0
            residual = (targets - trend[idx]) / unit
            gp = fit_noisy_gp(self.candidates.features[idx], residual, noise / unit**2)
            mean, std = gp.predict(self.candidates.features, return_std=True)
            mean, std = mean * unit, std * unit
            score[free] = upper_confidence_bound(mean[free] + trend[free], std[free], cfg.beta)
        arm = int(np.argmax(score))
        return arm, self._fidelity_for(arm, high_idx, high_val, spread, rho_proxy, trend)

    def _promotion(
        self,
        screened: np.ndarray,
        targets: np.ndarray,
        noise: np.ndarray,
        high_count: int,
        free: np.ndarray,
    ) -> int | None:
        """The screened architecture most likely to beat the incumbent at HF, if that
        probability reaches ``promote_probability`` (its imputed f is N(target, noise))."""
        if high_count == 0 or len(screened) == 0:
            return None
        incumbent = float(targets[:high_count].max())
        mean = targets[high_count:]
        std = np.sqrt(noise[high_count:])
        beats = stats.norm.sf((incumbent - mean) / std)
        beats[~np.isin(screened, free)] = -1.0
        best = int(np.argmax(beats))
        if beats[best] >= self.config.promote_probability:
            return int(screened[best])
        return None

    def _may_screen(self) -> bool:
        """Whether low-fidelity seconds are still below ``low_share`` of the HF seconds."""
        cfg = self.config
        if not cfg.low_fidelities:
            return False
        high = sum(r.cost_s for _, r in self._pool.told if r.fidelity == cfg.high_fidelity)
        return self._pool.cost_s - high <= cfg.low_share * high

    def _fidelity_for(
        self,
        arm: int,
        high_idx: np.ndarray,
        high_val: np.ndarray,
        spread: float,
        rho_proxy: float,
        trend: np.ndarray,
    ) -> Fidelity:
        cfg = self.config
        if len(high_val) == 0 or not self._may_screen():
            return cfg.high_fidelity
        # An architecture with any low-fidelity result has been screened: it goes on to HF.
        for fidelity in cfg.low_fidelities:
            if arm in self._pool.used(fidelity):
                return cfg.high_fidelity
        high_cost = self._mean_cost(cfg.high_fidelity) or 0.0
        # The predictive of f(a*) in accuracy units: the HF mean plus the proxy's trend, with
        # the spread the proxy leaves unexplained.
        predicted = float(high_val.mean() + trend[arm])
        scale = spread * math.sqrt(max(1.0 - rho_proxy**2, 1e-4))
        wasted = float(stats.norm.cdf((high_val.max() - predicted) / scale))
        best_gain, best_fidelity = 0.0, cfg.high_fidelity
        for fidelity in cfg.low_fidelities:
            cost = self._mean_cost(fidelity)
            if cost is None:
                cost = high_cost / fidelity.part
            gain = self.low_reliability(fidelity) ** 2 * wasted * high_cost - cost
            if gain > best_gain:
                best_gain, best_fidelity = gain, fidelity
        return best_fidelity

    def _training_data(
        self, high_idx: np.ndarray, high_val: np.ndarray, spread: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Indices, targets (accuracy units) and noise variances of the GP: exact HF results
        and, for architectures not at HF, the copula imputation of their most reliable low
        fidelity."""
        cfg = self.config
        seen = set(high_idx.tolist())
        centre = float(high_val.mean()) if len(high_val) else 0.0
        imputed: dict[int, tuple[float, float, float]] = {}  # index -> (|rho|, value, var)
        for fidelity in cfg.low_fidelities:
            low_idx, low_val = self._pool.observations(fidelity)
            if len(low_val) == 0:
                continue
            rho = self.low_reliability(fidelity)
            # One result (or all alike) says nothing of rank yet: imputed at the centre.
            spread_low = low_val.std()
            standard = (low_val - low_val.mean()) / spread_low if spread_low > 0 else 0 * low_val
            for i, z in zip(low_idx.tolist(), standard.tolist(), strict=True):
                if i in seen or (i in imputed and imputed[i][0] >= abs(rho)):
                    continue
                value = centre + rho * spread * z
                imputed[i] = (abs(rho), value, spread**2 * (1.0 - rho**2))
        extra = sorted(imputed)
        idx = np.concatenate([high_idx, np.asarray(extra, dtype=int)]).astype(int)
        targets = np.concatenate([high_val, [imputed[i][1] for i in extra]])
        # Exact results get scikit-learn's default jitter, as the paper's GP-UCB.
        noise = np.concatenate([np.full(len(high_idx), 1e-10), [imputed[i][2] for i in extra]])
        return idx, targets, noise


# ---------------------------------------------------------------------------- Table 4 row


#: AdaptiveFidelityGPUCB or a subclass (optimum search).
AdaptiveOptimizer = TypeVar("AdaptiveOptimizer", bound="AdaptiveFidelityGPUCB")


def on_benchmark_space(
    optimizer_type: type[AdaptiveOptimizer],
    candidates: CandidateSet,
    arrays: SpaceArrays,
    seed: int,
    config: Any,
    max_cost_s: float = 1e6,
) -> AdaptiveOptimizer:
    """An optimizer of this family on a benchmark space: log multiply-adds as the proxy (if
    known), and the low fidelities of ``config`` (with their prior correlations) that the
    benchmark holds."""
    held = [
        (f, rho)
        for f, rho in zip(config.low_fidelities, config.low_prior_rho, strict=True)
        if (f.method, f.part) in arrays.low
    ]
    proxy = None if arrays.multiply_adds is None else np.log(arrays.multiply_adds)
    return optimizer_type(
        candidates,
        dataclasses.replace(
            config,
            low_fidelities=tuple(f for f, _ in held),
            low_prior_rho=tuple(rho for _, rho in held),
        ),
        seed=seed,
        budget=Budget(max_cost_s=max_cost_s),
        proxy=proxy,
    )


def _adaptive_optimizer(
    candidates: CandidateSet,
    arrays: SpaceArrays,
    seed: int,
    config: AdaptiveConfig | None = None,
    max_cost_s: float = 1e6,
) -> AdaptiveFidelityGPUCB:
    """Adaptive-fidelity GP-UCB on a benchmark space (``on_benchmark_space``)."""
    return on_benchmark_space(
        AdaptiveFidelityGPUCB, candidates, arrays, seed, config or AdaptiveConfig(), max_cost_s
    )


def register_table4_rows() -> None:
    """Put adaptive-fidelity GP-UCB into ``kdnas reproduce table4`` (idempotent; done when
    this module is imported, as ``import kdnas.search`` does)."""
    if "adaptive" not in TABLE4_ROWS:
        register_optimizer(
            "adaptive",
            partial(_adaptive_optimizer, config=AdaptiveConfig()),
            label="adaptive-fidelity GP-UCB (proxy + KD ladder, learned weights)",
            applies=lambda arrays: arrays.multiply_adds is not None,
        )


register_table4_rows()
