"""PyTorch networks of the search spaces' architectures, and counters of their size.

``kdnas.spaces`` holds the torch-free description of each space; this package turns an
``Architecture`` into an ``nn.Module`` with ``forward(x) -> logits`` and
``forward_taps(x) -> kdnas.core.Taps``.
"""

from __future__ import annotations

from kdnas.models.measure import count_multiply_adds, count_parameters
from kdnas.models.mobilenetv2 import MOBILENETV2_TAP_STAGES, MobileNetV2Network
from kdnas.models.shufflenetv2 import ShuffleNetV2Network

__all__ = [
    "MOBILENETV2_TAP_STAGES",
    "MobileNetV2Network",
    "ShuffleNetV2Network",
    "count_multiply_adds",
    "count_parameters",
]
