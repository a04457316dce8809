"""Channels-last survives ShuffleNetV2's channel shuffle (no layout conversion per block)."""

from __future__ import annotations

import torch

from kdnas.models.shufflenetv2 import channel_shuffle
from kdnas.spaces import get_space

CHANNELS_LAST = torch.channels_last


def test_channel_shuffle_keeps_the_layout_and_the_values() -> None:
    x = torch.randn(2, 8, 3, 5)
    expected = x.view(2, 2, 4, 3, 5).transpose(1, 2).reshape(2, 8, 3, 5)
    classic = channel_shuffle(x)
    nhwc = channel_shuffle(x.contiguous(memory_format=CHANNELS_LAST))
    assert classic.is_contiguous() and torch.equal(classic, expected)
    assert nhwc.is_contiguous(memory_format=CHANNELS_LAST) and not nhwc.is_contiguous()
    assert torch.equal(nhwc, expected)
    assert torch.equal(
        channel_shuffle(x, groups=4), x.view(2, 4, 2, 3, 5).transpose(1, 2).reshape(2, 8, 3, 5)
    )


def test_every_shufflenetv2_feature_map_stays_channels_last() -> None:
    space = get_space("shufflenetv2")
    torch.manual_seed(0)
    network = space.build_network(space.original(), num_classes=10, width_multiplier=0.25)
    network = network.to(memory_format=CHANNELS_LAST).eval()
    images = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        taps = network.forward_taps(images.contiguous(memory_format=CHANNELS_LAST))
        reference = network.forward_taps(images)
    for name, maps in (("feature map", taps.feature_maps), ("preactivation", taps.preactivations)):
        for index, tensor in enumerate(maps):
            assert tensor.is_contiguous(memory_format=CHANNELS_LAST), f"{name} {index} is NCHW"
    torch.testing.assert_close(taps.logits, reference.logits)
