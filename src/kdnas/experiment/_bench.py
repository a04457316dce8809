"""Build a tabular benchmark by training a grid: architectures x parts x methods."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kdnas.core import METHODS, Architecture, Fidelity
from kdnas.execute import ExecutionSummary, RayExecutor, SerialExecutor
from kdnas.experiment._grid import GridSearch
from kdnas.experiment._search import teacher_cache_dir_for, teacher_dir_for
from kdnas.experiment._settings import (
    SearchSettings,
    build_objective,
    open_search_run,
    prepare_search,
)
from kdnas.store import SQLiteStore

__all__ = ["BenchGrid", "grid_items", "run_bench_build"]


@dataclass(frozen=True)
class BenchGrid:
    """What ``kdnas bench build`` trains.

    Args:
        settings: space, dataset, seed, epochs and width of the training runs (the search
            fields of ``SearchSettings`` are ignored).
        parts: the low-fidelity parts, e.g. (27, 9, 3).
        methods: the loss methods, e.g. ("nokd", "kd", "nst").
        archs: the architectures, in benchmark index order.
        high_fidelity: also train every architecture at part 1 with "nokd".
    """

    settings: SearchSettings
    parts: tuple[int, ...]
    methods: tuple[str, ...]
    archs: tuple[Architecture, ...] = field(default=())
    high_fidelity: bool = True

    def __post_init__(self) -> None:
        if not self.parts or any(not isinstance(p, int) or p < 1 for p in self.parts):
            raise ValueError(f"parts must be integers >= 1, got {self.parts!r}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(
                f"unknown method(s) {', '.join(unknown) or '(none given)'}; valid methods: "
                f"{', '.join(METHODS)}"
            )
        object.__setattr__(self, "parts", tuple(self.parts))
        object.__setattr__(self, "methods", tuple(self.methods))
        object.__setattr__(self, "archs", tuple(self.archs))


def grid_items(
    grid: BenchGrid, archs: Sequence[Architecture]
) -> list[tuple[Architecture, Fidelity]]:
    """Every (architecture, fidelity) of the grid, architecture-major; duplicates dropped."""
    settings = grid.settings
    items: dict[tuple[Architecture, Fidelity], None] = {}
    for arch in archs:
        for part in grid.parts:
            for method in grid.methods:
                epochs = settings.hf_epochs if part == 1 else settings.lf_epochs
                items[(arch, Fidelity(part=part, method=method, epochs=epochs))] = None
        if grid.high_fidelity:
            items[(arch, settings.high_fidelity)] = None
    return list(items)


def run_bench_build(
    grid: BenchGrid,
    store_path: str | os.PathLike[str],
    *,
    run_id: str = "bench",
    executor: SerialExecutor | RayExecutor | None = None,
    callbacks: Sequence[object] = (),
) -> ExecutionSummary:
    """Train the grid into the store (resumable: finished cells are never retrained)."""

    if not run_id:
        raise ValueError("the run id must be a non-empty string")
    settings = grid.settings
    prepared = prepare_search(settings, grid.archs)
    data, archs, config = prepared.data, list(prepared.archs), dict(prepared.config)
    for name in ("algorithm", "n_lf", "beta", "method", "part", "low_fidelity"):
        config.pop(name, None)
    config["grid"] = {
        "parts": list(grid.parts),
        "methods": list(grid.methods),
        "high_fidelity": grid.high_fidelity,
    }
    with SQLiteStore(Path(store_path)) as store:
        # Checked before the teacher folder is made or anything trains.
        config = open_search_run(store, run_id, config)
        objective = build_objective(
            settings, data, teacher_dir_for(store_path), teacher_cache_dir_for(store_path)
        )
        return (executor or SerialExecutor()).run(
            GridSearch(grid_items(grid, archs)),
            objective,
            store,
            run_id=run_id,
            config=config,
            callbacks=callbacks,
        )
