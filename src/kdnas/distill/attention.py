"""Attention transfer (Zagoruyko and Komodakis, 2017), key ``attention``.

For a map F (B x C x H x W) the attention vector is
``a(F) = l2-normalise over positions of (mean over channels of F^2)``, H*W numbers per sample.
``L = sum over middle-map pairs of mean((a(F_S) - a(F_T))^2)``.

Spatial mismatch: a student map larger than the teacher's is average-pooled to the teacher's
size before ``a`` (as RepDistiller does). A teacher map larger than the student's cannot be
pooled before ``a`` without keeping the whole map, so the cached teacher attention is pooled
and re-normalised instead: that pools the channel energy rather than the features. Both
built-in spaces keep every architecture's strides, so their maps always have equal sizes and
neither case occurs there.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from kdnas.core import Taps
from kdnas.distill._combined import MethodPlusCrossEntropy, as_float
from kdnas.distill._maps import (
    middle_maps,
    paired_middle_shapes,
    pool_to,
    smaller_size,
    spatial_size,
)

__all__ = ["AttentionTransferLoss", "attention_map"]


def attention_map(feature_map: torch.Tensor) -> torch.Tensor:
    """``a(F)``: B x C x H x W -> B x H x W, mean channel energy l2-normalised per sample."""
    energy = as_float(feature_map).pow(2).mean(dim=1)
    flat = F.normalize(energy.flatten(1), dim=1)
    return flat.view_as(energy)


class AttentionTransferLoss(MethodPlusCrossEntropy):
    """``CE + beta * sum_pairs mean((a(F_S) - a(F_T))^2)`` over the middle maps.

    Teacher summary: ``{"attention_<i>": a(F_T,i)}`` (B x H x W each; 340 floats per sample
    in the MobileNetV2 space, 336 in ShuffleNetV2).
    """

    name = "attention"

    def __init__(
        self,
        hyperparameters: Mapping[str, float],
        student_sizes: list[tuple[int, int]],
        teacher_sizes: list[tuple[int, int]],
    ) -> None:
        super().__init__(hyperparameters)
        self.common_sizes = [
            smaller_size(s, t) for s, t in zip(student_sizes, teacher_sizes, strict=True)
        ]

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
    ) -> AttentionTransferLoss:
        student, teacher = paired_middle_shapes(cls.name, student_probe, teacher_probe)
        return cls(
            hyperparameters,
            [shape[1:] for shape in student],
            [shape[1:] for shape in teacher],
        )

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {f"attention_{i}": attention_map(m) for i, m in enumerate(middle_maps(teacher))}

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        total = torch.zeros((), device=student.logits.device)
        for i, (s_map, size) in enumerate(
            zip(middle_maps(student), self.common_sizes, strict=True)
        ):
            a_s = attention_map(pool_to(as_float(s_map), size))
            a_t = as_float(teacher[f"attention_{i}"])
            if spatial_size(a_t) != size:
                pooled = F.adaptive_avg_pool2d(a_t.unsqueeze(1), size).squeeze(1)
                a_t = F.normalize(pooled.flatten(1), dim=1).view_as(pooled)
            total = total + (a_s - a_t).pow(2).mean()
        return total
