"""What both executors share: replaying a stored run, safe evaluation, callbacks, summaries."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kdnas.core import EvalResult, Objective, Optimizer, Suggestion
from kdnas.store import SQLiteStore, StoredEvaluation

__all__ = [
    "ExecutionCallback",
    "ExecutionLimits",
    "ExecutionSummary",
    "ReplayDivergedError",
    "evaluate_safely",
    "loss_hyperparameters_of",
    "replay_run",
]

logger = logging.getLogger(__name__)


class ReplayDivergedError(RuntimeError):
    """A resumed optimizer did not ask what the store recorded (it is not deterministic)."""


@dataclass(frozen=True)
class ExecutionLimits:
    """When an executor stops, besides the optimizer running out of suggestions.

    Args:
        max_evaluations: finished evaluations of the run in all (replayed ones included),
            or None for no limit. Counting replayed ones makes a resumed run stop where the
            uninterrupted one would have.
        max_wall_s: wall-clock seconds of this call, or None. Not reproducible: the optimizer's
            own budget (evaluations or summed evaluation seconds) is the reproducible limit.
    """

    max_evaluations: int | None = None
    max_wall_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_evaluations is not None and self.max_evaluations < 0:
            raise ValueError(f"max_evaluations must be >= 0, got {self.max_evaluations!r}")
        if self.max_wall_s is not None and not self.max_wall_s > 0:
            raise ValueError(f"max_wall_s must be positive, got {self.max_wall_s!r}")


class ExecutionCallback(Protocol):
    """Hooks an executor calls on the driver (progress bars, logging). Both are optional."""

    def on_start(self, suggestion: Suggestion) -> None:
        """An evaluation was started (not called for replayed ones)."""

    def on_result(self, evaluation: StoredEvaluation, replayed: bool) -> None:
        """An evaluation was stored and told (``replayed``: read back from the store)."""


@dataclass(frozen=True)
class ExecutionSummary:
    """What one ``Executor.run`` call did.

    Args:
        run_id: the run.
        evaluations: every finished evaluation of the run after this call, in tell order.
        n_replayed: evaluations read back from the store and told without running them.
        n_new: evaluations run and stored by this call.
        wall_s: seconds this call took.
        stop_reason: "exhausted" (the optimizer has nothing more to ask), "max_evaluations"
            or "max_wall_s".
        extras: executor-specific facts (the Ray executor: its address).
    """

    run_id: str
    evaluations: Sequence[StoredEvaluation]
    n_replayed: int
    n_new: int
    wall_s: float
    stop_reason: str
    extras: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stop_reason not in ("exhausted", "max_evaluations", "max_wall_s"):
            raise ValueError(f"unknown stop_reason {self.stop_reason!r}")
        object.__setattr__(self, "evaluations", tuple(self.evaluations))

    @property
    def results(self) -> list[EvalResult]:
        return [evaluation.result for evaluation in self.evaluations]


def loss_hyperparameters_of(
    objective: Objective, suggestion: Suggestion, result: EvalResult | None = None
) -> dict[str, Any]:
    """The loss hyperparameters of an evaluation, for the store.

    An objective may expose ``loss_hyperparameters(fidelity) -> Mapping``; otherwise the
    result's metrics named ``loss.<name>`` (as the training objective reports them) are used.
    Benchmark objectives have none.
    """
    method = getattr(objective, "loss_hyperparameters", None)
    if callable(method):
        try:
            return dict(method(suggestion.fidelity))
        except (KeyError, ValueError, TypeError) as error:
            logger.warning(
                "no loss hyperparameters for %s: %s", suggestion.fidelity.label(), error
            )
    if result is None:
        return {}
    return {
        name[len("loss.") :]: value
        for name, value in result.metrics.items()
        if name.startswith("loss.")
    }


def failed_result(suggestion: Suggestion, cost_s: float, message: str) -> EvalResult:
    """A "failed" result carrying the seconds spent and the error message."""
    return EvalResult(
        arch_key=suggestion.arch.key(),
        fidelity=suggestion.fidelity,
        valid_acc=math.nan,
        test_acc=math.nan,
        cost_s=max(0.0, float(cost_s)) if math.isfinite(cost_s) else 0.0,
        status="failed",
        info={"error": message[:2000]},
    )


def check_result(suggestion: Suggestion, result: object, cost_s: float) -> EvalResult:
    """``result`` if it is a well-formed answer to ``suggestion``, else a failed result."""
    if not isinstance(result, EvalResult):
        return failed_result(
            suggestion, cost_s, f"objective returned {type(result).__name__}, not EvalResult"
        )
    if result.arch_key != suggestion.arch.key() or result.fidelity != suggestion.fidelity:
        return failed_result(
            suggestion,
            cost_s,
            f"objective answered {result.arch_key} at {result.fidelity.label()}, "
            f"asked {suggestion.arch.key()} at {suggestion.fidelity.label()}",
        )
    return result


def evaluate_safely(
    objective: Objective, suggestion: Suggestion
) -> tuple[EvalResult, float, float]:
    """Evaluate one suggestion; an exception becomes a "failed" result instead of a crash.

    Objectives return "failed" or "diverged" results themselves for bad architectures and
    diverged losses; this guard catches the unexpected (a bug, an out-of-memory error) so one
    bad evaluation never ends a long search.

    Returns:
        The result, and the Unix times (seconds) the evaluation started and finished.
    """
    started = time.time()
    clock = time.perf_counter()
    try:
        result: object = objective.evaluate(suggestion.arch, suggestion.fidelity)
    except Exception as error:
        logger.exception(
            "evaluation of %s at %s raised", suggestion.arch.key(), suggestion.fidelity.label()
        )
        result = failed_result(
            suggestion, time.perf_counter() - clock, f"{type(error).__name__}: {error}"
        )
    checked = check_result(suggestion, result, time.perf_counter() - clock)
    return checked, started, time.time()


@dataclass
class ReplayState:
    """An optimizer put back in its stored state, and what is left to evaluate."""

    told: list[StoredEvaluation]
    unfinished: list[Suggestion]


def replay_run(optimizer: Optimizer, store: SQLiteStore, run_id: str) -> ReplayState:
    """Replay a stored run's asks and tells, in their recorded order, into ``optimizer``.

    The optimizer must be fresh and built with the run's seed and configuration. Every
    recorded ask calls ``optimizer.ask()`` and checks it returns the recorded suggestion; every
    recorded result is told with ``optimizer.tell``. Afterwards the optimizer is in the state
    it had when the run stopped, even if evaluations had been running in parallel.

    Returns:
        The evaluations told, and the suggestions asked but never finished (interrupted by
        the stop): the executor evaluates those first.

    Raises:
        ReplayDivergedError: the optimizer asked something else than recorded.
    """
    asked: dict[int, Suggestion] = {}
    told: list[StoredEvaluation] = []
    for event in store.events(run_id):
        if event.kind == "ask":
            suggestion = optimizer.ask()
            if (
                suggestion is None
                or suggestion.trial_id != event.trial_id
                or suggestion.arch != event.arch
                or suggestion.fidelity != event.fidelity
            ):
                got = (
                    "nothing"
                    if suggestion is None
                    else f"trial {suggestion.trial_id} {suggestion.arch.key()} at "
                    f"{suggestion.fidelity.label()}"
                )
                raise ReplayDivergedError(
                    f"cannot resume run {run_id!r} of store {store.path} exactly: at step "
                    f"{event.seq} the optimizer asked {got}, the store recorded trial "
                    f"{event.trial_id} {event.arch.key()} at {event.fidelity.label()}; the "
                    f"optimizer is not deterministic for its seed. The stored evaluations are "
                    f"intact; start a new run id to search again"
                )
            asked[event.trial_id] = suggestion
        else:
            assert event.evaluation is not None
            suggestion = asked.pop(event.trial_id, None)
            if suggestion is None:
                raise ReplayDivergedError(
                    f"store {store.path}, run {run_id!r}: result of trial {event.trial_id} "
                    f"at step {event.seq} without a recorded ask"
                )
            optimizer.tell(suggestion, event.evaluation.result)
            told.append(event.evaluation)
    unfinished = [asked[trial_id] for trial_id in sorted(asked)]
    if told or unfinished:
        logger.info(
            "run %s: replayed %d finished evaluations; %d interrupted ones to rerun",
            run_id,
            len(told),
            len(unfinished),
        )
    return ReplayState(told=told, unfinished=unfinished)


def notify_start(callbacks: Sequence[object], suggestion: Suggestion) -> None:
    for callback in callbacks:
        hook: Callable[[Suggestion], None] | None = getattr(callback, "on_start", None)
        if hook is not None:
            hook(suggestion)


def notify_result(
    callbacks: Sequence[object], evaluation: StoredEvaluation, replayed: bool
) -> None:
    for callback in callbacks:
        hook: Callable[[StoredEvaluation, bool], None] | None = getattr(
            callback, "on_result", None
        )
        if hook is not None:
            hook(evaluation, replayed)
