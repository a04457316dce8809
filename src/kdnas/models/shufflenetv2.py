"""ShuffleNetV2 for 32x32 inputs (CIFAR variant), built from a ShuffleNetV2-space genotype."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kdnas.core import Architecture, Taps
from kdnas.spaces.shufflenetv2 import shufflenetv2_plan

__all__ = ["ShuffleNetV2Network", "channel_shuffle"]


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (B x C x H x W, C divisible).

    The output keeps the input's memory layout: a channels-last input is shuffled on its
    B x H x W x C view, so the convolutions around it need no layout conversion.
    """
    batch, channels, height, width = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        nhwc = x.permute(0, 2, 3, 1)  # contiguous B x H x W x C
        out = nhwc.reshape(batch, height, width, groups, channels // groups).transpose(3, 4)
        return out.reshape(batch, height, width, channels).permute(0, 3, 1, 2)
    # reshape (not view): a non-contiguous input of another layout is copied.
    out = x.reshape(batch, groups, channels // groups, height, width).transpose(1, 2)
    return out.reshape(batch, channels, height, width)


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class DownBlock(nn.Module):
    """Stride-2 block: two branches of out/2 channels each, concatenated and shuffled."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = out_channels // 2
        self.left = nn.Sequential(
            *_conv_bn(in_channels, in_channels, 3, 2, groups=in_channels),
            *_conv_bn(in_channels, mid, 1),
            nn.ReLU(inplace=True),
        )
        self.right = nn.Sequential(
            *_conv_bn(in_channels, mid, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(mid, mid, 3, 2, groups=mid),
            *_conv_bn(mid, mid, 1),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(torch.cat([self.left(x), self.right(x)], dim=1))


class BasicBlock(nn.Module):
    """Split the channels in halves, transform the second half, concatenate and shuffle.

    ``forward_with_preact`` also returns the block's output before its final ReLU (the
    untouched half concatenated with the pre-ReLU transformed half, shuffled the same way).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            *_conv_bn(half, half, 1),
            nn.ReLU(inplace=True),
            *_conv_bn(half, half, 3, 1, groups=half),
            *_conv_bn(half, half, 1),
        )
        self.relu = nn.ReLU()

    def forward_with_preact(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept, changed = x.chunk(2, dim=1)
        preact = self.branch(changed)
        out = channel_shuffle(torch.cat([kept, self.relu(preact)], dim=1))
        return out, channel_shuffle(torch.cat([kept, preact], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept, changed = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat([kept, self.relu(self.branch(changed))], dim=1))


class ShuffleNetV2Network(nn.Module):
    """ShuffleNetV2 (CIFAR variant: 1x1 stem, no max-pooling) of one ShuffleNetV2-space
    architecture.

    Stem 1x1 conv to 24 channels + BN + ReLU; three stages (a stride-2 down-sampling block,
    then n_i basic blocks); 1x1 conv to c4 + BN + ReLU; global average pooling; linear.
    Pooling is adaptive, so any input of at least 8x8 pixels works; at 32x32 it is the paper's
    4x4 average pool. Weights keep PyTorch's default initialisation, as the paper's code does.

    Args:
        arch: an architecture of the "shufflenetv2" space, or its genotype.
        num_classes: classifier outputs K.
        in_channels: input image channels.
        width_multiplier: scales every channel count (stem and c4 included), rounding to even
            numbers; 1.0 gives the paper's networks.
    """

    def __init__(
        self,
        arch: Architecture | Any,
        num_classes: int = 100,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        if isinstance(arch, Architecture) and arch.space != "shufflenetv2":
            raise ValueError(
                f"ShuffleNetV2Network needs a shufflenetv2 architecture, got {arch.space!r}"
            )
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes!r}")
        plan = shufflenetv2_plan(arch, in_channels=in_channels, width_multiplier=width_multiplier)
        self.plan = plan
        self.num_classes = num_classes
        self.stem = nn.Sequential(*_conv_bn(in_channels, plan.stem_channels, 1))
        self.stem_relu = nn.ReLU()
        stages = []
        current = plan.stem_channels
        for channels, blocks in zip(plan.stage_channels, plan.blocks, strict=True):
            stage = nn.ModuleList([DownBlock(current, channels)])
            stage.extend(BasicBlock(channels) for _ in range(blocks))
            stages.append(stage)
            current = channels
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(*_conv_bn(current, plan.last_channel, 1), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(plan.last_channel, num_classes)

    @property
    def tap_channels(self) -> tuple[int, ...]:
        """Channels of the feature maps of ``forward_taps``, in order."""
        return (self.plan.stem_channels, *self.plan.stage_channels)

    def forward_taps(self, x: torch.Tensor) -> Taps:
        """Forward pass exposing the stem and stage outputs for distillation.

        Args:
            x: images, B x C_in x H x W (H, W >= 8).

        Returns:
            ``Taps`` with feature maps [stem, stage 1, stage 2, stage 3] (H/1, H/2, H/4, H/8
            pixels a side), their pre-ReLU versions (the stem's BN output; each stage's last
            basic block before its final ReLU), the B x c4 pooled embedding and the B x K
            logits.
        """
        stem_pre = self.stem(x)
        out = self.stem_relu(stem_pre)
        maps, preacts = [out], [stem_pre]
        for stage in self.stages:
            out = stage[0](out)
            for block in stage[1:-1]:
                out = block(out)
            out, preact = stage[-1].forward_with_preact(out)
            maps.append(out)
            preacts.append(preact)
        embedding = torch.flatten(self.pool(self.head(out)), 1)
        logits = self.classifier(embedding)
        return Taps(feature_maps=maps, preactivations=preacts, embedding=embedding, logits=logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores, B x K, of images B x C_in x H x W."""
        out = self.stem_relu(self.stem(x))
        for stage in self.stages:
            for block in stage:
                out = block(out)
        return self.classifier(torch.flatten(self.pool(self.head(out)), 1))
