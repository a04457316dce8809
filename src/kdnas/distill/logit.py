"""Losses on logits only: plain cross-entropy (key ``nokd``) and Hinton's KD (key ``kd``).

Notation: student logits ``z_S`` and teacher logits ``z_T`` (B x K), labels ``y``, temperature
``tau``, softened distributions ``p = softmax(z / tau)``. The paper's Eq. 2 ("original KD"):

    total = (1 - lambda) * CE(z_S, y) + lambda * tau^2 * H(p_T, p_S),

with ``H(p, q) = -sum_k p_k log q_k`` averaged over the batch. This cross-entropy form differs
from the KL form ``tau^2 * KL(p_T || p_S)`` by ``tau^2 * H(p_T)``, a constant of the teacher, so
both have the same gradient ``(tau / B) * (p_S - p_T)`` w.r.t. the student's logits; the
returned ``kd`` term is the cross-entropy form (as the paper writes it) and ``kd_kl`` the KL
form (zero when the student matches the teacher, handy for monitoring).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from kdnas.core import Taps
from kdnas.distill.base import TrainingLoss
from kdnas.paper import paper_figures

__all__ = ["CrossEntropyLoss", "HintonKDLoss", "kd_defaults"]

#: Appendix A's column for each space name (the CIFAR spaces).
_SPACE_KEYS = {
    "mobilenet": "mobilenet",
    "mobilenetv2": "mobilenet",
    "shufflenet": "shufflenet",
    "shufflenetv2": "shufflenet",
}
#: The paper's ImageNet setting (Section 5.4: "lambda = 0.9, tau = 4 as in [11]").
IMAGENET_KD = {"tau": 4.0, "lambda": 0.9}


def kd_defaults(space: str | None) -> dict[str, float]:
    """The paper's (tau, lambda) for ``space``.

    CIFAR spaces ("mobilenetv2", "shufflenetv2" and the benchmark's keys) get Appendix A's
    tau = 32, lambda = 1; a space whose name contains "imagenet" gets tau = 4, lambda = 0.9;
    any other space gets the CIFAR values.
    """
    key = (space or "").lower()
    if "imagenet" in key:
        return dict(IMAGENET_KD)
    table = paper_figures()["appendix_a_kd_hyperparameters"]["kd"]
    column = table[_SPACE_KEYS.get(key, "mobilenet")]
    return {"tau": float(column["tau"]), "lambda": float(column["lambda"])}


def _checked(method: str, defaults: dict[str, float], overrides: Mapping[str, float]) -> dict:
    resolved = dict(defaults)
    for name, value in overrides.items():
        if name not in resolved:
            valid = ", ".join(sorted(resolved)) or "none"
            raise ValueError(
                f"unknown hyperparameter {name!r} for method {method!r}; valid: {valid}"
            )
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"{method} hyperparameter {name!r} must be finite, got {value!r}")
        resolved[name] = number
    return resolved


class CrossEntropyLoss(TrainingLoss):
    """Plain cross-entropy on the labels; needs no teacher. Terms: ``ce``, ``total``."""

    name = "nokd"
    needs_teacher = False

    def __init__(self) -> None:
        super().__init__()
        self.hyperparameters: dict[str, float] = {}

    @property
    def weights(self) -> dict[str, float]:
        return {"ce": 1.0}

    @classmethod
    def from_probe(
        cls,
        *,
        student_probe: Taps | None = None,
        teacher_probe: Taps | None = None,
        num_classes: int = 0,
        n_train: int = 0,
        space: str | None = None,
        hyperparameters: Mapping[str, float] | None = None,
        labels: object | None = None,
    ) -> CrossEntropyLoss:
        """Build it (the arguments are accepted for ``build_loss``'s sake; none is needed)."""
        cls.resolve_hyperparameters(space, hyperparameters or {})
        return cls()

    @classmethod
    def resolve_hyperparameters(
        cls, space: str | None, overrides: Mapping[str, float]
    ) -> dict[str, float]:
        return _checked(cls.name, {}, overrides)

    def teacher_summary(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {}

    def forward(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor] | None,
        labels: torch.Tensor,
        indices: torch.Tensor,
        distillation_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(student.logits.float(), labels)
        return {"ce": ce, "total": ce}


class HintonKDLoss(TrainingLoss):
    """Original KD, ``(1 - lambda) * CE + lambda * tau^2 * H(p_T, p_S)`` (the paper's Eq. 2).

    Args:
        tau: softmax temperature (> 0).
        lam: weight of the distillation term, in [0, 1]; 1 trains on the teacher alone.

    Teacher summary: ``{"logits": z_T}`` (K floats per sample). Terms: ``ce``, ``kd``
    (unweighted, cross-entropy form), ``kd_kl`` (KL form, not part of the total), ``total``.
    """

    name = "kd"
    needs_teacher = True

    def __init__(self, tau: float, lam: float) -> None:
        super().__init__()
        if not tau > 0:
            raise ValueError(f"KD temperature tau must be > 0, got {tau!r}")
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"KD weight lambda must lie in [0, 1], got {lam!r}")
        self.tau = float(tau)
        self.lam = float(lam)
        self.hyperparameters: dict[str, float] = {"tau": self.tau, "lambda": self.lam}

    @property
    def weights(self) -> dict[str, float]:
        return {"ce": 1.0 - self.lam, "kd": self.lam}

    @classmethod
    def from_probe(
        cls,
        *,
        student_probe: Taps | None = None,
        teacher_probe: Taps | None = None,
        num_classes: int = 0,
        n_train: int = 0,
        space: str | None = None,
        hyperparameters: Mapping[str, float] | None = None,
        labels: object | None = None,
    ) -> HintonKDLoss:
        """Build it with the paper's defaults for ``space`` and the given overrides.

        Raises:
            ValueError: an override other than "tau" or "lambda", or an invalid value.
        """
        resolved = cls.resolve_hyperparameters(space, hyperparameters or {})
        return cls(tau=resolved["tau"], lam=resolved["lambda"])

    @classmethod
    def resolve_hyperparameters(
        cls, space: str | None, overrides: Mapping[str, float]
    ) -> dict[str, float]:
        return _checked(cls.name, kd_defaults(space), overrides)

    @torch.no_grad()
    def teacher_summary(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {"logits": teacher.logits.detach()}

    def forward(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor] | None,
        labels: torch.Tensor,
        indices: torch.Tensor,
        distillation_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """Terms of one batch; ``distillation_scale`` scales lambda, the KD term's share, so a
        warm-up moves from plain cross-entropy to the paper's mixture."""
        if teacher is None:
            raise ValueError("method 'kd' needs the teacher summary {'logits': ...}, got None")
        logits = student.logits.float()
        ce = F.cross_entropy(logits, labels)
        log_p_s = F.log_softmax(logits / self.tau, dim=1)
        log_p_t = F.log_softmax(teacher["logits"].float() / self.tau, dim=1)
        p_t = log_p_t.exp()
        scale = self.tau * self.tau
        kd = -scale * (p_t * log_p_s).sum(dim=1).mean()
        kd_kl = scale * (p_t * (log_p_t - log_p_s)).sum(dim=1).mean()
        share = distillation_scale * self.lam
        total = (1.0 - share) * ce + share * kd
        return {"ce": ce, "kd": kd, "kd_kl": kd_kl.detach(), "total": total}

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, lambda={self.lam:g}"
