"""Hand-made taps for the distillation-loss tests (no network needed)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from kdnas.core import Taps


def make_taps(
    maps: Sequence[torch.Tensor],
    embedding: torch.Tensor | None = None,
    logits: torch.Tensor | None = None,
    num_classes: int = 5,
) -> Taps:
    """Taps around the given feature maps (``maps[0]`` plays the stem)."""
    batch = maps[0].shape[0]
    if embedding is None:
        embedding = maps[-1].mean(dim=(2, 3))
    if logits is None:
        logits = torch.zeros(batch, num_classes) + embedding[:, :1]
    return Taps(
        feature_maps=list(maps),
        preactivations=[None] * len(maps),
        embedding=embedding,
        logits=logits,
    )


def random_maps(
    batch: int,
    shapes: Sequence[tuple[int, int, int]],
    generator: torch.Generator,
    requires_grad: bool = False,
) -> list[torch.Tensor]:
    """One B x C x H x W standard-normal map per (C, H, W)."""
    maps = [torch.randn(batch, *shape, generator=generator) for shape in shapes]
    for m in maps:
        m.requires_grad_(requires_grad)
    return maps
