"""Optimum search (issue 16, second version) against proxy-prior GP-UCB, HF-only GP-UCB and
Algorithm 2, in regimes where the zero-cost proxy helps and where it misleads.

Columns (per space of the paper's benchmark; one run per sub-space, all optimizers paired on
the same sub-spaces):

- whole: the whole space, ``--runs`` seeds;
- random: random sub-spaces of 2/3 of the architectures;
- low: sub-spaces of 1/3 of the architectures whose Spearman correlation between the proxy
  (log multiply-adds) and HF valid accuracy lies in [-0.2, 0.2];
- negative: sub-spaces of 1/6 of the architectures with a correlation <= -0.3;
- nofav: random 2/3 sub-spaces without the proxy's 10 % favourites of the whole space.

The low and negative sub-spaces are drawn with weights exp(-g u v), u and v the centred
proxy and HF ranks in the whole space and g uniform in [0, 150], so that discordant
architectures are favoured, and kept when their correlation falls in the band.

Rows: optimum search (``kdnas.search.experimental.optimum_search``) with its preset and
with its a-priori
(untuned) settings, the ablation without KD fidelities, proxy-prior GP-UCB, HF-only GP-UCB
(the paper's GP, random start) and Algorithm 2 at the paper's best cell of the space; with
Each cell is
the mean seconds to the optimum (benchmark wall_time of every evaluation until the optimum is
evaluated at HF) with its standard error, and the ratio HF-only / row (> 1: faster than
HF-only). Below each table: the paired t-test of the ablation against the preset, and the
share of the preset's evaluations at each fidelity.

Protocol: ``--draw`` picks the sub-spaces and seeds. The preset's settings were chosen on
draw 0 (``--tune`` prints the grid) and are reported on draw 1; the whole-space column uses
seeds disjoint from both.

    .venv/bin/python benchmarks/adaptive_fidelity.py [--draw 1] [--subsets 40] [--runs 20]
        [--regimes ...] [--tune] [--workers 1] [--spaces mobilenet shufflenet]
        [--field optuna_hb_best synetune_asha_best ...] [--benchmark PATH]

--benchmark defaults to $KDNAS_BENCHMARK, else ../shared/data/mf_nas_kd/benchmark.pickle.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy import stats

from kdnas.bench import TabularBenchmark
from kdnas.core import Fidelity
from kdnas.paper import best_algorithm2_cell
from kdnas.peers.leaderboard import available_rows, leaderboard_rows, quiet_peer_logging
from kdnas.peers.leaderboard import one_run as field_run
from kdnas.replay.arrays import SpaceArrays, cell_rng, load_space_arrays
from kdnas.replay.regimes import REGIMES, draw_spaces
from kdnas.replay.runs import (
    algorithm2_times,
    gp_ucb_hf_times,
    run_on_arrays,
    time_to_optimum,
)
from kdnas.search.experimental.optimum_search import OptimumSearch, OptimumSearchConfig
from kdnas.search.optimizers import GPUCB, MultiFidelityGPUCB
from kdnas.search.pool import Budget
from kdnas.search.proxy_prior import ProxyPriorConfig, ProxyPriorGPUCB

DEFAULT_BENCHMARK = os.environ.get(
    "KDNAS_BENCHMARK",
    str(Path(__file__).resolve().parents[2] / "shared/data/mf_nas_kd/benchmark.pickle"),
)
#: Optimum search's preset: the dataclass defaults, chosen on draw 0 (docs/research_notes.md).
PRESET = OptimumSearchConfig()
#: Its settings as first written, before any sub-space was looked at: the HF step by
#: P(optimum) per second, one Gaussian prior on the proxy's slope (mean 0.5 s, std 0.5 s), no
#: doubting hypothesis, no cap on the KD seconds.
UNTUNED = OptimumSearchConfig(
    high_choice="probability",
    proxy_prior_rho=0.5,
    proxy_slope_spread=0.5,
    trust_prior=1.0,
    low_share=math.inf,
)
#: A field peer that has not reached the optimum after this many simulated seconds stops and
#: counts as this (so its mean is, if anything, flattered; the count is printed).
FIELD_HORIZON_S = 200_000.0
#: The ablation: the preset without KD fidelities.
NO_KD = dataclasses.replace(PRESET, low_fidelities=(), low_prior_rho=())


def _loop_time(arrays: SpaceArrays, optimizer: object, workers: int) -> float:
    return time_to_optimum(arrays, run_on_arrays(arrays, optimizer, workers))  # type: ignore[arg-type]


def _builder(kind: type, config: object) -> Callable[[SpaceArrays, int], object]:
    """(space, seed) -> a fresh ``kind`` optimizer with ``config`` and the multiply-adds proxy
    (the three proxy-based optimizers share this constructor)."""

    def build(arrays: SpaceArrays, seed: int) -> object:
        return kind(
            arrays.placeholder_candidates(),
            config,
            seed=seed,
            budget=Budget(max_cost_s=1e6),
            proxy=np.log(arrays.multiply_adds),
        )

    return build


def _search(config: OptimumSearchConfig) -> Callable[[SpaceArrays, int], object]:
    return _builder(OptimumSearch, config)


_proxy_prior = _builder(ProxyPriorGPUCB, ProxyPriorConfig())


def _one_run(
    arrays: SpaceArrays,
    seed: int,
    rows: dict[str, Callable],
    workers: int,
    counts: Counter,
    field: Sequence[str] = (),
) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, build in rows.items():
        optimizer = build(arrays, seed)
        out[key] = _loop_time(arrays, optimizer, workers)
        if key == "search":
            counts.update(optimizer.fidelity_counts())
    for key in field:
        seconds, _, _ = field_run(
            arrays, leaderboard_rows()[key].factory, seed, workers, FIELD_HORIZON_S
        )
        out[key] = min(seconds, FIELD_HORIZON_S)
    part, method = best_algorithm2_cell(arrays.space)
    if workers > 1:
        # The baselines on the same simulated workers (the batched engine runs one worker).
        candidates = arrays.placeholder_candidates()
        low = Fidelity(part=part, method=method)
        out["hf_only"] = _loop_time(arrays, GPUCB(candidates, seed=seed), workers)
        algorithm2 = MultiFidelityGPUCB(candidates, n_lf=10, low_fidelity=low, seed=seed)
        out["algorithm2"] = _loop_time(arrays, algorithm2, workers)
        return out
    rng = cell_rng(seed, "adaptive-bench", arrays.space)
    out["hf_only"] = float(np.asarray(gp_ucb_hf_times(arrays, 1, rng))[0])
    out["algorithm2"] = float(np.asarray(algorithm2_times(arrays, method, part, 1, 10, rng))[0])
    return out


def measure(
    arrays: SpaceArrays,
    regime: str,
    count: int,
    draw: int,
    rows: dict[str, Callable],
    workers: int = 1,
    field: Sequence[str] = (),
) -> tuple[dict[str, np.ndarray], Counter]:
    """[count] seconds to the optimum per row (plus "hf_only", "algorithm2") in ``regime``."""
    counts: Counter = Counter()
    runs: list[dict[str, float]] = []
    for seed, space in draw_spaces(arrays, regime, count, draw):
        runs.append(_one_run(space, seed, rows, workers, counts, field))
    return {key: np.array([r[key] for r in runs]) for key in runs[0]}, counts


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean()), float(se)


LABELS = {
    "search": "optimum search (preset)",
    "untuned": "optimum search, a-priori settings",
    "no_kd": "optimum search without KD fidelities",
    "proxy": "proxy-prior GP-UCB",
    "hf_only": "HF-only GP-UCB (paper's GP)",
    "algorithm2": "Algorithm 2, paper's best cell",
}


def report(args: argparse.Namespace, bench: TabularBenchmark) -> None:
    rows = {"search": _search(PRESET), "untuned": _search(UNTUNED), "no_kd": _search(NO_KD)}
    rows["proxy"] = _proxy_prior
    quiet_peer_logging()
    present, versions, skipped = available_rows(args.field)
    field = [row.key for row in present]
    for row, install in skipped:
        print(f"{row.key}: skipped, {install}")
    print(", ".join(f"{library} {version}" for library, version in versions.items()))
    labels = {**LABELS, **{key: f"field: {leaderboard_rows()[key].label}" for key in field}}
    for space in args.spaces:
        arrays = load_space_arrays(bench, space, Path(args.benchmark).parent)
        results, fidelities = {}, Counter()
        start = time.perf_counter()
        for regime in args.regimes:
            count = args.runs if regime == "whole" else args.subsets
            try:
                results[regime], counts = measure(
                    arrays, regime, count, args.draw, rows, args.workers, field
                )
            except RuntimeError as error:
                print(f"{regime}: {error}")
                continue
            fidelities.update(counts)
        print(
            f"\n== {space}: mean seconds to the optimum ± se (HF-only / row), draw "
            f"{args.draw}, {args.workers} worker(s), whole {args.runs} runs, "
            f"{args.subsets} sub-spaces per regime ({time.perf_counter() - start:.0f} s) =="
        )
        regimes = [r for r in args.regimes if r in results]
        print(f"{'':48s}" + "".join(f"{r:>22s}" for r in regimes))
        for key, label in labels.items():
            if key not in results[regimes[0]]:
                continue
            cells = []
            for regime in regimes:
                mean, se = _mean_se(results[regime][key])
                ratio = results[regime]["hf_only"].mean() / mean
                cells.append(f"{mean:8,.0f}±{se:5,.0f} ({ratio:4.2f}x)")
            print(f"{label:48s}" + "".join(f"{c:>22s}" for c in cells))
            capped = sum(int(np.sum(results[r][key] >= FIELD_HORIZON_S)) for r in regimes)
            if key in field and capped:
                print(f"  ({capped} runs stopped at {FIELD_HORIZON_S:,.0f} s)")
        test = [
            stats.ttest_rel(results[r]["no_kd"], results[r]["search"]).pvalue
            if np.any(results[r]["no_kd"] != results[r]["search"])
            else 1.0
            for r in regimes
        ]
        print(f"{'no-KD vs preset, paired p':48s}" + "".join(f"{p:>22.2g}" for p in test))
        total = sum(fidelities.values())
        shares = ", ".join(f"{f} {n / total:.1%}" for f, n in sorted(fidelities.items()))
        print(f"preset's evaluations by fidelity (all columns): {shares}")


def tune(args: argparse.Namespace, bench: TabularBenchmark) -> None:
    """The grid looked at on draw 0: ratio to HF-only per regime (random, low, negative,
    nofav) and space."""
    grid = {
        f"{choice}, probe {probe}, KD share {share}": dataclasses.replace(
            PRESET, high_choice=choice, probe=probe, low_share=share
        )
        for choice in ("probability", "ucb")
        for probe in (False, True)
        for share in (0.1, 0.3, math.inf)
    }
    grid["ucb, KD share 0.1, screen the UCB winner only"] = dataclasses.replace(
        PRESET, screen_top=1
    )
    grid["no KD"] = NO_KD
    builders = {name: _search(config) for name, config in grid.items()}
    ratios: dict[str, list[float]] = {name: [] for name in grid}
    for space in args.spaces:
        arrays = load_space_arrays(bench, space, Path(args.benchmark).parent)
        for regime in [r for r in args.regimes if r != "whole"]:
            try:
                results, _ = measure(arrays, regime, args.subsets, 0, builders, args.workers)
            except RuntimeError as error:
                print(f"{regime}: {error}")
                continue
            for name in grid:
                ratios[name].append(results["hf_only"].mean() / results[name].mean())
    for name, values in sorted(ratios.items(), key=lambda kv: -min(kv[1])):
        cells = " ".join(f"{v:4.2f}" for v in values)
        print(f"{name:36s} worst {min(values):4.2f}  mean {np.mean(values):4.2f}  [{cells}]")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    parser.add_argument("--draw", type=int, default=1, help="0 chose the preset; report on 1")
    parser.add_argument("--subsets", type=int, default=40, help="sub-spaces per regime")
    parser.add_argument("--runs", type=int, default=20, help="seeds on the whole spaces")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--spaces", nargs="+", default=["mobilenet", "shufflenet"])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    parser.add_argument("--tune", action="store_true", help="the grid on draw 0 instead")
    parser.add_argument(
        "--field",
        nargs="*",
        default=[],
        choices=sorted(k for k, row in leaderboard_rows().items() if row.library != "kdnas"),
        help="add the field's optimizers (kdnas.peers.leaderboard keys) as rows",
    )
    args = parser.parse_args(argv)
    bench = TabularBenchmark.load(args.benchmark)
    (tune if args.tune else report)(args, bench)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
