"""Gaussian-process regression with an isotropic RBF kernel, for one run at a time.

Notation (shapes in brackets):
    X [n, d]    standardised features of the n observed architectures
    y [n]       observed targets (accuracies, fractions)
    l           the kernel's length scale; theta = log(l) is what the optimiser moves
    k(a, b)     = exp(-|a - b|^2 / (2 l^2)), unit amplitude
    K [n, n]    = k(X, X) + jitter * I
    mean(x)     = m + s * k(x, X) K^-1 (y - m) / s
    var(x)      = s^2 * (1 - k(x, X) K^-1 k(X, x))

where m and s come from the target normalisation (``NORMALIZATIONS``):
    "none":        m = 0, s = 1 (raw targets; the paper's Algorithm 1)
    "center":      m = mean(y), s = 1 (scikit-learn's normalize_y=True before version 0.23,
                   the behaviour of the paper's GP-UCB)
    "standardize": m = mean(y), s = std(y) (scikit-learn's normalize_y=True today)

The length scale maximises the log marginal likelihood
    log p(y | theta) = -1/2 y'K^-1 y - sum(log diag chol(K)) - n/2 log(2 pi)
(of the normalised targets), by L-BFGS-B on theta from ``length_scale`` and from
``n_restarts`` further starts drawn uniformly in log space within ``length_scale_bounds``;
the best start wins. Where a Cholesky factorisation fails the likelihood counts as -inf, as in
scikit-learn, so the optimiser backs off ill-conditioned length scales.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
from scipy.linalg import LinAlgError, cho_solve, cholesky, solve_triangular
from scipy.optimize import minimize

__all__ = [
    "NORMALIZATIONS",
    "FittedGP",
    "GPConfig",
    "GaussianPosterior",
    "fit_gp",
    "log_marginal_likelihood",
    "squared_distances",
    "upper_confidence_bound",
]

logger = logging.getLogger(__name__)

#: Target normalisation modes, see the module docstring.
NORMALIZATIONS: tuple[str, ...] = ("none", "center", "standardize")

_LOG_2PI = math.log(2.0 * math.pi)

ArrayT = TypeVar("ArrayT")


@dataclass(frozen=True)
class GPConfig:
    """How a GP is fitted.

    Args:
        normalize: target normalisation, one of ``NORMALIZATIONS``.
        length_scale: the first start of the length-scale search (standardised feature units).
        length_scale_bounds: (low, high) limits of the length scale.
        n_restarts: further random starts of the likelihood optimiser (0 = only the first).
        jitter: added to the kernel diagonal (the paper used scikit-learn's default 1e-10).
        optimize: fit the length scale by marginal likelihood (False keeps ``length_scale``).
    """

    normalize: str = "none"
    length_scale: float = 1.0
    length_scale_bounds: tuple[float, float] = (1e-5, 1e5)
    n_restarts: int = 0
    jitter: float = 1e-10
    optimize: bool = True

    def __post_init__(self) -> None:
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(
                f"GPConfig.normalize must be one of {', '.join(NORMALIZATIONS)}, "
                f"got {self.normalize!r}"
            )
        low, high = self.length_scale_bounds
        if not (0.0 < low <= self.length_scale <= high):
            raise ValueError(
                "GPConfig needs 0 < length_scale_bounds[0] <= length_scale <= "
                f"length_scale_bounds[1], got {self.length_scale} in {self.length_scale_bounds}"
            )
        if self.n_restarts < 0:
            raise ValueError(f"GPConfig.n_restarts must be >= 0, got {self.n_restarts}")
        if not self.jitter >= 0.0:
            raise ValueError(f"GPConfig.jitter must be >= 0, got {self.jitter}")

    @classmethod
    def paper_algorithm1(cls) -> GPConfig:
        """The GP of the paper's Algorithm 1: raw targets, no restarts."""
        return cls(normalize="none", n_restarts=0)

    @classmethod
    def paper_gp_ucb(cls) -> GPConfig:
        """The GP of the paper's GP-UCB and Algorithm 2: mean-centred targets, 3 restarts."""
        return cls(normalize="center", n_restarts=3)


class GaussianPosterior(Protocol):
    """What every fitted GP of kdnas answers (``FittedGP``, ``noisy_gp.NoisyGP``, and per run
    ``engine.BatchedGP`` with a leading run axis): the posterior of f at query points."""

    def predict(self, x: Any, return_std: bool = False) -> tuple[Any, Any]:
        """(mean, std) of f at ``x`` [m, d], in the targets' units; std is None unless
        ``return_std`` (it costs a triangular solve the mean does not need)."""


def upper_confidence_bound(mean: ArrayT, std: ArrayT, beta: float) -> ArrayT:
    """GP-UCB's acquisition, mean + beta * std (numpy arrays or torch tensors alike)."""
    return mean + beta * std


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, m] squared Euclidean distances between the rows of ``a`` [n, d] and ``b`` [m, d]."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def _normalizer(y: np.ndarray, mode: str) -> tuple[float, float]:
    if mode == "none":
        return 0.0, 1.0
    mean = float(y.mean())
    if mode == "center":
        return mean, 1.0
    std = float(y.std())
    return mean, (std if std > 0.0 else 1.0)


