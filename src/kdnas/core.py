"""Value types and protocols shared by every part of kdnas.

This module imports only the standard library, so that search spaces, the tabular benchmark,
the optimizers and the store can all depend on it without pulling in torch.

Vocabulary:
    architecture: one point of a search space, an immutable ``Architecture``.
    fidelity: how an architecture is evaluated, a ``Fidelity``: the training-data part
        (1/part of the training set), the loss method ("nokd" = plain cross-entropy, or a
        distillation method), and optionally the number of epochs.
    high fidelity: part 1 with method "nokd", the way the paper's benchmark defines it.
    evaluation: one training run (or benchmark lookup) of one architecture at one fidelity,
        returning an ``EvalResult``. Accuracies are fractions in [0, 1]; times are seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch

__all__ = [
    "HIGH_FIDELITY",
    "METHODS",
    "STATUSES",
    "Architecture",
    "EvalResult",
    "Fidelity",
    "Objective",
    "Optimizer",
    "Suggestion",
    "Taps",
    "freeze_genotype",
]

#: Loss methods, under the tabular benchmark's own key names.
#: "nokd" is plain cross-entropy; the others are distillation methods.
METHODS: tuple[str, ...] = (
    "nokd",
    "kd",
    "hint",
    "attention",
    "similarity",
    "correlation",
    "vid",
    "pkt",
    "nst",
    "crd",
)

#: Outcomes of an evaluation. "failed" and "diverged" results still carry their cost.
STATUSES: tuple[str, ...] = ("ok", "failed", "diverged")


def freeze_genotype(value: Any) -> Any:
    """Turn nested lists/dicts of ints and strings into nested tuples (hashable, canonical).

    Dicts become tuples of ``(key, value)`` pairs sorted by key.
    """
    if isinstance(value, Mapping):
        return tuple((str(k), freeze_genotype(v)) for k, v in sorted(value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze_genotype(v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"genotype entries must be ints or strings, got {value!r}")
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Architecture:
    """One architecture of a search space.

    Args:
        space: the name of the search space it belongs to ("mobilenetv2", "shufflenetv2", ...).
        genotype: the space's own description of the network as nested tuples of ints and
            strings (see each space's docstring for the layout).
    """

    space: str
    genotype: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.space:
            raise ValueError("Architecture.space must be a non-empty string")
        object.__setattr__(self, "genotype", freeze_genotype(self.genotype))

    def to_json(self) -> str:
        """Canonical JSON text of this architecture (stable across runs and machines)."""
        return json.dumps(
            {"space": self.space, "genotype": _thaw(self.genotype)},
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """Inverse of ``to_json``."""
        try:
            data = json.loads(text)
            return cls(space=data["space"], genotype=data["genotype"])
        except RecursionError:
            raise ValueError(
                f"not an architecture in JSON form: nested too deeply ({len(text)} characters)"
            ) from None
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            message = f"not an architecture in JSON form: {text[:80]!r} ({error})"
            raise ValueError(message) from None

    def key(self) -> str:
        """A stable identifier: the first 16 hex digits of SHA-256 of the canonical JSON."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Fidelity:
    """How an architecture is evaluated.

    Args:
        part: train on a fixed 1/part subset of the training set (1 = all of it).
        method: the loss, a key of ``METHODS`` ("nokd" = plain cross-entropy).
        epochs: training epochs, or None for the protocol's default.
    """

    part: int = 1
    method: str = "nokd"
    epochs: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.part, int) or self.part < 1:
            raise ValueError(f"Fidelity.part must be an integer >= 1, got {self.part!r}")
        if self.method not in METHODS:
            raise ValueError(
                f"unknown method {self.method!r}; valid methods: {', '.join(METHODS)}"
            )
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise ValueError(f"Fidelity.epochs must be a positive integer, got {self.epochs!r}")

    @property
    def is_high(self) -> bool:
        """True for the paper's high fidelity: the full training set and plain cross-entropy."""
        return self.part == 1 and self.method == "nokd"

    def label(self) -> str:
        """Short readable form, e.g. ``"1/27 nst"`` or ``"full nokd"``."""
        part = "full" if self.part == 1 else f"1/{self.part}"
        epochs = "" if self.epochs is None else f" {self.epochs}ep"
        return f"{part} {self.method}{epochs}"


