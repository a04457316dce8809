"""Attention transfer (Zagoruyko and Komodakis, 2017), key ``attention``.

For a map F (B x C x H x W) the attention vector is
``a(F) = l2-normalise over positions of (mean over channels of F^2)``, H*W numbers per sample.
The paper's term (RepDistiller's) is ``sum over middle-map pairs of mean((a(F_S) - a(F_T))^2)``.

Resolution: ``a`` has unit norm, so the squared distance ``||a(F_S) - a(F_T)||^2`` (in [0, 2])
does not depend on the map's size, but its mean over the H*W positions is that distance
divided by H*W: the paper's term, and its gradient relative to the cross-entropy's, grow as the
maps shrink (4x at 16x16 inputs, 16x at 8x8). Appendix A's weights were tuned on CIFAR's 32x32
images, which the paper's networks keep at 32x32 in their stem. So kdnas divides each pair's
distance by the area the map would have with a ``reference_side`` x ``reference_side`` stem
map (default 32):

    L = (H_0 * W_0 / reference_side^2) * sum over pairs of mean((a(F_S) - a(F_T))^2)

with H_0 x W_0 the stem map (``feature_maps[0]``; the smaller of student's and teacher's). At
a 32x32 stem this is the paper's term exactly; at any other size the term, and so beta, means
the same, and a map upsampled by replication gives the same loss. ``--hp reference_side=S``
declares that beta was tuned at stem side S instead.

Spatial mismatch: a student map larger than the teacher's is average-pooled to the teacher's
size before ``a`` (as RepDistiller does). A teacher map larger than the student's cannot be
pooled before ``a`` without keeping the whole map, so the cached teacher attention is pooled
and re-normalised instead: that pools the channel energy rather than the features. Both
built-in spaces keep every architecture's strides, so their maps always have equal sizes and
neither case occurs there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

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
    """``CE + beta * (H_0 W_0 / reference_side^2) * sum_pairs mean((a(F_S) - a(F_T))^2)``.

    Teacher summary: ``{"attention_<i>": a(F_T,i)}`` (B x H x W each; 340 floats per sample
    in the MobileNetV2 space, 336 in ShuffleNetV2).

    Args:
        hyperparameters: resolved values (``beta``, ``reference_side``, ...).
        student_sizes: (H, W) of the student's middle maps.
        teacher_sizes: (H, W) of the teacher's middle maps.
        stem_size: (H_0, W_0) of the stem map both see, which sets the term's scale.
    """

    name = "attention"
    extra_defaults: ClassVar[dict[str, float]] = {"reference_side": 32.0}

    def __init__(
        self,
        hyperparameters: Mapping[str, float],
        student_sizes: list[tuple[int, int]],
        teacher_sizes: list[tuple[int, int]],
        stem_size: tuple[int, int],
    ) -> None:
        super().__init__(hyperparameters)
        reference_side = self.hyperparameters["reference_side"]
        if not reference_side > 0:
            raise ValueError(f"attention: reference_side must be > 0, got {reference_side}")
        self.common_sizes = [
            smaller_size(s, t) for s, t in zip(student_sizes, teacher_sizes, strict=True)
        ]
        #: H_0 * W_0 / reference_side^2: 1 at the paper's 32x32 stem, 1/4 at 16x16.
        self.area_scale = stem_size[0] * stem_size[1] / reference_side**2

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
        stem = smaller_size(
            spatial_size(student_probe.feature_maps[0]),
            spatial_size(teacher_probe.feature_maps[0]),
        )
        return cls(
            hyperparameters,
            [shape[1:] for shape in student],
            [shape[1:] for shape in teacher],
            stem,
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
        return total * self.area_scale
