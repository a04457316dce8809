"""Neuron selectivity transfer (Huang and Wang, 2017), key ``nst``.

Per middle-map pair, after pooling the larger map to the smaller size, each channel's spatial
pattern is l2-normalised (B x C x HW). With the kernel ``k(a, b) = (a . b)^2``,
``L_pair = mean_k(T, T) + mean_k(S, S) - 2 mean_k(S, T)`` where ``mean_k(X, Y)`` averages k
over all channel pairs and the batch: a squared MMD between the two sets of channel patterns.

Normalising a channel is a positive per-channel scale and average pooling is linear per
channel, so ``normalise(pool(normalise(F))) = normalise(pool(F))``: the cached normalised
teacher maps stay exact when they must be pooled. The teacher-only term is cached as one
number per sample per map.
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
)

__all__ = ["NSTLoss", "channel_patterns", "mean_squared_kernel"]


def channel_patterns(feature_map: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> B x C x H*W with each channel's spatial vector l2-normalised."""
    return F.normalize(as_float(feature_map).flatten(2), dim=2)


def mean_squared_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per sample, the mean over channel pairs (i, j) of ``(x_i . y_j)^2``.

    x is B x C_x x P, y is B x C_y x P (P positions).

    ``sum_ij (x_i . y_j)^2 = ||x y^T||_F^2 = <x^T x, y^T y>_F``; the cheaper side is used.
    """
    c_x, positions, c_y = x.shape[1], x.shape[2], y.shape[1]
    if c_x * c_y <= positions * (c_x + c_y):
        total = torch.bmm(x, y.transpose(1, 2)).pow(2).sum(dim=(1, 2))
    else:
        gram_x = torch.bmm(x.transpose(1, 2), x)
        gram_y = gram_x if y is x else torch.bmm(y.transpose(1, 2), y)
        total = (gram_x * gram_y).sum(dim=(1, 2))
    return total / (c_x * c_y)


def _renormalise(patterns: torch.Tensor, size: tuple[int, int], shape: torch.Size) -> torch.Tensor:
    """Pool normalised B x C x HW patterns of spatial ``shape`` to ``size`` and renormalise."""
    maps = patterns.view(patterns.shape[0], patterns.shape[1], shape[0], shape[1])
    return channel_patterns(pool_to(maps, size))


class NSTLoss(MethodPlusCrossEntropy):
    """``CE + beta * sum_pairs MMD^2`` of channel patterns over the middle maps.

    Teacher summary: ``{"patterns_<i>": normalised B x C x H*W, "self_<i>": B}``, about the
    size of the middle maps (11,012 floats per sample in MobileNetV2, 51,971 in ShuffleNetV2).
    """

    name = "nst"

    def __init__(
        self,
        hyperparameters: Mapping[str, float],
        student_sizes: list[tuple[int, int]],
        teacher_sizes: list[tuple[int, int]],
    ) -> None:
        super().__init__(hyperparameters)
        self.teacher_sizes = teacher_sizes
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
    ) -> NSTLoss:
        student, teacher = paired_middle_shapes(cls.name, student_probe, teacher_probe)
        return cls(
            hyperparameters,
            [shape[1:] for shape in student],
            [shape[1:] for shape in teacher],
        )

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        summary: dict[str, torch.Tensor] = {}
        for i, feature_map in enumerate(middle_maps(teacher)):
            patterns = channel_patterns(feature_map)
            summary[f"self_{i}"] = mean_squared_kernel(patterns, patterns)
            # Kept in the map's own precision: bfloat16 under mixed precision halves the cache.
            summary[f"patterns_{i}"] = patterns.to(feature_map.dtype)
        return summary

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        total = torch.zeros((), device=student.logits.device)
        pairs = zip(middle_maps(student), self.common_sizes, self.teacher_sizes, strict=True)
        for i, (s_map, size, t_size) in enumerate(pairs):
            s = channel_patterns(pool_to(as_float(s_map), size))
            t = as_float(teacher[f"patterns_{i}"])
            t_self = as_float(teacher[f"self_{i}"])
            if t_size != size:
                t = _renormalise(t, size, torch.Size(t_size))
                t_self = mean_squared_kernel(t, t)
            pair = t_self + mean_squared_kernel(s, s) - 2.0 * mean_squared_kernel(s, t)
            total = total + pair.mean()
        return total
