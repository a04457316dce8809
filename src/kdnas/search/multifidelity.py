"""Screening GP-UCB: screen each high-fidelity candidate at a cheap fidelity first.

The paper's Algorithm 2 uses its low-fidelity results only to choose where the high-fidelity
search starts. ``ScreeningGPUCB`` keeps one model of the high-fidelity accuracy f over the
whole run and feeds it every screening result:

    f(a)            the high-fidelity valid_acc of architecture a
    s(a)            its valid_acc at the screening fidelity (default: 1/3 of the data, KD)
    calibration     f(a) ~ c + b * s(a) + e,   e ~ N(0, r^2)
                    b = ``prior_slope`` and r = ``prior_noise``; c is fitted on the
                    architectures seen at both fidelities (the mean of f - b * s). With
                    ``calibrate_after`` = k, b, c and r are fitted by least squares once k
                    architectures have both results.
    model           a GP (``kdnas.search._noisy_gp``) on exact high-fidelity results and on
                    the calibrated screening results of the architectures not yet evaluated
                    at high fidelity, each with noise variance r^2.
    acquisition     UCB = mean + beta * std over the architectures not yet evaluated at high
                    fidelity. If the winner has no screening result yet, screen it;
                    otherwise evaluate it at high fidelity.

So a candidate reaches the expensive fidelity only after its cheap result has kept it at the top
of the acquisition, and a candidate the screening refutes costs a fraction of a high-fidelity
run. The run starts by screening one random architecture (or ``start``). Every choice is the
model's; nothing is tuned per search space (see docs/results.md, "Beyond the paper").

Parallel use: ``ask`` may be called before earlier suggestions are told; architectures with a
pending evaluation are not suggested again until it is told. Failed or diverged results cost
budget and take their architecture out of the search.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from kdnas.core import HIGH_FIDELITY, Architecture, EvalResult, Fidelity, Suggestion
from kdnas.search._noisy_gp import fit_noisy_gp
from kdnas.search.candidates import CandidateSet
from kdnas.search.optimizers import Budget, _Pool

if TYPE_CHECKING:
    from kdnas.search.reproduction import SpaceArrays, Table4Settings

__all__ = [
    "ScreeningConfig",
    "ScreeningGPUCB",
    "ScreeningRuns",
    "register_table4_rows",
    "simulate_screening",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScreeningConfig:
    """Settings of ``ScreeningGPUCB``.

    Args:
        screen_fidelity: the cheap fidelity every high-fidelity candidate passes first.
        high_fidelity: the fidelity whose accuracy is maximised.
        beta: UCB weight of the posterior std (the paper's GP-UCB: 0.5).

    The defaults were chosen on seeds 0-99 of both spaces of the paper's benchmark (a grid
    over the screening fidelity 1/3 nokd or kd, beta, slope, noise; docs/results.md).
        prior_slope: b, high-fidelity accuracy points per screening accuracy point.
        prior_noise: r, the std of the calibration residual (fraction of accuracy, e.g. 0.01
            = 1 point): how far a screening result is trusted.
        calibrate_after: fit b, c and r by least squares once this many architectures have
            both results (None: keep ``prior_slope`` and ``prior_noise``, fit only c).
    """

    screen_fidelity: Fidelity = field(default_factory=lambda: Fidelity(part=3, method="kd"))
    high_fidelity: Fidelity = HIGH_FIDELITY
    beta: float = 1.0
    prior_slope: float = 1.0
    prior_noise: float = 0.005
    calibrate_after: int | None = None

    def __post_init__(self) -> None:
        if self.screen_fidelity == self.high_fidelity:
            raise ValueError("ScreeningConfig: screen_fidelity must differ from high_fidelity")
        if not self.beta >= 0.0:
            raise ValueError(f"ScreeningConfig.beta must be >= 0, got {self.beta}")
        if not (math.isfinite(self.prior_slope) and self.prior_slope > 0.0):
            raise ValueError(f"ScreeningConfig.prior_slope must be > 0, got {self.prior_slope}")
        if not (math.isfinite(self.prior_noise) and self.prior_noise > 0.0):
            raise ValueError(f"ScreeningConfig.prior_noise must be > 0, got {self.prior_noise}")
        if self.calibrate_after is not None and self.calibrate_after < 3:
            raise ValueError(
                f"ScreeningConfig.calibrate_after must be >= 3 or None, got {self.calibrate_after}"
            )


class ScreeningGPUCB:
    """Ask/tell multi-fidelity GP-UCB that screens candidates at a cheap fidelity first.

    Args:
        candidates: the architectures and their standardised features.
        config: see ``ScreeningConfig``.
        seed: seeds the random first architecture.
        start: the first architecture to screen (default: a random one).
        budget: evaluations or seconds over both fidelities.
        target_value: stop once a high-fidelity result reaches this valid_acc.
    """

    def __init__(
        self,
        candidates: CandidateSet,
        config: ScreeningConfig | None = None,
        seed: int | None = None,
        start: Architecture | None = None,
        budget: Budget | None = None,
        target_value: float | None = None,
    ) -> None:
        self._pool = _Pool(candidates, seed, budget)
        self.config = config or ScreeningConfig()
        self.target_value = target_value
        self._start = None if start is None else candidates.index_of(start)
        self._failed: set[int] = set()

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

    def _high_used(self) -> set[int]:
        return self._pool.used(self.config.high_fidelity)

    @property
    def finished(self) -> bool:
        best = self.best()
        target = self.target_value
        if target is not None and best is not None and best.valid_acc >= target:
            return True
        if not self._pool.budget_left():
            return True
        return len(self._high_used() | self._failed) >= len(self.candidates)

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        choice = self._choose()
        if choice is None:
            return None
        index, fidelity = choice
        return self._pool.suggest(index, fidelity)

    def _choose(self) -> tuple[int, Fidelity] | None:
        cfg = self.config
        size = len(self.candidates)
        pending = {i for i, _ in self._pool.pending.values()}
        blocked = self._high_used() | self._failed | pending
        free = np.array([i for i in range(size) if i not in blocked], dtype=int)
        if len(free) == 0:
            return None  # everything left is pending
        high_idx, high_val = self._pool.observations(cfg.high_fidelity)
        screen_idx, screen_val = self._pool.observations(cfg.screen_fidelity)
        if len(high_idx) == 0 and len(screen_idx) == 0:
            if self._start is not None and self._start in set(free.tolist()):
                return self._start, cfg.screen_fidelity
            return int(self._pool.rng.choice(free)), cfg.screen_fidelity
        features = self.candidates.features
        idx, targets, noise = self._training_data(high_idx, high_val, screen_idx, screen_val)
        model = fit_noisy_gp(features[idx], targets, noise)
        mean, std = model.predict(features)
        score = np.full(size, -np.inf)
        score[free] = mean[free] + cfg.beta * std[free]
        best = int(np.argmax(score))
        screened = set(screen_idx.tolist())
        return best, (cfg.high_fidelity if best in screened else cfg.screen_fidelity)

    def calibration(self) -> tuple[float, float, float]:
        """(intercept c, slope b, residual std r) mapping screening to high-fidelity accuracy,
        as the next ``ask`` will use them."""
        cfg = self.config
        high_idx, high_val = self._pool.observations(cfg.high_fidelity)
        screen_idx, screen_val = self._pool.observations(cfg.screen_fidelity)
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
        # Exact results get scikit-learn's default jitter, as the paper's GP-UCB.
        variance = np.concatenate(
            [np.full(len(high_idx), 1e-10), np.full(int(imputed.sum()), noise**2)]
        )
        return idx, targets, variance

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        index = self._pool.tell(suggestion, result)
        if not result.ok or not math.isfinite(result.valid_acc):
            self._failed.add(index)

    def best(self) -> EvalResult | None:
        """The best high-fidelity result so far (the incumbent)."""
        return self._pool.best(self.config.high_fidelity)


# ---------------------------------------------------------------------------- simulation


@dataclass(frozen=True)
class ScreeningRuns:
    """Simulated runs of ``ScreeningGPUCB`` on a tabular benchmark space.

    Args:
        seeds: [R] the optimizer seed of each run.
        time_to_optimum_s: [R] seconds of every evaluation until the optimum had been
            evaluated at high fidelity (inf if a run's budget ended first).
        high_events: per run, (elapsed seconds after the evaluation, architecture index) of
            each high-fidelity evaluation, in order.
        screen_counts: [R] screening evaluations per run.
    """

    seeds: tuple[int, ...]
    time_to_optimum_s: np.ndarray
    high_events: tuple[tuple[tuple[float, int], ...], ...]
    screen_counts: np.ndarray


def simulate_screening(
    arrays: SpaceArrays,
    config: ScreeningConfig | None = None,
    seeds: Sequence[int] = tuple(range(100)),
    max_cost_s: float = 1e6,
) -> ScreeningRuns:
    """Run ``ScreeningGPUCB`` against one benchmark space for each seed, charging every
    evaluation its benchmark ``wall_time``, until the optimum (best high-fidelity valid_acc)
    has been evaluated at high fidelity.

    The loop is the plain ask/tell loop with array lookups for results, so the same optimizer
    code runs here and on real training. About 50 runs per second on one core.

    Args:
        arrays: the space (``kdnas.search.reproduction.load_space_arrays``).
        config: optimizer settings (its fidelities must be in the benchmark).
        seeds: one run per seed.
        max_cost_s: stop a run that has not found the optimum after this many seconds.
    """
    config = config or ScreeningConfig()
    if not config.high_fidelity.is_high:
        raise ValueError("simulate_screening: the benchmark's high fidelity is part 1, nokd")
    screen = config.screen_fidelity
    screen_valid = arrays.low_column(screen.method, screen.part, "valid_acc")
    screen_test = arrays.low_column(screen.method, screen.part, "test_acc")
    screen_time = arrays.low_column(screen.method, screen.part, "wall_time")
    archs = tuple(Architecture(arrays.space, (i,)) for i in range(arrays.size))
    candidates = CandidateSet(archs, arrays.features)
    optimum = arrays.optimum
    times = np.full(len(seeds), math.inf)
    events: list[tuple[tuple[float, int], ...]] = []
    screens = np.zeros(len(seeds), dtype=int)
    for run, seed in enumerate(seeds):
        optimizer = ScreeningGPUCB(
            candidates, config, seed=int(seed), budget=Budget(max_cost_s=max_cost_s)
        )
        elapsed = 0.0
        run_events: list[tuple[float, int]] = []
        while (suggestion := optimizer.ask()) is not None:
            i = candidates.index_of(suggestion.arch)
            high = suggestion.fidelity.is_high
            valid = arrays.hf_valid[i] if high else screen_valid[i]
            test = arrays.hf_test[i] if high else screen_test[i]
            cost = arrays.hf_time[i] if high else screen_time[i]
            elapsed += float(cost)
            result = EvalResult(
                suggestion.arch.key(), suggestion.fidelity, float(valid), float(test), float(cost)
            )
            optimizer.tell(suggestion, result)
            if high:
                run_events.append((elapsed, i))
                if i == optimum:
                    times[run] = elapsed
                    break
            else:
                screens[run] += 1
        events.append(tuple(run_events))
    return ScreeningRuns(tuple(int(s) for s in seeds), times, tuple(events), screens)


# ---------------------------------------------------------------------------- Table 4 rows

#: Screening fidelities that get a Table 4 row, as (part, method).
TABLE4_SCREENS: tuple[tuple[int, str], ...] = ((3, "kd"),)


def _row_screening(
    arrays: SpaceArrays,
    settings: Table4Settings,
    progress: Callable[[str], None] | None,
) -> Mapping[str, Mapping[str, Mapping[str, np.ndarray]]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    # Seeds from 1000 on: seeds 0-99 chose the defaults, so the table reports fresh ones.
    seeds = [1000 + settings.seed * 1_000_003 + r for r in range(settings.runs)]
    for part, method in TABLE4_SCREENS:
        if (method, part) not in arrays.low:
            continue
        # The optimizer's own beta (its default), not the paper's 0.5 of settings.beta.
        config = ScreeningConfig(screen_fidelity=Fidelity(part=part, method=method))
        runs = simulate_screening(arrays, config, seeds)
        out.setdefault(str(part), {})[method] = runs.time_to_optimum_s
        if progress is not None:
            progress(f"{arrays.space} screening GP-UCB, 1/{part} {method}")
    return {"screening GP-UCB": out}


def register_table4_rows() -> None:
    """Add the screening GP-UCB row to ``kdnas reproduce table4`` (idempotent)."""
    from kdnas.search.reproduction import TABLE4_ROWS, register_table4_row

    if "screening" not in TABLE4_ROWS:
        register_table4_row(
            "screening",
            _row_screening,
            steps=lambda arrays, settings: sum((m, p) in arrays.low for p, m in TABLE4_SCREENS),
        )
