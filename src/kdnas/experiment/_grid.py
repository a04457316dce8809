"""A fixed list of evaluations as an optimizer, and reuse of evaluations a store already holds."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kdnas.core import Architecture, EvalResult, Fidelity, Objective, Suggestion
from kdnas.store import SQLiteStore

__all__ = ["GridSearch", "ReuseStored"]

logger = logging.getLogger(__name__)


class GridSearch:
    """Asks for every (architecture, fidelity) of a fixed list, in order; an ``Optimizer``.

    Used to build a tabular benchmark (every architecture x part x method) and for the demo's
    correlation study. Deterministic, so a grid run resumes like any search.
    """

    def __init__(self, items: Sequence[tuple[Architecture, Fidelity]]) -> None:
        self.items = list(items)
        seen = set()
        for arch, fidelity in self.items:
            if (arch, fidelity) in seen:
                raise ValueError(f"grid lists {arch.key()} at {fidelity.label()} twice")
            seen.add((arch, fidelity))
        self.next = 0
        self.results: dict[int, EvalResult] = {}

    @property
    def finished(self) -> bool:
        return self.next >= len(self.items)

    def ask(self) -> Suggestion | None:
        if self.finished:
            return None
        arch, fidelity = self.items[self.next]
        suggestion = Suggestion(self.next, arch, fidelity)
        self.next += 1
        return suggestion

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        self.results[suggestion.trial_id] = result


class ReuseStored:
    """Wraps an objective: an evaluation the store already holds is returned, not rerun.

    Looks in the runs ``run_ids`` of ``store`` for an ok result of the same architecture,
    fidelity (part, method, epochs) and seed; such a result is returned unchanged (its
    recorded seconds included, so costs stay honest) with ``info["reused_from"]`` naming
    where it came from.
    """

    def __init__(
        self, objective: Objective, store: SQLiteStore, run_ids: Sequence[str], seed: int | None
    ) -> None:
        self.objective = objective
        self.store = store
        self.run_ids = list(run_ids)
        self.seed = seed
        self.reused = 0

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        for run_id in self.run_ids:
            found = self.store.lookup(arch.key(), fidelity, self.seed, run_id=run_id)
            if found is not None and found.result.ok:
                self.reused += 1
                result = found.result
                info = {**result.info, "reused_from": f"{run_id}/trial {found.trial_id}"}
                return EvalResult(
                    result.arch_key,
                    result.fidelity,
                    result.valid_acc,
                    result.test_acc,
                    result.cost_s,
                    result.status,
                    result.seed,
                    result.metrics,
                    info,
                )
        return self.objective.evaluate(arch, fidelity)
