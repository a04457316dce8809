"""Counting a network's parameters and multiply-accumulate operations."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["count_multiply_adds", "count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (BatchNorm running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_multiply_adds(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of the convolutions and linear layers in one forward pass.

    Counted by forward hooks on ``nn.Conv2d`` (output elements x kernel area x input channels
    per group) and ``nn.Linear`` (in x out per sample), for a batch of one sample.
    BatchNorm, activations, additions and pooling are not counted.

    Args:
        model: the network; it is run once in eval mode under ``torch.no_grad`` on zeros
            on the device of its first parameter, and its training mode is restored after.
        input_shape: C x H x W of one sample (a leading batch size of 1 is also accepted).
    """
    shape = tuple(input_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"input_shape must be C x H x W (or 1 x C x H x W), got {input_shape!r}")
    total = 0

    def conv_hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)
        kernel = module.kernel_size[0] * module.kernel_size[1]
        total += output.numel() * kernel * (module.in_channels // module.groups)

    def linear_hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total
