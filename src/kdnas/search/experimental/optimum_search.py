"""Optimum search: a cost-aware multi-fidelity search for the best architecture of a finite set.

The measure of every search in this project is the seconds spent until the best candidate has
been evaluated at high fidelity. With a Gaussian posterior over a finite candidate set that
is a search for a hidden object, and search theory says what to do: evaluate next the
candidate with the highest probability of being the optimum per second of its evaluation
(for independent boxes this order is optimal). Cheap fidelities enter only through their value
of information: a KD run is made when it is expected to cut the seconds of that search by more
than it costs. On the paper's benchmark that order, taken literally, was slower than the
paper's GP-UCB (docs/results.md), so the preset takes the HF step by GP-UCB on the residuals
of the learned proxy trend and keeps the rest.

Notation (shapes in brackets; N candidates, S posterior samples):
    f(a)          the high-fidelity (HF) valid_acc of architecture a
    z(a)          the zero-cost proxy (e.g. log multiply-adds), standardised over the candidates
    s             the spread of f over the candidates: the HF results' std shrunk towards
                  ``accuracy_spread`` by ``prior_pairs`` pseudo-observations (fraction)
    prior         f = c + b z + g + w, jointly Gaussian over the N candidates:
                  c ~ N(0, big) the level (integrated out, so only differences count);
                  b ~ N(m_b s, (s_b s)^2) the proxy's slope, a kernel term (s_b s)^2 z z';
                  g a GP with RBF kernel on the features, amplitude^2 s^2 (1 - m_b^2)(1 - w0);
                  w independent, variance s^2 (1 - m_b^2) w0 (``unexplained_share`` w0): what
                  neither features nor proxy explain, so no result fixes its neighbours.
                  The length scale maximises the marginal likelihood of the observations.
    hypotheses    two priors on the slope, weighed by their marginal likelihoods (prior odds
                  ``trust_prior``): trust, m_b = ``proxy_prior_rho`` with a small s_b
                  (``proxy_slope_spread``), and doubt, m_b = 0 with a wide s_b
                  (``doubt_slope_spread``), under which a reversed proxy is used reversed.
                  The posterior samples are drawn from each in proportion to its weight.
    KD results    a low fidelity L is put on f's scale by a Gaussian copula: its results are
                  turned into normal scores q among L's own results and enter as observations
                  c_L + s q / rho_L of f with noise variance s^2 (1 - rho_L^2) / rho_L^2, where
                  c_L is L's own unknown level (integrated out: one result of L alone carries
                  no information, two carry their order) and rho_L the shrunk Spearman
                  correlation of L with the HF results on the architectures seen at both
                  (``OptimumSearch.low_reliability``), at least ``min_low_rho``.
    posterior     exact Gaussian conditioning on the finite set: mean [N], covariance [N, N];
                  S joint samples of f over the architectures not yet at HF.
    p(a)          the share of samples in which a is better than every other candidate and
                  than the incumbent: the probability that a is the optimum.
    order         the candidates not yet at HF by p(a) / c_HF (ties by the posterior mean);
                  pending evaluations first, their seconds already committed.
    T(p)          expected seconds until the optimum is at HF when following the order:
                  sum over the order of c_HF * (P(not found) - p of those before).
    HF step       ``high_choice`` "probability": the head of the order. "ucb" (the preset):
                  the head of the order of UCB = m + beta * sd of the paper's GP (unit
                  amplitude, ``noisy_gp``) fitted to the HF results minus the trend
                  b_hat s z, plus that trend, where b_hat is the slope's posterior mean
                  averaged over the two hypotheses (so a doubted proxy fades out and a
                  reversed one turns round); an architecture screened at low fidelity with no
                  sample left in which it is the optimum goes last.
    KD step       for each of the first ``screen_top`` architectures of the HF order and each
                  low fidelity L not yet run on it: VOI = T(p) - E_y[T(p | y)] - c_L, where y
                  is L's result (Gauss-Hermite points of its predictive; L's level error adds
                  1/n of the noise after n results) and p | y reweights the samples by the
                  likelihood of y (``screening_value``). The best positive VOI is run while
                  KD seconds stay within ``low_share`` of the HF seconds; otherwise the HF
                  step. Nothing is screened before the first HF result, unless ``probe``:
                  then the proxy's favourite and anti-favourite go first to the most trusted
                  low fidelity, whose order tests the proxy's sign.
    costs         the mean seconds observed per fidelity (before any result: 1 for HF and
                  1/part for a low fidelity, in units of an HF run).

With ``low_fidelities=()`` it is the proxy-only search (the ablation without KD fidelities).
``fidelity_counts`` reports how often each fidelity was chosen. Parallel use: ``ask`` may be
called before earlier suggestions are told; an architecture with a pending evaluation is not
suggested again until it is told, and an (architecture, fidelity) already evaluated is never
asked again. Failed or diverged results cost budget and take their architecture out of the
search.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg, stats

from kdnas.core import HIGH_FIDELITY, Fidelity
from kdnas.search.candidates import CandidateSet
from kdnas.search.gp import squared_distances, upper_confidence_bound
from kdnas.search.noisy_gp import LOG_LENGTH_GRID, fit_noisy_gp
from kdnas.search.pool import Budget, HighFidelitySearch
from kdnas.search.proxy_prior import standardise_proxy

__all__ = [
    "PRIOR_RHO_BY_PART",
    "OptimumSearch",
    "OptimumSearchConfig",
    "expected_search_seconds",
    "finite_posterior",
    "optimum_probabilities",
    "prior_rho_for",
    "screening_value",
    "search_config_for",
    "shrunk_rank_correlation",
]

#: How the HF step is chosen: "probability" (the head of the P(optimum) / second order) or
#: "ucb" (the paper's GP-UCB on the residuals of the learned proxy trend).
HIGH_CHOICES: tuple[str, ...] = ("probability", "ucb")
#: The level c's prior variance, in units of s^2: large enough to be uninformative.
_LEVEL_VARIANCE = 100.0
#: Length scales tried by the marginal likelihood: every third point of the noisy GP's grid
#: within a factor 100 of 10 standardised feature units.
_LOG_LENGTHS = LOG_LENGTH_GRID[np.abs(LOG_LENGTH_GRID - 2.3) < 4.6][::3]


@dataclass(frozen=True)
class OptimumSearchConfig:
    """Settings of ``OptimumSearch`` (module docstring for the symbols).

    Args:
        low_fidelities: the KD fidelities it may spend seconds on (empty: proxy only).
        high_fidelity: the fidelity whose accuracy is maximised.
        low_prior_rho: prior rank correlation of each low fidelity with f, in the order of
            ``low_fidelities``.
        prior_pairs: pseudo-pairs the prior correlations and spread weigh against data.
        accuracy_spread: prior s, the std of f over the candidates (fraction of accuracy).
        proxy_prior_rho: the trusting hypothesis' prior mean of the proxy slope (units of s).
        proxy_slope_spread: its prior std of the slope (units of s; 0: a fixed slope).
        doubt_slope_spread: the doubting hypothesis' prior std of the slope (mean 0).
        trust_prior: prior probability of the trusting hypothesis (1: trust only).
        unexplained_share: w0, the share of the non-proxy variance of f that is independent
            between architectures.
        min_low_rho: a low fidelity is trusted at least this much (its results' noise
            variance stays finite).
        samples: S, joint posterior samples per step.
        screen_top: low-fidelity runs are weighed for this many heads of the order.
        quadrature: Gauss-Hermite points for the outcome of a low-fidelity run.
        high_choice: how the HF step is chosen, one of ``HIGH_CHOICES``.
        probe: before the first HF result, run the proxy's favourite and anti-favourite at
            the most trusted low fidelity.
        low_share: KD seconds may reach at most this share of the HF seconds (inf: no cap).
        beta: the UCB weight of the GP's std for ``high_choice`` "ucb".

    The preset (the defaults) was chosen on draw 0 of ``benchmarks/adaptive_fidelity.py``
    (docs/results.md).
    """

    low_fidelities: tuple[Fidelity, ...] = (
        Fidelity(part=27, method="kd"),
        Fidelity(part=9, method="kd"),
        Fidelity(part=3, method="kd"),
    )
    high_fidelity: Fidelity = HIGH_FIDELITY
    low_prior_rho: tuple[float, ...] = (0.3, 0.5, 0.8)
    prior_pairs: float = 4.0
    accuracy_spread: float = 0.016
    proxy_prior_rho: float = 0.8
    proxy_slope_spread: float = 0.2
    doubt_slope_spread: float = 0.6
    trust_prior: float = 0.5
    unexplained_share: float = 0.3
    min_low_rho: float = 0.1
    samples: int = 512
    screen_top: int = 8
    quadrature: int = 9
    high_choice: str = "ucb"
    probe: bool = False
    low_share: float = 0.1
    beta: float = 1.0

    def __post_init__(self) -> None:
        if self.high_fidelity in self.low_fidelities:
            raise ValueError("OptimumSearchConfig: high_fidelity must not be a low fidelity")
        if len(set(self.low_fidelities)) != len(self.low_fidelities):
            raise ValueError("OptimumSearchConfig: low_fidelities must be distinct")
        if len(self.low_prior_rho) != len(self.low_fidelities):
            raise ValueError("OptimumSearchConfig: low_prior_rho needs one value per fidelity")
        for value in (self.proxy_prior_rho, *self.low_prior_rho):
            if not -1.0 < value < 1.0:
                raise ValueError(f"OptimumSearchConfig: correlations lie in (-1, 1), got {value}")
        positive = {
            "prior_pairs": self.prior_pairs,
            "accuracy_spread": self.accuracy_spread,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"OptimumSearchConfig.{name} must be > 0, got {value}")
        for name in ("proxy_slope_spread", "doubt_slope_spread"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"OptimumSearchConfig.{name} must be >= 0, got {value}")
        if not 0.0 < self.trust_prior <= 1.0:
            raise ValueError(
                f"OptimumSearchConfig.trust_prior lies in (0, 1], got {self.trust_prior}"
            )
        if not 0.0 < self.unexplained_share < 1.0:
            raise ValueError(
                f"OptimumSearchConfig.unexplained_share lies in (0, 1), got "
                f"{self.unexplained_share}"
            )
        if not 0.0 < self.min_low_rho < 1.0:
            raise ValueError(
                f"OptimumSearchConfig.min_low_rho lies in (0, 1), got {self.min_low_rho}"
            )
        if self.high_choice not in HIGH_CHOICES:
            raise ValueError(
                f"OptimumSearchConfig.high_choice must be one of {', '.join(HIGH_CHOICES)}, "
                f"got {self.high_choice!r}"
            )
        if not self.low_share >= 0.0:
            raise ValueError(f"OptimumSearchConfig.low_share must be >= 0, got {self.low_share}")
        if not (math.isfinite(self.beta) and self.beta >= 0.0):
            raise ValueError(f"OptimumSearchConfig.beta must be >= 0, got {self.beta}")
        for name in ("samples", "screen_top", "quadrature"):
            if getattr(self, name) < 1:
                raise ValueError(f"OptimumSearchConfig.{name} must be >= 1")


#: Prior rank correlation with f of a KD fidelity on 1/part of the data, by part (less data,
#: less trust); 0.5 for other parts.
PRIOR_RHO_BY_PART: dict[int, float] = {27: 0.3, 9: 0.5, 3: 0.8}


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


def search_config_for(
    low_fidelities: Sequence[Fidelity], high_fidelity: Fidelity = HIGH_FIDELITY, **overrides
) -> OptimumSearchConfig:
    """The preset for other fidelities (``kdnas search``): each low fidelity's prior
    correlation from its part (``PRIOR_RHO_BY_PART``)."""
    fidelities = tuple(low_fidelities)
    return OptimumSearchConfig(
        low_fidelities=fidelities,
        high_fidelity=high_fidelity,
        low_prior_rho=prior_rho_for(fidelities),
        **overrides,
    )


# ---------------------------------------------------------------------------- closed forms


def finite_posterior(
    prior_cov: np.ndarray,
    prior_mean: np.ndarray,
    observed: np.ndarray,
    values: np.ndarray,
    noise_var: np.ndarray,
    extra_cov: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian conditioning of f over a finite set on noisy observations of some entries.

    Args:
        prior_cov: [N, N] prior covariance of f.
        prior_mean: [N] prior mean of f.
        observed: [n] index into the N entries of each observation (repeats allowed).
        values: [n] the observations y_i = f[observed_i] + e_i.
        noise_var: [n] variance of each e_i (>= 0).
        extra_cov: [n, n] covariance among the e_i besides ``noise_var`` (e.g. a shared
            unknown level of one fidelity), or None.

    Returns:
        ([N] posterior mean, [N, N] posterior covariance).
    """
    if len(observed) == 0:
        return prior_mean.copy(), prior_cov.copy()
    cross = prior_cov[:, observed]
    gram = cross[observed] + np.diag(noise_var)
    if extra_cov is not None:
        gram = gram + extra_cov
    gram = gram + 1e-12 * np.trace(gram) / len(gram) * np.eye(len(gram))
    factor = linalg.cho_factor(gram, lower=True)
    mean = prior_mean + cross @ linalg.cho_solve(factor, values - prior_mean[observed])
    cov = prior_cov - cross @ linalg.cho_solve(factor, cross.T)
    return mean, 0.5 * (cov + cov.T)


