"""Feature-map plumbing shared by the map-based losses (hint, AT, SP, VID, NST).

Which maps a method compares, how student and teacher maps of different spatial size are
brought to a common size, and the checks that a student and a teacher can be paired at all.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from kdnas.core import Taps

#: Index of FitNets' hint layer in ``Taps.feature_maps`` (``feature_maps[0]`` is the stem).
HINT_LAYER = 2


def middle_maps(taps: Taps) -> list[torch.Tensor]:
    """The maps AT, VID and NST compare pairwise: every stage-aligned map after the stem."""
    return list(taps.feature_maps[1:])


def last_map(taps: Taps) -> torch.Tensor:
    """The map SP compares: the deepest stage-aligned map."""
    return taps.feature_maps[-1]


def hint_map(taps: Taps) -> torch.Tensor:
    """FitNets' hint layer."""
    return taps.feature_maps[HINT_LAYER]


def spatial_size(x: torch.Tensor) -> tuple[int, int]:
    """(H, W) of a B x C x H x W map."""
    return int(x.shape[-2]), int(x.shape[-1])


def pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Adaptive-average-pool a B x C x H x W map down to ``size`` (no-op when equal)."""
    if spatial_size(x) == size:
        return x
    return F.adaptive_avg_pool2d(x, size)


def smaller_size(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """The common size two maps are pooled to: the smaller one, per dimension."""
    return min(a[0], b[0]), min(a[1], b[1])


def check_map_pairs(
    method: str, student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor]
) -> None:
    """Raise a clear error when a student's maps cannot be paired with a teacher's.

    Stage-aligned taps of two networks of one space always pair up one-to-one; a user space
    whose student and teacher expose different numbers of maps cannot use a paired method.
    """
    if len(student) != len(teacher):
        raise ValueError(
            f"{method}: the student exposes {len(student)} feature maps to pair and the "
            f"teacher {len(teacher)}; expected the same number (stage-aligned taps)"
        )
    for position, (s, t) in enumerate(zip(student, teacher, strict=True)):
        if s.dim() != 4 or t.dim() != 4:
            raise ValueError(
                f"{method}: feature map {position} must be B x C x H x W, got student "
                f"{tuple(s.shape)} and teacher {tuple(t.shape)}"
            )


def map_shapes(maps: Sequence[torch.Tensor]) -> list[tuple[int, int, int]]:
    """(C, H, W) of each map, the per-sample shapes the modules are built from."""
    return [(int(m.shape[1]), int(m.shape[2]), int(m.shape[3])) for m in maps]


def paired_middle_shapes(
    method: str, student_probe: Taps, teacher_probe: Taps
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(C, H, W) of the student's and the teacher's middle maps, checked to pair up: what
    AT, VID and NST are built from."""
    student, teacher = middle_maps(student_probe), middle_maps(teacher_probe)
    check_map_pairs(method, student, teacher)
    return map_shapes(student), map_shapes(teacher)
