"""The field's leaderboard: kdnas's optimizers and the standard multi-fidelity optimizers, from
their own libraries, on the paper's benchmark through kdnas's simulated clock.

Every run goes through the one evaluation loop (``kdnas.search.loop``) with 1 or 4 simulated
asynchronous workers on ``ArraysObjective`` (each evaluation charged its stored training
seconds; the peers' low rungs are separate trainings). A run ends when the optimum (best
high-fidelity valid accuracy) has been evaluated at high fidelity, when the optimizer has
nothing left to ask, or when the clock passes ``--horizon-s``.

Cells: {MobileNetV2, ShuffleNetV2} x {1, 4 workers} x {whole space, random sub-spaces of 2/3
of the architectures (one per run, the same sub-spaces for every optimizer)}. Metrics per cell:
mean seconds to the optimum (runs that never reach it are counted at the horizon, and the
share that reached it is printed), and the non-oracle incumbent (best high-fidelity valid
accuracy so far, full-data results only) at 5,000, 10,000 and 20,000 s: regret in points and
the share of runs holding the optimum.

Incumbent regrets are averaged over the runs that have a full-data result by then (the
share is given when not all do); "holds" counts over all runs.

Rows: kdnas's random search, HF-only GP-UCB (the paper's GP), Algorithm 2 at the paper's best
cell (n_lf 10), proxy-prior GP-UCB; the zero-cost baseline (multiply-adds order, successive
halving over the top 27); Optuna TPE with its Hyperband pruner (KD method: nokd, the paper's
best for the space, or Optuna's categorical choice among every method), TPE with its
successive-halving pruner (best method); SMAC's multi-fidelity facade (nokd and best; fewer
runs: SMAC's random forest makes its runs ~100x slower to simulate).

    .venv/bin/python benchmarks/field_comparison.py [--runs 100] [--optuna-runs 100]
        [--smac-runs 100] [--horizon-s 40000] [--jobs 2] [--ten-minutes] [--out docs/img]
        [--markdown FILE] [--json FILE]

The full protocol (100 runs in every cell, the default) takes hours on 2 cores, nearly all of
it in SMAC (~5-15 s of CPU per simulated run) and Optuna (~1 s per run, its trial bookkeeping);
``--ten-minutes`` keeps 100 runs per cell for kdnas's rows and the zero-cost baseline and runs
Optuna 20 times and SMAC twice per cell.

--benchmark defaults to $KDNAS_BENCHMARK (in this checkout:
../shared/data/mf_nas_kd/benchmark.pickle).
"""

from __future__ import annotations

import os

# One thread per process: the runs are many small fits, spread over --jobs processes.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from kdnas.core import Fidelity, Optimizer  # noqa: E402
from kdnas.paper import best_algorithm2_cell  # noqa: E402
from kdnas.search import (  # noqa: E402
    GPUCB,
    InProcessWorkers,
    MultiFidelityGPUCB,
    RandomSearch,
    ScreeningConfig,
    ScreeningGPUCB,
    run_loop,
)
from kdnas.search.candidates import CandidateSet  # noqa: E402
from kdnas.search.field import (  # noqa: E402
    OptunaMultiFidelity,
    SMACMultiFidelity,
    SyneTuneMultiFidelity,
    ZeroCostSuccessiveHalving,
    peer_versions,
)
from kdnas.search.harness import Trace, TraceStep  # noqa: E402
from kdnas.search.reproduction import (  # noqa: E402
    ArraysObjective,
    SpaceArrays,
    cell_rng,
    load_space_arrays,
)

BUDGETS_S = (5_000.0, 10_000.0, 20_000.0)
SPACES = ("mobilenet", "shufflenet")

Factory = Callable[[CandidateSet, SpaceArrays, int], Optimizer]


def _ladder_methods(arrays: SpaceArrays) -> tuple[str, ...]:
    """Methods present at every low rung of the ladder (the categorical choice)."""
    return tuple(
        sorted({m for m, _ in arrays.low if all((m, p) in arrays.low for p in (27, 9, 3))})
    )


def _proxy(arrays: SpaceArrays) -> np.ndarray:
    assert arrays.multiply_adds is not None
    return np.log(arrays.multiply_adds)


def _best(arrays: SpaceArrays) -> str:
    """The method of the paper's best Algorithm 2 cell (its Table 4): every ladder is also
    run with it."""
    return best_algorithm2_cell(arrays.space)[1]