def log_marginal_likelihood(
    theta: float, sq_dists: np.ndarray, y: np.ndarray, jitter: float
) -> tuple[float, float]:
    """Log marginal likelihood of ``y`` and its derivative in ``theta = log(length_scale)``.

    Args:
        theta: log length scale.
        sq_dists: [n, n] squared Euclidean distances between the inputs.
        y: [n] (already normalised) targets.
        jitter: diagonal term.

    Returns:
        (value, derivative); (-inf, 0.0) where the kernel matrix is not positive definite.
    """
    scale2 = math.exp(2.0 * theta)
    kernel = np.exp(-0.5 * sq_dists / scale2)
    matrix = kernel + jitter * np.eye(len(y))
    try:
        chol = cholesky(matrix, lower=True, check_finite=False)
    except LinAlgError:
        return -math.inf, 0.0
    alpha = cho_solve((chol, True), y, check_finite=False)
    value = -0.5 * float(y @ alpha) - float(np.log(np.diag(chol)).sum()) - 0.5 * len(y) * _LOG_2PI
    grad_kernel = kernel * sq_dists / scale2
    inverse = cho_solve((chol, True), np.eye(len(y)), check_finite=False)
    derivative = 0.5 * float(((np.outer(alpha, alpha) - inverse) * grad_kernel).sum())
    return value, derivative


@dataclass(frozen=True)
class FittedGP:
    """A GP conditioned on data; ``predict`` gives the posterior at new inputs.

    Attributes:
        length_scale: the fitted length scale.
        log_likelihood: the log marginal likelihood at it (of the normalised targets).
        y_mean, y_scale: the target normalisation applied (see the module docstring).
    """

    x_train: np.ndarray
    chol: np.ndarray
    alpha: np.ndarray
    length_scale: float
    log_likelihood: float
    y_mean: float
    y_scale: float

    def predict(
        self, x: np.ndarray, return_std: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Posterior mean and standard deviation at ``x`` [m, d], in the targets' units.

        Returns:
            (mean [m], std [m]); std is None unless ``return_std``.
        """
        x = np.asarray(x, dtype=float)
        cross = np.exp(-0.5 * squared_distances(x, self.x_train) / self.length_scale**2)
        mean = self.y_mean + self.y_scale * (cross @ self.alpha)
        if not return_std:
            return mean, None
        v = solve_triangular(self.chol, cross.T, lower=True, check_finite=False)
        var = np.clip(1.0 - (v * v).sum(0), 0.0, None)
        return mean, self.y_scale * np.sqrt(var)


def fit_gp(
    x: np.ndarray, y: np.ndarray, config: GPConfig, rng: np.random.Generator | None = None
) -> FittedGP:
    """Fit a GP to ``x`` [n, d] and ``y`` [n] under ``config``.

    Args:
        x: inputs, usually standardised architecture features.
        y: finite targets.
        config: the kernel, the normalisation and the likelihood search.
        rng: draws the random restarts (needed only when ``config.n_restarts > 0``).

    Raises:
        ValueError: for empty, mismatched or non-finite data.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y) or len(y) == 0:
        raise ValueError(f"fit_gp needs x [n, d] and y [n] with n >= 1, got {x.shape}, {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("fit_gp needs finite x and y (drop failed evaluations first)")
    y_mean, y_scale = _normalizer(y, config.normalize)
    target = (y - y_mean) / y_scale
    dists = squared_distances(x, x)
    low, high = (math.log(b) for b in config.length_scale_bounds)
    theta = math.log(config.length_scale)
    best_value = log_marginal_likelihood(theta, dists, target, config.jitter)[0]
    if config.optimize:
        starts = [theta]
        if config.n_restarts:
            if rng is None:
                raise ValueError("fit_gp needs an rng when config.n_restarts > 0")
            starts += list(rng.uniform(low, high, size=config.n_restarts))

        def negative(t: np.ndarray) -> tuple[float, np.ndarray]:
            value, derivative = log_marginal_likelihood(float(t[0]), dists, target, config.jitter)
            return -value, np.array([-derivative])

        best_value = -math.inf
        for start in starts:
            result = minimize(
                negative, np.array([start]), jac=True, method="L-BFGS-B", bounds=[(low, high)]
            )
            value = -float(result.fun)
            # Strictly better only: ties keep the earlier start, as scikit-learn does.
            if value > best_value or (best_value == -math.inf and start == starts[0]):
                best_value, theta = value, float(result.x[0])
    length_scale = math.exp(theta)
    matrix = np.exp(-0.5 * dists / length_scale**2) + config.jitter * np.eye(len(y))
    try:
        chol = cholesky(matrix, lower=True, check_finite=False)
    except LinAlgError:
        # Ill-conditioned even at the chosen scale: more jitter is better than no model.
        logger.warning("GP kernel matrix not positive definite; adding jitter 1e-8")
        chol = cholesky(matrix + 1e-8 * np.eye(len(y)), lower=True, check_finite=False)
    alpha = cho_solve((chol, True), target, check_finite=False)
    return FittedGP(x, chol, alpha, length_scale, best_value, y_mean, y_scale)
