"""The MobileNetV2 search space of the paper (CIFAR-100 variant).

Genotype layout (the paper's pickle rows, as tuples of ints)::

    ((t1, c1, n1, s1), ..., (t7, c7, n7, s7), (0, last_channel, k, 0))

Rows 0..6 are inverted-residual stages: expansion factor t, output channels c, number of blocks
n, stride s of the first block. Row 7 holds the width of the final 1x1 convolution and an inert
number k in 1..4 that the paper keeps in its feature vector but that does not change the
network. Every listed architecture of the paper keeps t = (1, 6, 6, 6, 6, 6, 6) and
s = (1, 2, 2, 2, 1, 2, 1); only c, n, last_channel (and k) vary.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kdnas.core import Architecture
from kdnas.paper import SPACE_BENCHMARK_KEYS
from kdnas.spaces.base import (
    SpaceMembershipMixin,
    check_size_rule,
    conv_output_size,
    make_divisible,
)

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ORIGINAL_ROWS",
    "InvertedResidualPlan",
    "MobileNetV2Plan",
    "MobileNetV2Space",
    "mobilenetv2_plan",
]

SPACE_NAME = "mobilenetv2"

#: The standard MobileNetV2 setting: the teacher and the reference size P of the space.
ORIGINAL_ROWS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
    (0, 1280, 1, 0),
)
_EXPANSIONS = tuple(row[0] for row in ORIGINAL_ROWS[:7])
_STRIDES = tuple(row[3] for row in ORIGINAL_ROWS[:7])
STEM_CHANNELS = 32
DIVISOR = 8
#: Range of blocks per stage in the listed architectures (and in ``sample``).
MIN_BLOCKS, MAX_BLOCKS = 1, 4
#: Range of the inert k of row 7 in the listed architectures.
MIN_K, MAX_K = 1, 4
#: Smallest channel count ``sample`` draws (the smallest in the listed architectures).
MIN_SAMPLED_CHANNELS = 16
#: ``sample`` scales each original stage channel count by 2**u, u uniform in this interval,
#: and the original last_channel (1280) by 2**u, u uniform in ``LAST_CHANNEL_LOG2_RANGE``
#: (fitted to the 10/50/90 % quantiles of the listed architectures' sorted channel counts).
CHANNEL_LOG2_RANGE = (-0.5, 1.5)
LAST_CHANNEL_LOG2_RANGE = (-3.0, 0.0)
#: Probabilities of n = 1, 2, 3, 4 blocks (and of k) in ``sample``: the frequencies of the inert
#: k over the 156 listed architectures, which the size filter cannot have skewed.
BLOCK_PROBABILITIES = (0.37, 0.26, 0.18, 0.19)


@dataclass(frozen=True)
class InvertedResidualPlan:
    """One inverted-residual block with its channel counts resolved.

    Args:
        stage: 0-based index of the stage (genotype row) the block belongs to.
        in_channels: input channels.
        hidden_channels: channels after the 1x1 expansion (= in_channels when expansion is 1).
        out_channels: channels after the linear projection.
        stride: stride of the depthwise convolution.
        expansion: the expansion factor t (1 means no expansion convolution).
    """

    stage: int
    in_channels: int
    hidden_channels: int
    out_channels: int
    stride: int
    expansion: int

    @property
    def residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class MobileNetV2Plan:
    """Every layer width of one MobileNetV2 network, as built by ``MobileNetV2Network``."""

    in_channels: int
    stem_channels: int
    blocks: tuple[InvertedResidualPlan, ...]
    last_channel: int
    num_stages: int

    def stage_ends(self) -> tuple[int, ...]:
        """Index in ``blocks`` of the last block of each stage."""
        ends = [-1] * self.num_stages
        for index, block in enumerate(self.blocks):
            ends[block.stage] = index
        return tuple(ends)


def _rows_of(genotype: Any) -> tuple[tuple[int, ...], ...]:
    """Check the genotype's structure and return its rows; raise ValueError naming the flaw."""
    if not isinstance(genotype, (tuple, list)) or len(genotype) != 8:
        raise ValueError(
            f"a MobileNetV2 genotype must have 8 rows ([t, c, n, s] x 7 and "
            f"[0, last_channel, k, 0]), got {genotype!r}"
        )
    rows = []
    for index, row in enumerate(genotype):
        if not isinstance(row, (tuple, list)) or len(row) != 4:
            raise ValueError(f"MobileNetV2 genotype row {index} must be 4 ints, got {row!r}")
        for value in row:
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"MobileNetV2 genotype row {index} must hold ints, got {row!r}")
        rows.append(tuple(int(v) for v in row))
    for index, (t, c, n, s) in enumerate(rows[:7]):
        if t < 1 or c < 1 or n < 1 or s not in (1, 2):
            raise ValueError(
                f"MobileNetV2 stage row {index} [t, c, n, s] = {list(rows[index])} needs "
                "t >= 1, c >= 1, n >= 1 and s in {1, 2}"
            )
    if rows[7][1] < 1:
        raise ValueError(f"MobileNetV2 last_channel (row 7) must be >= 1, got {rows[7][1]}")
    return tuple(rows)


