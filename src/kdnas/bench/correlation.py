"""The paper's Table 1: how well a low-fidelity evaluation ranks architectures.

For each space, part and method: Pearson, Kendall-tau (tau-b) and Spearman correlation between
the low-fidelity *validation* accuracy (what a search sees) and the high-fidelity *test*
accuracy (method "nokd", part 1: what the user finally gets), over the space's architectures.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from kdnas.bench.tabular import TabularBenchmark

__all__ = [
    "CORRELATIONS",
    "CellComparison",
    "compare_with_paper",
    "correlations",
    "table1",
]

logger = logging.getLogger(__name__)

#: Correlation coefficients reported per cell, in output order.
CORRELATIONS: tuple[str, ...] = ("pearson", "kendall", "spearman")

#: {space: {part: {method: {coefficient: value}}}}, parts as strings ("27", "9", "3").
Table1 = dict[str, dict[str, dict[str, dict[str, float]]]]


def correlations(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Pearson, Kendall-tau-b and Spearman correlation of two equally long vectors.

    Pairs where either value is NaN (holes in a table) are left out. With fewer than three
    pairs, or a constant vector, every coefficient is NaN.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"need two vectors of one length, got shapes {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.ptp(x) == 0.0 or np.ptp(y) == 0.0:
        return dict.fromkeys(CORRELATIONS, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error", stats.ConstantInputWarning)
        return {
            "pearson": float(stats.pearsonr(x, y)[0]),
            "kendall": float(stats.kendalltau(x, y)[0]),
            "spearman": float(stats.spearmanr(x, y)[0]),
        }


def table1(
    benchmark: TabularBenchmark,
    dataset: str = "cifar100",
    spaces: Iterable[str] | None = None,
) -> Table1:
    """Correlations between low-fidelity valid_acc and high-fidelity test_acc (Table 1).

    Args:
        benchmark: the table; each space needs a high-fidelity column (nokd, part 1).
        dataset: the benchmark's dataset key.
        spaces: the spaces to cover (default: every space of ``dataset``).

    Returns:
        ``{space: {part: {method: {"pearson", "kendall", "spearman"}}}}`` with parts as strings
        from the cheapest ("27") to the dearest ("3"), and methods in the benchmark's order.
    """
    result: Table1 = {}
    for space in benchmark.spaces(dataset) if spaces is None else spaces:
        high = benchmark.column(space, "nokd", 1, "test_acc", dataset)
        parts = sorted(
            {
                part
                for method in benchmark.methods(space, dataset)
                for part in benchmark.parts(space, method, dataset)
                if part != 1
            },
            reverse=True,
        )
        by_part: dict[str, dict[str, dict[str, float]]] = {}
        for part in parts:
            by_part[str(part)] = {
                method: correlations(
                    benchmark.column(space, method, part, "valid_acc", dataset), high
                )
                for method in benchmark.methods(space, dataset)
                if part in benchmark.parts(space, method, dataset)
            }
        result[space] = by_part
    logger.debug("table1 over %s: %d spaces", dataset, len(result))
    return result


@dataclass(frozen=True)
class CellComparison:
    """One Table 1 cell, ours next to the paper's.

    Args:
        space: the benchmark's space key.
        part: the part, as a string ("27").
        method: the method key.
        ours: our coefficient.
        paper: the paper's printed coefficient (rounded to 2 decimals there).
    """

    space: str
    part: str
    method: str
    ours: float
    paper: float

    @property
    def difference(self) -> float:
        """ours - paper."""
        return self.ours - self.paper

    def within(self, tolerance: float) -> bool:
        """Whether |ours - paper| <= tolerance."""
        return abs(self.difference) <= tolerance


def compare_with_paper(
    ours: Table1,
    paper: Mapping[str, Mapping[str, Mapping[str, float]]],
    coefficient: str = "pearson",
) -> list[CellComparison]:
    """Pair each cell the paper prints with ours (cells only one side has are skipped).

    Args:
        ours: a ``table1`` result.
        paper: ``{space: {part: {method: value}}}``, e.g.
            ``kdnas.paper.paper_figures()["table1_pearson_lf_vs_hf"]``.
        coefficient: which of ``CORRELATIONS`` to compare.
    """
    if coefficient not in CORRELATIONS:
        raise ValueError(f"unknown coefficient {coefficient!r}; valid: {', '.join(CORRELATIONS)}")
    cells = []
    for space, by_part in paper.items():
        if space.startswith("_"):
            continue
        for part, by_method in by_part.items():
            for method, value in by_method.items():
                mine = ours.get(space, {}).get(part, {}).get(method)
                if mine is not None:
                    cells.append(CellComparison(space, part, method, mine[coefficient], value))
    return cells
