"""The in-process executor: the evaluation loop with one worker, in the calling process."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from kdnas.core import Objective, Optimizer
from kdnas.execute._common import ExecutionLimits, ExecutionSummary, run_stored
from kdnas.loop import InProcessWorkers
from kdnas.store import Store

__all__ = ["SerialExecutor"]

logger = logging.getLogger(__name__)


class SerialExecutor:
    """Drive an optimizer against an objective in this process, storing every result.

    A run that already exists in the store is resumed: its history is replayed into the
    (fresh, same-seed) optimizer, evaluations that were interrupted are run again, and the
    search continues exactly where it stopped; no finished evaluation is ever run twice.
    """

    name = "serial"
    #: ``prepare`` runs in this process: a callback given to it (a progress bar's) works.
    in_process = True

    def prepare(self, objective: Objective, function: Any, *args: Any) -> Any:
        """Run ``function(objective, *args)`` in this process (one-off work before ``run``)."""
        return function(objective, *args)

    def run(
        self,
        optimizer: Optimizer,
        objective: Objective,
        store: Store,
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
        # One evaluation at a time in this process: the loop's in-process workers, whose
        # exceptions become stored "failed" results so one bad evaluation never ends a search.
        return run_stored(
            optimizer,
            objective,
            lambda: InProcessWorkers(objective, 1, contain_errors=True),
            store,
            run_id=run_id,
            config=config,
            limits=limits,
            callbacks=callbacks,
        )
