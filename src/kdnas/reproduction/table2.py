"""The paper's Table 2: Algorithm 1 on each low fidelity, judged by the chosen architectures.

Protocol (from the paper's notebook, checked against its tables): Algorithm 1 fits the
low-fidelity ``valid_acc`` of ``n_lf`` random architectures with the raw-target GP
(``GPConfig.paper_algorithm1()``) and is judged by the chosen architecture's high-fidelity
``test_acc`` and its percentile in the space (``kdnas.replay.percentile_in_space``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kdnas.core import METHODS
from kdnas.replay import SpaceArrays, cell_rng, percentile_in_space
from kdnas.replay.engine import EngineConfig, simulate_algorithm1
from kdnas.reproduction.statistics import CellStats, two_sample_p_value
from kdnas.search.candidates import random_subsets
from kdnas.search.gp import GPConfig

__all__ = [
    "TABLE2_PARTS",
    "Table2Cell",
    "algorithm1_choices",
    "run_table2",
]

#: Low-fidelity parts of Table 2, in the paper's row order.
TABLE2_PARTS: tuple[int, ...] = (27, 9, 3)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Table2Cell:
    """One (space, part, method) cell of Table 2.

    Attributes:
        percentile: the chosen architectures' percentile in the space (lower is better).
        test_acc: their high-fidelity test accuracy, in percent.
        p_value_vs_nokd: two-sided Student t-test of the per-run test accuracies against the
            same part's no-KD cell (NaN for no-KD itself).
        chosen: [runs] indices of the chosen architectures.
    """

    percentile: CellStats
    test_acc: CellStats
    p_value_vs_nokd: float
    chosen: np.ndarray = field(repr=False)


def algorithm1_choices(
    arrays: SpaceArrays,
    method: str,
    part: int,
    runs: int,
    n_lf: int,
    rng: np.random.Generator,
    gp: GPConfig | None = None,
    engine: EngineConfig | None = None,
) -> np.ndarray:
    """[runs] architectures chosen by Algorithm 1 on one low fidelity."""
    subsets = random_subsets(rng, runs, arrays.size, n_lf)
    valid = arrays.low_column(method, part, "valid_acc")
    return simulate_algorithm1(arrays.features, valid, subsets, gp=gp, engine=engine)


def run_table2(
    spaces: Mapping[str, SpaceArrays],
    runs: int = 1000,
    n_lf: int = 30,
    seed: int = 0,
    parts: Sequence[int] = TABLE2_PARTS,
    methods: Sequence[str] = METHODS,
    progress: Progress | None = None,
) -> dict[str, dict[int, dict[str, Table2Cell]]]:
    """Table 2: Algorithm 1 (``n_lf`` random LF evaluations, raw-target GP) per cell.

    Returns:
        {space: {part: {method: Table2Cell}}}.
    """
    out: dict[str, dict[int, dict[str, Table2Cell]]] = {}
    for space, arrays in spaces.items():
        out[space] = {}
        for part in parts:
            raw: dict[str, np.ndarray] = {}
            for method in methods:
                if (method, part) not in arrays.low:
                    continue
                rng = cell_rng(seed, "table2", space, part, method)
                raw[method] = algorithm1_choices(arrays, method, part, runs, n_lf, rng)
                if progress is not None:
                    progress(f"{space} 1/{part} {method}")
            base = arrays.hf_test[raw["nokd"]] if "nokd" in raw else None
            cells = {}
            for method, chosen in raw.items():
                acc = 100.0 * arrays.hf_test[chosen]
                p_value = math.nan
                if base is not None and method != "nokd":
                    p_value = two_sample_p_value(acc, 100.0 * base)
                cells[method] = Table2Cell(
                    CellStats.of(percentile_in_space(arrays.hf_test, chosen)),
                    CellStats.of(acc),
                    p_value,
                    chosen,
                )
            out[space][part] = cells
    return out
