"""Sub-spaces of a benchmark space where the zero-cost proxy helps, and where it misleads.

An optimizer that leans on the proxy (log multiply-adds, ``multiply_add_proxy``) is fast on the
paper's spaces because their parameter cap makes compute per image a good guide (Spearman
0.77 / 0.81 with HF valid accuracy). To measure what happens when that guide fails, searches
are also run on sub-spaces drawn so that it fails. The regimes (``REGIMES``):

- ``whole``: the whole space (``draw_subspace`` returns every index);
- ``random``: a uniformly random 2/3 of the architectures;
- ``low``: 1/3 of the architectures, with a Spearman correlation between the proxy and HF valid
  accuracy in [-0.2, 0.2] (the proxy carries no ranking);
- ``negative``: 1/6 of the architectures, correlation <= -0.3 (the proxy ranks backwards);
- ``nofav``: a random 2/3 without the proxy's top 10 % of the whole space (its favourites
  are absent, so its ranking at the top is all that is left).

Three more kinds, each a different way for a proxy to mislead a search for the optimum:

- ``decoy``: 1/3 of the architectures whose proxy favourites are poor: k = max(3, N/30)
  architectures from the proxy's top 40 % with HF accuracy below the whole space's median
  are the sub-space's k highest proxies, the rest are drawn below them (the proxy still ranks
  the rest, but its first k picks are wasted);
- ``buried``: 1/3 of the architectures whose optimum has a proxy at or below the sub-space's
  median (it is drawn from the proxy's lower half with HF accuracy in the upper half, and
  the rest from the architectures less accurate than it): the proxy leads to good
  architectures, never to the best one;
- ``narrow``: 1/3 of the architectures with consecutive multiply-adds, the window starting
  uniformly in the lower half of the proxy's ranking: a space with little spread in compute,
  where the standardised proxy looks as informative as on the whole space but is not (the
  proxy's top sixth is never in it).

``low`` and ``negative`` are drawn with weights exp(-g u v), u and v the centred ranks of the
proxy and of HF accuracy in the whole space and g uniform in [0, 150] per attempt, so that
architectures on which the two disagree are favoured; an attempt is kept when its correlation
falls in the band (rejection, at most ``max_attempts``). The band is a property of every
sub-space drawn, tested in tests/replay/test_regimes.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy import stats

from kdnas.replay.arrays import SpaceArrays, cell_rng

__all__ = ["REGIMES", "draw_spaces", "draw_subspace", "proxy_correlation"]

REGIMES: tuple[str, ...] = (
    "whole",
    "random",
    "low",
    "negative",
    "nofav",
    "decoy",
    "buried",
    "narrow",
)

#: (lowest, highest) proxy-vs-HF Spearman correlation of a sub-space of each banded regime.
CORRELATION_BANDS: dict[str, tuple[float, float]] = {"low": (-0.2, 0.2), "negative": (-1.0, -0.3)}


def proxy_correlation(arrays: SpaceArrays) -> float:
    """Spearman correlation between the proxy (multiply-adds) and HF valid accuracy."""
    if arrays.multiply_adds is None:
        raise ValueError(f"{arrays.space}: the space has no multiply-adds (the proxy)")
    return float(stats.spearmanr(arrays.multiply_adds, arrays.hf_valid).statistic)


def draw_subspace(
    arrays: SpaceArrays, regime: str, rng: np.random.Generator, max_attempts: int = 10_000
) -> np.ndarray:
    """Sorted indices into ``arrays`` of one sub-space of ``regime`` (module docstring).

    Raises:
        ValueError: an unknown regime, or a space without multiply-adds (every regime but
            ``whole`` and ``random`` needs the proxy).
        RuntimeError: no sub-space in the band after ``max_attempts`` draws.
    """
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; choose one of {', '.join(REGIMES)}")
    if regime == "whole":
        return np.arange(arrays.size)
    if regime == "random":
        return np.sort(rng.choice(arrays.size, (2 * arrays.size) // 3, replace=False))
    if arrays.multiply_adds is None:
        raise ValueError(f"{arrays.space}: regime {regime!r} needs the multiply-adds (proxy)")
    if regime == "nofav":
        favourites = np.argsort(-arrays.multiply_adds)[: max(1, arrays.size // 10)]
        rest = np.setdiff1d(np.arange(arrays.size), favourites)
        return np.sort(rng.choice(rest, (2 * arrays.size) // 3 - len(favourites), replace=False))
    if regime in _CONSTRUCTED:
        return _CONSTRUCTED[regime](arrays, rng)
    low, high = CORRELATION_BANDS[regime]
    proxy_rank = stats.rankdata(arrays.multiply_adds) / arrays.size - 0.5
    accuracy_rank = stats.rankdata(arrays.hf_valid) / arrays.size - 0.5
    # A reversed proxy needs a smaller sub-space to be found by rejection.
    size = arrays.size // (3 if regime == "low" else 6)
    for _ in range(max_attempts):
        weights = np.exp(-rng.uniform(0.0, 150.0) * proxy_rank * accuracy_rank)
        rows = np.sort(rng.choice(arrays.size, size, replace=False, p=weights / weights.sum()))
        rho = stats.spearmanr(arrays.multiply_adds[rows], arrays.hf_valid[rows]).statistic
        if low <= rho <= high:
            return rows
    raise RuntimeError(f"{arrays.space}: no {regime} sub-space in {max_attempts:,} draws")


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks as fractions in (0, 1]."""
    return stats.rankdata(values) / len(values)


