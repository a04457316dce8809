"""A GP with a noise variance per observation, for mixing exact and imputed observations.

Notation (shapes in brackets):
    X [n, d]      standardised features of the observed architectures
    y [n]         targets (accuracies, fractions); m = mean(y), the paper's mean-centring
    v [n]         noise variance of each observation (fraction^2); ~0 for exact results
    k(a, b)       = exp(-|a - b|^2 / (2 l^2)), unit amplitude, as the paper's GP-UCB
    K [n, n]      = k(X, X) + diag(v)
    mean(x)       = m + k(x, X) K^-1 (y - m)
    var(x)        = 1 - k(x, X) K^-1 k(X, x)

The length scale l maximises the log marginal likelihood of the centred targets over a fixed
log-spaced grid (``LOG_LENGTH_GRID``) refined by a parabola through the best grid point and
its neighbours. A grid is deterministic (no random restarts) and evaluates all length scales
in one batched eigendecomposition, which is what makes hundreds of simulated runs per second
possible; its answers match scikit-learn's ``GaussianProcessRegressor(RBF, alpha=v)`` (tests).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kdnas.search.gp import squared_distances

__all__ = ["LOG_LENGTH_GRID", "NoisyGP", "fit_noisy_gp", "log_marginal_likelihoods"]

#: log length scales tried by the marginal-likelihood search (1e-2 .. 1e5, 90 points).
LOG_LENGTH_GRID: np.ndarray = np.linspace(math.log(1e-2), math.log(1e5), 90)

_LOG_2PI = math.log(2.0 * math.pi)


def log_marginal_likelihoods(
    sq_dists: np.ndarray, y: np.ndarray, noise_var: np.ndarray, log_lengths: np.ndarray
) -> np.ndarray:
    """[G] log marginal likelihood of centred targets ``y`` for each log length scale.

    Args:
        sq_dists: [n, n] squared distances between the observed inputs.
        y: [n] centred targets.
        noise_var: [n] noise variance per observation.
        log_lengths: [G] log length scales.

    Returns:
        [G] values; -inf where the kernel matrix is not positive definite.
    """
    scales2 = np.exp(2.0 * np.asarray(log_lengths, dtype=float))
    kernel = np.exp(-0.5 * sq_dists[None] / scales2[:, None, None])
    kernel = kernel + np.diag(noise_var)[None]
    # eigh rather than Cholesky: long length scales give nearly singular matrices, and the
    # eigenvalues tell at once which grid points are not positive definite.
    values, vectors = np.linalg.eigh(kernel)
    positive = values.min(axis=1) > 0.0
    safe = np.where(values > 0.0, values, 1.0)
    projected = np.einsum("gij,i->gj", vectors, y)
    out = -0.5 * (projected**2 / safe).sum(1) - 0.5 * np.log(safe).sum(1)
    out = out - 0.5 * len(y) * _LOG_2PI
    return np.where(positive, out, -np.inf)


@dataclass(frozen=True)
class NoisyGP:
    """A fitted GP (see the module docstring); ``predict`` gives the posterior of f, not y.

    Args:
        features: [n, d] observed inputs.
        mean: m, the mean of the targets.
        length_scale: the fitted l.
        chol: [n, n] lower Cholesky factor of K.
        alpha: [n] K^-1 (y - m).
        log_marginal_likelihood: log N(y - m; 0, K) at the fitted length scale (nats).
    """

    features: np.ndarray
    mean: float
    length_scale: float
    chol: np.ndarray
    alpha: np.ndarray
    log_marginal_likelihood: float

    def predict(
        self, features: np.ndarray, return_std: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Posterior mean and standard deviation of f at ``features`` [N, d] -> ([N], [N]);
        the std is None unless ``return_std`` (``kdnas.search.gp.GaussianPosterior``)."""
        cross = np.exp(-0.5 * squared_distances(self.features, features) / self.length_scale**2)
        mean = self.mean + cross.T @ self.alpha
        if not return_std:
            return mean, None
        solved = np.linalg.solve(self.chol, cross)
        var = np.maximum(1.0 - (solved * solved).sum(0), 0.0)
        return mean, np.sqrt(var)


def fit_noisy_gp(
    features: np.ndarray,
    targets: np.ndarray,
    noise_var: np.ndarray,
    log_lengths: np.ndarray = LOG_LENGTH_GRID,
    length_scale: float | None = None,
) -> NoisyGP:
    """Fit the GP to observations with per-observation noise.

    Args:
        features: [n, d] standardised features, n >= 1.
        targets: [n] accuracies (fractions).
        noise_var: [n] noise variances (fraction^2), each >= 0.
        log_lengths: the grid searched for the length scale.
        length_scale: fix the length scale instead of searching (one observation always uses
            1.0, where the likelihood does not depend on it).

    Returns:
        The fitted ``NoisyGP``.
    """
    x = np.asarray(features, dtype=float)
    y = np.asarray(targets, dtype=float)
    v = np.asarray(noise_var, dtype=float)
    if x.ndim != 2 or len(x) != len(y) or len(y) != len(v) or len(y) == 0:
        raise ValueError(
            f"fit_noisy_gp needs features [n, d], targets [n], noise_var [n] with n >= 1; got "
            f"{x.shape}, {y.shape}, {v.shape}"
        )
    if not (np.isfinite(y).all() and np.isfinite(v).all() and (v >= 0).all()):
        raise ValueError("fit_noisy_gp: targets must be finite and noise variances finite >= 0")
    mean = float(y.mean())
    centred = y - mean
    sq = squared_distances(x, x)
    if length_scale is None:
        length_scale = 1.0 if len(y) == 1 else _best_length(sq, centred, v, log_lengths)
    kernel = np.exp(-0.5 * sq / length_scale**2) + np.diag(v)
    try:
        chol = np.linalg.cholesky(kernel)
    except np.linalg.LinAlgError:
        # Exact duplicates with ~0 noise: a tiny ridge keeps the factorisation defined.
        chol = np.linalg.cholesky(kernel + 1e-9 * np.eye(len(y)))
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, centred))
    log_likelihood = float(
        -0.5 * centred @ alpha - np.log(np.diag(chol)).sum() - 0.5 * len(y) * _LOG_2PI
    )
    return NoisyGP(x, mean, float(length_scale), chol, alpha, log_likelihood)


def _best_length(
    sq: np.ndarray, centred: np.ndarray, v: np.ndarray, log_lengths: np.ndarray
) -> float:
    values = log_marginal_likelihoods(sq, centred, v, log_lengths)
    best = int(np.argmax(values))
    if not np.isfinite(values[best]):
        return 1.0
    if 0 < best < len(log_lengths) - 1 and np.isfinite(values[[best - 1, best + 1]]).all():
        left, mid, right = values[best - 1], values[best], values[best + 1]
        curvature = left - 2.0 * mid + right
        if curvature < 0.0:
            step = log_lengths[best + 1] - log_lengths[best]
            # Vertex of the parabola through the three points, within one grid step.
            shift = float(np.clip(0.5 * (left - right) / curvature, -1.0, 1.0))
            return float(math.exp(log_lengths[best] + shift * step))
    return float(math.exp(log_lengths[best]))