#: Row key -> (label, factory). Labels name the library where the algorithm is a peer's.
ROWS: dict[str, tuple[str, Factory]] = {
    "random": ("kdnas random search (HF)", lambda c, a, s: RandomSearch(c, seed=s)),
    "gp_ucb_hf": ("kdnas GP-UCB, HF only (paper's GP)", lambda c, a, s: GPUCB(c, seed=s)),
    "alg2_best": (
        "kdnas Algorithm 2, paper's best cell",
        lambda c, a, s: MultiFidelityGPUCB(
            c, n_lf=10, low_fidelity=Fidelity(*best_algorithm2_cell(a.space)), seed=s
        ),
    ),
    "proxy_gp_ucb": (
        "kdnas proxy-prior GP-UCB",
        lambda c, a, s: ScreeningGPUCB(c, ScreeningConfig.proxy_prior(), seed=s, proxy=_proxy(a)),
    ),
    "zero_cost_sh": (
        "zero-cost: multiply-adds top 27, then SH (best method)",
        lambda c, a, s: ZeroCostSuccessiveHalving(c, _proxy(a), method=_best(a), seed=s),
    ),
    "optuna_hb_nokd": (
        "Optuna TPE + Hyperband pruner, nokd",
        lambda c, a, s: OptunaMultiFidelity(c, ("nokd",), "hyperband", s, encoding="index"),
    ),
    "optuna_hb_best": (
        "Optuna TPE + Hyperband pruner, best method",
        lambda c, a, s: OptunaMultiFidelity(c, (_best(a),), "hyperband", s, encoding="index"),
    ),
    "optuna_hb_choice": (
        "Optuna TPE + Hyperband pruner, method chosen by TPE",
        lambda c, a, s: OptunaMultiFidelity(
            c, _ladder_methods(a), "hyperband", s, encoding="index"
        ),
    ),
    "optuna_sh_best": (
        "Optuna TPE + successive-halving pruner, best method",
        lambda c, a, s: OptunaMultiFidelity(
            c, (_best(a),), "successive_halving", s, encoding="index"
        ),
    ),
    "smac_nokd": (
        "SMAC multi-fidelity facade, nokd",
        lambda c, a, s: SMACMultiFidelity(c, ("nokd",), s, encoding="index"),
    ),
    "smac_best": (
        "SMAC multi-fidelity facade, best method",
        lambda c, a, s: SMACMultiFidelity(c, (_best(a),), s, encoding="index"),
    ),
}


def _syne_tune(scheduler: str, methods: str) -> Factory:
    """Syne Tune's ASHA or BOHB with nokd, the best method, or the method as its choice."""

    def factory(c: CandidateSet, a: SpaceArrays, s: int) -> Optimizer:
        chosen = {"nokd": ("nokd",), "best": (_best(a),), "choice": _ladder_methods(a)}[methods]
        return SyneTuneMultiFidelity(c, chosen, scheduler, s)

    return factory


# Syne Tune's rows (pip install 'kdnas[syne-tune]').
for _scheduler, _name in (("asha", "ASHA"), ("bohb", "BOHB")):
    for _methods, _label in (
        ("nokd", "nokd"),
        ("best", "best method"),
        ("choice", "method chosen"),
    ):
        ROWS[f"synetune_{_scheduler}_{_methods}"] = (
            f"Syne Tune {_name}, {_label}",
            _syne_tune(_scheduler, _methods),
        )
KDNAS_BEST = "proxy_gp_ucb"
SLOW_ROWS = ("smac_nokd", "smac_best", "optuna_sh_best", *(r for r in ROWS if "bohb" in r))

_SPACES: dict[str, SpaceArrays] = {}


def _init(benchmark: str) -> None:
    """Per process: quiet the peers' loggers, load both spaces once."""
    logging.getLogger("optuna").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass
    from kdnas.bench import TabularBenchmark

    bench = TabularBenchmark.load(benchmark)
    for space in SPACES:
        _SPACES[space] = load_space_arrays(bench, space, Path(benchmark).parent)


def _sub_space(arrays: SpaceArrays, seed: int, run: int) -> SpaceArrays:
    rows = cell_rng(seed, "field-subspace", arrays.space, run).choice(
        arrays.size, (2 * arrays.size) // 3, replace=False
    )
    return arrays.subset(np.sort(rows))


def _one_run(arrays: SpaceArrays, factory: Factory, seed: int, workers: int, horizon_s: float):
    candidates = arrays.placeholder_candidates()
    optimum = candidates.archs[arrays.optimum]

    def stop(step: TraceStep) -> bool:
        found = step.result.fidelity.is_high and step.suggestion.arch == optimum
        return found or step.elapsed_s >= horizon_s

    optimizer = factory(candidates, arrays, seed)
    try:
        trace: Trace = run_loop(
            optimizer, InProcessWorkers(ArraysObjective(arrays, candidates), workers), stop=stop
        )
    finally:
        close = getattr(optimizer, "close", None)
        if close is not None:
            close()
    events = [
        (step.elapsed_s, float(arrays.hf_valid[candidates.index_of(step.suggestion.arch)]))
        for step in trace.steps
        if step.result.fidelity.is_high and step.result.ok
    ]
    return trace.time_to(optimum), events, float(arrays.hf_valid.max())


