"""Proxy-prior GP-UCB: the paper's GP-UCB on top of a zero-cost prior, optionally screening.

The paper's Algorithm 2 uses its low-fidelity results only to choose where the high-fidelity
search starts. ``ProxyPriorGPUCB`` keeps one model of the high-fidelity accuracy f over the
whole run and feeds it two kinds of cheap information:

    f(a)            the high-fidelity valid_acc of architecture a
    z(a)            a zero-cost proxy, known for every candidate before anything is trained
                    (default in the simulations and ``kdnas search``: log multiply-adds per
                    image, ``multiply_add_proxy``), standardised over the candidates
    proxy model     f(a) ~ c + b * z(a) + g(a), g a GP. The slope b has the Gaussian prior
                    N(``proxy_slope``, ``proxy_slope_std``^2); with a positive std it is
                    updated by Bayesian linear regression on the observed targets (residual
                    std ``proxy_residual_std``). ``proxy_slope`` = ``proxy_slope_std`` = 0
                    switches the proxy off.
    averaging       with ``proxy_averaging``, the same GP without the proxy is a second
                    hypothesis; the two are weighed by their marginal likelihoods (prior
                    probability ``proxy_prior_probability`` for the proxy model) and the
                    acquisition uses the mixture. A proxy whose errors are rough (right on
                    average, wrong in detail) or reversed leaves a residual that the GP
                    explains worse than f itself, so it loses the vote.
    contrast        until ``contrast_after`` high-fidelity results are in, the plain GP alone
                    chooses: the second architecture lies away from the proxy's favourite,
                    where a misleading proxy shows itself (near the favourite it often looks
                    right), and the two models' evidence can differ.
    s(a)            its valid_acc at the screening fidelity (e.g. 1/3 of the data, KD)
    calibration     f(a) ~ c + b_s * s(a) + e,   e ~ N(0, r^2)
                    b_s = ``prior_slope`` and r = ``prior_noise``; c is fitted on the
                    architectures seen at both fidelities (the mean of f - b_s * s). With
                    ``calibrate_after`` = k, b_s, c and r are fitted by least squares once k
                    architectures have both results.
    model           a GP (``kdnas.search.noisy_gp``) of f - b * z on exact high-fidelity
                    results and on the calibrated screening results of the architectures not
                    yet evaluated at high fidelity, each with noise variance r^2.
    acquisition     UCB = mean + beta * std over the architectures not yet evaluated at high
                    fidelity. With a screening fidelity: if the winner has no screening
                    result yet, screen it; otherwise evaluate it at high fidelity.

Before any result, the UCB of the prior alone picks the candidate with the highest proxy (with
the proxy switched off, a random one, or ``start``). The default, ``ProxyPriorConfig()``, is
the proxy-prior preset (the proxy, no screening, the contrast pick: the fastest optimizer
measured on the paper's benchmark, and with one worker near HF-only GP-UCB where the proxy
misleads, docs/results.md); ``ProxyPriorConfig.screening()`` screens at 1/3 KD without the
proxy (experimental).

Parallel use: ``ask`` may be called before earlier suggestions are told; architectures with a
pending evaluation are not suggested again until it is told. With ``pending_believer`` (the
preset), each pending high-fidelity evaluation counts as returning its posterior mean in
every model (kriging believer, as HF-only GP-UCB), and a batch asked before any result holds
the proxy's favourite and then, as in the contrast, the plain GP's choices: the architectures
it is least certain of, knowing only what is pending (far from all of it). Without it the
first four workers would train the proxy's four favourites, a whole wasted round where the
proxy misleads. Failed or diverged results cost
budget and take their architecture out of the search.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from kdnas.core import HIGH_FIDELITY, Architecture, Fidelity
from kdnas.search.candidates import CandidateSet
from kdnas.search.gp import upper_confidence_bound
from kdnas.search.noisy_gp import NoisyGP, fit_noisy_gp
from kdnas.search.pool import Budget, HighFidelitySearch

if TYPE_CHECKING:
    from kdnas.spaces import SearchSpace

__all__ = [
    "ProxyPriorConfig",
    "ProxyPriorGPUCB",
    "multiply_add_proxy",
    "standardise_proxy",
]

logger = logging.getLogger(__name__)

#: Noise variance of an exact high-fidelity result: scikit-learn's default jitter, as the
#: paper's GP-UCB.
_EXACT_VARIANCE = 1e-10


@dataclass(frozen=True)
class ProxyPriorConfig:
    """Settings of ``ProxyPriorGPUCB``.

    Args:
        screen_fidelity: the cheap fidelity every high-fidelity candidate passes first (None:
            no screening).
        high_fidelity: the fidelity whose accuracy is maximised.
        beta: UCB weight of the posterior std (the paper's GP-UCB: 0.5).
        prior_slope: b_s, high-fidelity accuracy points per screening accuracy point.
        prior_noise: r, the std of the calibration residual (fraction of accuracy, e.g. 0.01
            = 1 point): how far a screening result is trusted.
        calibrate_after: fit b_s, c and r by least squares once this many architectures have
            both results (None: keep ``prior_slope`` and ``prior_noise``, fit only c).
        proxy_slope: prior mean of b, the high-fidelity accuracy (fraction) gained per
            standard deviation of the zero-cost proxy over the candidates (0: no proxy).
        proxy_slope_std: prior std of b (fraction per std); 0 keeps b at ``proxy_slope``.
        proxy_residual_std: std of f around c + b z (fraction of accuracy), which weighs the
            data against the slope's prior.
        proxy_averaging: weigh the proxy model against the same GP without the proxy by their
            marginal likelihoods (Bayesian model averaging); False always trusts the proxy.
        proxy_prior_probability: prior probability of the proxy model in the averaging (0.5:
            equal odds; 1: trust it whatever the evidence).
        contrast_after: the plain GP chooses until this many high-fidelity results are in
            (after the first pick, the prior's; 0 or 1: the proxy steers from the start).
        pending_believer: with parallel workers, treat each pending high-fidelity evaluation
            as if it had returned the current posterior mean ("kriging believer", as HF-only
            GP-UCB does), so a batch spreads out instead of crowding one region; in the
            contrast, the picks made before any result are the plain GP's given the pending
            ones (the proxy's favourite, then the architectures far from it). False: the
            picks ignore what is pending (before any result, the proxy's top candidates).

    The defaults are the proxy-prior preset: no screening, beta = 0.5 (the paper's), a fixed
    proxy slope of 0.008 (HF accuracy per standard deviation of log multiply-adds), model
    averaging with the plain GP at prior probability 0.7, the contrast pick, and the pending
    believer for parallel workers. The slope was chosen by a grid of 30 settings on 100
    random sub-spaces of both spaces of the paper's benchmark
    (``benchmarks/proxy_prior_grid.py``); beta, the prior probability and the contrast on
    draw 0 of ``benchmarks/do_no_harm.py`` with one worker (every regime of
    ``kdnas.replay.regimes``), the believer on draw 0 with 4 workers; reported on fresh
    draws (docs/results.md). Its a-priori
    settings: ``ProxyPriorConfig(proxy_prior_probability=0.5)``. The settings before the
    contrast: ``ProxyPriorConfig(beta=1.0, proxy_prior_probability=0.5, contrast_after=0)``;
    before the believer: ``ProxyPriorConfig(pending_believer=False)``.
    The screening settings (``screening()``) were chosen on seeds 0-99 of both spaces.
    """

    screen_fidelity: Fidelity | None = None
    high_fidelity: Fidelity = HIGH_FIDELITY
    beta: float = 0.5
    prior_slope: float = 1.0
    prior_noise: float = 0.005
    calibrate_after: int | None = None
    proxy_slope: float = 0.008
    proxy_slope_std: float = 0.0
    proxy_residual_std: float = 0.012
    proxy_averaging: bool = True
    proxy_prior_probability: float = 0.7
    contrast_after: int = 2
    pending_believer: bool = True

    def __post_init__(self) -> None:
        if self.screen_fidelity == self.high_fidelity:
            raise ValueError("ProxyPriorConfig: screen_fidelity must differ from high_fidelity")
        if not self.beta >= 0.0:
            raise ValueError(f"ProxyPriorConfig.beta must be >= 0, got {self.beta}")
        if not (math.isfinite(self.prior_slope) and self.prior_slope > 0.0):
            raise ValueError(f"ProxyPriorConfig.prior_slope must be > 0, got {self.prior_slope}")
        if not (math.isfinite(self.prior_noise) and self.prior_noise > 0.0):
            raise ValueError(f"ProxyPriorConfig.prior_noise must be > 0, got {self.prior_noise}")
        if self.calibrate_after is not None and self.calibrate_after < 3:
            raise ValueError(
                "ProxyPriorConfig.calibrate_after must be >= 3 or None, got "
                f"{self.calibrate_after}"
            )
        if not math.isfinite(self.proxy_slope):
            raise ValueError(
                f"ProxyPriorConfig.proxy_slope must be finite, got {self.proxy_slope}"
            )
        if not (math.isfinite(self.proxy_slope_std) and self.proxy_slope_std >= 0.0):
            raise ValueError(
                f"ProxyPriorConfig.proxy_slope_std must be >= 0, got {self.proxy_slope_std}"
            )
        if not 0.0 < self.proxy_prior_probability <= 1.0:
            raise ValueError(
                "ProxyPriorConfig.proxy_prior_probability must be in (0, 1], got "
                f"{self.proxy_prior_probability}"
            )
        if self.contrast_after < 0:
            raise ValueError(
                f"ProxyPriorConfig.contrast_after must be >= 0, got {self.contrast_after}"
            )
        if not (math.isfinite(self.proxy_residual_std) and self.proxy_residual_std > 0.0):
            raise ValueError(
                f"ProxyPriorConfig.proxy_residual_std must be > 0, got {self.proxy_residual_std}"
            )

    @property
    def uses_proxy(self) -> bool:
        """Whether the zero-cost proxy enters the model."""
        return self.proxy_slope != 0.0 or self.proxy_slope_std > 0.0

    @classmethod
    def screening(cls, **overrides: object) -> ProxyPriorConfig:
        """The screening variant: no proxy, and every candidate passes a 1/3-KD run before its
        high-fidelity one (beta = 1). Slower than the default on the paper's benchmark
        (docs/results.md); kept as the experimental ``screening-gp-ucb``."""
        values: dict[str, object] = {
            "screen_fidelity": Fidelity(part=3, method="kd"),
            "beta": 1.0,
            "proxy_slope": 0.0,
            "proxy_slope_std": 0.0,
            "pending_believer": False,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def multiply_add_proxy(
    space: SearchSpace, archs: Sequence[Architecture], resolution: int
) -> np.ndarray:
    """[N] zero-cost proxy of each architecture: log multiply-adds of one forward pass at
    ``resolution`` x ``resolution`` pixels (closed form, no network is built).

    Within a parameter-capped space, networks that spend more compute per image tend to be
    more accurate (Spearman 0.77 and 0.81 with the paper's HF accuracy).
    """
    values = np.array([space.multiply_adds(arch, resolution) for arch in archs], dtype=float)
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"{space.name}: multiply-adds must be positive and finite")
    return np.log(values)


def standardise_proxy(proxy: np.ndarray | Sequence[float], size: int, owner: str) -> np.ndarray:
    """A zero-cost proxy (one value per candidate) standardised over the candidates; all
    zeros when it is constant (it then carries no information).

    Raises:
        ValueError: not one finite value per candidate (``owner`` names the optimizer).
    """
    values = np.asarray(proxy, dtype=float)
    if values.shape != (size,):
        raise ValueError(
            f"{owner}: proxy needs one value per candidate ({size}), got shape {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError(f"{owner}: proxy values must be finite")
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros(size)


class ProxyPriorGPUCB(HighFidelitySearch):
    """Ask/tell multi-fidelity GP-UCB with a zero-cost proxy prior and optional screening.

    Args:
        candidates: the architectures and their standardised features.
        config: see ``ProxyPriorConfig``.
        seed: seeds the random first architecture.
        start: the first architecture to evaluate (default: the highest proxy, else random).
        budget: evaluations or seconds over both fidelities.
        target_value: stop once a high-fidelity result reaches this valid_acc.
        proxy: [N] zero-cost proxy per candidate, larger = expected better (e.g.
            ``multiply_add_proxy``); required when ``config.uses_proxy``. Standardised over
            the candidates here; a constant proxy carries no information and is ignored.
    """

    def __init__(
        self,
        candidates: CandidateSet,
        config: ProxyPriorConfig | None = None,
        seed: int | None = None,
        start: Architecture | None = None,
        budget: Budget | None = None,
        target_value: float | None = None,
        proxy: np.ndarray | Sequence[float] | None = None,
    ) -> None:
        self.config = config or ProxyPriorConfig()
        self._init_search(candidates, seed, budget, self.config.high_fidelity, target_value)
        self._start = None if start is None else candidates.index_of(start)
        self._proxy = self._standardised_proxy(proxy, len(candidates))
        # Posterior probability of the proxy model: the prior's until averaging weighs it.
        self._proxy_weight = 0.0 if self._proxy is None else 1.0

    def _standardised_proxy(
        self, proxy: np.ndarray | Sequence[float] | None, size: int
    ) -> np.ndarray | None:
        if proxy is None:
            if self.config.uses_proxy:
                raise ValueError(
                    "ProxyPriorGPUCB: the config uses a zero-cost proxy (proxy_slope "
                    f"{self.config.proxy_slope}) but no proxy was given"
                )
            return None
        standardised = standardise_proxy(proxy, size, "ProxyPriorGPUCB")
        standardised.setflags(write=False)
        return standardised

    def _high_used(self) -> set[int]:
        return self._pool.used(self.config.high_fidelity)

    def _screen_observations(self) -> tuple[np.ndarray, np.ndarray]:
        screen = self.config.screen_fidelity
        if screen is None:
            return np.zeros(0, dtype=int), np.zeros(0)
        return self._pool.observations(screen)

    def _choose(self) -> tuple[int, Fidelity] | None:
        cfg = self.config
        size = len(self.candidates)
        pending = {i for i, _ in self._pool.pending.values()}
        blocked = self._high_used() | self._failed | pending
        free = np.array([i for i in range(size) if i not in blocked], dtype=int)
        if len(free) == 0:
            return None  # everything left is pending
        high_idx, high_val = self._pool.observations(cfg.high_fidelity)
        screen_idx, screen_val = self._screen_observations()
        first = cfg.screen_fidelity or cfg.high_fidelity
        score = np.full(size, -np.inf)
        if len(high_idx) == 0 and len(screen_idx) == 0:
            if self._start is not None and self._start in set(free.tolist()):
                return self._start, first
            if self._proxy is None:
                return int(self._pool.rng.choice(free)), first
            pending_high = self._pending_high()
            if pending_high and cfg.contrast_after >= 2:
                # The batch's contrast: the plain GP, knowing only where evaluations are
                # pending, is least certain farthest from them; so a batch started before any
                # result holds the favourite and architectures unlike it, not its neighbours.
                features = self.candidates.features
                _, std = fit_noisy_gp(
                    features[pending_high],
                    np.zeros(len(pending_high)),
                    np.full(len(pending_high), _EXACT_VARIANCE),
                    length_scale=1.0,
                ).predict(features, return_std=True)
                score[free] = std[free]
                return int(np.argmax(score)), first
            # The UCB of the prior alone: mean b0 z, variance 1 + sb^2 z^2 (the GP's unit
            # amplitude plus the slope's uncertainty).
            z = self._proxy[free]
            prior_std = np.sqrt(1.0 + (cfg.proxy_slope_std * z) ** 2)
            score[free] = upper_confidence_bound(cfg.proxy_slope * z, prior_std, cfg.beta)
            return int(np.argmax(score)), first
        mean, std = self._posterior(high_idx, high_val, screen_idx, screen_val)
        score[free] = upper_confidence_bound(mean[free], std[free], cfg.beta)
        best = int(np.argmax(score))
        screened = set(screen_idx.tolist())
        if cfg.screen_fidelity is None or best in screened:
            return best, cfg.high_fidelity
        return best, cfg.screen_fidelity

    def _pending_high(self) -> list[int]:
        """Architectures pending at high fidelity, when the believer accounts for them."""
        if not self.config.pending_believer:
            return []
        high = self.config.high_fidelity
        return sorted(i for i, f in self._pool.pending.values() if f == high)

    def _believing(
        self,
        model: NoisyGP,
        idx: np.ndarray,
        targets: np.ndarray,
        noise: np.ndarray,
        believed: np.ndarray,
    ) -> NoisyGP:
        """``model`` refitted with each ``believed`` architecture added as an exact result at
        its posterior mean (kriging believer); the length scale stays the one the real results
        chose (believed points carry no evidence about it)."""
        if len(believed) == 0:
            return model
        features = self.candidates.features
        guessed, _ = model.predict(features[believed])
        return fit_noisy_gp(
            features[np.concatenate([idx, believed])],
            np.concatenate([targets, guessed]),
            np.concatenate([noise, np.full(len(believed), _EXACT_VARIANCE)]),
            length_scale=model.length_scale,
        )

    def _in_contrast(self, high_idx: np.ndarray) -> bool:
        """Whether the plain GP chooses now (the proxy's first pick has been made)."""
        return self._proxy is not None and 0 < len(high_idx) < self.config.contrast_after

    def _posterior(
        self,
        high_idx: np.ndarray,
        high_val: np.ndarray,
        screen_idx: np.ndarray,
        screen_val: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """[N] posterior mean and std of f at every candidate (the mixture, when averaging)."""
        features = self.candidates.features
        idx, targets, noise = self._training_data(high_idx, high_val, screen_idx, screen_val)
        # The contrast: until ``contrast_after`` high-fidelity results are in, the plain GP
        # chooses, so the second result lies away from the proxy's favourite and the two
        # models' evidence can differ (near the favourite a misleading proxy looks right).
        seen = set(idx.tolist())
        believed = np.array([i for i in self._pending_high() if i not in seen], dtype=int)
        if self._proxy is None or self._in_contrast(high_idx):
            plain = fit_noisy_gp(features[idx], targets, noise)
            believing = self._believing(plain, idx, targets, noise, believed)
            return believing.predict(features, return_std=True)
        trend = self._proxy_slope(idx, targets) * self._proxy
        with_proxy = fit_noisy_gp(features[idx], targets - trend[idx], noise)
        believing = self._believing(with_proxy, idx, targets - trend[idx], noise, believed)
        mean, std = believing.predict(features, return_std=True)
        mean = mean + trend
        if not self.config.proxy_averaging:
            return mean, std
        plain = fit_noisy_gp(features[idx], targets, noise)
        # Both are densities of the same targets: p(y | proxy) = N(y - b z; m, K), and the
        # plug-in slope b makes the proxy model's evidence a little optimistic.
        prior = self.config.proxy_prior_probability
        difference = plain.log_marginal_likelihood - with_proxy.log_marginal_likelihood
        if prior < 1.0:
            difference += math.log((1.0 - prior) / prior)
        else:
            difference = -math.inf
        weight = 1.0 / (1.0 + math.exp(min(difference, 700.0)))
        self._proxy_weight = weight
        believing = self._believing(plain, idx, targets, noise, believed)
        plain_mean, plain_std = believing.predict(features, return_std=True)
        mixed = weight * mean + (1.0 - weight) * plain_mean
        second_moment = weight * (std**2 + mean**2) + (1.0 - weight) * (
            plain_std**2 + plain_mean**2
        )
        return mixed, np.sqrt(np.maximum(second_moment - mixed**2, 0.0))

    def proxy_weight(self) -> float:
        """Posterior probability of the proxy model at the last ``ask`` (0 without a proxy;
        1 before any result or without averaging)."""
        return self._proxy_weight

    def _proxy_slope(self, idx: np.ndarray, targets: np.ndarray) -> float:
        """Posterior mean of the proxy slope b given the targets (Bayesian linear regression
        on the centred proxy and targets, with the GP part treated as residual noise)."""
        cfg = self.config
        if self._proxy is None or cfg.proxy_slope_std == 0.0 or len(idx) < 2:
            return cfg.proxy_slope
        z = self._proxy[idx] - self._proxy[idx].mean()
        y = targets - targets.mean()
        prior_precision = 1.0 / cfg.proxy_slope_std**2
        data_precision = float(z @ z) / cfg.proxy_residual_std**2
        weighted = cfg.proxy_slope * prior_precision + float(z @ y) / cfg.proxy_residual_std**2
        return weighted / (prior_precision + data_precision)

    def proxy_slope(self) -> float:
        """The proxy slope b (fraction of accuracy per proxy std) the next ``ask`` will use."""
        high_idx, high_val = self._pool.observations(self.config.high_fidelity)
        screen_idx, screen_val = self._screen_observations()
        if len(high_idx) == 0 and len(screen_idx) == 0:
            return self.config.proxy_slope
        idx, targets, _ = self._training_data(high_idx, high_val, screen_idx, screen_val)
        return self._proxy_slope(idx, targets)

    def calibration(self) -> tuple[float, float, float]:
        """(intercept c, slope b_s, residual std r) mapping screening to high-fidelity
        accuracy, as the next ``ask`` will use them."""
        high_idx, high_val = self._pool.observations(self.config.high_fidelity)
        screen_idx, screen_val = self._screen_observations()
        return self._calibrate(high_idx, high_val, screen_idx, screen_val)

    def _calibrate(
        self,
        high_idx: np.ndarray,
        high_val: np.ndarray,
        screen_idx: np.ndarray,
        screen_val: np.ndarray,
    ) -> tuple[float, float, float]:
        cfg = self.config
        screen_of = dict(zip(screen_idx.tolist(), screen_val.tolist(), strict=True))
        pairs = [
            (screen_of[i], v)
            for i, v in zip(high_idx.tolist(), high_val.tolist(), strict=True)
            if i in screen_of
        ]
        slope, noise = cfg.prior_slope, cfg.prior_noise
        if pairs:
            s, f = (np.array(p) for p in zip(*pairs, strict=True))
            if cfg.calibrate_after is not None and len(pairs) >= cfg.calibrate_after:
                fitted = np.polyfit(s, f, 1)[0] if np.ptp(s) > 0 else slope
                slope = float(max(fitted, 0.05 * cfg.prior_slope))
                residual = f - slope * s
                dof = max(len(pairs) - 2, 1)
                noise = float(
                    max(math.sqrt(((residual - residual.mean()) ** 2).sum() / dof), 1e-3)
                )
            intercept = float((f - slope * s).mean())
        elif len(high_val) and len(screen_val):
            intercept = float(high_val.mean() - slope * screen_val.mean())
        else:
            # Only screening results: the GP centres its targets, so the intercept is moot.
            intercept = 0.0
        return intercept, slope, noise

    def _training_data(
        self,
        high_idx: np.ndarray,
        high_val: np.ndarray,
        screen_idx: np.ndarray,
        screen_val: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        intercept, slope, noise = self._calibrate(high_idx, high_val, screen_idx, screen_val)
        seen_high = set(high_idx.tolist())
        imputed = np.array([i not in seen_high for i in screen_idx.tolist()], dtype=bool)
        idx = np.concatenate([high_idx, screen_idx[imputed]])
        targets = np.concatenate([high_val, intercept + slope * screen_val[imputed]])
        variance = np.concatenate(
            [np.full(len(high_idx), _EXACT_VARIANCE), np.full(int(imputed.sum()), noise**2)]
        )
        return idx, targets, variance
