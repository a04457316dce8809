"""Report folders: a JSON summary and PNG plots (search trajectory, low vs high fidelity)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kdnas.core import Architecture, Fidelity
from kdnas.store import StoredEvaluation

if TYPE_CHECKING:
    from kdnas.spaces import SearchSpace

__all__ = [
    "evaluation_rows",
    "lf_hf_pairs",
    "plot_lf_vs_hf",
    "plot_trajectory",
    "trajectory",
    "write_json",
]


def _clean(value: Any) -> Any:
    """JSON-ready: NaN and infinities become None, tuples lists, numpy scalars Python ones."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented, standard JSON (no NaN literals)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(payload), indent=2, allow_nan=False) + "\n")
    return path


def evaluation_rows(
    evaluations: Sequence[StoredEvaluation], space: SearchSpace | None = None
) -> list[dict[str, Any]]:
    """One JSON-ready dict per evaluation, in tell order."""
    rows = []
    for e in evaluations:
        result = e.result
        rows.append(
            {
                "trial": e.trial_id,
                "arch_key": e.arch.key(),
                "arch": space.describe(e.arch) if space is not None else e.arch.to_json(),
                "fidelity": result.fidelity.label(),
                "part": result.fidelity.part,
                "method": result.fidelity.method,
                "epochs": result.fidelity.epochs,
                "status": result.status,
                "valid_acc": result.valid_acc,
                "test_acc": result.test_acc,
                "cost_s": result.cost_s,
                "params": result.metrics.get("params"),
                "subset_hash": result.info.get("subset_hash"),
                "reused_from": result.info.get("reused_from"),
            }
        )
    return rows


def trajectory(evaluations: Sequence[StoredEvaluation], high: Fidelity) -> list[dict[str, float]]:
    """After each evaluation: summed seconds so far, and the incumbent at high fidelity.

    The incumbent is the high-fidelity evaluation with the best validation accuracy; its test
    accuracy is what a user would get if the search stopped there.
    """
    spent = 0.0
    best_valid, best_test = math.nan, math.nan
    points = []
    for e in evaluations:
        spent += e.result.cost_s
        r = e.result
        if r.fidelity == high and r.ok and not (r.valid_acc <= best_valid):
            best_valid, best_test = r.valid_acc, r.test_acc
        points.append({"seconds": spent, "best_valid_acc": best_valid, "best_test_acc": best_test})
    return points


def lf_hf_pairs(
    evaluations: Sequence[StoredEvaluation], low: Fidelity, high: Fidelity
) -> tuple[list[Architecture], np.ndarray, np.ndarray]:
    """Architectures evaluated (ok) at both fidelities, their LF valid and HF test accuracy."""
    lf: dict[str, float] = {}
    hf: dict[str, float] = {}
    archs: dict[str, Architecture] = {}
    for e in evaluations:
        r = e.result
        if not r.ok:
            continue
        if r.fidelity == low:
            lf.setdefault(e.arch.key(), r.valid_acc)
        elif r.fidelity == high:
            hf.setdefault(e.arch.key(), r.test_acc)
        archs[e.arch.key()] = e.arch
    keys = [k for k in hf if k in lf]
    return (
        [archs[k] for k in keys],
        np.array([lf[k] for k in keys], dtype=float),
        np.array([hf[k] for k in keys], dtype=float),
    )


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_trajectory(
    evaluations: Sequence[StoredEvaluation], high: Fidelity, path: Path, title: str
) -> Path:
    """PNG: every evaluation's validation accuracy against the summed seconds, and the
    high-fidelity incumbent's validation and test accuracy as steps."""
    plt = _pyplot()
    points = trajectory(evaluations, high)
    seconds = np.array([p["seconds"] for p in points])
    figure, axes = plt.subplots(figsize=(7, 4.2))
    by_fidelity: dict[str, list[tuple[float, float]]] = {}
    for e, x in zip(evaluations, seconds, strict=True):
        if e.result.ok:
            by_fidelity.setdefault(e.result.fidelity.label(), []).append((x, e.result.valid_acc))
    for label, values in by_fidelity.items():
        xs, ys = zip(*values, strict=True)
        axes.scatter(xs, ys, s=18, alpha=0.7, label=f"evaluation at {label}")
    for key, style, name in (
        ("best_valid_acc", "-", "incumbent valid (HF)"),
        ("best_test_acc", "--", "incumbent test (HF)"),
    ):
        values = np.array([p[key] for p in points])
        if np.isfinite(values).any():
            axes.step(seconds, values, style, where="post", label=name)
    axes.set_xlabel("summed evaluation time (s)")
    axes.set_ylabel("accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_lf_vs_hf(
    series: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: Path, title: str
) -> Path:
    """PNG scatter of low-fidelity validation vs high-fidelity test accuracy.

    Args:
        series: label -> (LF valid accuracies, HF test accuracies, Spearman correlation).
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    for label, (lf, hf, rho) in series.items():
        rho_text = "n/a" if not math.isfinite(rho) else f"{rho:+.2f}"
        axes.scatter(lf, hf, s=28, alpha=0.8, label=f"{label} (Spearman {rho_text})")
    axes.set_xlabel("low-fidelity validation accuracy")
    axes.set_ylabel("high-fidelity test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