HIGH_FIDELITY = Fidelity(part=1, method="nokd")


@dataclass(frozen=True)
class EvalResult:
    """The outcome of one evaluation, from real training or from a tabular benchmark.

    Args:
        arch_key: ``Architecture.key()`` of the evaluated architecture.
        fidelity: the fidelity it was evaluated at.
        valid_acc: accuracy on the validation split, a fraction in [0, 1] (NaN if not ok).
        test_acc: accuracy on the test split, a fraction in [0, 1] (NaN if not ok).
        cost_s: seconds spent by this evaluation alone (not cumulative).
        status: one of ``STATUSES``.
        seed: the seed the evaluation used, if any.
        metrics: further numbers (parameters, multiply-adds, final loss, epochs, ...).
        info: further strings (subset hash, device, package version, error message, ...).
    """

    arch_key: str
    fidelity: Fidelity
    valid_acc: float
    test_acc: float
    cost_s: float
    status: str = "ok"
    seed: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    info: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}; valid: {', '.join(STATUSES)}")
        if not (self.cost_s >= 0.0 and math.isfinite(self.cost_s)):
            raise ValueError(f"cost_s must be a finite number >= 0, got {self.cost_s!r}")
        if self.status == "ok":
            for name in ("valid_acc", "test_acc"):
                value = getattr(self, name)
                if not (0.0 <= value <= 1.0):
                    raise ValueError(f"{name} must lie in [0, 1] for an ok result, got {value!r}")
        object.__setattr__(self, "metrics", dict(self.metrics))
        object.__setattr__(self, "info", dict(self.info))

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@runtime_checkable
class Objective(Protocol):
    """Something that evaluates an architecture at a fidelity: real training or a benchmark.

    Implementations never raise for a bad architecture or a diverged run: they return an
    ``EvalResult`` whose status says so, with the seconds it cost.
    """

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        raise NotImplementedError


@dataclass(frozen=True)
class Suggestion:
    """What an optimizer asks to evaluate next.

    Args:
        trial_id: a number unique within one optimizer run, in ask order from 0.
        arch: the architecture to evaluate.
        fidelity: the fidelity to evaluate it at.
    """

    trial_id: int
    arch: Architecture
    fidelity: Fidelity


@runtime_checkable
class Optimizer(Protocol):
    """Ask/tell contract of every search algorithm. The evaluation loop lives outside it.

    ``ask`` may be called again before earlier suggestions are told (parallel workers); it
    returns None when the optimizer has nothing more to propose (budget spent, target reached,
    candidates exhausted). Given the same seed and the same sequence of tells, an optimizer
    makes the same suggestions.
    """

    def ask(self) -> Suggestion | None:
        raise NotImplementedError

    def tell(self, suggestion: Suggestion, result: EvalResult) -> None:
        raise NotImplementedError


@dataclass
class Taps:
    """What a network exposes to the distillation losses, for one batch of B samples.

    Args:
        feature_maps: stage-aligned feature maps, each B x C x H x W, in input-to-output order;
            ``feature_maps[0]`` is the stem output. The distillation spec's "middle maps" are
            ``feature_maps[1:]``, its "last map" is ``feature_maps[-1]`` and its "hint layer"
            is ``feature_maps[2]``.
        preactivations: for each feature map, the same tensor before its final ReLU where the
            network has one, else None.
        embedding: the pooled vector before the classifier, B x D.
        logits: B x K class scores.
    """

    feature_maps: Sequence[torch.Tensor]
    preactivations: Sequence[torch.Tensor | None]
    embedding: torch.Tensor
    logits: torch.Tensor
