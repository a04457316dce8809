"""PyTorch networks of the search spaces' architectures, and counters of their size.

``kdnas.spaces`` holds the torch-free description of each space; this package turns an
``Architecture`` into an ``nn.Module`` with ``forward(x) -> logits`` and
``forward_taps(x) -> kdnas.core.Taps``; ``network_taps`` reads the taps of any network (only
the logits of one without ``forward_taps``).
"""

from __future__ import annotations

from kdnas.models.measure import count_multiply_adds, count_parameters
from kdnas.models.mobilenetv2 import MOBILENETV2_TAP_STAGES, MobileNetV2Network
from kdnas.models.shufflenetv2 import ShuffleNetV2Network
from kdnas.models.taps import has_taps, network_taps

__all__ = [
    "MOBILENETV2_TAP_STAGES",
    "MobileNetV2Network",
    "ShuffleNetV2Network",
    "count_multiply_adds",
    "count_parameters",
    "has_taps",
    "network_taps",
]
