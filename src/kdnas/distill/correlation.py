"""Correlation congruence (Peng et al., 2019), key ``correlation``, as RepDistiller ships it.

Two trainable linear heads (no normalisation) map the embeddings to ``embed_dim`` (128):
``u = W_S e_S``, ``v = W_T e_T``; with ``d = |u - v|`` (B x 128),
``L = mean over consecutive samples i of sum_k d[i, k] * d[i+1, k]``. (The CC paper's
Taylor-expanded Gaussian kernel is not what RepDistiller runs; this is.) Both heads train with
the student, so the loss can be driven to zero by collapsing them, a known weakness that the
benchmark reflects (CC close to plain cross-entropy).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from kdnas.core import Taps
from kdnas.distill._combined import MethodPlusCrossEntropy, as_float

__all__ = ["CorrelationCongruenceLoss", "consecutive_correlation"]


def consecutive_correlation(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Mean over i of ``sum_k |u-v|[i, k] * |u-v|[i+1, k]`` (0 for fewer than two samples)."""
    d = (u - v).abs()
    if d.shape[0] < 2:
        return d.sum() * 0.0
    return (d[:-1] * d[1:]).sum(dim=1).mean()


class CorrelationCongruenceLoss(MethodPlusCrossEntropy):
    """``CE + beta * L_CC`` with trainable student and teacher heads.

    Teacher summary: ``{"embedding": e_T}`` (D floats per sample): the teacher head is
    trainable, so its input is cached, not its output.
    """

    name = "correlation"
    extra_defaults: ClassVar[dict[str, float]] = {"embed_dim": 128.0}

    def __init__(
        self, hyperparameters: Mapping[str, float], student_dim: int, teacher_dim: int
    ) -> None:
        super().__init__(hyperparameters)
        embed_dim = int(self.hyperparameters["embed_dim"])
        if embed_dim < 1:
            raise ValueError(f"correlation: embed_dim must be >= 1, got {embed_dim}")
        self.student_head = nn.Linear(student_dim, embed_dim)
        self.teacher_head = nn.Linear(teacher_dim, embed_dim)

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
    ) -> CorrelationCongruenceLoss:
        return cls(
            hyperparameters,
            int(student_probe.embedding.shape[1]),
            int(teacher_probe.embedding.shape[1]),
        )

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {"embedding": teacher.embedding.detach()}

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        u = self.student_head(as_float(student.embedding))
        v = self.teacher_head(as_float(teacher["embedding"]))
        return consecutive_correlation(u, v)
