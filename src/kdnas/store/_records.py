"""Value types of the store and the run-configuration fingerprint."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kdnas.core import Architecture, EvalResult, Fidelity

__all__ = [
    "SCHEMA_VERSION",
    "IncompatibleStoreError",
    "RunInfo",
    "RunMismatchError",
    "StoreEvent",
    "StoredEvaluation",
    "canonical_json",
    "config_fingerprint",
    "versions_compatible",
]

#: Version of the table layout. A store written with a higher number is refused.
SCHEMA_VERSION = 1


class RunMismatchError(ValueError):
    """A run already in the store was made with another configuration or kdnas version.

    Resuming it would silently mix results of two different searches, so the store refuses;
    the message names the store, the run and the settings that differ.
    """


class IncompatibleStoreError(ValueError):
    """The file is not a kdnas store, or one written by an incompatible kdnas version."""


def canonical_json(value: Any) -> str:
    """JSON text with sorted keys and no spaces, the form that fingerprints are taken of."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of a run configuration.

    Raises:
        TypeError: the configuration holds something JSON cannot represent.
    """
    return hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()


def versions_compatible(stored: str, current: str) -> bool:
    """True when results of kdnas ``stored`` may be mixed with new ones of kdnas ``current``.

    Versions share results when their major and minor numbers agree (0.1.0 and 0.1.3 do, 0.1
    and 0.2 do not): a patch release must not change what an evaluation returns.
    """

    def major_minor(version: str) -> tuple[str, ...]:
        return tuple(version.split("+")[0].split(".")[:2])

    return major_minor(stored) == major_minor(current)


@dataclass(frozen=True)
class RunInfo:
    """One search run held by a store.

    Args:
        run_id: the run's name, unique within the store.
        fingerprint: SHA-256 of the canonical JSON of ``config``.
        config: the run's configuration (everything that decides its results).
        package_version: the kdnas version that created the run.
        created_at: Unix time in seconds.
    """

    run_id: str
    fingerprint: str
    config: Mapping[str, Any]
    package_version: str
    created_at: float

    def __post_init__(self) -> None:
        if not self.run_id:
            raise ValueError("RunInfo.run_id must be a non-empty string")
        object.__setattr__(self, "config", dict(self.config))


@dataclass(frozen=True)
class StoredEvaluation:
    """One finished evaluation as the store holds it.

    Args:
        run_id: the run it belongs to.
        trial_id: the optimizer's trial id of the suggestion it answers.
        seq: position of this event within the run's ask/tell history (1-based).
        arch: the evaluated architecture.
        result: what the evaluation returned.
        loss_hyperparameters: the loss's hyperparameters (tau, lambda, beta, ...).
        started_at: Unix time in seconds when the evaluation started.
        finished_at: Unix time in seconds when it ended.
        package_version: the kdnas version that ran it.
        worker: a name for where it ran (host:pid, a Ray node id, ...).
    """

    run_id: str
    trial_id: int
    seq: int
    arch: Architecture
    result: EvalResult
    loss_hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    started_at: float = math.nan
    finished_at: float = math.nan
    package_version: str = ""
    worker: str = ""

    def __post_init__(self) -> None:
        if self.arch.key() != self.result.arch_key:
            raise ValueError(
                f"StoredEvaluation: result is for architecture {self.result.arch_key}, "
                f"not {self.arch.key()}"
            )
        object.__setattr__(self, "loss_hyperparameters", dict(self.loss_hyperparameters))


@dataclass(frozen=True)
class StoreEvent:
    """One step of a run's history: an ask (a suggestion handed out) or a tell (its result).

    Replaying a run's events through a fresh optimizer with the same seed puts it back in the
    state it had when the run stopped.

    Args:
        kind: "ask" or "tell".
        seq: position within the run's history (1-based, increasing).
        trial_id: the optimizer's trial id.
        arch: the suggested architecture.
        fidelity: the suggested fidelity.
        evaluation: for a tell, the finished evaluation; None for an ask.
    """

    kind: str
    seq: int
    trial_id: int
    arch: Architecture
    fidelity: Fidelity
    evaluation: StoredEvaluation | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("ask", "tell"):
            raise ValueError(f"StoreEvent.kind must be 'ask' or 'tell', got {self.kind!r}")
        if (self.kind == "tell") != (self.evaluation is not None):
            raise ValueError("a tell event carries its evaluation and an ask event none")
