"""What the eight feature-based methods share: ``total = ce_weight * CE + beta * L_method``.

The seed paper (its Eq. 8, Appendix A) trains every method except original KD with
``1 * CE(z_S, y) + beta * L_method`` and no KD term. ``MethodPlusCrossEntropy`` implements that
sum, the resolution of hyperparameters (the paper's per-space defaults, then the user's
overrides) and the construction from probe taps; each method implements ``_build``,
``summarise_teacher`` and ``method_term``, which run in float32 whatever the autocast state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from kdnas.core import Taps
from kdnas.distill.base import TrainingLoss, autocast_off
from kdnas.paper import paper_figures

logger = logging.getLogger(__name__)

#: kdnas space names and the benchmark's keys, mapped to Appendix A's column.
_SPACE_KEYS: dict[str, str] = {
    "mobilenet": "mobilenet",
    "mobilenetv2": "mobilenet",
    "shufflenet": "shufflenet",
    "shufflenetv2": "shufflenet",
}
#: Appendix A column used for spaces the paper did not tune (user spaces).
_FALLBACK_SPACE = "mobilenet"


def paper_space_key(space: str | None) -> str:
    """Appendix A's column for ``space``; unknown spaces get the MobileNetV2 values (logged)."""
    if space is not None and space.lower() in _SPACE_KEYS:
        return _SPACE_KEYS[space.lower()]
    logger.info(
        "no tuned distillation weights for space %r; using the paper's MobileNetV2 values",
        space,
    )
    return _FALLBACK_SPACE


def resolve_hyperparameters(
    method: str,
    space: str | None,
    extra_defaults: Mapping[str, float],
    overrides: Mapping[str, float],
) -> dict[str, float]:
    """The method's hyperparameters: ``ce_weight`` = 1, Appendix A, extras, then overrides.

    Raises:
        ValueError: an override names no hyperparameter of the method (lists the valid ones)
            or is not a finite number.
    """
    paper = paper_figures()["appendix_a_kd_hyperparameters"][method][paper_space_key(space)]
    resolved: dict[str, float] = {"ce_weight": 1.0}
    resolved.update({name: float(value) for name, value in paper.items()})
    resolved.update({name: float(value) for name, value in extra_defaults.items()})
    for name, value in overrides.items():
        if name not in resolved:
            raise ValueError(
                f"unknown hyperparameter {name!r} for method {method!r}; "
                f"valid: {', '.join(sorted(resolved))}"
            )
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if not math.isfinite(number):
            raise ValueError(f"{method} hyperparameter {name!r} must be a finite number")
        resolved[name] = number
    if resolved["beta"] < 0 or resolved["ce_weight"] < 0:
        raise ValueError(f"{method}: beta and ce_weight must be >= 0, got {resolved}")
    return resolved


class MethodPlusCrossEntropy(TrainingLoss):
    """Base of the feature-based methods: cross-entropy plus ``beta`` times the method's loss.

    Attributes:
        hyperparameters: the resolved values (``ce_weight``, ``beta`` and the method's own),
            to be recorded with every result.
        weights: ``{"ce": ce_weight, <name>: beta}``, the weights of the returned terms.
    """

    needs_teacher = True
    #: Method-specific hyperparameters beyond Appendix A's, with their defaults.
    extra_defaults: ClassVar[dict[str, float]] = {}

    def __init__(self, hyperparameters: Mapping[str, float]) -> None:
        super().__init__()
        self.hyperparameters: dict[str, float] = dict(hyperparameters)
        self.ce_weight = float(self.hyperparameters["ce_weight"])
        self.beta = float(self.hyperparameters["beta"])

    @property
    def weights(self) -> dict[str, float]:
        return {"ce": self.ce_weight, self.name: self.beta}

    @classmethod
    def from_probe(
        cls,
        *,
        student_probe: Taps,
        teacher_probe: Taps | None,
        num_classes: int,
        n_train: int,
        space: str | None,
        hyperparameters: Mapping[str, float],
        labels: object | None,
    ) -> MethodPlusCrossEntropy:
        """Build the loss for one student; trainable parts are shaped from the probe taps.

        Args:
            student_probe: the student's taps on a probe batch (only shapes are read).
            teacher_probe: the teacher's taps on the same batch.
            num_classes: number of classes.
            n_train: number of samples in the training subset.
            space: search-space name, picks Appendix A's column.
            hyperparameters: overrides of the defaults.
            labels: the training subset's labels (only CRD reads them).
        """
        if teacher_probe is None:
            raise ValueError(f"method {cls.name!r} distils from a teacher; got no teacher probe")
        resolved = cls.resolve_hyperparameters(space, hyperparameters)
        return cls._build(
            student_probe=student_probe,
            teacher_probe=teacher_probe,
            num_classes=num_classes,
            n_train=n_train,
            hyperparameters=resolved,
            labels=labels,
        )

    @classmethod
    def resolve_hyperparameters(
        cls, space: str | None, overrides: Mapping[str, float]
    ) -> dict[str, float]:
        return resolve_hyperparameters(cls.name, space, cls.extra_defaults, overrides)

    @classmethod
    def _build(
        cls,
        *,
        student_probe: Taps,
        teacher_probe: Taps,
        num_classes: int,
        n_train: int,
        hyperparameters: dict[str, float],
        labels: object | None,
    ) -> MethodPlusCrossEntropy:
        """Construct the loss; the default suits methods without shape-dependent parts."""
        return cls(hyperparameters)

    @torch.no_grad()
    def teacher_summary(self, teacher: Taps) -> dict[str, torch.Tensor]:
        with autocast_off(teacher.logits.device):
            return self.summarise_teacher(teacher)

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        """``teacher_summary``'s work, called without gradient and with autocast off."""
        raise NotImplementedError

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        """The method's own loss ``L_method`` (unweighted scalar), called with autocast off:
        cast the student's tensors with ``as_float`` before any arithmetic."""
        raise NotImplementedError

    def forward(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor] | None,
        labels: torch.Tensor,
        indices: torch.Tensor,
        distillation_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Terms ``ce``, ``<name>`` (unweighted) and ``total`` for one batch; ``total`` weighs
        the method's term by ``distillation_scale * beta``."""
        if teacher is None:
            raise ValueError(f"method {self.name!r} needs the teacher summary, got None")
        with autocast_off(student.logits.device):
            ce = F.cross_entropy(student.logits.float(), labels)
            term = self.method_term(student, teacher, labels, indices)
            total = self.ce_weight * ce + distillation_scale * self.beta * term
        return {"ce": ce, self.name: term, "total": total}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.hyperparameters.items())


def as_float(x: torch.Tensor) -> torch.Tensor:
    """The tensor in float32 at least (bfloat16 taps of an autocast forward pass are upcast
    before any arithmetic: normalisations, products and logs are unsafe in 16 bits)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
