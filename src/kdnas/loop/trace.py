"""The record of one optimizer run: what ``kdnas.loop`` returns and the paper asks of it.

``Trace`` records the evaluations of one run, each with its start and end on the workers'
clock, and answers the paper's questions: the time to reach the optimum (the clock when the
optimum's high-fidelity evaluation ended; with one worker, the seconds of every evaluation
made, low and high fidelity, until then), the anytime curve of the incumbent, the chosen
architecture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kdnas.core import HIGH_FIDELITY, Architecture, EvalResult, Fidelity, Suggestion

__all__ = ["Trace", "TraceStep"]


@dataclass(frozen=True)
class TraceStep:
    """One evaluation of a run: what was asked, what came back, and when it started and
    ended on the workers' clock (seconds since the run began; with one worker, the seconds
    of every evaluation so far)."""

    suggestion: Suggestion
    result: EvalResult
    elapsed_s: float
    started_s: float = math.nan


@dataclass(frozen=True)
class Trace:
    """The evaluations of one optimizer run, in the order they were told, and why it ended
    (one of ``kdnas.loop.STOP_REASONS``)."""

    steps: tuple[TraceStep, ...]
    seed: int | None = None
    stop_reason: str = "exhausted"

    @property
    def cost_s(self) -> float:
        """Seconds of all evaluations made (summed over workers)."""
        return float(sum(step.result.cost_s for step in self.steps))

    @property
    def elapsed_s(self) -> float:
        """The workers' clock when the last evaluation ended (the cost with one worker)."""
        return max((step.elapsed_s for step in self.steps), default=0.0)

    def time_to(self, arch: Architecture, fidelity: Fidelity = HIGH_FIDELITY) -> float:
        """The clock when ``arch``'s evaluation at ``fidelity`` ended (with one worker: the
        seconds spent until then, that evaluation included); inf if it never was."""
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
