"""A tiny stand-in search space whose networks train in milliseconds, the digits at 8x8, and
CPU thread limits."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

from kdnas.core import Architecture, Taps


class TinyNet(nn.Module):
    """conv-BN-ReLU, strided conv-BN-ReLU, pooled embedding, linear head; optional NaN logits,
    or constant ones (the head sees no input: a network that cannot beat chance)."""

    def __init__(
        self, width: int, num_classes: int, in_channels: int, nan: bool, constant: bool = False
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        self.stage = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)
        self.nan = nan
        self.constant = constant

    def forward_taps(self, x: torch.Tensor) -> Taps:
        f0 = self.stem(x)
        f1 = self.stage(f0)
        embedding = f1.mean(dim=(2, 3))
        logits = self.head(embedding * 0 if self.constant else embedding)
        if self.nan:
            logits = logits * float("nan")
        return Taps([f0, f1], [None, None], embedding, logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_taps(x).logits


class TinySpace:
    """Genotype (width,), (width, "nan") for a network whose loss is always NaN, or
    (width, "constant") for one whose output ignores its input."""

    name = "tiny"
    benchmark_key = None

    def original(self) -> Architecture:
        return Architecture("tiny", (16,))

    def validate(self, arch: Architecture) -> None:
        if arch.space != "tiny":
            raise ValueError("not a tiny architecture")

    def build_network(
        self,
        arch: Architecture,
        num_classes: int = 100,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
    ) -> nn.Module:
        if arch.genotype[0] < 1:
            raise ValueError(f"width must be >= 1, got {arch.genotype[0]}")
        width = max(2, round(arch.genotype[0] * width_multiplier))
        return TinyNet(
            width,
            num_classes,
            in_channels,
            nan="nan" in arch.genotype,
            constant="constant" in arch.genotype,
        )


@pytest.fixture(scope="session")
def digits():
    """The embedded digits at their native 8x8, split and normalised."""
    from kdnas.data import load_digits, prepare

    return prepare(load_digits(), resolution=8)


@pytest.fixture
def tiny_space() -> TinySpace:
    return TinySpace()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # On a shared, busy machine several OpenMP threads per process thrash (25x slower here).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
