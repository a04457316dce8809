"""What every store of evaluations promises (``Store``), and the rules all of them enforce.

A store holds runs (a configuration fingerprint and the kdnas version that made them), every
suggestion handed out (an "ask") and every finished evaluation (a "tell"), asks and tells of a
run sharing one sequence number. ``SQLiteStore`` keeps them in a file; ``MemoryStore`` in this
process. Both pass one contract test suite (tests/store/test_store_contract.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

from kdnas.core import EvalResult, Fidelity, Suggestion
from kdnas.store._records import (
    RunInfo,
    RunMismatchError,
    StoredEvaluation,
    StoreEvent,
    canonical_json,
    versions_compatible,
)

__all__ = [
    "Store",
    "check_answer",
    "check_resumable",
    "describe_config_difference",
]


@runtime_checkable
class Store(Protocol):
    """A store of runs, asks and finished evaluations (see ``SQLiteStore`` for the contract
    of each method: ``MemoryStore`` follows it to the letter)."""

    path: str

    def open_run(
        self, run_id: str, config: Mapping[str, Any], *, package_version: str | None = None
    ) -> RunInfo:
        """Create the run, or check that the stored one may be resumed with ``config``."""

    def run(self, run_id: str) -> RunInfo | None:
        """The run, or None."""

    def runs(self) -> list[RunInfo]:
        """Every run, oldest first."""

    def record_ask(self, run_id: str, suggestion: Suggestion) -> int:
        """Record a suggestion handed out; returns its sequence number."""

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
        """Commit one finished evaluation."""

    def results(self, run_id: str | None = None) -> list[StoredEvaluation]:
        """Finished evaluations in commit order, of one run or of all."""

    def count(self, run_id: str | None = None) -> int:
        """Number of finished evaluations, of one run or of all."""

    def lookup(
        self,
        arch_key: str,
        fidelity: Fidelity,
        seed: int | None = None,
        *,
        run_id: str | None = None,
    ) -> StoredEvaluation | None:
        """The first finished evaluation of an architecture at a fidelity, or None."""

    def events(self, run_id: str) -> list[StoreEvent]:
        """The run's asks and tells in the order they happened."""

    def close(self) -> None:
        """Release the store (idempotent)."""

    def __iter__(self) -> Iterator[StoredEvaluation]:
        """Every finished evaluation, in commit order."""


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for key in sorted(value):
            _flatten(f"{prefix}.{key}" if prefix else str(key), value[key], out)
    else:
        out[prefix] = value


def describe_config_difference(stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """A short text naming the settings that differ, e.g. ``method: 'kd' (stored) vs 'nst'``."""
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    _flatten("", json.loads(canonical_json(dict(stored))), before)
    _flatten("", json.loads(canonical_json(dict(current))), after)
    missing = object()
    differences = []
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key, missing), after.get(key, missing)
        if old != new:
            old_text = "(absent)" if old is missing else repr(old)
            new_text = "(absent)" if new is missing else repr(new)
            long = len(old_text) + len(new_text) > 120
            if long:
                old_text, new_text = "<list/value>", "<another value>"
            differences.append((long, f"{key}: {old_text} (stored) vs {new_text} (now)"))
    # Settings a user types (method, part, seed) first; long lists (candidates) last.
    differences = [text for _, text in sorted(differences, key=lambda item: item[0])]
    if not differences:
        return "the fingerprints differ"
    shown = "; ".join(differences[:5])
    more = len(differences) - 5
    return shown + (f"; and {more} more" if more > 0 else "")


def check_resumable(
    path: str, stored: RunInfo, fingerprint: str, config: Mapping[str, Any], version: str
) -> None:
    """Refuse to resume ``stored`` under another configuration or an incompatible version.

    Raises:
        RunMismatchError: naming the store, the run and what differs.
    """
    if not versions_compatible(stored.package_version, version):
        raise RunMismatchError(
            f"store {path}: run {stored.run_id!r} was made by kdnas "
            f"{stored.package_version}, whose evaluations may differ from those of this "
            f"kdnas {version}; resume it with kdnas {stored.package_version}, or start a "
            f"new run (another run id or store file)"
        )
    if stored.fingerprint != fingerprint:
        raise RunMismatchError(
            f"store {path}: run {stored.run_id!r} was made with another "
            f"configuration ({describe_config_difference(stored.config, config)}); "
            f"refusing to mix results: use another run id or store file, or the "
            f"original settings to resume"
        )


def check_answer(suggestion: Suggestion, result: EvalResult) -> None:
    """Refuse to store ``result`` as the answer to ``suggestion`` when it is for another
    architecture or fidelity.

    Raises:
        ValueError: naming both.
    """
    arch, fidelity = suggestion.arch, suggestion.fidelity
    if result.arch_key != arch.key():
        raise ValueError(
            f"result is for architecture {result.arch_key}, suggestion {suggestion.trial_id} "
            f"is {arch.key()}"
        )
    if result.fidelity != fidelity:
        raise ValueError(
            f"result is at fidelity {result.fidelity.label()!r}, suggestion "
            f"{suggestion.trial_id} at {fidelity.label()!r}"
        )
