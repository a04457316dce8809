"""The in-process executor: one evaluation at a time, in the calling process."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kdnas.core import Objective, Optimizer, Suggestion
from kdnas.execute._common import (
    ExecutionLimits,
    ExecutionSummary,
    evaluate_safely,
    loss_hyperparameters_of,
    notify_result,
    notify_start,
    replay_run,
)
from kdnas.store import SQLiteStore

__all__ = ["SerialExecutor"]

logger = logging.getLogger(__name__)


class SerialExecutor:
    """Drive an optimizer against an objective in this process, storing every result.

    A run that already exists in the store is resumed: its history is replayed into the
    (fresh, same-seed) optimizer, evaluations that were interrupted are run again, and the
    search continues exactly where it stopped; no finished evaluation is ever run twice.
    """

    name = "serial"

    def prepare(self, objective: Objective, function: Any, *args: Any) -> Any:
        """Run ``function(objective, *args)`` in this process (one-off work before ``run``)."""
        return function(objective, *args)

    def run(
        self,
        optimizer: Optimizer,
        objective: Objective,
        store: SQLiteStore,
        *,
        run_id: str,
        config: Mapping[str, Any] | None = None,
        limits: ExecutionLimits | None = None,
        callbacks: Sequence[object] = (),
    ) -> ExecutionSummary:
        """Run (or resume) the search ``run_id`` until the optimizer or a limit stops it.

        Args:
            optimizer: a fresh optimizer, built with the run's seed.
            objective: evaluates suggestions.
            store: where finished evaluations are committed.
            run_id: the run's name within the store.
            config: the run's configuration, fingerprinted so a resume with another
                configuration is refused (``RunMismatchError``).
            limits: extra stopping rules.
            callbacks: objects with optional ``on_start(suggestion)`` and
                ``on_result(evaluation, replayed)`` methods.

        Returns:
            A summary with every finished evaluation of the run.
        """
        limits = limits or ExecutionLimits()
        clock = time.perf_counter()
        store.open_run(run_id, config or {})
        state = replay_run(optimizer, store, run_id)
        for evaluation in state.told:
            notify_result(callbacks, evaluation, True)
        finished = list(state.told)
        queue: list[Suggestion] = list(state.unfinished)
        n_new = 0
        stop_reason = "exhausted"
        while True:
            if limits.max_evaluations is not None and len(finished) >= limits.max_evaluations:
                stop_reason = "max_evaluations"
                break
            if limits.max_wall_s is not None and time.perf_counter() - clock >= limits.max_wall_s:
                stop_reason = "max_wall_s"
                break
            if queue:
                suggestion = queue.pop(0)
            else:
                asked = optimizer.ask()
                if asked is None:
                    break
                suggestion = asked
                store.record_ask(run_id, suggestion)
            notify_start(callbacks, suggestion)
            result, started, ended = evaluate_safely(objective, suggestion)
            evaluation = store.put(
                run_id,
                suggestion,
                result,
                loss_hyperparameters=loss_hyperparameters_of(objective, suggestion, result),
                started_at=started,
                finished_at=ended,
            )
            optimizer.tell(suggestion, result)
            finished.append(evaluation)
            n_new += 1
            notify_result(callbacks, evaluation, False)
        return ExecutionSummary(
            run_id=run_id,
            evaluations=finished,
            n_replayed=len(state.told),
            n_new=n_new,
            wall_s=time.perf_counter() - clock,
            stop_reason=stop_reason,
        )