def optimum_probabilities(samples: np.ndarray, incumbent: float) -> np.ndarray:
    """[m] share of the [S, m] joint samples in which each entry is the largest and beats
    ``incumbent`` (-inf: none yet): the probability that it is the optimum."""
    winner = np.argmax(samples, axis=1)
    wins = samples[np.arange(len(samples)), winner] > incumbent
    return np.bincount(winner[wins], minlength=samples.shape[1]) / len(samples)


def expected_search_seconds(probability: np.ndarray, cost: np.ndarray) -> float:
    """Expected seconds until the optimum is evaluated when the entries are evaluated in
    decreasing ``probability`` / ``cost`` (search theory's order): the seconds of each
    entry times the probability that the optimum was not among those before it."""
    order = np.lexsort((-probability, -probability / np.maximum(cost, 1e-12)))
    p, c = probability[order], cost[order]
    not_found_before = probability.sum() - np.concatenate([[0.0], np.cumsum(p)[:-1]])
    return float((c * np.maximum(not_found_before, 0.0)).sum())


def screening_value(
    samples: np.ndarray,
    entry: int,
    noise_sd: float,
    cost: np.ndarray,
    incumbent: float = -np.inf,
    quadrature: int = 9,
) -> float:
    """Expected seconds of the search saved by observing entry ``entry`` with Gaussian noise
    before going on: T(p) - E_y[T(p | y)] (``expected_search_seconds``), where p | y reweights
    the [S, m] joint samples by the likelihood N(y; f_entry, noise_sd^2), and y runs over
    ``quadrature`` Gauss-Hermite points of its predictive N(mean, var + noise_sd^2)."""
    winner = np.argmax(samples, axis=1)
    rows = np.arange(len(samples))
    wins = samples[rows, winner] > incumbent
    onehot = np.zeros_like(samples)
    onehot[rows[wins], winner[wins]] = 1.0
    nodes, weights = np.polynomial.hermite_e.hermegauss(quadrature)
    weights = weights / weights.sum()
    column = samples[:, entry]
    outcomes = column.mean() + math.sqrt(column.var() + noise_sd**2) * nodes
    log_like = -0.5 * ((outcomes[:, None] - column[None, :]) / noise_sd) ** 2
    like = np.exp(log_like - log_like.max(axis=1, keepdims=True))
    like /= like.sum(axis=1, keepdims=True)
    after = sum(
        w * expected_search_seconds(p, cost) for w, p in zip(weights, like @ onehot, strict=True)
    )
    now = expected_search_seconds(onehot.mean(axis=0), cost)
    return float(now - after)


