"""Does the recommended optimizer do no harm where its zero-cost prior misleads?

Seconds to the optimum of each optimizer against HF-only GP-UCB (the paper's GP, random start,
high fidelity only), on both spaces of the paper's benchmark, with 1 and with 4 simulated
asynchronous workers, in every regime of ``kdnas.replay.regimes`` (the whole space, random
2/3 sub-spaces, and the proxy-hostile kinds: low, negative, nofav, decoy, buried, narrow).

Rows:

- ``before``: proxy-prior GP-UCB as it shipped before the do-no-harm work (beta 1, a fixed
  proxy slope of 0.008 per std, model averaging with equal prior odds; registry preset 1);
- ``contrast``: the contrast pick, beta 0.5, prior probability 0.7, parallel picks that ignore
  pending evaluations (registry preset 2);
- ``after``: proxy-prior GP-UCB with today's preset (``ProxyPriorConfig()``: preset 2 with
  the pending believer and the batch's contrast);
- ``untuned``: today's method with its a-priori settings (``UNTUNED`` below);
- ``hf_only``: HF-only GP-UCB, the baseline of every ratio (``GPUCB``, beta 0.5);
- ``algorithm2``: the paper's Algorithm 2 at its best cell for the space (10 LF steps);
- ``optimum_search``: the experimental ``OptimumSearch`` (its preset);
- field rows: the peers named by ``--field`` (``kdnas.peers.leaderboard`` keys).

Every row goes through the one evaluation loop (``kdnas.replay.runs.run_on_arrays``) on the
same sub-spaces and seeds (a draw fixes both). A cell is the mean seconds to the optimum with
its standard error, and the ratio HF-only / row (> 1: faster than HF-only). The worst ratio
of each row is marked. Field runs stop at ``FIELD_HORIZON_S`` and count as that.

Protocol: settings were chosen on draw 0 (``--draw 0``); report on fresh draws (1, 2, ...).
Several draws (``--draw 3 4 5``) pool their sub-spaces into one table and add each row's
ratio on each draw alone, which shows how much a column moves from one draw to the next.

    .venv/bin/python benchmarks/do_no_harm.py [--draw 1 [2 ...]] [--subsets 30] [--runs 10]
        [--workers 1 4] [--rows before contrast after untuned hf_only algorithm2 optimum_search]
        [--field optuna_hb_best_features ...] [--jobs 2] [--markdown FILE]

--benchmark defaults to $KDNAS_BENCHMARK, else ../shared/data/mf_nas_kd/benchmark.pickle.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from kdnas.bench import TabularBenchmark
from kdnas.core import Fidelity, Optimizer
from kdnas.paper import best_algorithm2_cell
from kdnas.replay.arrays import SpaceArrays, load_space_arrays
from kdnas.replay.benchmark_requests import benchmark_proxy, proxy_prior_factory
from kdnas.replay.regimes import REGIMES, draw_spaces
from kdnas.replay.runs import run_on_arrays, time_to_optimum
from kdnas.search.candidates import CandidateSet
from kdnas.search.experimental.optimum_search import OptimumSearch, OptimumSearchConfig
from kdnas.search.optimizers import GPUCB, MultiFidelityGPUCB
from kdnas.search.pool import Budget
from kdnas.search.proxy_prior import ProxyPriorConfig

DEFAULT_BENCHMARK = os.environ.get(
    "KDNAS_BENCHMARK",
    str(Path(__file__).resolve().parents[2] / "shared/data/mf_nas_kd/benchmark.pickle"),
)
#: A field peer that has not reached the optimum after this many simulated seconds stops and
#: counts as this (its mean is, if anything, flattered).
FIELD_HORIZON_S = 200_000.0
#: Proxy-prior GP-UCB's preset before the do-no-harm work, written out (the defaults moved).
BEFORE = ProxyPriorConfig(
    beta=1.0,
    proxy_slope=0.008,
    proxy_slope_std=0.0,
    proxy_residual_std=0.012,
    proxy_averaging=True,
    proxy_prior_probability=0.5,
    contrast_after=0,
)
#: The contrast pick without the pending believer (the registry's preset 2).
CONTRAST = ProxyPriorConfig(pending_believer=False)
#: Today's method with the settings it had before any sub-space was looked at.
UNTUNED = ProxyPriorConfig(beta=0.5, proxy_prior_probability=0.5, contrast_after=2)

Factory = Callable[[CandidateSet, SpaceArrays, int], Optimizer]
#: (space, workers) -> regime -> row -> [sub-spaces] seconds to the optimum.
Cells = dict[tuple[str, int], dict[str, dict[str, np.ndarray]]]


def _proxy_prior(config: ProxyPriorConfig) -> Factory:
    return proxy_prior_factory(config, max_cost_s=1e7)


def _hf_only(candidates: CandidateSet, arrays: SpaceArrays, seed: int) -> Optimizer:
    return GPUCB(candidates, seed=seed)


def _algorithm2(candidates: CandidateSet, arrays: SpaceArrays, seed: int) -> Optimizer:
    part, method = best_algorithm2_cell(arrays.space)
    low = Fidelity(part=part, method=method)
    return MultiFidelityGPUCB(candidates, n_lf=10, low_fidelity=low, seed=seed)


def _optimum_search(candidates: CandidateSet, arrays: SpaceArrays, seed: int) -> Optimizer:
    return OptimumSearch(
        candidates,
        OptimumSearchConfig(),
        seed=seed,
        budget=Budget(max_cost_s=1e7),
        proxy=benchmark_proxy(arrays),
    )


ROWS: dict[str, tuple[str, Factory]] = {
    "before": ("proxy-prior GP-UCB, before (beta 1, equal odds)", _proxy_prior(BEFORE)),
    "contrast": ("proxy-prior GP-UCB, contrast pick, no believer", _proxy_prior(CONTRAST)),
    "after": ("proxy-prior GP-UCB, preset (default)", _proxy_prior(ProxyPriorConfig())),
    "untuned": ("proxy-prior GP-UCB, a-priori settings", _proxy_prior(UNTUNED)),
    "hf_only": ("HF-only GP-UCB (paper's GP)", _hf_only),
    "algorithm2": ("Algorithm 2, paper's best cell", _algorithm2),
    "optimum_search": ("optimum search (experimental)", _optimum_search),
}


def _field_factory(key: str) -> tuple[str, Factory]:
    from kdnas.peers.leaderboard import leaderboard_rows

    row = leaderboard_rows()[key]
    return f"field: {row.label}", row.factory


#: HF-only GP-UCB starts at random: its expected seconds on a sub-space are the mean over this
#: many seeds, so the baseline of every ratio is not one random start's luck.
BASELINE_SEEDS = 4


def _seconds(
    arrays: SpaceArrays, factory: Factory, seed: int, workers: int, field: bool, repeats: int = 1
) -> float:
    horizon = FIELD_HORIZON_S if field else None
    total = 0.0
    for repeat in range(repeats):
        optimizer = factory(arrays.placeholder_candidates(), arrays, seed + 1_000_003 * repeat)
        trace = run_on_arrays(arrays, optimizer, workers, horizon_s=horizon)
        seconds = time_to_optimum(arrays, trace)
        total += min(seconds, FIELD_HORIZON_S) if field else seconds
    return total / repeats


#: Rows that cost about a CPU second per run (the peers through their libraries, optimum
#: search's posterior samples) run on the first ``--expensive-subsets`` sub-spaces of a cell
#: only, and are compared with HF-only on those same sub-spaces.
EXPENSIVE_ROWS = ("optimum_search",)


def measure_cell(
    job: tuple[str, str, str, int, int, int, Sequence[str], Sequence[str], int],
) -> tuple[str, str, int, dict[str, np.ndarray], float]:
    """One (space, regime, workers) cell: [count] seconds to the optimum per row (NaN where an
    expensive row did not run)."""
    benchmark, space, regime, count, draw, workers, rows, field, expensive = job
    from kdnas.peers.leaderboard import quiet_peer_logging

    quiet_peer_logging()
    start = time.process_time()
    arrays = load_space_arrays(TabularBenchmark.load(benchmark), space, Path(benchmark).parent)
    factories = {key: ROWS[key][1] for key in rows}
    factories.update({key: _field_factory(key)[1] for key in field})
    out: dict[str, list[float]] = {key: [] for key in factories}
    for k, (seed, sub) in enumerate(draw_spaces(arrays, regime, count, draw)):
        for key, factory in factories.items():
            if k >= expensive and (key in field or key in EXPENSIVE_ROWS):
                out[key].append(math.nan)
                continue
            repeats = BASELINE_SEEDS if key == "hf_only" else 1
            out[key].append(_seconds(sub, factory, seed, workers, key in field, repeats))
    values = {key: np.array(v) for key, v in out.items()}
    return space, regime, workers, values, time.process_time() - start


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


def table(
    cells: Cells,
    labels: dict[str, str],
    regimes: Sequence[str],
) -> str:
    """Markdown: per (space, workers) a table, rows x regimes, mean ± se (ratio), the worst
    ratio of each row in bold."""
    out: list[str] = []
    for (space, workers), by_regime in cells.items():
        present = [r for r in regimes if r in by_regime]
        out.append(f"\n**{space}, {workers} worker(s)**\n")
        out.append("| optimizer | " + " | ".join(present) + " | worst |")
        out.append("|---" * (len(present) + 2) + "|")
        for key, label in labels.items():
            if key not in by_regime[present[0]]:
                continue
            ratios, texts = [], []
            for regime in present:
                values = by_regime[regime]
                mean, se = _mean_se(values[key])
                # Paired: HF-only on the sub-spaces this row ran on.
                ratio = float(values["hf_only"][np.isfinite(values[key])].mean() / mean)
                ratios.append(ratio)
                texts.append(f"{mean:,.0f} ± {se:,.0f} ({ratio:.2f}x)")
            worst = int(np.argmin(ratios))
            texts[worst] = f"**{texts[worst]}**"
            out.append(f"| {label} | " + " | ".join(texts) + f" | **{ratios[worst]:.2f}x** |")
    return "\n".join(out)


def pool_draws(draws: Sequence[Cells]) -> Cells:
    """The cells of several draws as one: each row's sub-spaces of every draw, in draw
    order (a mean over them weighs each sub-space equally)."""
    pooled: Cells = {}
    for cells in draws:
        for cell, by_regime in cells.items():
            for regime, values in by_regime.items():
                into = pooled.setdefault(cell, {}).setdefault(regime, {})
                for key, seconds in values.items():
                    into[key] = np.concatenate([into.get(key, np.zeros(0)), seconds])
    return pooled


def ratios_by_draw(
    per_draw: dict[int, Cells], labels: dict[str, str], regimes: Sequence[str]
) -> str:
    """Markdown: per (space, workers, regime) a line per row with its ratio on each draw."""
    draws = sorted(per_draw)
    out = [
        "| space, workers, regime | optimizer | " + " | ".join(f"draw {d}" for d in draws) + " |"
    ]
    out.append("|---" * (len(draws) + 2) + "|")
    for cell in per_draw[draws[0]]:
        for regime in (r for r in regimes if r in per_draw[draws[0]][cell]):
            for key, label in labels.items():
                if key == "hf_only":
                    continue
                ratios = []
                for draw in draws:
                    values = per_draw[draw][cell][regime]
                    ran = np.isfinite(values[key])
                    ratios.append(
                        f"{values['hf_only'][ran].mean() / values[key][ran].mean():.2f}x"
                    )
                where = f"{cell[0]}, {cell[1]}, {regime}"
                out.append(f"| {where} | {label} | " + " | ".join(ratios) + " |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    parser.add_argument(
        "--draw",
        type=int,
        nargs="+",
        default=[1],
        help="0 chose the settings; report on 1+ (several: their sub-spaces pooled)",
    )
    parser.add_argument("--subsets", type=int, default=30, help="sub-spaces per regime")
    parser.add_argument("--runs", type=int, default=10, help="seeds on the whole spaces")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--spaces", nargs="+", default=["mobilenet", "shufflenet"])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    parser.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--field", nargs="*", default=[], help="kdnas.peers.leaderboard keys")
    parser.add_argument("--jobs", type=int, default=1, help="processes")
    parser.add_argument(
        "--expensive-subsets",
        type=int,
        default=10,
        help="sub-spaces (or whole-space seeds) per cell for the field and optimum search",
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    args = parser.parse_args(argv)
    rows = list(dict.fromkeys([*args.rows, "hf_only"]))
    jobs = [
        (
            args.benchmark,
            space,
            regime,
            args.runs if regime == "whole" else args.subsets,
            draw,
            workers,
            rows,
            args.field,
            args.expensive_subsets,
        )
        for draw in args.draw
        for space in args.spaces
        for workers in args.workers
        for regime in args.regimes
    ]
    per_draw: dict[int, dict[tuple[str, int], dict[str, dict[str, np.ndarray]]]] = {}
    cpu = 0.0
    with ProcessPoolExecutor(args.jobs) as pool:
        for job, (space, regime, workers, values, seconds) in zip(
            jobs, pool.map(measure_cell, jobs), strict=True
        ):
            draw = job[4]
            per_draw.setdefault(draw, {}).setdefault((space, workers), {})[regime] = values
            cpu += seconds
            print(f"  draw {draw} {space} {regime} {workers}w: {seconds:.0f} CPU s", flush=True)
    cells = pool_draws([per_draw[draw] for draw in args.draw])
    labels = {key: ROWS[key][0] for key in rows}
    labels.update({key: _field_factory(key)[0] for key in args.field})
    draws = ", ".join(str(draw) for draw in args.draw)
    text = (
        f"Draw {draws}: mean seconds to the optimum ± se (HF-only / row); "
        f"{args.subsets} sub-spaces per regime, {args.runs} seeds on the whole space "
        f"(field and optimum search: the first {args.expensive_subsets}, paired); "
        f"{cpu / 60:.1f} CPU min\n" + table(cells, labels, args.regimes)
    )
    if len(args.draw) > 1:
        text += "\n\nRatio HF-only / row on each draw alone (the spread between draws):\n"
        text += ratios_by_draw(per_draw, labels, args.regimes)
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