def _decoy(arrays: SpaceArrays, rng: np.random.Generator) -> np.ndarray:
    size, count = arrays.size // 3, max(3, arrays.size // 30)
    proxy_rank = _ranks(arrays.multiply_adds)
    poor = np.flatnonzero((proxy_rank > 0.6) & (_ranks(arrays.hf_valid) <= 0.5))
    if len(poor) < count:
        raise RuntimeError(
            f"{arrays.space}: {len(poor)} poor high-proxy architectures, need {count}"
        )
    decoys = rng.choice(poor, count, replace=False)
    below = np.flatnonzero(arrays.multiply_adds < arrays.multiply_adds[decoys].min())
    if len(below) < size - count:
        raise RuntimeError(f"{arrays.space}: too few architectures below the decoys")
    return np.sort(np.concatenate([decoys, rng.choice(below, size - count, replace=False)]))


def _buried(
    arrays: SpaceArrays, rng: np.random.Generator, max_attempts: int = 1_000
) -> np.ndarray:
    size = arrays.size // 3
    targets = np.flatnonzero(
        (_ranks(arrays.multiply_adds) <= 0.5) & (_ranks(arrays.hf_valid) > 0.5)
    )
    for _ in range(max_attempts):
        target = int(rng.choice(targets))
        worse = np.flatnonzero(arrays.hf_valid < arrays.hf_valid[target])
        if len(worse) < size - 1:
            continue
        rows = np.sort(np.append(rng.choice(worse, size - 1, replace=False), target))
        if arrays.multiply_adds[target] <= np.median(arrays.multiply_adds[rows]):
            return rows
    raise RuntimeError(f"{arrays.space}: no buried sub-space in {max_attempts:,} draws")


def _narrow(arrays: SpaceArrays, rng: np.random.Generator) -> np.ndarray:
    size = arrays.size // 3
    start = int(rng.integers(0, arrays.size // 2 + 1))
    return np.sort(np.argsort(arrays.multiply_adds, kind="stable")[start : start + size])


_CONSTRUCTED = {"decoy": _decoy, "buried": _buried, "narrow": _narrow}


def draw_spaces(
    arrays: SpaceArrays, regime: str, count: int, draw: int
) -> Iterator[tuple[int, SpaceArrays]]:
    """``count`` (seed, space) pairs of ``regime``: draw number ``draw`` of the comparisons
    in ``benchmarks/`` (a draw fixes every sub-space and seed, so all optimizers of a table
    meet the same ones; "whole" repeats the whole space with ``count`` seeds). Draws are
    disjoint in seeds; draw 0 is the one settings were chosen on, later draws are fresh."""
    if count < 1:
        raise ValueError(f"draw_spaces needs count >= 1, got {count}")
    rng = cell_rng(draw, "adaptive-subspaces", arrays.space, regime)
    for k in range(count):
        space = arrays if regime == "whole" else arrays.subset(draw_subspace(arrays, regime, rng))
        yield 10_000 * (draw + 1) + k, space