def _log_evidence(
    cov: np.ndarray,
    mean: np.ndarray,
    index: np.ndarray,
    value: np.ndarray,
    noise: np.ndarray,
    levels: np.ndarray,
    spread: float,
) -> float:
    """log N(value; mean[index], cov[index, index] + diag(noise) + levels) (-inf where not
    positive definite); 0 without observations."""
    if len(index) == 0:
        return 0.0
    gram = cov[np.ix_(index, index)] + np.diag(noise) + levels
    gram += 1e-10 * spread**2 * np.eye(len(index))
    try:
        factor = linalg.cho_factor(gram, lower=True)
    except linalg.LinAlgError:
        return -np.inf
    residual = value - mean[index]
    return float(
        -0.5 * residual @ linalg.cho_solve(factor, residual)
        - np.log(np.diag(factor[0])).sum()
        - 0.5 * len(index) * math.log(2.0 * math.pi)
    )


def normal_scores(values: np.ndarray) -> np.ndarray:
    """[n] Blom normal scores of ``values`` (ties share their mean rank); zeros for n < 2."""
    n = len(values)
    if n < 2:
        return np.zeros(n)
    ranks = stats.rankdata(values)
    return stats.norm.ppf((ranks - 0.375) / (n + 0.25))


# ---------------------------------------------------------------------------- the optimizer


