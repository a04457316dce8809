"""What each source of information is worth to a search for the optimum, regime by regime: a
ceiling for issue 16's goal (1.5x faster than HF-only GP-UCB in every proxy-hostile regime).

Every row is proxy-prior GP-UCB (``ProxyPriorConfig()``, the project's fastest
optimizer) fed a different proxy, on the regimes of ``kdnas.replay.regimes``; one run per
sub-space, every row paired on the same sub-spaces and seeds:

- HF-only GP-UCB: the paper's GP, random start (the baseline of every ratio);
- proxy: log multiply-adds, the zero-cost proxy (what the optimizer uses today);
- proxy off: the same model with no proxy;
- reversed proxy: minus log multiply-adds, known in advance (what a free, perfect detector of
  a reversed proxy could use);
- "<method> 1/<part> free": that KD fidelity's valid accuracy, known for every candidate at
  no cost, as the proxy; HF seconds only. Not a policy: an optimistic bound on what the column
  can give this model, since any real search must pay for the KD runs it uses;
- "<method> 1/<part> bought": the same plus the seconds of running that fidelity on every
  candidate first. A real policy (screen everything, then search with it as the proxy);
- "<method> 1/<part> free|bought q %": the same with the column known for a random q % of
  the candidates only (the rest get the neutral proxy value, the column's mean): how much of
  the column's value a partial screening keeps (``--coverage``);
- "<method> 1/<part> perfect veto": HF-only GP-UCB's own path, with every architecture on it
  first screened at that fidelity and a perfect veto: only the optimum is run at HF. The
  seconds of every screening on the path plus the optimum's HF run: what screening the
  proposals of this search can save at best;
- "<method> 1/<part> record veto keeps the optimum": the share of (sub-)spaces where the
  optimum's result at that fidelity beats every earlier one on that path: how often a veto
  that runs at HF only what looks best so far would let the optimum through;
- "best column, hindsight": the column whose free (bought, veto) row is fastest in that regime on
  this very draw. Chosen after seeing the results, so optimistic;
- "best policy per sub-space, hindsight": for each sub-space the fastest of the real policies
  (proxy, proxy off, reversed proxy, HF-only, every column bought, wholly or in part). No
  rule that picks one of them, however it decides, can beat this row;
- "best free source per sub-space": the same over the free and veto rows too: the most
  generous row.

With ``--workers W`` every search runs on W simulated asynchronous workers (the loop's
clock), a column is bought in the makespan of its runs on the W workers (longest first), and
the veto rows, which follow a sequential path, are left out.

Each cell: mean seconds to the optimum ± standard error (HF-only / row; > 1 is faster). A
regime's goal of 1.5x is out of reach for a family of policies when its hindsight row is below
1.5x.

    .venv/bin/python benchmarks/fidelity_ceiling.py [--draw 1] [--subsets 20] [--runs 10]
        [--spaces mobilenet shufflenet] [--regimes ...] [--columns kd/3 kd/9 ...]
        [--coverage 0.1 0.25 0.5] [--workers 4]

Draw 1 is the reported draw of ``benchmarks/adaptive_fidelity.py`` (draw 0 chose its presets);
the sub-spaces and seeds of a draw are the same in both scripts.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdnas.bench import TabularBenchmark
from kdnas.replay.arrays import SpaceArrays, cell_rng, load_space_arrays
from kdnas.replay.regimes import REGIMES, draw_spaces
from kdnas.replay.runs import gp_ucb_hf_times, run_on_arrays, time_to_optimum
from kdnas.search.optimizers import GPUCB
from kdnas.search.pool import Budget
from kdnas.search.proxy_prior import ProxyPriorConfig, ProxyPriorGPUCB

DEFAULT_BENCHMARK = os.environ.get(
    "KDNAS_BENCHMARK",
    str(Path(__file__).resolve().parents[2] / "shared/data/mf_nas_kd/benchmark.pickle"),
)
DEFAULT_COLUMNS = ("kd/3", "kd/9", "kd/27", "nokd/3")
#: Key suffix of the 0/1 per sub-space: a record veto at this column lets the optimum through.
KEEPS = "record veto keeps the optimum"


def _proxy_prior_seconds(
    arrays: SpaceArrays, proxy: np.ndarray | None, seed: int, workers: int = 1
) -> float:
    config = ProxyPriorConfig(
        **({} if proxy is not None else {"proxy_slope": 0.0, "proxy_averaging": False})
    )
    optimizer = ProxyPriorGPUCB(
        arrays.placeholder_candidates(),
        config,
        seed=seed,
        budget=Budget(max_cost_s=1e7),
        proxy=proxy,
    )
    return time_to_optimum(arrays, run_on_arrays(arrays, optimizer, workers))


def screening_makespan(seconds: np.ndarray, workers: int) -> float:
    """Seconds until ``workers`` workers have run every job of ``seconds``, longest first,
    each on the worker free first (LPT; with one worker, the sum)."""
    loads = np.zeros(workers)
    for job in np.sort(np.asarray(seconds, dtype=float))[::-1]:
        loads[np.argmin(loads)] += job
    return float(loads.max())


def column_name(method: str, part: int) -> str:
    return f"{method}/{part}"


def one_space(
    arrays: SpaceArrays,
    seed: int,
    partial: Sequence[str] = (),
    coverage: Sequence[float] = (),
    workers: int = 1,
) -> dict[str, float]:
    """Seconds to the optimum of every row on one (sub-)space; the columns ``partial``
    ("method/part") also with a random share ``coverage`` of the candidates known. With
    several ``workers`` every search runs on that many simulated workers, a column is bought
    in the makespan of its runs on them, and the veto rows (a sequential path) are left out."""
    if workers == 1:
        rng = cell_rng(seed, "adaptive-bench", arrays.space)
        times, orders = gp_ucb_hf_times(arrays, 1, rng, return_order=True)
        out = {"hf_only": float(np.asarray(times)[0])}
        path = orders[0][orders[0] >= 0]
    else:
        optimizer = GPUCB(arrays.placeholder_candidates(), seed=seed)
        out = {"hf_only": time_to_optimum(arrays, run_on_arrays(arrays, optimizer, workers))}
    proxy = np.log(arrays.multiply_adds)
    out["proxy"] = _proxy_prior_seconds(arrays, proxy, seed, workers)
    out["proxy off"] = _proxy_prior_seconds(arrays, None, seed, workers)
    out["reversed proxy"] = _proxy_prior_seconds(arrays, -proxy, seed, workers)
    for (method, part), columns in sorted(arrays.low.items()):
        name = column_name(method, part)
        free = _proxy_prior_seconds(arrays, np.asarray(columns["valid_acc"]), seed, workers)
        out[f"{name} free"] = free
        out[f"{name} bought"] = free + screening_makespan(columns["wall_time"], workers)
        if workers > 1:
            continue
        screening = float(np.sum(np.asarray(columns["wall_time"])[path]))
        out[f"{name} perfect veto"] = screening + float(arrays.hf_time[arrays.optimum])
        values = np.asarray(columns["valid_acc"])
        before = values[path[:-1]]
        out[f"{name} {KEEPS}"] = float(before.size == 0 or values[arrays.optimum] > before.max())
    chooser = np.random.default_rng([seed, arrays.size])
    for name in partial:
        method, part = name.split("/")
        values = np.asarray(arrays.low_column(method, int(part), "valid_acc"))
        seconds = np.asarray(arrays.low_column(method, int(part), "wall_time"))
        for share in coverage:
            known = chooser.random(arrays.size) < share
            if known.sum() < 2:
                known[chooser.choice(arrays.size, 2, replace=False)] = True
            # Unknown candidates get the known results' mean: no push either way. The tiny
            # ramp breaks the ties a constant proxy would leave for the UCB's argmax.
            proxy = np.where(known, values, values[known].mean()) + 1e-9 * np.arange(arrays.size)
            free = _proxy_prior_seconds(arrays, proxy, seed, workers)
            out[f"{name} free {share:.0%}"] = free
            out[f"{name} bought {share:.0%}"] = free + screening_makespan(seconds[known], workers)
    return out


def measure(
    arrays: SpaceArrays,
    regime: str,
    count: int,
    draw: int,
    partial: Sequence[str] = (),
    coverage: Sequence[float] = (),
    workers: int = 1,
) -> dict[str, np.ndarray]:
    """[count] seconds per row in ``regime``, on the sub-spaces and seeds of ``draw`` (the
    same as ``benchmarks/adaptive_fidelity.py``'s)."""
    runs = []
    for seed, space in draw_spaces(arrays, regime, count, draw):
        runs.append(one_space(space, seed, partial, coverage, workers))
    table = {key: np.array([run[key] for run in runs]) for key in runs[0]}
    seconds = [key for key in table if not key.endswith(KEEPS)]
    policies = [key for key in seconds if " free" not in key and "veto" not in key]
    table["best policy per sub-space, hindsight"] = np.min([table[k] for k in policies], axis=0)
    table["best free source per sub-space"] = np.min([table[k] for k in seconds], axis=0)
    return table


def _cell(values: np.ndarray, baseline: np.ndarray) -> str:
    se = values.std(ddof=1) / math.sqrt(len(values)) if len(values) > 1 else 0.0
    return f"{values.mean():8,.0f}±{se:5,.0f} ({baseline.mean() / values.mean():4.2f}x)"


def report(args: argparse.Namespace, bench: TabularBenchmark) -> None:
    for space in args.spaces:
        arrays = load_space_arrays(bench, space, Path(args.benchmark).parent)
        start = time.perf_counter()
        results = {
            regime: measure(
                arrays,
                regime,
                args.runs if regime == "whole" else args.subsets,
                args.draw,
                args.columns,
                args.coverage,
                args.workers,
            )
            for regime in args.regimes
        }
        print(
            f"\n== {space}: mean seconds to the optimum ± se (HF-only / row), draw {args.draw}, "
            f"{args.workers} worker(s), whole {args.runs} seeds, {args.subsets} sub-spaces per "
            "regime "
            f"({time.perf_counter() - start:.0f} s) =="
        )
        sequential = args.workers == 1
        rows = ["hf_only", "proxy", "proxy off", "reversed proxy"]
        for column in args.columns:
            rows += [f"{column} free", f"{column} bought"]
            rows += [f"{column} perfect veto"] if sequential else []
            for share in args.coverage:
                rows += [f"{column} free {share:.0%}", f"{column} bought {share:.0%}"]
        rows += ["best policy per sub-space, hindsight", "best free source per sub-space"]
        print(f"{'':38s}" + "".join(f"{r:>24s}" for r in args.regimes))
        for row in rows:
            if row not in results[args.regimes[0]]:
                raise SystemExit(f"unknown column {row.rsplit(' ', 1)[0]!r} in {space}")
            cells = [_cell(results[r][row], results[r]["hf_only"]) for r in args.regimes]
            print(f"{row:38s}" + "".join(f"{c:>24s}" for c in cells))
        for column in args.columns if sequential else []:
            label = f"{column} record veto keeps the optimum"
            shares = [f"{results[r][f'{column} {KEEPS}'].mean():.0%}" for r in args.regimes]
            print(f"{label:38s}" + "".join(f"{c:>24s}" for c in shares))
        for kind in ("free", "bought", "perfect veto") if sequential else ("free", "bought"):
            best = []
            for regime in args.regimes:
                table = results[regime]
                key = min(
                    (k for k in table if k.endswith(f" {kind}")), key=lambda k: table[k].mean()
                )
                ratio = table["hf_only"].mean() / table[key].mean()
                best.append(f"{key.split()[0]} {ratio:4.2f}x")
            label = f"best column {kind}, hindsight"
            print(f"{label:38s}" + "".join(f"{c:>24s}" for c in best))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    parser.add_argument("--draw", type=int, default=1)
    parser.add_argument("--subsets", type=int, default=20, help="sub-spaces per regime")
    parser.add_argument("--runs", type=int, default=10, help="seeds on the whole spaces")
    parser.add_argument("--spaces", nargs="+", default=["mobilenet", "shufflenet"])
    parser.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=REGIMES)
    parser.add_argument("--columns", nargs="+", default=list(DEFAULT_COLUMNS))
    parser.add_argument("--workers", type=int, default=1, help="simulated workers per search")
    parser.add_argument(
        "--coverage", nargs="*", type=float, default=[], help="shares of a partly known column"
    )
    args = parser.parse_args(argv)
    report(args, TabularBenchmark.load(args.benchmark))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
