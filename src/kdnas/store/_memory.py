"""A store of evaluations held in this process: simulations, tests, throw-away searches."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kdnas.core import EvalResult, Fidelity, Suggestion
from kdnas.store._protocol import check_answer, check_resumable
from kdnas.store._records import (
    RunInfo,
    StoredEvaluation,
    StoreEvent,
    canonical_json,
    config_fingerprint,
)

__all__ = ["MemoryStore"]


class MemoryStore:
    """The ``Store`` contract in plain Python objects: what ``SQLiteStore`` does, without a
    file. Nothing survives the process; safe to use from several threads of it.

    Args:
        name: how messages name the store (its ``path``).
        worker: a name for this writer, recorded with every evaluation (default host:pid).
    """

    def __init__(self, name: str = "<memory>", *, worker: str | None = None) -> None:
        self.path = name
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self._lock = threading.RLock()
        self._runs: dict[str, RunInfo] = {}
        self._next_seq: dict[str, int] = {}
        self._asks: dict[str, list[StoreEvent]] = {}
        self._evaluations: list[StoredEvaluation] = []
        self._trials: set[tuple[str, int]] = set()

    def __repr__(self) -> str:
        return f"MemoryStore({self.path!r}, {len(self._evaluations)} evaluations)"

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release; kept for the ``Store`` contract."""

    # ------------------------------------------------------------------ runs

    def open_run(
        self, run_id: str, config: Mapping[str, Any], *, package_version: str | None = None
    ) -> RunInfo:
        """As ``SQLiteStore.open_run``."""
        if not run_id:
            raise ValueError("run_id must be a non-empty string")
        version = package_version or _current_version()
        config = json.loads(canonical_json(dict(config)))
        fingerprint = config_fingerprint(config)
        with self._lock:
            stored = self._runs.get(run_id)
            if stored is None:
                created = RunInfo(run_id, fingerprint, config, version, time.time())
                self._runs[run_id] = created
                self._next_seq[run_id] = 1
                self._asks[run_id] = []
                return created
        check_resumable(self.path, stored, fingerprint, config, version)
        return stored

    def run(self, run_id: str) -> RunInfo | None:
        with self._lock:
            return self._runs.get(run_id)

    def runs(self) -> list[RunInfo]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda run: (run.created_at, run.run_id))

    def _take_seq(self, run_id: str) -> int:
        if run_id not in self._runs:
            raise KeyError(f"store {self.path}: no run {run_id!r}; call open_run first")
        seq = self._next_seq[run_id]
        self._next_seq[run_id] = seq + 1
        return seq

    # ------------------------------------------------------------------ writes

    def record_ask(self, run_id: str, suggestion: Suggestion) -> int:
        """As ``SQLiteStore.record_ask``."""
        with self._lock:
            if any(event.trial_id == suggestion.trial_id for event in self._asks.get(run_id, [])):
                raise ValueError(
                    f"store {self.path}: run {run_id!r} already holds a suggestion for trial "
                    f"{suggestion.trial_id}"
                )
            seq = self._take_seq(run_id)
            self._asks[run_id].append(
                StoreEvent("ask", seq, suggestion.trial_id, suggestion.arch, suggestion.fidelity)
            )
            return seq

    def put(
        self,
        run_id: str,
        suggestion: Suggestion,
        result: EvalResult,
        *,
        loss_hyperparameters: Mapping[str, Any] | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        worker: str | None = None,
        package_version: str | None = None,
    ) -> StoredEvaluation:
        """As ``SQLiteStore.put``."""
        check_answer(suggestion, result)
        finished = time.time() if finished_at is None else float(finished_at)
        started = finished - result.cost_s if started_at is None else float(started_at)
        with self._lock:
            if (run_id, suggestion.trial_id) in self._trials:
                raise ValueError(
                    f"store {self.path}: run {run_id!r} already holds a result for trial "
                    f"{suggestion.trial_id} (is another process running the same run?)"
                )
            seq = self._take_seq(run_id)
            evaluation = StoredEvaluation(
                run_id=run_id,
                trial_id=suggestion.trial_id,
                seq=seq,
                arch=suggestion.arch,
                result=result,
                loss_hyperparameters=dict(loss_hyperparameters or {}),
                started_at=started,
                finished_at=finished,
                package_version=package_version or _current_version(),
                worker=worker or self.worker,
            )
            self._evaluations.append(evaluation)
            self._trials.add((run_id, suggestion.trial_id))
            return evaluation

    # ------------------------------------------------------------------ reads

    def results(self, run_id: str | None = None) -> list[StoredEvaluation]:
        with self._lock:
            if run_id is None:
                return list(self._evaluations)
            return sorted(
                (e for e in self._evaluations if e.run_id == run_id), key=lambda e: e.seq
            )

    def __iter__(self) -> Iterator[StoredEvaluation]:
        return iter(self.results())

    def count(self, run_id: str | None = None) -> int:
        return len(self.results(run_id))

    def lookup(
        self,
        arch_key: str,
        fidelity: Fidelity,
        seed: int | None = None,
        *,
        run_id: str | None = None,
    ) -> StoredEvaluation | None:
        """As ``SQLiteStore.lookup``: part, method and epochs must match, and the seed and run
        when given."""
        for evaluation in self.results():
            result = evaluation.result
            if (
                result.arch_key == arch_key
                and result.fidelity == fidelity
                and (seed is None or result.seed == seed)
                and (run_id is None or evaluation.run_id == run_id)
            ):
                return evaluation
        return None

    def events(self, run_id: str) -> list[StoreEvent]:
        with self._lock:
            events = list(self._asks.get(run_id, []))
        events.extend(
            StoreEvent("tell", e.seq, e.trial_id, e.arch, e.result.fidelity, evaluation=e)
            for e in self.results(run_id)
        )
        return sorted(events, key=lambda event: event.seq)


def _current_version() -> str:
    from kdnas import __version__

    return __version__
