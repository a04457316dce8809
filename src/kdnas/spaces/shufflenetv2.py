"""The ShuffleNetV2 search space of the paper (CIFAR-100 variant).

Genotype layout (the paper's pickle dict, frozen by ``Architecture`` into sorted pairs)::

    (("num_blocks", (n1, n2, n3)), ("out_channels", (c1, c2, c3, c4)))

c1..c3 are the output channels of the three stages and c4 the width of the final 1x1
convolution; stage i is one down-sampling block followed by n_i basic blocks.
``Architecture("shufflenetv2", {"out_channels": [...], "num_blocks": [...]})`` builds it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from kdnas.core import Architecture
from kdnas.paper import SPACE_BENCHMARK_KEYS
from kdnas.spaces.base import SpaceMembershipMixin, check_size_rule, conv_output_size

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "ORIGINAL_BLOCKS",
    "ORIGINAL_CHANNELS",
    "ShuffleNetV2Plan",
    "ShuffleNetV2Space",
    "shufflenetv2_plan",
]

SPACE_NAME = "shufflenetv2"
ORIGINAL_CHANNELS: tuple[int, int, int, int] = (116, 232, 464, 1024)
ORIGINAL_BLOCKS: tuple[int, int, int] = (3, 7, 3)
STEM_CHANNELS = 24
MIN_BLOCKS, MAX_BLOCKS = 1, 10
#: ``sample`` scales each original channel count by 2**u with u uniform in this interval.
CHANNEL_LOG2_RANGE = (-2.0, 1.0)


@dataclass(frozen=True)
class ShuffleNetV2Plan:
    """Every layer width of one ShuffleNetV2 network, as built by ``ShuffleNetV2Network``.

    Args:
        in_channels: input image channels.
        stem_channels: output channels of the 1x1 stem.
        stage_channels: output channels of the three stages (all even).
        blocks: basic blocks per stage (after each stage's down-sampling block).
        last_channel: channels of the final 1x1 convolution.
    """

    in_channels: int
    stem_channels: int
    stage_channels: tuple[int, int, int]
    blocks: tuple[int, int, int]
    last_channel: int


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def _fields_of(genotype: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(out_channels, num_blocks) of a genotype; raise ValueError naming the flaw."""
    try:
        fields = dict(genotype)
    except (TypeError, ValueError):
        fields = None
    if fields is None or set(fields) != {"num_blocks", "out_channels"}:
        raise ValueError(
            "a ShuffleNetV2 genotype must be (('num_blocks', (n1, n2, n3)), "
            f"('out_channels', (c1, c2, c3, c4))), got {genotype!r}"
        )
    channels, blocks = fields["out_channels"], fields["num_blocks"]
    for label, values, size in (("out_channels", channels, 4), ("num_blocks", blocks, 3)):
        if (
            not isinstance(values, (tuple, list))
            or len(values) != size
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in values)
        ):
            raise ValueError(f"ShuffleNetV2 {label} must be {size} ints, got {values!r}")
    if any(c < 2 or c % 2 for c in channels[:3]) or channels[3] < 1:
        raise ValueError(
            f"ShuffleNetV2 stage channels must be even and >= 2 (the blocks split them in "
            f"halves) and c4 >= 1, got {list(channels)}"
        )
    if any(n < 1 for n in blocks):
        raise ValueError(f"ShuffleNetV2 num_blocks must be >= 1, got {list(blocks)}")
    return tuple(int(c) for c in channels), tuple(int(n) for n in blocks)


def shufflenetv2_plan(
    arch: Architecture | Any, in_channels: int = 3, width_multiplier: float = 1.0
) -> ShuffleNetV2Plan:
    """Resolve every layer width of a ShuffleNetV2 genotype.

    Channel counts (stem, stages, last) are multiplied by ``width_multiplier``; the stem and
    stage counts are rounded to the nearest even number (at least 2), since every block splits
    its channels in halves, and the last to the nearest integer (at least 1).

    Raises:
        ValueError: the genotype is malformed, or the width multiplier is not positive.
    """
    genotype = arch.genotype if isinstance(arch, Architecture) else arch
    channels, blocks = _fields_of(genotype)
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
    if width_multiplier == 1.0:
        stem, stages, last = STEM_CHANNELS, channels[:3], channels[3]
    else:
        stem = _even(STEM_CHANNELS * width_multiplier)
        stages = tuple(_even(c * width_multiplier) for c in channels[:3])
        last = max(1, round(channels[3] * width_multiplier))
    return ShuffleNetV2Plan(
        in_channels,
        stem,
        (stages[0], stages[1], stages[2]),
        (blocks[0], blocks[1], blocks[2]),
        last,
    )