def _cell(job: tuple[str, str, int, str, int, int, float]) -> dict[str, object]:
    """All runs of one row in one cell."""
    row, space, workers, kind, runs, seed, horizon_s = job
    arrays = _SPACES[space]
    factory = ROWS[row][1]
    started = time.process_time()
    times, events, optima = [], [], []
    for run in range(runs):
        target = arrays if kind == "whole" else _sub_space(arrays, seed, run)
        t, e, best = _one_run(target, factory, 1000 + seed * 1_000_003 + run, workers, horizon_s)
        times.append(t)
        events.append(e)
        optima.append(best)
    return {
        "row": row,
        "space": space,
        "workers": workers,
        "kind": kind,
        "times": times,
        "events": events,
        "optima": optima,
        "cpu_s": time.process_time() - started,
    }


def _incumbent(events: list[tuple[float, float]], at_s: float) -> float:
    values = [v for t, v in events if t <= at_s]
    return max(values) if values else math.nan


def summarise(cell: dict[str, object], horizon_s: float) -> dict[str, object]:
    times = np.asarray(cell["times"], float)
    censored = np.minimum(times, horizon_s)
    found = np.isfinite(times)
    out: dict[str, object] = {
        "runs": len(times),
        "time_to_optimum_s": float(censored.mean()),
        "se_s": float(censored.std(ddof=1) / math.sqrt(len(times))) if len(times) > 1 else 0.0,
        "found_share": float(found.mean()),
        "cpu_s": cell["cpu_s"],
    }
    for budget in BUDGETS_S:
        inc = np.array([_incumbent(e, budget) for e in cell["events"]])  # type: ignore[union-attr]
        optima = np.asarray(cell["optima"], float)
        has = np.isfinite(inc)
        out[f"at_{int(budget)}"] = {
            "with_incumbent": float(has.mean()),
            "regret_pp": float(100 * (optima[has] - inc[has]).mean()) if has.any() else math.nan,
            "holding_optimum": float((inc[has] == optima[has]).sum() / len(inc)),
        }
    return out


