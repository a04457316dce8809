"""Running ask/tell optimizers against an objective, and the statistics of such runs.

``run_optimizer`` is the plain serial loop (ask, evaluate, tell) with budgets in evaluations
or seconds; ``Trace`` records what happened and answers the paper's questions: the time to
reach the optimum (seconds of every evaluation made, low and high fidelity, until the optimum
has been evaluated at high fidelity), the anytime curve of the incumbent, the chosen
architecture. ``percentile_in_space`` is the paper's rank measure.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from kdnas.core import HIGH_FIDELITY, Architecture, EvalResult, Fidelity, Objective, Suggestion

__all__ = [
    "Trace",
    "TraceStep",
    "percentile_in_space",
    "run_many",
    "run_optimizer",
]

logger = logging.getLogger(__name__)


def percentile_in_space(values: np.ndarray, chosen: np.ndarray | int) -> np.ndarray:
    """The paper's percentile: 100 * (architectures whose value is >= the chosen one's,
    itself included) / space size. Lower is better; the best architecture gets 100/N.

    Args:
        values: [N] high-fidelity test accuracy of every architecture.
        chosen: index or [R] indices of chosen architectures.
    """
    values = np.asarray(values, dtype=float)
    chosen_values = values[np.asarray(chosen)]
    counts = (values[None, :] >= np.atleast_1d(chosen_values)[:, None]).sum(1)
    out = 100.0 * counts / len(values)
    return out if np.ndim(chosen) else out[0]


@dataclass(frozen=True)
class TraceStep:
    """One evaluation of a run: what was asked, what came back, seconds spent so far."""

    suggestion: Suggestion
    result: EvalResult
    elapsed_s: float


@dataclass(frozen=True)
class Trace:
    """The evaluations of one optimizer run, in the order they were told."""

    steps: tuple[TraceStep, ...]
    seed: int | None = None

    @property
    def cost_s(self) -> float:
        """Seconds of all evaluations made."""
        return self.steps[-1].elapsed_s if self.steps else 0.0

    def time_to(self, arch: Architecture, fidelity: Fidelity = HIGH_FIDELITY) -> float:
        """Seconds spent until ``arch`` had been evaluated at ``fidelity`` (that evaluation
        included); inf if it never was."""
        for step in self.steps:
            if step.suggestion.arch == arch and step.result.fidelity == fidelity:
                return step.elapsed_s
        return math.inf

    def incumbent_curve(
        self, fidelity: Fidelity = HIGH_FIDELITY, metric: str = "valid_acc"
    ) -> tuple[np.ndarray, np.ndarray]:
        """The anytime curve: after each evaluation at ``fidelity``, the elapsed seconds and the
        ``metric`` ("valid_acc" or "test_acc") of the incumbent, the architecture with the best
        valid_acc so far at that fidelity."""
        if metric not in ("valid_acc", "test_acc"):
            raise ValueError(f"metric must be valid_acc or test_acc, got {metric!r}")
        times, values = [], []
        best: EvalResult | None = None
        for step in self.steps:
            result = step.result
            if result.fidelity != fidelity:
                continue
            if result.ok and (best is None or result.valid_acc > best.valid_acc):
                best = result
            if best is not None:
                times.append(step.elapsed_s)
                values.append(getattr(best, metric))
        return np.asarray(times), np.asarray(values)


def run_optimizer(
    optimizer: object,
    objective: Objective,
    max_evaluations: int | None = None,
    max_cost_s: float | None = None,
    stop: Callable[[TraceStep], bool] | None = None,
) -> Trace:
    """The serial evaluation loop: ask, evaluate, tell, until the optimizer has nothing to ask,
    a budget is spent, or ``stop(step)`` returns True.

    Args:
        optimizer: a ``kdnas.core.Optimizer``.
        objective: evaluates (arch, fidelity) -> ``EvalResult`` with ``cost_s`` in seconds.
        max_evaluations: at most this many evaluations.
        max_cost_s: stop once this many seconds have been spent (the evaluation that crosses
            the limit is completed and counted).
        stop: called after each tell; True ends the run (e.g. "the optimum was found").
    """
    steps: list[TraceStep] = []
    elapsed = 0.0
    while max_evaluations is None or len(steps) < max_evaluations:
        if max_cost_s is not None and elapsed >= max_cost_s:
            break
        suggestion = optimizer.ask()  # type: ignore[attr-defined]
        if suggestion is None:
            break
        result = objective.evaluate(suggestion.arch, suggestion.fidelity)
        optimizer.tell(suggestion, result)  # type: ignore[attr-defined]
        elapsed += result.cost_s
        step = TraceStep(suggestion, result, elapsed)
        steps.append(step)
        if stop is not None and stop(step):
            break
    return Trace(tuple(steps), getattr(optimizer, "seed", None))


def run_many(
    make_optimizer: Callable[[int], object],
    objective: Objective,
    seeds: Sequence[int],
    stop_at: Architecture | None = None,
    stop_fidelity: Fidelity = HIGH_FIDELITY,
    max_evaluations: int | None = None,
    max_cost_s: float | None = None,
) -> list[Trace]:
    """One ``run_optimizer`` per seed; with ``stop_at``, each run ends once that architecture
    has been evaluated at ``stop_fidelity`` (time-to-optimum experiments)."""

    def found(step: TraceStep) -> bool:
        return step.suggestion.arch == stop_at and step.result.fidelity == stop_fidelity

    return [
        run_optimizer(
            make_optimizer(seed),
            objective,
            max_evaluations=max_evaluations,
            max_cost_s=max_cost_s,
            stop=found if stop_at is not None else None,
        )
        for seed in seeds
    ]
