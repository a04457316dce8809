"""The proxy-prior and screening GP-UCB against HF-only GP-UCB and Algorithm 2, in one run.

For each space of the paper's benchmark this prints the mean seconds to reach the optimum
(with standard errors) of:

- GP-UCB at high fidelity only, with mean-centred targets (the paper's GP) and with today's
  std-scaled targets (the project's engine, ``kdnas.replay.runs``);
- Algorithm 2 (n_lf = 10) at the paper's best cell for that space (MobileNetV2: 1/27 AT,
  ShuffleNetV2: 1/27 KD);
- proxy-prior GP-UCB (``ProxyPriorConfig()``: a zero-cost prior from log
  multiply-adds, no screening; its settings chosen on another draw of sub-spaces by
  ``benchmarks/proxy_prior_grid.py``), the same with a-priori settings, and screening GP-UCB
  (``ProxyPriorConfig.screening()``: 1/3 KD screening), on seeds 1000 on;
- the proxy alone: high-fidelity runs in descending multiply-adds, no model at all;

the speedups against each, t-tests against Algorithm 2, the non-oracle view (the incumbent's
HF test accuracy and valid-accuracy regret after 5,000, 10,000 and 20,000 s), and anytime
curves (mean best HF valid accuracy vs seconds) as PNGs.

The proxy-prior start is deterministic (the highest proxy first), so on a whole space every
seed gives the same time. A second table therefore runs every method on ``--subsets`` random
sub-spaces (2/3 of the architectures each, the optimum being the best of the sub-space), one
run per sub-space, and compares them paired.

    .venv/bin/python benchmarks/multifidelity_speedup.py [--runs 200] [--subsets 200]
        [--out docs/img] [--benchmark PATH] [--json FILE]

--benchmark defaults to $KDNAS_BENCHMARK, else ../shared/data/mf_nas_kd/benchmark.pickle.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from kdnas.bench import TabularBenchmark
from kdnas.paper import best_algorithm2_cell, paper_figures
from kdnas.replay.arrays import SpaceArrays, cell_rng, load_space_arrays
from kdnas.replay.benchmark_requests import simulate_proxy_prior
from kdnas.replay.runs import algorithm2_times, gp_ucb_hf_times
from kdnas.search.gp import GPConfig
from kdnas.search.proxy_prior import ProxyPriorConfig

#: The paper's benchmark: $KDNAS_BENCHMARK, else ../shared beside the checkout.
DEFAULT_BENCHMARK = os.environ.get(
    "KDNAS_BENCHMARK",
    str(Path(__file__).resolve().parents[2] / "shared/data/mf_nas_kd/benchmark.pickle"),
)
BUDGETS_S = (5_000.0, 10_000.0, 20_000.0)

Events = list[list[tuple[float, int]]]


def _events_from_order(
    order: np.ndarray, hf_time: np.ndarray, offset: np.ndarray | None = None
) -> Events:
    """Per run, (elapsed seconds after it, index) of each high-fidelity evaluation."""
    out: Events = []
    for r, row in enumerate(order):
        elapsed = 0.0 if offset is None else float(offset[r])
        run = []
        for i in row[row >= 0]:
            elapsed += float(hf_time[i])
            run.append((elapsed, int(i)))
        out.append(run)
    return out


def _incumbents(arrays: SpaceArrays, events: Events, at_s: Sequence[float]) -> np.ndarray:
    """[R, len(at_s)] index of the incumbent (best HF valid so far) at each time, -1 if none.

    A run stops at the optimum, whose incumbent it stays afterwards.
    """
    out = np.full((len(events), len(at_s)), -1)
    for r, run in enumerate(events):
        best, best_value, k = -1, -math.inf, 0
        for j, t in enumerate(at_s):
            while k < len(run) and run[k][0] <= t:
                i = run[k][1]
                if arrays.hf_valid[i] > best_value:
                    best, best_value = i, arrays.hf_valid[i]
                k += 1
            out[r, j] = best
    return out


def _nonoracle(arrays: SpaceArrays, events: Events) -> list[dict[str, float]]:
    inc = _incumbents(arrays, events, BUDGETS_S)
    rows = []
    for j, budget in enumerate(BUDGETS_S):
        has = inc[:, j] >= 0
        chosen = inc[has, j]
        rows.append(
            {
                "budget_s": budget,
                "with_incumbent": float(has.mean()),
                "test_acc": float(arrays.hf_test[chosen].mean()) if has.any() else math.nan,
                "regret_pp": float(100 * (arrays.hf_valid.max() - arrays.hf_valid[chosen]).mean())
                if has.any()
                else math.nan,
                "found": float((chosen == arrays.optimum).sum() / len(events)),
            }
        )
    return rows


def _curve(arrays: SpaceArrays, events: Events, grid: np.ndarray) -> np.ndarray:
    """Mean incumbent HF valid accuracy on the grid, over the runs that have one."""
    inc = _incumbents(arrays, events, grid)
    values = np.where(inc >= 0, arrays.hf_valid[np.maximum(inc, 0)], np.nan)
    with np.errstate(all="ignore"):
        return np.nanmean(np.where(np.isnan(values).all(0), 0.0, values), 0) * np.where(
            np.isnan(values).all(0), np.nan, 1.0
        )


#: Methods in print order: key -> label.
LABELS = {
    "hf_only_center": "GP-UCB, HF only (paper's GP)",
    "hf_only_standardize": "GP-UCB, HF only (std-scaled)",
    "algorithm2": "Algorithm 2, paper's best cell",
    "screening": "screening GP-UCB, 1/3 KD",
    "proxy_only": "proxy alone (HF by multiply-adds)",
    "proxy_apriori": "proxy-prior GP-UCB, a-priori settings",
    "proxy": "proxy-prior GP-UCB (ours)",
}
OURS = "proxy"
#: The two optimizers of ``kdnas.search.proxy_prior`` measured here.
CONFIGS = {
    "screening": ProxyPriorConfig.screening(),
    # Numbers from least-squares fits on the other space and the paper's beta, nothing tuned.
    "proxy_apriori": ProxyPriorConfig(beta=0.5, proxy_slope=0.016, proxy_slope_std=0.016),
    "proxy": ProxyPriorConfig(),
}


def _proxy_only(arrays: SpaceArrays) -> dict[str, object]:
    """High-fidelity runs in descending multiply-adds until the optimum: the proxy alone."""
    assert arrays.multiply_adds is not None
    order = np.argsort(-arrays.multiply_adds, kind="stable")
    stop = int(np.flatnonzero(order == arrays.optimum)[0])
    events = _events_from_order(order[None, : stop + 1], arrays.hf_time)
    return {"times": np.array([events[0][-1][0]]), "events": events}


def _measure(
    arrays: SpaceArrays, runs: int, seed: int, tag: object = "beyond"
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for norm in ("center", "standardize"):
        gp = dataclasses.replace(GPConfig.paper_gp_ucb(), normalize=norm)
        rng = cell_rng(seed, tag, arrays.space, "hf_only", norm)
        start = time.perf_counter()
        times, order = gp_ucb_hf_times(arrays, runs, rng, gp=gp, return_order=True)
        out[f"hf_only_{norm}"] = {
            "times": np.asarray(times),
            "events": _events_from_order(order, arrays.hf_time),
            "seconds": time.perf_counter() - start,
        }
    part, method = best_algorithm2_cell(arrays.space)
    rng = cell_rng(seed, tag, arrays.space, "alg2", part, method)
    start = time.perf_counter()
    times, low, high = algorithm2_times(arrays, method, part, runs, 10, rng, return_orders=True)
    low_cost = np.where(low >= 0, arrays.low_column(method, part, "wall_time")[low], 0).sum(1)
    out["algorithm2"] = {
        "times": np.asarray(times),
        "events": _events_from_order(high, arrays.hf_time, low_cost),
        "seconds": time.perf_counter() - start,
        "cell": f"1/{part} {method}",
    }
    seeds = range(1000 + seed * 1_000_003, 1000 + seed * 1_000_003 + runs)
    for key, config in CONFIGS.items():
        start = time.perf_counter()
        sim = simulate_proxy_prior(arrays, config, seeds=seeds)
        out[key] = {
            "times": sim.time_to_optimum_s,
            "events": [list(e) for e in sim.high_events],
            "seconds": time.perf_counter() - start,
            "screens": float(sim.low_counts.mean()),
        }
    start = time.perf_counter()
    out["proxy_only"] = _proxy_only(arrays) | {"seconds": time.perf_counter() - start}
    return out


def _subspaces(arrays: SpaceArrays, count: int, seed: int) -> dict[str, np.ndarray]:
    """[count] seconds to the optimum of each method, one run per random 2/3 sub-space."""
    rng = cell_rng(seed, "subspaces", arrays.space)
    keep = (2 * arrays.size) // 3
    out: dict[str, list[float]] = {key: [] for key in LABELS}
    for k in range(count):
        rows = np.sort(rng.choice(arrays.size, keep, replace=False))
        measured = _measure(arrays.subset(rows), 1, seed * 100_003 + k, tag=("subspace", k))
        for key in LABELS:
            out[key].append(float(np.asarray(measured[key]["times"])[0]))
    return {key: np.asarray(values) for key, values in out.items()}


def _plot(arrays: SpaceArrays, measured: dict[str, dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, 40_000, 401)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    labels = {
        "hf_only_center": "GP-UCB, HF only (paper's GP)",
        "algorithm2": f"Algorithm 2, {measured['algorithm2']['cell']}",
        "screening": "screening GP-UCB",
        "proxy": "proxy-prior GP-UCB (ours)",
    }
    for key, label in labels.items():
        curve = _curve(arrays, measured[key]["events"], grid)  # type: ignore[arg-type]
        ax.plot(grid, 100 * curve, label=label, lw=2.0 if key == OURS else 1.2)
    ax.axhline(100 * arrays.hf_valid.max(), color="grey", lw=0.8, ls="--", label="optimum")
    ax.set_xlabel("seconds (benchmark wall_time, LF + HF)")
    ax.set_ylabel("best HF valid accuracy so far (%)")
    ax.set_title(f"{arrays.space}: mean over runs that have an HF result")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


def _git_sha() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--subsets", type=int, default=200, help="random 2/3 sub-spaces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="folder for beyond_<space>.png")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    bench = TabularBenchmark.load(args.benchmark)
    paper = paper_figures()["table4_mf_avg_wall_time_to_optimum_seconds"]
    summary: dict[str, object] = {"runs": args.runs, "subsets": args.subsets, "git": _git_sha()}
    for key, config in CONFIGS.items():
        summary[f"config_{key}"] = {
            k: (v.label() if hasattr(v, "label") else v)
            for k, v in dataclasses.asdict(config).items()
        }
    for space in ("mobilenet", "shufflenet"):
        arrays = load_space_arrays(bench, space, Path(args.benchmark).parent)
        measured = _measure(arrays, args.runs, args.seed)
        ours = np.asarray(measured[OURS]["times"], dtype=float)
        alg2 = np.asarray(measured["algorithm2"]["times"], dtype=float)
        part, method = best_algorithm2_cell(space)
        paper_alg2 = float(paper[space][str(part)][method])
        print(f"\n== {space}: seconds to the optimum, whole space, {args.runs} runs each ==")
        print(f"{'':40s}{'mean':>9s}{'±se':>7s}{'ours faster by':>16s}{'sim s':>7s}")
        rows = {}
        for key, label in LABELS.items():
            t = np.asarray(measured[key]["times"], dtype=float)
            mean, se = _mean_se(t)
            ratio = mean / ours.mean()
            if key == "algorithm2":
                label = f"Algorithm 2, {measured[key]['cell']}"
            print(
                f"{label:40s}{mean:9,.0f}{se:7,.0f}{ratio:15.2f}x{measured[key]['seconds']:7.1f}"
            )
            rows[key] = {"mean_s": mean, "se_s": se, "speedup_of_ours": ratio}
        for label, ref in (
            ("paper HF-only GP-UCB", float(paper[space]["hf_only"])),
            (f"paper Algorithm 2 1/{part} {method}", paper_alg2),
        ):
            print(f"{label:40s}{ref:9,.0f}{'':7s}{ref / ours.mean():15.2f}x")
        # Ours may be one value repeated (a deterministic start); the test is then that of
        # Algorithm 2's runs against that value.
        if ours.std() > 0:
            test = stats.ttest_ind(ours, alg2, equal_var=False)
            kind = "Welch"
        else:
            test = stats.ttest_1samp(alg2, float(ours[0]))
            kind = "one-sample (Algorithm 2's runs vs ours, which is the same in every run)"
        print(
            f"ours vs measured Algorithm 2: {kind} t = {test.statistic:.2f}, "
            f"p = {test.pvalue:.2g}; ours vs the paper's Algorithm 2 mean {paper_alg2:,.0f} s: "
            f"{paper_alg2 / ours.mean():.2f}x"
        )
        print(
            "non-oracle: incumbent after a budget (share of runs with an HF result; its HF "
            "test acc %; regret in HF valid acc points; share that hold the optimum)"
        )
        nonoracle = {}
        for key in ("hf_only_center", "algorithm2", "screening", "proxy"):
            table = _nonoracle(arrays, measured[key]["events"])  # type: ignore[arg-type]
            nonoracle[key] = table
            cells = "  ".join(
                f"{row['budget_s']:>6,.0f}s: {row['with_incumbent']:4.0%} "
                f"{100 * row['test_acc']:5.2f} {row['regret_pp']:5.2f} {row['found']:4.0%}"
                for row in table
            )
            print(f"  {key:16s}{cells}")
        summary[space] = {
            "rows": rows,
            "paper": {"hf_only": float(paper[space]["hf_only"]), "algorithm2_best": paper_alg2},
            "test_vs_alg2": {"kind": kind, "t": float(test.statistic), "p": float(test.pvalue)},
            "nonoracle": nonoracle,
        }
        if args.subsets:
            sub = _subspaces(arrays, args.subsets, args.seed)
            print(
                f"-- {space}: {args.subsets} random sub-spaces of 2/3 of the architectures, one "
                "run each (paired) --"
            )
            print(f"{'':40s}{'mean':>9s}{'±se':>7s}{'ours faster by':>16s}{'paired t, p':>16s}")
            sub_rows = {}
            for key, label in LABELS.items():
                mean, se = _mean_se(sub[key])
                ratio = mean / sub[OURS].mean()
                paired = stats.ttest_rel(sub[OURS], sub[key]) if key != OURS else None
                cell = "" if paired is None else f"{paired.statistic:7.2f} {paired.pvalue:8.2g}"
                print(f"{label:40s}{mean:9,.0f}{se:7,.0f}{ratio:15.2f}x{cell:>16s}")
                sub_rows[key] = {
                    "mean_s": mean,
                    "se_s": se,
                    "speedup_of_ours": ratio,
                    "paired_p": None if paired is None else float(paired.pvalue),
                }
            summary[space]["subspaces"] = sub_rows  # type: ignore[index]
        if args.out:
            path = Path(args.out) / f"beyond_{space}.png"
            _plot(arrays, measured, path)
            print(f"wrote {path}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
