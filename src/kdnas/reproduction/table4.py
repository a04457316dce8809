"""The paper's Table 4: seconds to the optimum, per space and optimizer.

Protocol (from the paper's notebook, checked against its tables): GP-UCB and Algorithm 2 fit
``valid_acc`` with mean-centred targets and 3 restarts (``GPConfig.paper_gp_ucb()``), beta =
0.5. Algorithm 2's low-fidelity phase is ``n_lf`` points in all (one random, then UCB); its
high-fidelity phase starts at the best of them. Random search evaluates a random order of the
space at high fidelity. A run's time is its time to the optimum (``kdnas.replay.runs``).

The rows are an explicit list, ``table4_rows()``: the paper's three (batched, on
``kdnas.replay.engine``), then one row for every optimizer of ``kdnas.search.registry`` that
the paper's rows do not already cover, each run through the evaluation loop on the benchmark.
Registering an optimizer is what puts it here; nothing is added by importing a module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kdnas.replay.arrays import SpaceArrays, cell_rng
from kdnas.replay.benchmark_requests import applies_to, optimizer_on_arrays
from kdnas.replay.runs import (
    algorithm2_times,
    gp_ucb_hf_times,
    random_search_times,
    run_on_arrays,
    time_to_optimum,
)
from kdnas.reproduction.statistics import CellStats
from kdnas.search.gp import GPConfig
from kdnas.search.pool import Budget
from kdnas.search.registry import OptimizerEntry, registered_optimizers

__all__ = [
    "PAPER_ROWS",
    "Table4Row",
    "Table4Settings",
    "comparison_seeds",
    "run_table4",
    "table4_rows",
    "table4_steps",
]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Table4Settings:
    """Settings shared by the rows of Table 4.

    Args:
        runs: simulated runs per cell (the paper: 100).
        n_lf: Algorithm 2's low-fidelity evaluations (the paper: 10).
        methods, parts: Algorithm 2's low fidelities.
        beta: UCB weight of the posterior std.
        gp: the GP of every GP-UCB (default: the paper's, mean-centred targets).
        seed: master seed; each cell draws an independent stream from it.
    """

    runs: int = 100
    n_lf: int = 10
    methods: tuple[str, ...] = ("nokd", "kd", "attention", "nst")
    parts: tuple[int, ...] = (27, 9)
    beta: float = 0.5
    gp: GPConfig = field(default_factory=GPConfig.paper_gp_ucb)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.runs < 1 or self.n_lf < 1:
            raise ValueError("Table4Settings needs runs >= 1 and n_lf >= 1")


#: A Table 4 row: (space arrays, settings, progress) -> {column: per-run seconds} where a column
#: is a name ("hf_only") or a nested {part: {method: seconds}} mapping.
Table4Row = Callable[
    [SpaceArrays, Table4Settings, "Progress | None"],
    Mapping[str, "np.ndarray | Mapping[str, Mapping[str, np.ndarray]]"],
]


def _row_hf_only(
    arrays: SpaceArrays, settings: Table4Settings, progress: Progress | None
) -> dict[str, np.ndarray]:
    rng = cell_rng(settings.seed, "table4", arrays.space, "hf_only")
    times = gp_ucb_hf_times(arrays, settings.runs, rng, settings.beta, settings.gp)
    if progress is not None:
        progress(f"{arrays.space} GP-UCB high fidelity only")
    return {"hf_only": np.asarray(times)}


def _row_random_search(
    arrays: SpaceArrays, settings: Table4Settings, progress: Progress | None
) -> dict[str, np.ndarray]:
    rng = cell_rng(settings.seed, "table4", arrays.space, "random_search")
    times = random_search_times(arrays, settings.runs, rng)
    if progress is not None:
        progress(f"{arrays.space} random search")
    return {"random_search": times}


def _row_algorithm2(
    arrays: SpaceArrays, settings: Table4Settings, progress: Progress | None
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for part in settings.parts:
        for method in settings.methods:
            if (method, part) not in arrays.low:
                continue
            rng = cell_rng(settings.seed, "table4", arrays.space, part, method)
            out.setdefault(str(part), {})[method] = np.asarray(
                algorithm2_times(
                    arrays,
                    method,
                    part,
                    settings.runs,
                    settings.n_lf,
                    rng,
                    settings.beta,
                    settings.gp,
                )
            )
            if progress is not None:
                progress(f"{arrays.space} Algorithm 2, 1/{part} {method}")
    return {"algorithm2": out}


#: The paper's own rows, computed by the batched engine, in print order.
PAPER_ROWS: dict[str, Table4Row] = {
    "hf_only": _row_hf_only,
    "algorithm2": _row_algorithm2,
    "random_search": _row_random_search,
}

#: Progress steps a paper row reports per space (for progress bars).
_PAPER_ROW_STEPS: dict[str, Callable[[SpaceArrays, Table4Settings], int]] = {
    "hf_only": lambda arrays, settings: 1,
    "random_search": lambda arrays, settings: 1,
    "algorithm2": lambda arrays, settings: sum(
        (m, p) in arrays.low for m in settings.methods for p in settings.parts
    ),
}


def table4_rows() -> dict[str, OptimizerEntry | str]:
    """Table 4's rows in print order: the paper's three by name, then every optimizer of the
    registry (``kdnas.search.registry.registered_optimizers``) with ``table4`` set, by its
    registry name."""
    rows: dict[str, OptimizerEntry | str] = {name: name for name in PAPER_ROWS}
    for name, entry in registered_optimizers().items():
        if entry.table4:
            rows[name] = entry
    return rows


def _steps(row: OptimizerEntry | str, arrays: SpaceArrays, settings: Table4Settings) -> int:
    if isinstance(row, str):
        return _PAPER_ROW_STEPS[row](arrays, settings)
    return int(applies_to(row, arrays))


def _build(
    row: OptimizerEntry | str,
    arrays: SpaceArrays,
    settings: Table4Settings,
    progress: Progress | None,
) -> Mapping[str, Any]:
    if isinstance(row, str):
        return PAPER_ROWS[row](arrays, settings, progress)
    return _row_of_optimizer(row, arrays, settings, progress)


def table4_steps(spaces: Mapping[str, SpaceArrays], settings: Table4Settings) -> int:
    """Progress steps ``run_table4`` will report."""
    rows = table4_rows()
    return sum(_steps(row, a, settings) for a in spaces.values() for row in rows.values())


def run_table4(
    spaces: Mapping[str, SpaceArrays],
    settings: Table4Settings | None = None,
    rows: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> dict[str, dict[str, Any]]:
    """Table 4: average seconds to reach the optimum, per space and row.

    Returns:
        {space: {column: CellStats}} with nested {part: {method: CellStats}} columns, e.g.
        ``{"mobilenet": {"hf_only": ..., "random_search": ..., "27": {"kd": ...}}}``.
    """
    settings = settings or Table4Settings()
    every = table4_rows()
    names = list(every) if rows is None else list(rows)
    for name in names:
        if name not in every:
            raise ValueError(f"unknown Table 4 row {name!r}; valid: {', '.join(every)}")
    out: dict[str, dict[str, Any]] = {}
    for space, arrays in spaces.items():
        cells: dict[str, Any] = {}
        for name in names:
            for column, value in _build(every[name], arrays, settings, progress).items():
                if isinstance(value, Mapping):
                    # Columns per low fidelity merge under their part keys.
                    target = cells if column == "algorithm2" else cells.setdefault(column, {})
                    for part, by_method in value.items():
                        for method, times in by_method.items():
                            target.setdefault(part, {})[method] = CellStats.of(times)
                else:
                    cells[column] = CellStats.of(value)
        out[space] = cells
    return out


def comparison_seeds(settings: Table4Settings) -> list[int]:
    """Seeds of the registered optimizers' runs: from 1000 on (seeds 0-99 chose the defaults
    of the optimizers beyond the paper, so the table reports fresh ones)."""
    return [1000 + settings.seed * 1_000_003 + r for r in range(settings.runs)]


def _row_of_optimizer(
    entry: OptimizerEntry,
    arrays: SpaceArrays,
    settings: Table4Settings,
    progress: Progress | None,
) -> dict[str, np.ndarray]:
    """A registered optimizer's row: its runs through the evaluation loop on the benchmark,
    charged the stored wall times, until the optimum is evaluated at high fidelity; with the
    optimizer's own beta (not the paper's 0.5 of ``settings.beta``)."""
    if not applies_to(entry, arrays):
        return {}
    candidates = arrays.placeholder_candidates()
    budget = Budget(max_cost_s=1e6)
    times = np.array(
        [
            time_to_optimum(
                arrays,
                run_on_arrays(
                    arrays, optimizer_on_arrays(entry, candidates, arrays, seed, budget)
                ),
            )
            for seed in comparison_seeds(settings)
        ]
    )
    if progress is not None:
        progress(f"{arrays.space} {entry.label}")
    return {entry.label: times}