def mobilenetv2_plan(
    arch: Architecture | Sequence[Sequence[int]],
    in_channels: int = 3,
    width_multiplier: float = 1.0,
) -> MobileNetV2Plan:
    """Resolve every layer width of a MobileNetV2 genotype.

    Channel counts (stem, stage outputs, last channel) are multiplied by ``width_multiplier``
    and rounded with ``make_divisible(., 8)``; expansions use ``round(in * t)``.

    Raises:
        ValueError: the genotype is malformed, or the width multiplier is not positive.
    """
    genotype = arch.genotype if isinstance(arch, Architecture) else arch
    rows = _rows_of(genotype)
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    stem = make_divisible(STEM_CHANNELS * width_multiplier, DIVISOR)
    blocks = []
    current = stem
    for stage, (t, c, n, s) in enumerate(rows[:7]):
        out = make_divisible(c * width_multiplier, DIVISOR)
        for repeat in range(n):
            stride = s if repeat == 0 else 1
            hidden = round(current * t)
            blocks.append(InvertedResidualPlan(stage, current, hidden, out, stride, t))
            current = out
    last = make_divisible(rows[7][1] * width_multiplier, DIVISOR)
    return MobileNetV2Plan(in_channels, stem, tuple(blocks), last, 7)


def _bn(channels: int) -> int:
    return 2 * channels


def plan_parameter_count(plan: MobileNetV2Plan, num_classes: int) -> int:
    """Trainable parameters of the network described by ``plan`` (BatchNorm weight and bias
    count; running statistics are buffers, not parameters)."""
    total = 9 * plan.in_channels * plan.stem_channels + _bn(plan.stem_channels)
    for block in plan.blocks:
        if block.expansion != 1:
            total += block.in_channels * block.hidden_channels + _bn(block.hidden_channels)
        total += 9 * block.hidden_channels + _bn(block.hidden_channels)
        total += block.hidden_channels * block.out_channels + _bn(block.out_channels)
    total += plan.blocks[-1].out_channels * plan.last_channel + _bn(plan.last_channel)
    total += plan.last_channel * num_classes + num_classes
    return total


def plan_multiply_adds(plan: MobileNetV2Plan, resolution: int, num_classes: int) -> int:
    """Multiply-accumulates of the convolutions and the classifier on a square input.

    BatchNorm, activations, residual additions and pooling are not counted.
    """
    size = resolution
    total = size * size * 9 * plan.in_channels * plan.stem_channels
    for block in plan.blocks:
        if block.expansion != 1:
            total += size * size * block.in_channels * block.hidden_channels
        size = conv_output_size(size, 3, block.stride, 1)
        total += size * size * 9 * block.hidden_channels
        total += size * size * block.hidden_channels * block.out_channels
    total += size * size * plan.blocks[-1].out_channels * plan.last_channel
    total += plan.last_channel * num_classes
    return total


