"""Time to the optimum with N simulated asynchronous workers against one worker, on the paper's
benchmark (``kdnas.loop.InProcessWorkers``: each evaluation occupies a worker for its
stored training seconds; the optimizer is asked whenever a worker frees).

For random search and proxy-prior GP-UCB on both spaces, the same seeds are run with one
worker (the serial baseline, measured in the same run) and with ``--workers`` workers; prints
the mean simulated seconds to the optimum, the ratio, and the CPU seconds the simulation took.

    python benchmarks/simulated_workers.py [--benchmark PATH] [--workers 4] [--seeds 300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kdnas.replay.arrays import SpaceArrays


def random_search(arrays: SpaceArrays, seeds: range, workers: int) -> float:
    """Mean simulated seconds random search needs to reach the optimum."""
    from kdnas.replay.runs import run_on_arrays, time_to_optimum
    from kdnas.search import RandomSearch

    candidates = arrays.placeholder_candidates()
    times = [
        time_to_optimum(arrays, run_on_arrays(arrays, RandomSearch(candidates, seed=s), workers))
        for s in seeds
    ]
    return float(np.mean(times))


def proxy_prior(arrays: SpaceArrays, seeds: range, workers: int) -> float:
    """Mean simulated seconds proxy-prior GP-UCB needs to reach the optimum."""
    from kdnas.replay.benchmark_requests import simulate_proxy_prior
    from kdnas.search.proxy_prior import ProxyPriorConfig

    runs = simulate_proxy_prior(arrays, ProxyPriorConfig(), seeds, workers=workers)
    return float(runs.time_to_optimum_s.mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default=None, help="benchmark.pickle (or $KDNAS_BENCHMARK)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=300)
    args = parser.parse_args()

    from kdnas.bench import TabularBenchmark, resolve_benchmark_path
    from kdnas.replay.arrays import load_space_arrays

    path = resolve_benchmark_path(args.benchmark)
    bench = TabularBenchmark.load(path)
    listed = path.parent if path.is_file() else Path(path)
    seeds = range(1000, 1000 + args.seeds)
    header = f"{args.workers} workers s"
    print(f"{'space':<11} {'optimizer':<19} {'1 worker s':>11} {header:>11}  ratio  CPU s")
    for key in ("mobilenet", "shufflenet"):
        arrays = load_space_arrays(bench, key, listed)
        for name, simulate in (
            ("random search", random_search),
            ("proxy-prior GP-UCB", proxy_prior),
        ):
            clock = time.process_time()
            serial, parallel = simulate(arrays, seeds, 1), simulate(arrays, seeds, args.workers)
            cpu = time.process_time() - clock
            print(
                f"{key:<11} {name:<19} {serial:>11,.0f} {parallel:>11,.0f}  "
                f"{parallel / serial:.3f}  {cpu:5.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