def _down_block_params(cin: int, cout: int) -> int:
    mid = cout // 2
    left = 9 * cin + 2 * cin + cin * mid + 2 * mid
    right = cin * mid + 2 * mid + 9 * mid + 2 * mid + mid * mid + 2 * mid
    return left + right


def _basic_block_params(channels: int) -> int:
    half = channels // 2
    return 2 * (half * half + 2 * half) + 9 * half + 2 * half


def plan_parameter_count(plan: ShuffleNetV2Plan, num_classes: int) -> int:
    """Trainable parameters of the network described by ``plan`` (BatchNorm weight and bias
    count; running statistics are buffers)."""
    total = plan.in_channels * plan.stem_channels + 2 * plan.stem_channels
    current = plan.stem_channels
    for channels, blocks in zip(plan.stage_channels, plan.blocks, strict=True):
        total += _down_block_params(current, channels) + blocks * _basic_block_params(channels)
        current = channels
    total += current * plan.last_channel + 2 * plan.last_channel
    total += plan.last_channel * num_classes + num_classes
    return total


def plan_multiply_adds(plan: ShuffleNetV2Plan, resolution: int, num_classes: int) -> int:
    """Multiply-accumulates of the convolutions and the classifier on a square input.

    BatchNorm, activations, concatenation, shuffles and pooling are not counted.
    """
    size = resolution
    total = size * size * plan.in_channels * plan.stem_channels
    current = plan.stem_channels
    for channels, blocks in zip(plan.stage_channels, plan.blocks, strict=True):
        mid = channels // 2
        out = conv_output_size(size, 3, 2, 1)
        # Down-sampling block: left dw + 1x1, right 1x1 (at full size), dw, 1x1.
        total += out * out * (9 * current + current * mid)
        total += size * size * current * mid + out * out * (9 * mid + mid * mid)
        size = out
        half = channels // 2
        total += blocks * size * size * (2 * half * half + 9 * half)
        current = channels
    total += size * size * current * plan.last_channel
    total += plan.last_channel * num_classes
    return total