class MobileNetV2Space(SpaceMembershipMixin):
    """The paper's MobileNetV2 space: perturbed channel and block counts of MobileNetV2.

    Members keep the original expansions and strides, have non-decreasing channel counts
    (c1 <= ... <= c7 <= last_channel, all multiples of 8), 1..4 blocks per stage, an inert
    k in 1..4, and a parameter count strictly between P/3 and 3P, where P is the original
    network's parameter count with a 100-class head.
    """

    name = SPACE_NAME
    benchmark_key: str | None = SPACE_BENCHMARK_KEYS["mobilenetv2"]
    feature_names: tuple[str, ...] = (
        *(f"{field}{index}" for index in range(1, 8) for field in ("c", "n")),
        "last_channel",
        "k",
    )

    def __init__(self) -> None:
        self._reference = plan_parameter_count(mobilenetv2_plan(ORIGINAL_ROWS), 100)

    # -- construction -----------------------------------------------------------------------
    @staticmethod
    def from_paper(rows: Sequence[Sequence[int]]) -> Architecture:
        """The architecture of one entry of the paper's random_arcs_mobilenetv2.pickle.

        Raises:
            ValueError: ``rows`` is not 8 rows of 4 ints.
        """
        return Architecture(SPACE_NAME, _rows_of(rows))

    @staticmethod
    def from_stages(
        channels: Sequence[int], blocks: Sequence[int], last_channel: int, k: int = 1
    ) -> Architecture:
        """An architecture with the space's fixed expansions and strides.

        Args:
            channels: output channels of the 7 stages.
            blocks: blocks per stage (7 numbers).
            last_channel: width of the final 1x1 convolution.
            k: the inert 16th feature (1..4); it does not change the network.
        """
        if len(channels) != 7 or len(blocks) != 7:
            raise ValueError(
                f"need 7 channel counts and 7 block counts, got {len(channels)} and {len(blocks)}"
            )
        rows = [
            (t, int(c), int(n), s)
            for t, c, n, s in zip(_EXPANSIONS, channels, blocks, _STRIDES, strict=True)
        ]
        rows.append((0, int(last_channel), int(k), 0))
        return Architecture(SPACE_NAME, _rows_of(rows))

    def original(self) -> Architecture:
        return Architecture(SPACE_NAME, ORIGINAL_ROWS)

    @property
    def reference_parameters(self) -> int:
        """P: parameters of the original network with a 100-class head."""
        return self._reference

    # -- rules ------------------------------------------------------------------------------
    def _rows(self, arch: Architecture) -> tuple[tuple[int, ...], ...]:
        if not isinstance(arch, Architecture):
            raise ValueError(f"expected an Architecture, got {type(arch).__name__}")
        if arch.space != SPACE_NAME:
            raise ValueError(f"architecture belongs to space {arch.space!r}, not {SPACE_NAME!r}")
        return _rows_of(arch.genotype)

    def validate(self, arch: Architecture) -> None:
        rows = self._rows(arch)
        stages = rows[:7]
        if tuple(r[0] for r in stages) != _EXPANSIONS:
            raise ValueError(f"MobileNetV2 expansions must be {_EXPANSIONS}, got {rows}")
        if tuple(r[3] for r in stages) != _STRIDES:
            raise ValueError(f"MobileNetV2 strides must be {_STRIDES}, got {rows}")
        if rows[7][0] != 0 or rows[7][3] != 0:
            raise ValueError(f"MobileNetV2 row 7 must be [0, last_channel, k, 0], got {rows[7]}")
        channels = [r[1] for r in rows]
        if any(c % DIVISOR for c in channels):
            raise ValueError(f"MobileNetV2 channel counts must be multiples of 8, got {channels}")
        if any(b < a for a, b in itertools.pairwise(channels)):
            raise ValueError(f"MobileNetV2 channel counts must be non-decreasing, got {channels}")
        blocks = [r[2] for r in stages]
        if not all(MIN_BLOCKS <= n <= MAX_BLOCKS for n in blocks):
            raise ValueError(
                f"MobileNetV2 blocks per stage must lie in {MIN_BLOCKS}..{MAX_BLOCKS}, "
                f"got {blocks}"
            )
        if not MIN_K <= rows[7][2] <= MAX_K:
            raise ValueError(
                f"MobileNetV2 k (row 7) must lie in {MIN_K}..{MAX_K}, got {rows[7][2]}"
            )
        check_size_rule("MobileNetV2", self.parameter_count(arch), self._reference)

    # -- numbers ----------------------------------------------------------------------------
    def features(self, arch: Architecture) -> np.ndarray:
        rows = self._rows(arch)
        return np.array([value for row in rows for value in row[1:3]], dtype=np.float64)

    def parameter_count(self, arch: Architecture, num_classes: int = 100) -> int:
        self._rows(arch)
        return plan_parameter_count(mobilenetv2_plan(arch), num_classes)

    def multiply_adds(
        self, arch: Architecture, resolution: int = 32, num_classes: int = 100
    ) -> int:
        self._rows(arch)
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution!r}")
        return plan_multiply_adds(mobilenetv2_plan(arch), resolution, num_classes)

    def describe(self, arch: Architecture) -> str:
        rows = self._rows(arch)
        stages = [f"c{c}n{n}" for _, c, n, _ in rows[:7]]
        return "-".join([*stages, f"l{rows[7][1]}"])

    # -- sampling ---------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator, max_tries: int = 10_000) -> Architecture:
        """Perturb the original's block and channel counts until the result is a member.

        Blocks per stage and k are drawn from 1..4 with ``BLOCK_PROBABILITIES``. Each of the 7
        original stage channel counts is scaled by 2**u, u uniform in ``CHANNEL_LOG2_RANGE``,
        and last_channel by 2**u, u uniform in ``LAST_CHANNEL_LOG2_RANGE``; each is rounded to
        a multiple of 8 (at least 16) and the 8 values are sorted so they are non-decreasing.
        Draws outside (P/3, 3P) are rejected.
        """
        originals = np.array([row[1] for row in ORIGINAL_ROWS], dtype=np.float64)
        counts = np.arange(MIN_BLOCKS, MAX_BLOCKS + 1)
        for _ in range(max_tries):
            blocks = rng.choice(counts, size=8, p=BLOCK_PROBABILITIES)
            exponents = np.append(
                rng.uniform(*CHANNEL_LOG2_RANGE, size=7), rng.uniform(*LAST_CHANNEL_LOG2_RANGE)
            )
            channels = sorted(
                max(MIN_SAMPLED_CHANNELS, make_divisible(c, DIVISOR))
                for c in originals * 2.0**exponents
            )
            arch = self.from_stages(channels[:7], blocks[:7].tolist(), channels[7], int(blocks[7]))
            if self.contains(arch):
                return arch
        raise RuntimeError(f"no valid MobileNetV2 architecture in {max_tries} draws")

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Members one step away: one stage's n or k changed by 1, or one channel count
        (stage or last_channel) changed by 8. Deterministic order; non-members are dropped."""
        rows = [list(row) for row in self._rows(arch)]
        steps = [(i, 2, d) for i in range(8) for d in (-1, 1)]
        steps += [(i, 1, d * DIVISOR) for i in range(8) for d in (-1, 1)]
        found = []
        for row, column, delta in steps:
            changed = [list(r) for r in rows]
            changed[row][column] += delta
            if changed[row][column] < 1:
                continue
            candidate = Architecture(SPACE_NAME, changed)
            if self.contains(candidate):
                found.append(candidate)
        return found

    # -- networks ---------------------------------------------------------------------------
    def build_network(
        self,
        arch: Architecture,
        num_classes: int = 100,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
    ) -> nn.Module:
        from kdnas.models.mobilenetv2 import MobileNetV2Network

        self._rows(arch)
        return MobileNetV2Network(
            arch,
            num_classes=num_classes,
            in_channels=in_channels,
            width_multiplier=width_multiplier,
        )
