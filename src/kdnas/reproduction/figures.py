"""The paper's figures from the benchmark, as PNG files (matplotlib, Agg backend).

- Figure 1: high-fidelity test accuracy histogram and accuracy vs parameters, per space.
- Figures 3 and 4: Algorithm 1's chosen test accuracy vs n_lf (MobileNetV2, ShuffleNetV2).
- Figure 5: Algorithm 2's time to the optimum vs n_lf, against GP-UCB at high fidelity only.
- Anytime curves: the incumbent's high-fidelity test accuracy vs seconds, for GP-UCB at high
  fidelity only, random search and Algorithm 2.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from kdnas.replay.arrays import SpaceArrays, cell_rng
from kdnas.replay.runs import algorithm2_times, anytime_curve, gp_ucb_hf_times
from kdnas.reproduction.table2 import algorithm1_choices

__all__ = ["FIGURE_NAMES", "figure_steps", "make_figures"]

logger = logging.getLogger(__name__)

#: File names written by ``make_figures`` (without the .png suffix).
FIGURE_NAMES: tuple[str, ...] = (
    "figure1_accuracy",
    "figure3_alg1_mobilenet",
    "figure4_alg1_shufflenet",
    "figure5_alg2",
    "anytime",
)

_NLF_ALG1 = (5, 10, 20, 30, 50, 100, 200, 300)
_NLF_ALG2 = (3, 5, 10, 20, 30)
_ALG2_METHODS = ("nokd", "kd", "attention", "nst")
_ANYTIME_FIDELITIES = (("kd", 27), ("nst", 27))
_TITLES = {"mobilenet": "MobileNetV2 space", "shufflenet": "ShuffleNetV2 space"}


def _nlf_alg1(size: int) -> list[int]:
    return [n for n in _NLF_ALG1 if n <= size]


def figure_steps(spaces: Mapping[str, SpaceArrays]) -> int:
    """Progress steps ``make_figures`` reports."""
    steps = 0
    for arrays in spaces.values():
        methods = {m for m, _ in arrays.low}
        parts = {p for _, p in arrays.low}
        steps += len(methods) * len(parts)  # Figures 3/4: one step per (method, part)
        steps += sum((m, p) in arrays.low for m in _ALG2_METHODS for p in (27, 9))
        steps += 1  # anytime
    return steps


def make_figures(
    spaces: Mapping[str, SpaceArrays],
    out_dir: Path,
    runs: int = 100,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> list[Path]:
    """Compute and write every figure; returns the PNG paths.

    Args:
        spaces: the benchmark's spaces as ``SpaceArrays``.
        out_dir: folder for the PNG files (created if needed).
        runs: simulated runs per point.
        seed: master seed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def save(fig: object, name: str) -> None:
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=90, bbox_inches="tight")  # type: ignore[attr-defined]
        plt.close(fig)  # type: ignore[arg-type]
        written.append(path)

    # Figure 1.
    fig, axes = plt.subplots(2, len(spaces), figsize=(5 * len(spaces), 7), squeeze=False)
    for col, (space, arrays) in enumerate(spaces.items()):
        acc = 100 * arrays.hf_test
        axes[0, col].hist(acc, bins=20, color="tab:blue")
        axes[0, col].axvline(acc.max(), color="red", label="best in space")
        axes[0, col].set(
            title=_TITLES.get(space, space), xlabel="test accuracy, %", ylabel="count"
        )
        axes[0, col].legend()
        if arrays.parameters is not None:
            axes[1, col].scatter(arrays.parameters / 1e6, acc, s=8)
            axes[1, col].set(xlabel="parameters, millions", ylabel="test accuracy, %")
    save(fig, "figure1_accuracy")

    # Figures 3 and 4.
    for space, name in (
        ("mobilenet", "figure3_alg1_mobilenet"),
        ("shufflenet", "figure4_alg1_shufflenet"),
    ):
        if space not in spaces:
            continue
        arrays = spaces[space]
        parts = sorted({p for _, p in arrays.low}, reverse=True)
        methods = sorted({m for m, _ in arrays.low})
        fig, axes = plt.subplots(1, len(parts), figsize=(5 * len(parts), 4), squeeze=False)
        grid = _nlf_alg1(arrays.size)
        for col, part in enumerate(parts):
            ax = axes[0, col]
            for method in methods:
                if (method, part) not in arrays.low:
                    continue
                means = []
                for n_lf in grid:
                    rng = cell_rng(seed, "figure_alg1", space, part, method, n_lf)
                    chosen = algorithm1_choices(arrays, method, part, runs, n_lf, rng)
                    means.append(100 * arrays.hf_test[chosen].mean())
                ax.plot(grid, means, marker="o", ms=3, label=method)
                if progress is not None:
                    progress(f"{space} Algorithm 1 vs n_lf, 1/{part} {method}")
            ax.axhline(100 * arrays.hf_test.max(), color="red")
            ax.set(
                xscale="log",
                title=f"{_TITLES.get(space, space)}, 1/{part}",
                xlabel="n_lf",
                ylabel="test accuracy of the choice, %",
            )
        axes[0, -1].legend(fontsize=7)
        save(fig, name)

    # Figure 5.
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 4), squeeze=False)
    for col, (space, arrays) in enumerate(spaces.items()):
        ax = axes[0, col]
        for part in (27, 9):
            for method in _ALG2_METHODS:
                if (method, part) not in arrays.low:
                    continue
                means = []
                for n_lf in _NLF_ALG2:
                    rng = cell_rng(seed, "figure_alg2", space, part, method, n_lf)
                    times = algorithm2_times(arrays, method, part, runs, n_lf, rng)
                    means.append(float(np.mean(times)))
                ax.plot(_NLF_ALG2, means, marker="o", ms=3, label=f"1/{part} {method}")
                if progress is not None:
                    progress(f"{space} Algorithm 2 vs n_lf, 1/{part} {method}")
        hf = gp_ucb_hf_times(arrays, runs, cell_rng(seed, "figure_alg2", space, "hf_only"))
        ax.axhline(float(np.mean(hf)), color="red", label="high fidelity only")
        ax.set(title=_TITLES.get(space, space), xlabel="n_lf", ylabel="seconds to the optimum")
        ax.legend(fontsize=7)
    save(fig, "figure5_alg2")

    # Anytime curves.
    fig, axes = plt.subplots(1, len(spaces), figsize=(5 * len(spaces), 4), squeeze=False)
    for col, (space, arrays) in enumerate(spaces.items()):
        ax = axes[0, col]
        grid_s = np.linspace(0, 4 * float(np.median(arrays.hf_time)) * 10, 200)
        rng = cell_rng(seed, "anytime", space, "hf_only")
        _, order = gp_ucb_hf_times(arrays, runs, rng, return_order=True)
        ax.plot(grid_s, 100 * anytime_curve(arrays, order, grid_s)[1], label="GP-UCB, HF only")
        perm = np.argsort(
            cell_rng(seed, "anytime", space, "random").random((runs, arrays.size)), 1
        )
        ax.plot(grid_s, 100 * anytime_curve(arrays, perm, grid_s)[1], label="random search")
        for method, part in _ANYTIME_FIDELITIES:
            if (method, part) not in arrays.low:
                continue
            rng = cell_rng(seed, "anytime", space, part, method)
            _, low, high = algorithm2_times(
                arrays, method, part, runs, 10, rng, return_orders=True
            )
            cost = arrays.low_column(method, part, "wall_time")
            offset = cost[low].sum(1)
            curve = anytime_curve(arrays, high, grid_s, offset)[1]
            ax.plot(grid_s, 100 * curve, label=f"Algorithm 2, 1/{part} {method}")
        ax.axhline(100 * arrays.hf_test[arrays.optimum], color="red", lw=0.8)
        ax.set(
            title=_TITLES.get(space, space),
            xlabel="seconds",
            ylabel="incumbent's test accuracy, %",
        )
        ax.legend(fontsize=7)
        if progress is not None:
            progress(f"{space} anytime curves")
    save(fig, "anytime")
    return written