class ShuffleNetV2Space(SpaceMembershipMixin):
    """The paper's ShuffleNetV2 space: perturbed channel and block counts of ShuffleNetV2.

    Members have even channel counts with 24 (the stem) <= c1 <= c2 <= c3 <= c4, 1..10 basic
    blocks per stage, and a parameter count strictly between P/3 and 3P, where P is the
    original network's parameter count with a 100-class head.
    """

    name = SPACE_NAME
    benchmark_key: str | None = SPACE_BENCHMARK_KEYS["shufflenetv2"]
    feature_names: tuple[str, ...] = ("c1", "c2", "c3", "c4", "n1", "n2", "n3")

    def __init__(self) -> None:
        self._reference = plan_parameter_count(shufflenetv2_plan(self.original()), 100)

    @staticmethod
    def from_paper(entry: Any) -> Architecture:
        """The architecture of one entry of the paper's random_arcs_shufflenetv2.pickle
        (a dict with keys "out_channels" and "num_blocks").

        Raises:
            ValueError: the entry is malformed.
        """
        arch = Architecture(SPACE_NAME, entry) if isinstance(entry, dict) else None
        if arch is None:
            raise ValueError(
                f"a ShuffleNetV2 entry must be a dict with out_channels and num_blocks, "
                f"got {entry!r}"
            )
        _fields_of(arch.genotype)
        return arch

    @staticmethod
    def from_stages(channels: Sequence[int], blocks: Sequence[int]) -> Architecture:
        """An architecture from out_channels (c1, c2, c3, c4) and num_blocks (n1, n2, n3)."""
        genotype = {
            "out_channels": [int(c) for c in channels],
            "num_blocks": [int(n) for n in blocks],
        }
        arch = Architecture(SPACE_NAME, genotype)
        _fields_of(arch.genotype)
        return arch

    def original(self) -> Architecture:
        return self.from_stages(ORIGINAL_CHANNELS, ORIGINAL_BLOCKS)

    @property
    def reference_parameters(self) -> int:
        """P: parameters of the original network with a 100-class head."""
        return self._reference

    def _fields(self, arch: Architecture) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if not isinstance(arch, Architecture):
            raise ValueError(f"expected an Architecture, got {type(arch).__name__}")
        if arch.space != SPACE_NAME:
            raise ValueError(f"architecture belongs to space {arch.space!r}, not {SPACE_NAME!r}")
        return _fields_of(arch.genotype)

    def validate(self, arch: Architecture) -> None:
        channels, blocks = self._fields(arch)
        if channels[3] % 2:
            raise ValueError(f"ShuffleNetV2 channel counts must be even, got {list(channels)}")
        chain = (STEM_CHANNELS, *channels)
        if any(b < a for a, b in itertools.pairwise(chain)):
            raise ValueError(
                f"ShuffleNetV2 channel counts must be non-decreasing from the stem's "
                f"{STEM_CHANNELS}, got {list(channels)}"
            )
        if not all(MIN_BLOCKS <= n <= MAX_BLOCKS for n in blocks):
            raise ValueError(
                f"ShuffleNetV2 num_blocks must lie in {MIN_BLOCKS}..{MAX_BLOCKS}, "
                f"got {list(blocks)}"
            )
        check_size_rule("ShuffleNetV2", self.parameter_count(arch), self._reference)

    def features(self, arch: Architecture) -> np.ndarray:
        channels, blocks = self._fields(arch)
        return np.array([*channels, *blocks], dtype=np.float64)

    def parameter_count(self, arch: Architecture, num_classes: int = 100) -> int:
        self._fields(arch)
        return plan_parameter_count(shufflenetv2_plan(arch), num_classes)

    def multiply_adds(
        self, arch: Architecture, resolution: int = 32, num_classes: int = 100
    ) -> int:
        self._fields(arch)
        if resolution < 1:
            raise ValueError(f"resolution must be >= 1, got {resolution!r}")
        return plan_multiply_adds(shufflenetv2_plan(arch), resolution, num_classes)

    def describe(self, arch: Architecture) -> str:
        channels, blocks = self._fields(arch)
        stages = [f"c{c}n{n}" for c, n in zip(channels[:3], blocks, strict=True)]
        return "-".join([*stages, f"l{channels[3]}"])

    def sample(self, rng: np.random.Generator, max_tries: int = 10_000) -> Architecture:
        """Perturb the original's block and channel counts until the result is a member.

        Blocks per stage are uniform in 1..10. Each of the 4 original channel counts is
        scaled by 2**u, u uniform in ``CHANNEL_LOG2_RANGE``, rounded to an even number and
        floored at the stem's 24; the 4 values are then sorted so they are non-decreasing.
        Draws outside (P/3, 3P) are rejected.
        """
        originals = np.array(ORIGINAL_CHANNELS, dtype=np.float64)
        for _ in range(max_tries):
            blocks = rng.integers(MIN_BLOCKS, MAX_BLOCKS + 1, size=3).tolist()
            scales = 2.0 ** rng.uniform(*CHANNEL_LOG2_RANGE, size=4)
            channels = sorted(max(STEM_CHANNELS, _even(c)) for c in originals * scales)
            arch = self.from_stages(channels, blocks)
            if self.contains(arch):
                return arch
        raise RuntimeError(f"no valid ShuffleNetV2 architecture in {max_tries} draws")

    def neighbours(self, arch: Architecture) -> list[Architecture]:
        """Members one step away: one stage's block count changed by 1, or one channel count
        changed by 2. Deterministic order; non-members are dropped."""
        channels, blocks = self._fields(arch)
        found = []
        for index in range(7):
            for delta in (-1, 1):
                new_channels, new_blocks = list(channels), list(blocks)
                if index < 4:
                    new_channels[index] += 2 * delta
                else:
                    new_blocks[index - 4] += delta
                if min(new_channels) < 2 or min(new_blocks) < 1:
                    continue
                candidate = self.from_stages(new_channels, new_blocks)
                if self.contains(candidate):
                    found.append(candidate)
        return found

    def build_network(
        self,
        arch: Architecture,
        num_classes: int = 100,
        in_channels: int = 3,
        width_multiplier: float = 1.0,
    ) -> nn.Module:
        from kdnas.models.shufflenetv2 import ShuffleNetV2Network

        self._fields(arch)
        return ShuffleNetV2Network(
            arch,
            num_classes=num_classes,
            in_channels=in_channels,
            width_multiplier=width_multiplier,
        )