class OptimumSearch(HighFidelitySearch):
    """Ask/tell multi-fidelity search that evaluates at HF the architecture most likely to be
    the optimum per second, and spends seconds on a KD fidelity only when its value of
    information exceeds its cost (module docstring).

    Args:
        candidates: the architectures and their standardised features.
        config: see ``OptimumSearchConfig``.
        seed: seeds the posterior samples.
        budget: evaluations or seconds over all fidelities.
        target_value: stop once a high-fidelity result reaches this valid_acc.
        proxy: [N] zero-cost proxy per candidate, larger = expected better (e.g.
            ``multiply_add_proxy``), or None.
    """

    def __init__(
        self,
        candidates: CandidateSet,
        config: OptimumSearchConfig | None = None,
        seed: int | None = None,
        budget: Budget | None = None,
        target_value: float | None = None,
        proxy: np.ndarray | Sequence[float] | None = None,
    ) -> None:
        self.config = config or OptimumSearchConfig()
        self._init_search(candidates, seed, budget, self.config.high_fidelity, target_value)
        self._proxy = (
            np.zeros(len(candidates))
            if proxy is None
            else standardise_proxy(proxy, len(candidates), "OptimumSearch")
        )
        self._sq_dists = squared_distances(candidates.features, candidates.features)
        self.last_step: dict[str, float] = {}

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

    def _may_screen(self) -> bool:
        """Whether low-fidelity seconds are still below ``low_share`` of the HF seconds."""
        cfg = self.config
        if not cfg.low_fidelities:
            return False
        high = sum(r.cost_s for _, r in self._pool.told if r.fidelity == cfg.high_fidelity)
        return self._pool.cost_s - high <= cfg.low_share * high

    def slope(self) -> float:
        """Posterior mean of the proxy slope b in units of s at the last ``ask`` (averaged
        over the two hypotheses; the prior's before any ``ask``)."""
        cfg = self.config
        prior = cfg.trust_prior * cfg.proxy_prior_rho if self._proxy.any() else 0.0
        return self.last_step.get("slope", prior)

    def proxy_trust(self) -> float:
        """Posterior probability of the trusting hypothesis about the proxy at the last
        ``ask`` (``trust_prior`` before any; 0 without a proxy)."""
        if not self._proxy.any():
            return 0.0
        return self.last_step.get("trust", self.config.trust_prior)

    # ------------------------------------------------------------------ the model

    def _observations(
        self, spread: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Observed index, value, noise variance and the [n, n] covariance of the low
        fidelities' unknown levels: exact HF results, then each low fidelity's normal scores
        on f's scale."""
        cfg = self.config
        high_idx, high_val = self._high()
        # Centred: the level c (integrated out) then only has to absorb what is left.
        centred = high_val - high_val.mean() if len(high_val) else high_val
        index, value, noise, group = [high_idx], [centred], [np.zeros(len(high_idx))], []
        group.append(np.full(len(high_idx), -1))
        for number, fidelity in enumerate(cfg.low_fidelities):
            low_idx, low_val = self._pool.observations(fidelity)
            if len(low_idx) < 2:
                continue  # one result of a fidelity says nothing until its level is known
            rho = max(self.low_reliability(fidelity), cfg.min_low_rho)
            index.append(low_idx)
            value.append(spread * normal_scores(low_val) / rho)
            noise.append(np.full(len(low_idx), spread**2 * (1.0 - rho**2) / rho**2))
            group.append(np.full(len(low_idx), number))
        groups = np.concatenate(group)
        same = (groups[:, None] == groups[None, :]) & (groups[:, None] >= 0)
        levels = same * _LEVEL_VARIANCE * spread**2
        return (
            np.concatenate(index).astype(int),
            np.concatenate(value),
            np.concatenate(noise),
            levels,
        )

    def _prior(
        self, spread: float, length: float, slope_mean: float, slope_sd: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """[N] prior mean and [N, N] covariance of f for one hypothesis about the proxy."""
        cfg = self.config
        rest = spread**2 * (1.0 - min(slope_mean**2, 0.9))
        smooth = rest * (1.0 - cfg.unexplained_share)
        cov = smooth * np.exp(-0.5 * self._sq_dists / length**2)
        cov[np.diag_indices_from(cov)] += rest * cfg.unexplained_share
        cov += _LEVEL_VARIANCE * spread**2
        cov += (slope_sd * spread) ** 2 * np.outer(self._proxy, self._proxy)
        return slope_mean * spread * self._proxy, cov

    def _component(
        self,
        spread: float,
        observations: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        slope_mean: float,
        slope_sd: float,
    ) -> tuple[float, np.ndarray, np.ndarray, float]:
        """(log evidence, [N] posterior mean, [N, N] covariance, slope's posterior mean in
        units of s) of one hypothesis, at its length scale of highest marginal likelihood
        (the default sqrt(d) below 3 observed architectures)."""
        index, value, noise, levels = observations
        lengths = [math.sqrt(self.candidates.features.shape[1])]
        if len(np.unique(index)) >= 3:
            lengths = [math.exp(v) for v in _LOG_LENGTHS]
        best = None
        for length in lengths:
            mean, cov = self._prior(spread, length, slope_mean, slope_sd)
            evidence = _log_evidence(cov, mean, index, value, noise, levels, spread)
            if best is None or evidence > best[0]:
                best = (evidence, length, mean, cov)
        assert best is not None
        evidence, length, prior_mean, prior_cov = best
        mean, cov = finite_posterior(prior_cov, prior_mean, index, value, noise, levels)
        slope = slope_mean
        if len(index) and slope_sd > 0.0:
            gram = prior_cov[np.ix_(index, index)] + np.diag(noise) + levels
            gram += 1e-10 * spread**2 * np.eye(len(index))
            # Cov(b, y_i) = s_b^2 z_i: the slope's posterior mean by the same conditioning.
            cross = (slope_sd * spread) ** 2 * self._proxy[index]
            slope += float(cross @ np.linalg.solve(gram, value - prior_mean[index])) / spread
        self.last_step["length"] = length
        return evidence, mean, cov, slope

    # ------------------------------------------------------------------ choosing

    def _choose(self) -> tuple[int, Fidelity] | None:
        cfg = self.config
        size = len(self.candidates)
        pending_high = {i for i, f in self._pool.pending.values() if f == cfg.high_fidelity}
        pending_any = {i for i, _ in self._pool.pending.values()}
        done = self._pool.used(cfg.high_fidelity) - pending_high
        open_ = np.array(
            [i for i in range(size) if i not in done and i not in self._failed], dtype=int
        )
        free = np.array([i for i in open_ if i not in pending_any], dtype=int)
        if len(free) == 0:
            return None
        high_val = self._high()[1]
        probe = self._probe(free, len(high_val))
        if probe is not None:
            return probe
        spread = self._spread(high_val)
        observations = self._observations(spread)
        if not self._proxy.any():
            hypotheses = [(0.0, 0.0, 1.0)]
        else:
            hypotheses = [(cfg.proxy_prior_rho, cfg.proxy_slope_spread, cfg.trust_prior)]
            if cfg.trust_prior < 1.0:
                hypotheses.append((0.0, cfg.doubt_slope_spread, 1.0 - cfg.trust_prior))
        fits = [self._component(spread, observations, m, sd) for m, sd, _ in hypotheses]
        log_post = np.array(
            [fit[0] + math.log(h[2]) for fit, h in zip(fits, hypotheses, strict=True)]
        )
        weights = np.exp(log_post - log_post.max())
        weights /= weights.sum()
        self.last_step.update(
            spread=spread,
            trust=float(weights[0]),
            slope=float(sum(w * fit[3] for w, fit in zip(weights, fits, strict=True))),
        )

        rng = np.random.default_rng([self.seed, self._pool.next_id])
        counts = np.round(weights * cfg.samples).astype(int)
        counts[int(np.argmax(weights))] += cfg.samples - counts.sum()
        jitter = 1e-9 * spread**2 * np.eye(len(open_))
        parts, mean = [], np.zeros(len(open_))
        for (_, post_mean, post_cov, _), weight, count in zip(fits, weights, counts, strict=True):
            mean += weight * post_mean[open_]
            if count == 0:
                continue
            root = np.linalg.cholesky(post_cov[np.ix_(open_, open_)] + jitter)
            parts.append(post_mean[open_] + rng.standard_normal((count, len(open_))) @ root.T)
        draws = np.concatenate(parts)
        # The incumbent on the centred scale of the observations.
        incumbent = float(high_val.max() - high_val.mean()) if len(high_val) else -np.inf
        probability = optimum_probabilities(draws, incumbent)
        high_cost = self._mean_cost(cfg.high_fidelity) or 1.0
        # Pending HF runs come first: their seconds are spent whatever is chosen now.
        cost = np.where(np.isin(open_, list(pending_high)), 0.0, high_cost)
        selectable = np.isin(open_, free)
        ranking = np.where(selectable, probability / cost.clip(1e-12), -np.inf)
        order = np.lexsort((-mean, -ranking))
        if cfg.high_choice == "ucb":
            order = self._ucb_order(open_, selectable, probability, high_val, spread)
        head = int(open_[order[0]])
        self.last_step["head_probability"] = float(probability[order[0]])
        if not cfg.low_fidelities or not len(high_val) or not self._may_screen():
            return head, cfg.high_fidelity
        screen = self._best_screen(open_, order, draws, cost, incumbent, spread)
        return screen if screen is not None else (head, cfg.high_fidelity)

    def _probe(self, free: np.ndarray, high_count: int) -> tuple[int, Fidelity] | None:
        """Before the first HF result: the proxy's favourite and its anti-favourite at the
        most trusted low fidelity, whose order tests the proxy's sign (``probe``)."""
        cfg = self.config
        if not (cfg.probe and cfg.low_fidelities and self._proxy.any()) or high_count:
            return None
        fidelity = cfg.low_fidelities[int(np.argmax(cfg.low_prior_rho))]
        used = self._pool.used(fidelity)
        if len(used) >= 2:
            return None
        for index in (int(np.argmax(self._proxy)), int(np.argmin(self._proxy))):
            if index not in used and index in set(free.tolist()):
                return index, fidelity
        return None

    def _ucb_order(
        self,
        open_: np.ndarray,
        selectable: np.ndarray,
        probability: np.ndarray,
        high_val: np.ndarray,
        spread: float,
    ) -> np.ndarray:
        """The open architectures by the UCB of the paper's GP on the HF residuals of the
        learned proxy trend; an architecture screened at low fidelity and left with no chance
        of being the optimum goes last."""
        cfg = self.config
        trend = self.slope() * spread * self._proxy
        high_idx = self._high()[0]
        score = trend[open_].copy()
        if len(high_idx):
            gp = fit_noisy_gp(
                self.candidates.features[high_idx],
                high_val - trend[high_idx],
                np.full(len(high_idx), 1e-10),
            )
            gp_mean, gp_std = gp.predict(self.candidates.features[open_], return_std=True)
            score = upper_confidence_bound(gp_mean + trend[open_], gp_std, cfg.beta)
        screened = np.zeros(len(open_), dtype=bool)
        for fidelity in cfg.low_fidelities:
            screened |= np.isin(open_, self._pool.observations(fidelity)[0])
        pruned = screened & (probability <= 0.0)
        rank = np.where(selectable, score, -np.inf)
        return np.lexsort((-rank, pruned | ~selectable))

    def _best_screen(
        self,
        open_: np.ndarray,
        order: np.ndarray,
        draws: np.ndarray,
        cost: np.ndarray,
        incumbent: float,
        spread: float,
    ) -> tuple[int, Fidelity] | None:
        """The (architecture, low fidelity) of highest positive value of information among
        the first ``screen_top`` of the order, or None."""
        cfg = self.config
        best_value, best = 0.0, None
        heads = [k for k in order[: cfg.screen_top] if cost[k] > 0.0]
        for fidelity in cfg.low_fidelities:
            used = self._pool.used(fidelity)
            low_cost = self._mean_cost(fidelity)
            if low_cost is None:
                low_cost = (self._mean_cost(cfg.high_fidelity) or 1.0) / fidelity.part
            rho = max(self.low_reliability(fidelity), cfg.min_low_rho)
            # L's unknown level is estimated from its n results so far: its error adds
            # 1/n of the noise (n = 0 counts as 1: the next result makes a pair).
            level_share = 1.0 + 1.0 / max(len(self._pool.observations(fidelity)[0]), 1)
            noise_sd = spread * math.sqrt(level_share * (1.0 - rho**2)) / rho
            for k in heads:
                if int(open_[k]) in used:
                    continue
                saved = screening_value(draws, int(k), noise_sd, cost, incumbent, cfg.quadrature)
                if saved - low_cost > best_value:
                    best_value, best = saved - low_cost, (int(open_[k]), fidelity)
        self.last_step["screen_value"] = best_value
        return best
