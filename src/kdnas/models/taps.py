"""The taps of any network: its own ``forward_taps`` where it has one, else only its logits.

A user's own space may build plain ``nn.Module`` networks with a ``forward`` and nothing
else. Plain cross-entropy and Hinton's KD read only the logits (``kdnas.distill.LOGIT_METHODS``),
so such a network trains with them; the feature-based methods need ``forward_taps`` and are
refused before any training (``kdnas.experiment.prepare_search``).
"""

from __future__ import annotations

import torch
from torch import nn

from kdnas.core import Taps

__all__ = ["has_taps", "network_taps"]


def has_taps(network: nn.Module) -> bool:
    """Whether ``network`` exposes ``forward_taps`` (feature maps and embedding)."""
    return callable(getattr(network, "forward_taps", None))


def network_taps(network: nn.Module, images: torch.Tensor) -> Taps:
    """``network.forward_taps(images)``, or, for a network without it, taps holding only the
    logits of ``network(images)``: no feature maps, and an empty (B x 0) embedding, so that a
    loss reading more than the logits fails loudly instead of training on nothing."""
    if has_taps(network):
        return network.forward_taps(images)
    logits = network(images)
    return Taps(feature_maps=(), preactivations=(), embedding=logits[:, :0], logits=logits)
