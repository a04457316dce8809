"""Variational information distillation (Ahn et al., 2019), key ``vid``.

One module per middle-map pair: a regressor mu of three 1x1 convs (student C -> teacher C ->
teacher C -> teacher C, ReLU between, no bias) predicting the teacher map, and a learned
per-channel variance ``sigma^2 = softplus(s) + 1e-5`` with s set so that sigma^2 starts at
``init_variance`` (5). After pooling the larger map to the smaller size,
``L_pair = mean(0.5 * ((mu(F_S) - F_T)^2 / sigma^2 + log sigma^2))``; ``L = sum over pairs``.
Regressors and s train with the student (with its weight decay, as in RepDistiller).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdnas.core import Taps
from kdnas.distill._combined import MethodPlusCrossEntropy, as_float
from kdnas.distill._maps import (
    middle_maps,
    paired_middle_shapes,
    pool_to,
    smaller_size,
    spatial_size,
)

__all__ = ["VIDLoss", "VariationalRegressor"]

_MIN_VARIANCE = 1e-5


class VariationalRegressor(nn.Module):
    """Gaussian q(F_T | F_S): mean ``mu(F_S)`` (three 1x1 convs) and per-channel variance."""

    def __init__(self, student_channels: int, teacher_channels: int, init_variance: float):
        super().__init__()
        if init_variance <= _MIN_VARIANCE:
            raise ValueError(
                f"vid: init_variance must exceed {_MIN_VARIANCE}, got {init_variance}"
            )
        c = teacher_channels
        self.mean = nn.Sequential(
            nn.Conv2d(student_channels, c, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(c, c, 1, bias=False),
            nn.ReLU(),
            nn.Conv2d(c, c, 1, bias=False),
        )
        # softplus^-1(v - eps) = log(exp(v - eps) - 1), written with expm1 for accuracy.
        start = math.log(math.expm1(init_variance - _MIN_VARIANCE))
        self.variance_logit = nn.Parameter(torch.full((c,), start))

    def variance(self) -> torch.Tensor:
        """sigma^2 per teacher channel, shape C_t."""
        return F.softplus(self.variance_logit) + _MIN_VARIANCE

    def negative_log_likelihood(self, student: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``mean(0.5 * ((mu(F_S) - F_T)^2 / sigma^2 + log sigma^2))`` (constant term dropped)."""
        mu = self.mean(as_float(student))
        variance = self.variance().view(1, -1, 1, 1)
        error = (mu - as_float(target)).pow(2)
        return (0.5 * (error / variance + variance.log())).mean()


class VIDLoss(MethodPlusCrossEntropy):
    """``CE + beta * sum_pairs L_pair`` over the middle maps.

    Teacher summary: ``{"map_<i>": F_T,i}``, the teacher's middle maps (large: 11,008 floats
    per sample in the MobileNetV2 space, 51,968 in ShuffleNetV2).
    """

    name = "vid"
    extra_defaults: ClassVar[dict[str, float]] = {"init_variance": 5.0}

    def __init__(
        self,
        hyperparameters: Mapping[str, float],
        student_shapes: list[tuple[int, int, int]],
        teacher_shapes: list[tuple[int, int, int]],
    ) -> None:
        super().__init__(hyperparameters)
        init_variance = self.hyperparameters["init_variance"]
        self.regressors = nn.ModuleList(
            VariationalRegressor(s[0], t[0], init_variance)
            for s, t in zip(student_shapes, teacher_shapes, strict=True)
        )
        self.common_sizes = [
            smaller_size(s[1:], t[1:]) for s, t in zip(student_shapes, teacher_shapes, strict=True)
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
    ) -> VIDLoss:
        return cls(hyperparameters, *paired_middle_shapes(cls.name, student_probe, teacher_probe))

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {f"map_{i}": m.detach() for i, m in enumerate(middle_maps(teacher))}

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        total = torch.zeros((), device=student.logits.device)
        pairs = zip(middle_maps(student), self.regressors, self.common_sizes, strict=True)
        for i, (s_map, regressor, size) in enumerate(pairs):
            target = teacher[f"map_{i}"]
            if spatial_size(target) != size:
                target = pool_to(as_float(target), size)
            total = total + regressor.negative_log_likelihood(
                pool_to(as_float(s_map), size), target
            )
        return total
