"""What both executors share: replaying a stored run, the store step of the evaluation loop
(``kdnas.loop``), callbacks and summaries."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kdnas.core import EvalResult, Objective, Optimizer, Suggestion
from kdnas.loop import (
    STOP_REASONS,
    Finished,
    LoopLimits,
    Workers,
    check_result,
    evaluate_safely,
    failed_result,
    run_loop,
)
from kdnas.store import Store, StoredEvaluation

__all__ = [
    "ExecutionCallback",
    "ExecutionLimits",
    "ExecutionSummary",
    "ReplayDivergedError",
    "check_result",
    "evaluate_safely",
    "failed_result",
    "loss_hyperparameters_of",
    "replay_run",
    "run_stored",
]

logger = logging.getLogger(__name__)


class ReplayDivergedError(RuntimeError):
    """A resumed optimizer did not ask what the store recorded (it is not deterministic)."""


#: When an executor stops, besides the optimizer running out of suggestions: the evaluation
#: loop's limits (``max_evaluations`` counts replayed evaluations too, so a resumed run stops
#: where the uninterrupted one would have; ``max_wall_s`` is not reproducible, the optimizer's
#: own budget is).
ExecutionLimits = LoopLimits


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
        stop_reason: one of ``kdnas.loop.STOP_REASONS``: "exhausted" (the optimizer
            has nothing more to ask), "max_evaluations", "max_wall_s", ...
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
        if self.stop_reason not in STOP_REASONS:
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


@dataclass
class ReplayState:
    """An optimizer put back in its stored state, and what is left to evaluate."""

    told: list[StoredEvaluation]
    unfinished: list[Suggestion]


def replay_run(optimizer: Optimizer, store: Store, run_id: str) -> ReplayState:
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


class _StoreStep:
    """The loop's store step for one run: record each ask, commit each finished evaluation
    (before the optimizer is told), and notify the callbacks."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        objective: Objective,
        callbacks: Sequence[object],
        evaluations: list[StoredEvaluation],
    ) -> None:
        self.store, self.run_id, self.objective = store, run_id, objective
        self.callbacks, self.evaluations = callbacks, evaluations

    def asked(self, suggestion: Suggestion) -> None:
        self.store.record_ask(self.run_id, suggestion)

    def started(self, suggestion: Suggestion) -> None:
        notify_start(self.callbacks, suggestion)

    def finished(self, finished: Finished) -> None:
        suggestion, result = finished.suggestion, finished.result
        evaluation = self.store.put(
            self.run_id,
            suggestion,
            result,
            loss_hyperparameters=loss_hyperparameters_of(self.objective, suggestion, result),
            started_at=finished.started_at,
            finished_at=finished.finished_at,
            worker=finished.worker or None,
        )
        self.evaluations.append(evaluation)
        notify_result(self.callbacks, evaluation, False)


def run_stored(
    optimizer: Optimizer,
    objective: Objective,
    make_workers: Callable[[], Workers],
    store: Store,
    *,
    run_id: str,
    config: Mapping[str, Any] | None,
    limits: ExecutionLimits | None,
    callbacks: Sequence[object],
    poll_s: float = 1.0,
    extras: Mapping[str, Any] | None = None,
) -> ExecutionSummary:
    """Run (or resume) the stored search ``run_id`` through the evaluation loop: open the run,
    replay its history into the fresh optimizer, then (only then, so a refused run starts no
    workers) ``make_workers()``, evaluate the interrupted suggestions first, and ask,
    evaluate, store, tell until a stop."""
    clock = time.perf_counter()
    store.open_run(run_id, config or {})
    state = replay_run(optimizer, store, run_id)
    for evaluation in state.told:
        notify_result(callbacks, evaluation, True)
    evaluations: list[StoredEvaluation] = list(state.told)
    trace = run_loop(
        optimizer,
        make_workers(),
        limits=limits,
        recorder=_StoreStep(store, run_id, objective, callbacks, evaluations),
        resume=state.unfinished,
        already_finished=len(state.told),
        poll_s=poll_s,
    )
    return ExecutionSummary(
        run_id=run_id,
        evaluations=evaluations,
        n_replayed=len(state.told),
        n_new=len(trace.steps),
        wall_s=time.perf_counter() - clock,
        stop_reason=trace.stop_reason,
        extras=dict(extras or {}),
    )
