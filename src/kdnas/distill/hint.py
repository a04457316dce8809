"""FitNets hint loss (Romero et al., 2015), key ``hint``.

A trainable connector R maps the student's hint-layer map F_S (``feature_maps[2]``) to the
teacher's shape, and ``L = mean((R(F_S) - F_T)^2)`` over every element. The connector follows
the spatial sizes: a 3x3 stride-2 conv when the student map is twice the teacher's height, a
4x4 stride-2 transposed conv when it is half, a (1+d)x(1+d) valid conv when it is larger by d
(1x1 when equal), then BatchNorm and ReLU. Other ratios (only possible in user spaces) resize
with adaptive average pooling or nearest upsampling before a 1x1 conv.

Because R ends in a ReLU the loss cannot drop below ``mean(min(F_T, 0)^2)``: MobileNetV2's
stage outputs are signed (linear projections), so hint has an error floor there.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from kdnas.core import Taps
from kdnas.distill._combined import MethodPlusCrossEntropy, as_float
from kdnas.distill._maps import hint_map

__all__ = ["HintLoss", "build_connector"]


def build_connector(
    student_shape: tuple[int, int, int], teacher_shape: tuple[int, int, int]
) -> nn.Module:
    """FitNets' regressor from a C_s x H_s x W_s map to a C_t x H_t x W_t map."""
    c_s, h_s, w_s = student_shape
    c_t, h_t, w_t = teacher_shape
    layers: list[nn.Module]
    if (h_s, w_s) == (2 * h_t, 2 * w_t) and h_t > 0:
        layers = [nn.Conv2d(c_s, c_t, kernel_size=3, stride=2, padding=1)]
    elif (2 * h_s, 2 * w_s) == (h_t, w_t):
        layers = [nn.ConvTranspose2d(c_s, c_t, kernel_size=4, stride=2, padding=1)]
    elif h_s >= h_t and w_s >= w_t:
        layers = [nn.Conv2d(c_s, c_t, kernel_size=(1 + h_s - h_t, 1 + w_s - w_t))]
    else:
        layers = [nn.Upsample(size=(h_t, w_t), mode="nearest"), nn.Conv2d(c_s, c_t, 1)]
    return nn.Sequential(*layers, nn.BatchNorm2d(c_t), nn.ReLU(inplace=True))


class HintLoss(MethodPlusCrossEntropy):
    """``CE + beta * mean((R(F_S) - F_T)^2)`` on the hint layer (``feature_maps[2]``).

    Teacher summary: ``{"map": F_T}``, the teacher's hint-layer map (C*H*W floats per sample).
    """

    name = "hint"

    def __init__(
        self,
        hyperparameters: Mapping[str, float],
        student_shape: tuple[int, int, int],
        teacher_shape: tuple[int, int, int],
    ) -> None:
        super().__init__(hyperparameters)
        self.teacher_shape = teacher_shape
        self.connector = build_connector(student_shape, teacher_shape)

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
    ) -> HintLoss:
        s, t = hint_map(student_probe), hint_map(teacher_probe)
        return cls(hyperparameters, tuple(s.shape[1:]), tuple(t.shape[1:]))

    def summarise_teacher(self, teacher: Taps) -> dict[str, torch.Tensor]:
        return {"map": hint_map(teacher).detach()}

    def method_term(
        self,
        student: Taps,
        teacher: Mapping[str, torch.Tensor],
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        regressed = self.connector(as_float(hint_map(student)))
        return F.mse_loss(regressed, as_float(teacher["map"]))
