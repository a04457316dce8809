"""MobileNetV2 for 32x32 inputs (CIFAR variant), built from a genotype of the MobileNetV2 space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from kdnas.core import Architecture, Taps
from kdnas.spaces.mobilenetv2 import InvertedResidualPlan, mobilenetv2_plan

__all__ = ["MOBILENETV2_TAP_STAGES", "MobileNetV2Network"]

#: 0-based stage indices whose last block output is tapped (after the stem tap): the ends of
#: the paper's stages 2, 3, 5 and 7, at 16x16, 8x8, 4x4 and 2x2 for a 32x32 input.
MOBILENETV2_TAP_STAGES: tuple[int, ...] = (1, 2, 4, 6)


class _ConvBNReLU6(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """Expansion 1x1 (omitted when t = 1), depthwise 3x3, linear projection 1x1."""

    def __init__(self, plan: InvertedResidualPlan) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if plan.expansion != 1:
            layers.append(_ConvBNReLU6(plan.in_channels, plan.hidden_channels, 1))
        layers.append(
            _ConvBNReLU6(
                plan.hidden_channels,
                plan.hidden_channels,
                3,
                plan.stride,
                groups=plan.hidden_channels,
            )
        )
        layers.append(nn.Conv2d(plan.hidden_channels, plan.out_channels, 1, bias=False))
        layers.append(nn.BatchNorm2d(plan.out_channels))
        self.body = nn.Sequential(*layers)
        self.residual = plan.residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class MobileNetV2Network(nn.Module):
    """MobileNetV2 (CIFAR variant: stride-1 stem) of one architecture of the MobileNetV2 space.

    Stem 3x3 conv (32 channels, stride 1) + BN + ReLU6; the 7 stages of inverted-residual
    blocks; 1x1 conv to last_channel + BN + ReLU6; global average pooling; dropout; linear.
    Global pooling is adaptive, so any input of at least 8x8 pixels works; at 32x32 it averages
    the final 2x2 map (the strides multiply to 16), exactly as the paper's network does.

    Args:
        arch: an architecture of the "mobilenetv2" space, or its 8 genotype rows.
        num_classes: classifier outputs K.
        in_channels: input image channels.
        width_multiplier: scales every channel count (stem and last_channel included) before
            the divisible-by-8 rounding; 1.0 gives the paper's networks.
        dropout: dropout probability before the classifier (0.2 in the paper).
    """

    def __init__(
        self,
        arch: Architecture | Sequence[Sequence[int]],
        num_classes: int = 100,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if isinstance(arch, Architecture) and arch.space != "mobilenetv2":
            raise ValueError(
                f"MobileNetV2Network needs a mobilenetv2 architecture, got {arch.space!r}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")
        plan = mobilenetv2_plan(arch, in_channels=in_channels, width_multiplier=width_multiplier)
        self.plan = plan
        self.num_classes = num_classes
        self.stem = _ConvBNReLU6(in_channels, plan.stem_channels, 3, 1)
        self.blocks = nn.ModuleList(InvertedResidual(block) for block in plan.blocks)
        ends = plan.stage_ends()
        self._tap_blocks = tuple(ends[stage] for stage in MOBILENETV2_TAP_STAGES)
        self.head = _ConvBNReLU6(plan.blocks[-1].out_channels, plan.last_channel, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(plan.last_channel, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    @property
    def tap_channels(self) -> tuple[int, ...]:
        """Channels of the feature maps of ``forward_taps``, in order."""
        ends = [self.plan.blocks[i].out_channels for i in self._tap_blocks]
        return (self.plan.stem_channels, *ends)

    def forward_taps(self, x: torch.Tensor) -> Taps:
        """Forward pass exposing stage-aligned feature maps for distillation.

        Args:
            x: images, B x C_in x H x W (H, W >= 8).

        Returns:
            ``Taps`` with feature maps [stem, end of stage 2, end of stage 3, end of stage 5,
            end of stage 7] (1-based stages; H/1, H/2, H/4, H/8, H/16 pixels a side), the
            stem's pre-ReLU6 map as its pre-activation (block outputs are linear, so theirs
            are None), the B x last_channel pooled embedding and the B x K logits.
        """
        stem_pre = self.stem[1](self.stem[0](x))
        # Not the stem's in-place ReLU6: the pre-activation must survive.
        out = nn.functional.relu6(stem_pre)
        maps = [out]
        for index, block in enumerate(self.blocks):
            out = block(out)
            if index in self._tap_blocks:
                maps.append(out)
        embedding = torch.flatten(self.pool(self.head(out)), 1)
        logits = self.classifier(self.dropout(embedding))
        preacts: list[torch.Tensor | None] = [stem_pre] + [None] * (len(maps) - 1)
        return Taps(feature_maps=maps, preactivations=preacts, embedding=embedding, logits=logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores, B x K, of images B x C_in x H x W."""
        out = self.stem(x)
        for block in self.blocks:
            out = block(out)
        embedding = torch.flatten(self.pool(self.head(out)), 1)
        return self.classifier(self.dropout(embedding))
