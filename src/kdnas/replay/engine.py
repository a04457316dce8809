"""Fast batched simulation of the paper's algorithms on a tabular benchmark.

The ask/tell optimizers of ``kdnas.search.optimizers`` fit one GP per step with scipy; replaying
Table 2 (60 cells x 1000 runs) that way takes minutes. Here many independent runs advance in
lockstep and every GP operation is one batched torch call over all of them:

    R      runs (seeds) simulated together
    N      architectures in the space, F [N, d] their standardised features
    n      observations per run at the current step (the same for all runs in lockstep)

The length scale of each run's GP maximises its log marginal likelihood over
theta = log(length_scale) the way scikit-learn's L-BFGS-B does, from the same starts (the
initial scale, then ``n_restarts`` log-uniform draws): a start where the gradient vanishes
(the flat plateau of tiny scales, a single observation) or the kernel is not positive
definite stays there; so does one whose first L-BFGS-B step (the gradient, clipped to the
bounds) lands where the gradient vanishes or gains almost nothing. Any other start walks
uphill in steps of ``EngineConfig.grid_step`` until the likelihood falls, and bisection on the
derivative's sign plus a secant step refine the peak. The best start wins, ties going to the
earliest. Emulating the stalls matters: with mean-centred targets and few points, the paper's
GP-UCB often kept a plateau scale, which turns UCB into a lowest-index pick, and Table 4
depends on it (ShuffleNetV2 times were 13-19% short without the first-step rule). The
results match the per-run scipy GP statistically, not bit for bit (see
``benchmarks/search_speed.py`` and ``tests/replay/test_engine.py``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from kdnas.search.candidates import random_subsets
from kdnas.search.gp import NORMALIZATIONS, GPConfig, upper_confidence_bound

__all__ = [
    "BatchedGP",
    "EngineConfig",
    "batched_fit",
    "cpu_threads",
    "default_device",
    "random_subsets",
    "simulate_algorithm1",
    "simulate_gp_ucb_phase",
]

_DTYPE = torch.float64
#: L-BFGS-B's default projected-gradient tolerance: below it, a start is already "optimal".
_STALL_GRADIENT = 1e-5
#: L-BFGS-B's default relative-reduction stop (scipy's ftol = factr * machine epsilon).
_STALL_REDUCTION = 2.220446049250313e-09


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class EngineConfig:
    """Numerical settings of the batched length-scale search.

    Args:
        grid_step: the step in theta = log(length scale) of the uphill walk from each start.
        refine_steps: bisections of the bracket around the peak (on the derivative's sign).
        chunk: runs processed together (bounds memory: about chunk * n^2 * grid floats).
        cpu_threads: torch threads while simulating on the CPU (restored afterwards); None
            keeps torch's setting. The batched operations work on many small matrices: one
            thread measured 3-4x faster than two on a 2-core machine.
    """

    grid_step: float = 1.0
    refine_steps: int = 4
    chunk: int = 256
    cpu_threads: int | None = 1

    def __post_init__(self) -> None:
        if not self.grid_step > 0:
            raise ValueError(f"EngineConfig.grid_step must be > 0, got {self.grid_step}")
        if self.cpu_threads is not None and self.cpu_threads < 1:
            raise ValueError(f"EngineConfig.cpu_threads must be >= 1, got {self.cpu_threads}")
        if self.refine_steps < 0 or self.chunk < 1:
            raise ValueError("EngineConfig needs refine_steps >= 0 and chunk >= 1")


def _normalize(y: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    if mode == "none":
        return torch.zeros(y.shape[0], dtype=y.dtype, device=y.device), torch.ones(
            y.shape[0], dtype=y.dtype, device=y.device
        )
    mean = y.mean(1)
    if mode == "center":
        return mean, torch.ones_like(mean)
    std = y.std(1, unbiased=False)
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _lml(sq: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, jitter: float) -> torch.Tensor:
    """Log marginal likelihood [B] for sq [B, n, n], y [B, n], theta [B]; -inf where not PD."""
    n = sq.shape[-1]
    kernel = torch.exp(sq * (-0.5 * torch.exp(-2.0 * theta))[:, None, None])
    kernel.diagonal(dim1=1, dim2=2).add_(jitter)
    chol, info = torch.linalg.cholesky_ex(kernel)
    z = torch.linalg.solve_triangular(chol, y[:, :, None], upper=False)[:, :, 0]
    logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
    value = -0.5 * (z * z).sum(1) - logdet - 0.5 * n * math.log(2 * math.pi)
    ok = (info == 0) & torch.isfinite(value)
    return torch.where(ok, value, torch.full_like(value, -math.inf))


def _lml_grad(
    sq: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, jitter: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log marginal likelihood [B] and its derivative in theta [B] (0 where not PD)."""
    n = sq.shape[-1]
    scaled = sq * torch.exp(-2.0 * theta)[:, None, None]
    raw = torch.exp(-0.5 * scaled)
    kernel = raw + jitter * torch.eye(n, dtype=sq.dtype, device=sq.device)
    chol, info = torch.linalg.cholesky_ex(kernel)
    ok = info == 0
    alpha = torch.cholesky_solve(y[:, :, None], chol)[:, :, 0]
    inverse = torch.cholesky_inverse(chol)
    logdet = torch.log(torch.diagonal(chol, dim1=1, dim2=2)).sum(1)
    value = -0.5 * (y * alpha).sum(1) - logdet - 0.5 * n * math.log(2 * math.pi)
    slope = raw * scaled
    quadratic = torch.einsum("bi,bij,bj->b", alpha, slope, alpha)
    grad = 0.5 * (quadratic - (inverse * slope).sum((1, 2)))
    ok = ok & torch.isfinite(value) & torch.isfinite(grad)
    value = torch.where(ok, value, torch.full_like(value, -math.inf))
    return value, torch.where(ok, grad, torch.zeros_like(grad))


@dataclass
class BatchedGP:
    """R fitted GPs on R datasets of the same size n (one per simulated run).

    Attributes:
        x: [R, n, d] inputs; theta: [R] log length scales; chol: [R, n, n]; alpha: [R, n];
        y_mean, y_scale: [R] target normalisation.
    """

    x: torch.Tensor
    theta: torch.Tensor
    chol: torch.Tensor
    alpha: torch.Tensor
    y_mean: torch.Tensor
    y_scale: torch.Tensor

    def predict(
        self,
        query: torch.Tensor,
        return_std: bool = False,
        cross_sq: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Posterior mean [R, M] (and std [R, M]) at the shared query points [M, d].

        ``cross_sq`` [R, M, n], the squared distances from the queries to each run's inputs,
        saves recomputing them when the caller has them at hand.
        """
        inv_scale2 = torch.exp(-2.0 * self.theta)[:, None, None]
        sq = _cross_sq(query, self.x) if cross_sq is None else cross_sq
        cross = torch.exp(-0.5 * sq * inv_scale2)
        mean = self.y_mean[:, None] + self.y_scale[:, None] * torch.einsum(
            "rmn,rn->rm", cross, self.alpha
        )
        if not return_std:
            return mean, None
        # Inverting the small factor once and multiplying is far faster on the CPU than a
        # batched triangular solve against all M query points.
        n = self.chol.shape[-1]
        eye = torch.eye(n, dtype=self.chol.dtype, device=self.chol.device).expand_as(self.chol)
        chol_inv = torch.linalg.solve_triangular(self.chol, eye, upper=False)
        v = torch.bmm(cross, chol_inv.transpose(1, 2))
        var = torch.clamp(1.0 - (v * v).sum(2), min=0.0)
        return mean, self.y_scale[:, None] * _sqrt(var)


@contextmanager
def cpu_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch CPU threads (None: leave torch's setting), restoring
    the previous number afterwards. The batched operations work on many small matrices: one
    thread measured 3-4x faster than two on a busy 2-core machine."""
    if count is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _threads(engine: EngineConfig, device: torch.device) -> AbstractContextManager[None]:
    return cpu_threads(engine.cpu_threads if device.type == "cpu" else None)


def _sqrt(values: torch.Tensor) -> torch.Tensor:
    """Correctly rounded square root. Torch's vectorised CPU sqrt can round 1 - 2^-53 up to
    exactly 1; far-away candidates then tie at std = 1 where scikit-learn (numpy) separates
    them, and UCB's lowest-index tie-break picks differently."""
    if values.device.type == "cpu":
        return torch.from_numpy(np.sqrt(values.numpy()))
    return torch.sqrt(values)


def _cross_sq(query: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    q2 = (query * query).sum(-1)  # [M]
    x2 = (x * x).sum(-1)  # [R, n]
    dot = torch.einsum("md,rnd->rmn", query, x)
    return torch.clamp(q2[None, :, None] + x2[:, None, :] - 2.0 * dot, min=0.0)


def _space_sq(space: torch.Tensor) -> torch.Tensor:
    # Differences, not the |a|^2 + |b|^2 - 2ab expansion: the diagonal must be exactly 0 and
    # tiny kernel values exact, or float ties between candidates (which decide UCB picks when
    # the std saturates at 1) break differently from a direct computation.
    return ((space[:, None, :] - space[None, :, :]) ** 2).sum(-1)


def _self_sq(x: torch.Tensor) -> torch.Tensor:
    return ((x[:, :, None, :] - x[:, None, :, :]) ** 2).sum(-1)


def _search_theta(
    sq: torch.Tensor,
    y: torch.Tensor,
    gp: GPConfig,
    engine: EngineConfig,
    restarts: torch.Tensor | None,
) -> torch.Tensor:
    batch = sq.shape[0]
    start = math.log(gp.length_scale)
    if not gp.optimize:
        return torch.full((batch,), start, dtype=sq.dtype, device=sq.device)
    # Emulate a local optimiser run from each start, as scikit-learn runs L-BFGS-B: where the
    # gradient vanishes (the flat plateau of tiny length scales, or a single observation) or
    # the kernel is not positive definite, it stays at its start; elsewhere it climbs to the
    # nearest peak uphill. The best start wins, ties going to the earliest.
    starts = torch.full((batch, 1), start, dtype=sq.dtype, device=sq.device)
    if restarts is not None and restarts.shape[1] > 0:
        starts = torch.cat([starts, restarts.to(sq.dtype)], 1)
    n_starts = starts.shape[1]
    flat_sq = sq.repeat_interleave(n_starts, 0)
    flat_y = y.repeat_interleave(n_starts, 0)
    theta0 = starts.reshape(-1)
    value0, grad0 = _lml_grad(flat_sq, flat_y, theta0, gp.jitter)
    stuck = ~torch.isfinite(value0) | (grad0.abs() <= _STALL_GRADIENT)
    theta, value = theta0.clone(), value0.clone()
    # L-BFGS-B's first iteration (bounded, identity curvature) tries the step theta0 + grad,
    # clipped to the bounds, and takes it when the Armijo condition holds. It then stops if the
    # gradient there vanishes (e.g. it overshot onto the plateau or a bound) or the objective
    # barely changed (relative reduction <= factr * eps); otherwise it goes on to a peak.
    low, high = (math.log(b) for b in gp.length_scale_bounds)
    first = torch.clamp(theta0 + grad0, low, high)
    value1, grad1 = _lml_grad(flat_sq, flat_y, first, gp.jitter)
    armijo = torch.isfinite(value1) & (value1 - value0 >= 1e-3 * grad0 * (first - theta0))
    accepted = ~stuck & armijo
    scale = torch.clamp(torch.maximum(value0.abs(), value1.abs()), min=1.0)
    settles = (grad1.abs() <= _STALL_GRADIENT) | ((value1 - value0) / scale <= _STALL_REDUCTION)
    stops = accepted & settles
    theta = torch.where(stops, first, theta)
    value = torch.where(stops, value1, value)
    climbs = torch.nonzero(~stuck & ~stops)[:, 0]
    if len(climbs):
        moved = accepted[climbs]
        found, found_value = _climb(
            flat_sq[climbs],
            flat_y[climbs],
            torch.where(moved, first[climbs], theta0[climbs]),
            torch.where(moved, value1[climbs], value0[climbs]),
            torch.sign(torch.where(moved, grad1[climbs], grad0[climbs])),
            (low, high),
            gp.jitter,
            engine,
        )
        theta[climbs], value[climbs] = found, found_value
    choice = torch.argmax(value.reshape(batch, n_starts), 1)
    return theta.reshape(batch, n_starts).gather(1, choice[:, None])[:, 0]


def _climb(
    sq: torch.Tensor,
    y: torch.Tensor,
    theta0: torch.Tensor,
    value0: torch.Tensor,
    direction: torch.Tensor,
    bounds: tuple[float, float],
    jitter: float,
    engine: EngineConfig,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Walk uphill from theta0 in steps of ``engine.grid_step`` until the likelihood falls,
    then refine the bracketed peak."""
    low, high = bounds
    step = engine.grid_step
    prev, f_prev = theta0.clone(), value0.clone()
    best, f_best = theta0.clone(), value0.clone()
    nxt, f_next = theta0.clone(), torch.full_like(value0, -math.inf)
    going = torch.ones_like(value0, dtype=torch.bool)
    max_steps = math.ceil((high - low) / step) + 1
    for _ in range(max_steps):
        rows = torch.nonzero(going)[:, 0]
        if len(rows) == 0:
            break
        trial = torch.clamp(best[rows] + direction[rows] * step, low, high)
        f_trial = _lml(sq[rows], y[rows], trial, jitter)
        at_bound = trial == best[rows]
        up = (f_trial > f_best[rows]) & ~at_bound
        # Moving on: the old best becomes the trailing end of the bracket.
        prev[rows] = torch.where(up, best[rows], prev[rows])
        f_prev[rows] = torch.where(up, f_best[rows], f_prev[rows])
        nxt[rows] = torch.where(up, nxt[rows], trial)
        f_next[rows] = torch.where(up, f_next[rows], f_trial)
        best[rows] = torch.where(up, trial, best[rows])
        f_best[rows] = torch.where(up, f_trial, f_best[rows])
        going[rows] = up
    # The peak lies between the last two points walked: bisect on the sign of the derivative
    # (robust next to the steep ill-conditioned side), then a secant step on the derivative.
    lo, hi = torch.minimum(prev, nxt), torch.maximum(prev, nxt)
    g_lo = torch.full_like(lo, math.nan)
    g_hi = torch.full_like(hi, math.nan)
    for _ in range(engine.refine_steps):
        mid = 0.5 * (lo + hi)
        _, g_mid = _lml_grad(sq, y, mid, jitter)
        right = g_mid > 0  # where the kernel is not PD the gradient reads 0: go left
        lo, g_lo = torch.where(right, mid, lo), torch.where(right, g_mid, g_lo)
        hi, g_hi = torch.where(right, hi, mid), torch.where(right, g_hi, g_mid)
    secant = lo + (hi - lo) * g_lo / (g_lo - g_hi)
    usable = torch.isfinite(secant) & (g_lo > 0) & (g_hi < 0)
    b = torch.where(usable, secant, 0.5 * (lo + hi))
    fb = _lml(sq, y, b, jitter)
    # Never end below the best point the walk saw.
    keep = f_best > fb
    b, fb = torch.where(keep, best, b), torch.where(keep, f_best, fb)
    return b, fb


def batched_fit(
    x: torch.Tensor,
    y: torch.Tensor,
    gp: GPConfig,
    engine: EngineConfig | None = None,
    rng: np.random.Generator | None = None,
    sq: torch.Tensor | None = None,
) -> BatchedGP:
    """Fit R GPs at once.

    Args:
        x: [R, n, d] standardised features.
        y: [R, n] finite targets.
        gp: kernel, normalisation and likelihood settings.
        engine: numerical settings.
        rng: draws the ``gp.n_restarts`` random starts per run (log-uniform in the bounds).
        sq: [R, n, n] squared distances between each run's inputs, if already known.
    """
    engine = engine or EngineConfig()
    if gp.normalize not in NORMALIZATIONS:
        raise ValueError(f"unknown normalisation {gp.normalize!r}")
    y_mean, y_scale = _normalize(y, gp.normalize)
    target = (y - y_mean[:, None]) / y_scale[:, None]
    sq = _self_sq(x) if sq is None else sq
    restarts = None
    if gp.n_restarts:
        if rng is None:
            raise ValueError("batched_fit needs an rng when gp.n_restarts > 0")
        low, high = (math.log(b) for b in gp.length_scale_bounds)
        draws = rng.uniform(low, high, size=(x.shape[0], gp.n_restarts))
        restarts = torch.as_tensor(draws, dtype=x.dtype, device=x.device)
    theta = _search_theta(sq, target, gp, engine, restarts)
    n = x.shape[1]
    eye = torch.eye(n, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * sq * torch.exp(-2.0 * theta)[:, None, None]) + gp.jitter * eye
    chol, info = torch.linalg.cholesky_ex(kernel)
    if bool((info != 0).any()):
        # Same fallback as kdnas.search.gp.fit_gp: a little more jitter rather than no model.
        bad = info != 0
        chol_more, _ = torch.linalg.cholesky_ex(kernel[bad] + 1e-8 * eye)
        chol = chol.clone()
        chol[bad] = chol_more
    alpha = torch.cholesky_solve(target[:, :, None], chol)[:, :, 0]
    return BatchedGP(x, theta, chol, alpha, y_mean, y_scale)


_ALGORITHM1_ENGINE = EngineConfig(grid_step=2.0, chunk=128)


def simulate_algorithm1(
    features: np.ndarray,
    lf_valid: np.ndarray,
    subsets: np.ndarray,
    gp: GPConfig | None = None,
    engine: EngineConfig | None = None,
    device: torch.device | None = None,
) -> np.ndarray:
    """Algorithm 1 for many runs: fit a GP to each run's low-fidelity scores, return the argmax
    of its posterior mean over the whole space.

    Args:
        features: [N, d] standardised features of the space.
        lf_valid: [N] low-fidelity validation accuracy of every architecture.
        subsets: [R, n_lf] the architectures each run evaluates (see ``random_subsets``).
        gp: defaults to ``GPConfig.paper_algorithm1()``.

    Returns:
        [R] index of the chosen architecture per run.
    """
    # Raw-target likelihoods of tens of points rise smoothly to one peak: a longer walk step
    # found the same choices as scikit-learn (measured) for a third less time.
    engine = engine or _ALGORITHM1_ENGINE
    device = device or default_device()
    with _threads(engine, device):
        return _simulate_algorithm1(features, lf_valid, subsets, gp, engine, device)


def _simulate_algorithm1(
    features: np.ndarray,
    lf_valid: np.ndarray,
    subsets: np.ndarray,
    gp: GPConfig | None,
    engine: EngineConfig,
    device: torch.device,
) -> np.ndarray:
    gp = gp or GPConfig.paper_algorithm1()
    space = torch.as_tensor(np.array(features, float), dtype=_DTYPE, device=device)
    values = torch.as_tensor(np.array(lf_valid, float), dtype=_DTYPE, device=device)
    space_sq = _space_sq(space)
    chosen = []
    for begin in range(0, len(subsets), engine.chunk):
        idx = torch.as_tensor(subsets[begin : begin + engine.chunk], device=device)
        sq = space_sq[idx[:, :, None], idx[:, None, :]]
        model = batched_fit(space[idx], values[idx], gp, engine, sq=sq)
        mean, _ = model.predict(space, cross_sq=space_sq[:, idx].permute(1, 0, 2))
        chosen.append(torch.argmax(mean, 1).cpu().numpy())
    return np.concatenate(chosen)


def simulate_gp_ucb_phase(
    features: np.ndarray,
    values: np.ndarray,
    first: np.ndarray,
    *,
    steps: int | None = None,
    target: int | None = None,
    beta: float = 0.5,
    rng: np.random.Generator | None = None,
    gp: GPConfig | None = None,
    engine: EngineConfig | None = None,
    device: torch.device | None = None,
) -> np.ndarray:
    """GP-UCB at one fidelity for many runs in lockstep.

    Each run first evaluates ``first[r]``, then repeatedly fits a GP to what it has seen and
    evaluates the unseen architecture of highest mean + beta * std (ties: the lowest index,
    as ``numpy.argmax``). A run stops after ``steps`` evaluations in all, or once it has
    evaluated ``target``, or when the space is exhausted.

    Args:
        features: [N, d] standardised features.
        values: [N] the objective to maximise at this fidelity (validation accuracy).
        first: [R] each run's first architecture.
        steps: evaluations per run (including the first); None = until ``target``.
        target: an architecture index that ends a run once evaluated.
        beta: weight of the posterior std.
        rng: draws the GP's random restarts.
        gp: defaults to ``GPConfig.paper_gp_ucb()``.

    Returns:
        [R, T] indices in evaluation order, padded with -1 after a run stopped.
    """
    if steps is None and target is None:
        raise ValueError("simulate_gp_ucb_phase needs steps or target")
    engine = engine or EngineConfig()
    device = device or default_device()
    with _threads(engine, device):
        return _simulate_gp_ucb_phase(
            features,
            values,
            first,
            steps,
            target,
            beta,
            rng,
            gp or GPConfig.paper_gp_ucb(),
            engine,
            device,
        )


def _simulate_gp_ucb_phase(
    features: np.ndarray,
    values: np.ndarray,
    first: np.ndarray,
    steps: int | None,
    target: int | None,
    beta: float,
    rng: np.random.Generator | None,
    gp: GPConfig,
    engine: EngineConfig,
    device: torch.device,
) -> np.ndarray:
    space = torch.as_tensor(np.array(features, float), dtype=_DTYPE, device=device)
    vals = torch.as_tensor(np.array(values, float), dtype=_DTYPE, device=device)
    n_space = space.shape[0]
    space_sq = _space_sq(space)
    runs = len(first)
    limit = n_space if steps is None else min(steps, n_space)
    order = torch.full((runs, limit), -1, dtype=torch.long, device=device)
    order[:, 0] = torch.as_tensor(np.asarray(first), device=device)
    seen = torch.zeros((runs, n_space), dtype=torch.bool, device=device)
    seen[torch.arange(runs, device=device), order[:, 0]] = True
    active = torch.ones(runs, dtype=torch.bool, device=device)
    if target is not None:
        active &= order[:, 0] != target
    for step in range(1, limit):
        rows = torch.nonzero(active)[:, 0]
        if len(rows) == 0:
            break
        for begin in range(0, len(rows), engine.chunk):
            part = rows[begin : begin + engine.chunk]
            idx = order[part, :step]
            sq = space_sq[idx[:, :, None], idx[:, None, :]]
            model = batched_fit(space[idx], vals[idx], gp, engine, rng, sq=sq)
            cross = space_sq[:, idx].permute(1, 0, 2)
            mean, std = model.predict(space, return_std=True, cross_sq=cross)
            score = upper_confidence_bound(mean, std, beta)
            score = torch.where(seen[part], torch.full_like(score, -math.inf), score)
            pick = torch.argmax(score, 1)
            order[part, step] = pick
            seen[part, pick] = True
        if target is not None:
            active &= order[:, step] != target
    return order.cpu().numpy()
