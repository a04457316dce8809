"""The ``SearchSpace`` protocol and the channel arithmetic shared by spaces and networks.

Pure Python and numpy: nothing here imports torch, so the tabular benchmark and the optimizers
can use spaces without it. ``SearchSpace.build_network`` imports ``kdnas.models`` lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from kdnas.core import Architecture

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "SearchSpace",
    "SpaceMembershipMixin",
    "check_size_rule",
    "conv_output_size",
    "make_divisible",
]


def check_size_rule(family: str, params: int, reference: int) -> None:
    """Raise ValueError unless reference/3 < params < 3 * reference (the paper's size filter).

    Args:
        family: the network family, for the message ("MobileNetV2").
        params: the architecture's parameter count.
        reference: P, the original network's parameter count (100-class head).
    """
    low, high = reference / 3, 3 * reference
    if not low < params < high:
        raise ValueError(
            f"{family} parameter count {params} lies outside (P/3, 3P) = ({low:.0f}, {high:.0f})"
        )


class SpaceMembershipMixin:
    """``contains`` and ``feature_matrix`` written once in terms of ``validate`` and
    ``features``, for spaces that implement those two."""

    feature_names: tuple[str, ...]

    def validate(self, arch: Architecture) -> None:
        raise NotImplementedError

    def features(self, arch: Architecture) -> np.ndarray:
        raise NotImplementedError

    def contains(self, arch: Architecture) -> bool:
        try:
            self.validate(arch)
        except ValueError:
            return False
        return True

    def feature_matrix(self, archs: Sequence[Architecture]) -> np.ndarray:
        if not archs:
            return np.empty((0, len(self.feature_names)), dtype=np.float64)
        return np.stack([self.features(arch) for arch in archs])


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to the nearest multiple of ``divisor`` (MobileNet convention).

    The result is never below ``min_value`` (default ``divisor``) and never more than 10 %
    below ``value``: if rounding down loses more than that, one more ``divisor`` is added.
    """
    if value <= 0:
        raise ValueError(f"channel count must be positive, got {value!r}")
    floor = divisor if min_value is None else min_value
    rounded = max(floor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Spatial output size of a convolution (or pooling) along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


@runtime_checkable
class SearchSpace(Protocol):
    """A family of architectures that can be sampled, described as features, and built.

    Attributes:
        name: the space's registry name ("mobilenetv2", "shufflenetv2", or a user's own).
        benchmark_key: the space's key in the paper's tabular benchmark ("mobilenet",
            "shufflenet"), or None for spaces the benchmark does not cover.
        feature_names: names of the columns of ``features``, in order.
    """

    name: str
    benchmark_key: str | None
    feature_names: tuple[str, ...]

    def features(self, arch: Architecture) -> np.ndarray:
        """The architecture's numeric feature vector (float64, length ``len(feature_names)``)."""
        raise NotImplementedError

    def feature_matrix(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Features of several architectures stacked as rows: ``len(archs) x n_features``."""
        raise NotImplementedError

    def validate(self, arch: Architecture) -> None:
        """Raise ``ValueError`` saying why ``arch`` is not a member of this space."""
        raise NotImplementedError

    def contains(self, arch: Architecture) -> bool:
        """True when ``arch`` satisfies every rule of the space (``validate`` passes)."""
        raise NotImplementedError

    def original(self) -> Architecture:
        """The family's original architecture: the teacher, whose size is the reference P."""
        raise NotImplementedError

    def parameter_count(self, arch: Architecture, num_classes: int = 100) -> int:
        """Trainable parameters of the built network, computed without building it."""
        raise NotImplementedError

    def multiply_adds(self, arch: Architecture, resolution: int = 32) -> int:
        """Multiply-accumulate operations of one forward pass on a square input."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator) -> Architecture:
        """Draw one architecture of the space with the random generator ``rng``."""
        raise NotImplementedError

    def describe(self, arch: Architecture) -> str:
        """A short human-readable key of the architecture."""
        raise NotImplementedError

    def build_network(
        self,
        arch: Architecture,
        num_classes: int = 100,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
    ) -> nn.Module:
        """The PyTorch network of ``arch`` (imports torch on first use)."""
        raise NotImplementedError