def _curve(events: Sequence[list[tuple[float, float]]], optima, grid: np.ndarray) -> np.ndarray:
    """Mean regret (points) of the incumbent on the grid, over runs that have one."""
    values = np.array([[_incumbent(e, t) for t in grid] for e in events])
    regret = 100 * (np.asarray(optima, float)[:, None] - values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(regret, 0)


def _plot(cells: list[dict[str, object]], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, 40_000, 161)
    paths = []
    for space in SPACES:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for ax, workers in zip(axes, (1, 4), strict=True):
            for cell in cells:
                if (cell["space"], cell["workers"], cell["kind"]) != (space, workers, "whole"):
                    continue
                row = str(cell["row"])
                curve = _curve(cell["events"], cell["optima"], grid)  # type: ignore[arg-type]
                style = "-" if row.startswith(("kdnas", "gp", "alg", "proxy", "random")) else "--"
                ax.plot(grid, curve, style, lw=2.0 if row == KDNAS_BEST else 1.1, label=row)
            ax.set_yscale("symlog", linthresh=0.1)
            ax.set_xlabel("simulated seconds")
            ax.set_title(f"{space}, whole space, {workers} worker{'s' * (workers > 1)}")
        axes[0].set_ylabel("mean regret of the incumbent (HF valid acc points)")
        axes[1].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path = out / f"field_{space}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def _at(point: dict[str, float]) -> str:
    """regret / share holding the optimum; "none yet" when no run has a full-data result."""
    if not point["with_incumbent"]:
        return "none yet"
    share = "" if point["with_incumbent"] == 1 else f" ({point['with_incumbent']:.0%} have one)"
    return f"{point['regret_pp']:.2f} / {point['holding_optimum']:.0%}{share}"


def _markdown(summary: dict[str, dict[str, object]], horizon_s: float) -> str:
    lines = []
    for space in SPACES:
        for kind in ("whole", "sub"):
            if not any(key.endswith(f"/{space}/1/{kind}") for key in summary) and not any(
                key.endswith(f"/{space}/4/{kind}") for key in summary
            ):
                continue
            title = "whole space" if kind == "whole" else "random 2/3 sub-spaces"
            lines += [
                f"\n#### {space}, {title}\n",
                "| optimizer | workers | runs | seconds to optimum | reached | "
                + " | ".join(f"{int(b):,} s regret / holds" for b in BUDGETS_S)
                + " |",
                "|---|---:|---:|---:|---:|" + "---:|" * len(BUDGETS_S),
            ]
            for workers in (1, 4):
                for row, (label, _) in ROWS.items():
                    cell = summary.get(f"{row}/{space}/{workers}/{kind}")
                    if cell is None:
                        continue
                    reached = cell["found_share"]
                    mark = "" if reached == 1.0 else ">= "
                    time_s = f"{mark}{cell['time_to_optimum_s']:,.0f} ± {cell['se_s']:,.0f}"
                    name = f"**{label}**" if row == KDNAS_BEST else label
                    at = " | ".join(_at(cell[f"at_{int(b)}"]) for b in BUDGETS_S)
                    lines.append(
                        f"| {name} | {workers} | {cell['runs']} | {time_s} | "
                        f"{reached:.0%} | {at} |"
                    )
    lines.append(
        f"\nRuns that never reach the optimum by {horizon_s:,.0f} s count as {horizon_s:,.0f} s "
        "(the mean is then a lower bound, marked >=)."
    )
    return "\n".join(lines)


def losses_of_best(summary: dict[str, dict[str, object]]) -> list[str]:
    """Cells where a peer beats kdnas's best optimizer on seconds to the optimum (mean)."""
    out = []
    for key, cell in summary.items():
        row, space, workers, kind = key.split("/")
        if row.startswith(("optuna", "smac", "synetune", "zero_cost")):
            ours = summary.get(f"{KDNAS_BEST}/{space}/{workers}/{kind}")
            if ours is not None and cell["time_to_optimum_s"] < ours["time_to_optimum_s"]:
                out.append(
                    f"{ROWS[row][0]} beats {ROWS[KDNAS_BEST][0]} on {space} ({kind}, "
                    f"{workers} workers): {cell['time_to_optimum_s']:,.0f} s vs "
                    f"{ours['time_to_optimum_s']:,.0f} s"
                )
    return out


def _runs_of(row: str, args: argparse.Namespace) -> int:
    if row.startswith("smac"):
        return args.smac_runs
    return args.optuna_runs if row.startswith("optuna") else args.runs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=None, help="benchmark.pickle ($KDNAS_BENCHMARK)")
    parser.add_argument("--runs", type=int, default=100, help="runs per cell (sub-spaces too)")
    parser.add_argument("--optuna-runs", type=int, default=100, help="runs per cell, Optuna")
    parser.add_argument("--smac-runs", type=int, default=100, help="runs per cell, SMAC")
    parser.add_argument("--horizon-s", type=float, default=40_000.0)
    parser.add_argument("--jobs", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--kinds", nargs="*", default=["whole", "sub"], choices=["whole", "sub"])
    parser.add_argument(
        "--ten-minutes",
        action="store_true",
        help="what fits in 10 minutes on 2 cores: Optuna 20 runs per cell, SMAC 2",
    )
    parser.add_argument("--out", default=None, help="folder for field_<space>.png")
    parser.add_argument("--markdown", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    from kdnas.bench import resolve_benchmark_path

    benchmark = str(resolve_benchmark_path(args.benchmark))
    if args.ten_minutes:
        args.optuna_runs, args.smac_runs = 20, 2
    from importlib import metadata

    versions = {"kdnas": metadata.version("kdnas"), **peer_versions()}
    print("libraries: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    rows = [r for r in args.rows if not (r.startswith("smac") and versions["smac"] == "absent")]
    rows = [r for r in rows if not (r.startswith("optuna") and versions["optuna"] == "absent")]
    rows = [
        r for r in rows if not (r.startswith("synetune") and versions["syne-tune"] == "absent")
    ]
    jobs = [
        (row, space, workers, kind, _runs_of(row, args))
        for row in rows
        for space in SPACES
        for workers in (1, 4)
        for kind in args.kinds
    ]
    # Slow rows first, so the two processes finish together.
    jobs.sort(key=lambda job: job[0] not in SLOW_ROWS)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=(benchmark,)) as pool:
        cells = list(pool.map(_cell, [(*job, args.seed, args.horizon_s) for job in jobs]))
    wall = time.perf_counter() - started
    summary = {
        f"{c['row']}/{c['space']}/{c['workers']}/{c['kind']}": summarise(c, args.horizon_s)
        for c in cells
    }
    table = _markdown(summary, args.horizon_s)
    print(table)
    losses = losses_of_best(summary)
    print("\nWhere a peer beats kdnas's best optimizer (proxy-prior GP-UCB), mean seconds:")
    print("\n".join(f"- {line}" for line in losses) if losses else "- nowhere")
    cpu = sum(float(c["cpu_s"]) for c in cells)
    print(f"\n{len(cells)} cells in {wall:.0f} s wall ({cpu:.0f} s CPU, {args.jobs} processes)")
    if args.out:
        for path in _plot(cells, Path(args.out)):
            print(f"wrote {path}")
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:
        payload = {"versions": versions, "args": vars(args), "summary": summary}
        Path(args.json).write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
