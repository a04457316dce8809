"""The finite set of architectures a search chooses from, with their standardised features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kdnas.core import Architecture

__all__ = ["CandidateSet", "random_subsets", "standardize_columns"]


def random_subsets(rng: np.random.Generator, runs: int, size: int, count: int) -> np.ndarray:
    """[runs, count] distinct indices in range(size) per row, each row a uniform random subset
    in random order."""
    if not 0 < count <= size:
        raise ValueError(f"cannot draw {count} distinct architectures out of {size}")
    return np.argsort(rng.random((runs, size)), axis=1)[:, :count]


def standardize_columns(features: np.ndarray) -> np.ndarray:
    """Each column shifted to mean 0 and scaled to variance 1 over the rows.

    A constant column becomes all zeros (it carries no information for the kernel).
    """
    features = np.asarray(features, dtype=float)
    if features.ndim != 2:
        raise ValueError(f"features must be a 2-d array [N, d], got shape {features.shape}")
    std = features.std(axis=0)
    return (features - features.mean(axis=0)) / np.where(std > 0, std, 1.0)


@dataclass(frozen=True)
class CandidateSet:
    """Architectures and one feature row per architecture, in the same order.

    Args:
        archs: the candidates (distinct).
        features: [N, d] feature matrix as the GP sees it (already standardised; see
            ``from_raw``).
    """

    archs: tuple[Architecture, ...]
    features: np.ndarray
    _index: dict[Architecture, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        archs = tuple(self.archs)
        features = np.asarray(self.features, dtype=float)
        if features.ndim != 2 or len(features) != len(archs):
            raise ValueError(
                f"CandidateSet needs one feature row per architecture: {len(archs)} "
                f"architectures, features of shape {features.shape}"
            )
        if len(archs) == 0:
            raise ValueError("CandidateSet needs at least one architecture")
        if not np.isfinite(features).all():
            raise ValueError("CandidateSet features must be finite")
        index = {arch: i for i, arch in enumerate(archs)}
        if len(index) != len(archs):
            raise ValueError("CandidateSet architectures must be distinct")
        features.setflags(write=False)
        object.__setattr__(self, "archs", archs)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "_index", index)

    @classmethod
    def from_raw(
        cls, archs: Sequence[Architecture], raw_features: np.ndarray, standardize: bool = True
    ) -> CandidateSet:
        """Build from raw features (channel counts, block counts ...), standardised per column
        over these candidates as in the paper."""
        raw = np.asarray(raw_features, dtype=float)
        return cls(tuple(archs), standardize_columns(raw) if standardize else raw)

    def __len__(self) -> int:
        return len(self.archs)

    def index_of(self, arch: Architecture) -> int:
        """Position of ``arch``; raises KeyError naming it when it is not a candidate."""
        try:
            return self._index[arch]
        except KeyError:
            raise KeyError(f"architecture {arch.key()} is not a candidate") from None
