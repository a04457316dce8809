"""Speed of the batched Algorithm 1 engine against a straightforward scikit-learn loop.

One Table 2 cell (MobileNetV2 space, 1/9 part, NST, n_lf = 30, 1000 runs by default), both on
the same random subsets: a per-run loop fitting scikit-learn's GaussianProcessRegressor
(RBF(1.0), raw targets, as the paper), and ``kdnas.replay.engine.simulate_algorithm1``.
Prints both times (wall and CPU seconds), the ratio, and checks that the two give the same
statistics: the share of runs choosing the same architecture, and the mean percentile and
test accuracy of the choices.

    python benchmarks/search_speed.py [--benchmark PATH] [--runs 1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default=None, help="benchmark.pickle (or $KDNAS_BENCHMARK)")
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the engine")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF

    from kdnas.bench import TabularBenchmark, resolve_benchmark_path
    from kdnas.replay import percentile_in_space
    from kdnas.replay.arrays import load_space_arrays
    from kdnas.replay.engine import simulate_algorithm1
    from kdnas.search import random_subsets

    torch.set_num_threads(args.threads)
    default = Path(__file__).resolve().parents[2] / "shared/data/mf_nas_kd/benchmark.pickle"
    path = resolve_benchmark_path(args.benchmark or (str(default) if default.exists() else None))
    arrays = load_space_arrays(TabularBenchmark.load(path), "mobilenet", path.parent)
    valid = arrays.low_column("nst", 9, "valid_acc")
    subsets = random_subsets(np.random.default_rng(args.seed), args.runs, arrays.size, 30)

    wall, cpu = time.perf_counter(), time.process_time()
    baseline = np.empty(args.runs, dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r, subset in enumerate(subsets):
            gp = GaussianProcessRegressor(RBF(1.0)).fit(arrays.features[subset], valid[subset])
            baseline[r] = int(np.argmax(gp.predict(arrays.features)))
    base_wall, base_cpu = time.perf_counter() - wall, time.process_time() - cpu

    simulate_algorithm1(arrays.features, valid, subsets[:10])  # warm-up (imports, allocator)
    wall, cpu = time.perf_counter(), time.process_time()
    engine = simulate_algorithm1(arrays.features, valid, subsets)
    eng_wall, eng_cpu = time.perf_counter() - wall, time.process_time() - cpu

    def summary(chosen: np.ndarray) -> tuple[float, float, float, float]:
        pct = percentile_in_space(arrays.hf_test, chosen)
        acc = 100 * arrays.hf_test[chosen]
        n = math.sqrt(len(chosen))
        return pct.mean(), pct.std(ddof=1) / n, acc.mean(), acc.std(ddof=1) / n

    b, e = summary(baseline), summary(engine)
    same = float(np.mean(baseline == engine))
    agree = abs(b[0] - e[0]) <= 2 * math.hypot(b[1], e[1]) and same >= 0.95
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(f"cell: mobilenet, 1/9, nst, n_lf=30, {args.runs} runs (git {sha or '?'})")
    print(f"scikit-learn loop: {base_wall:7.2f} s wall, {base_cpu:7.2f} s CPU")
    print(f"kdnas engine:      {eng_wall:7.2f} s wall, {eng_cpu:7.2f} s CPU ({args.threads} thr)")
    print(f"speed-up: {base_wall / eng_wall:.0f}x wall, {base_cpu / eng_cpu:.0f}x CPU")
    print(f"same choice in {100 * same:.1f}% of runs")
    print(f"percentile: loop {b[0]:.2f} ± {b[1]:.2f}, engine {e[0]:.2f} ± {e[1]:.2f}")
    print(f"test acc %: loop {b[2]:.2f} ± {b[3]:.2f}, engine {e[2]:.2f} ± {e[3]:.2f}")
    print("statistics agree" if agree else "STATISTICS DIFFER")
    record = {
        "runs": args.runs,
        "loop_wall_s": base_wall,
        "engine_wall_s": eng_wall,
        "loop_cpu_s": base_cpu,
        "engine_cpu_s": eng_cpu,
        "same_choice": same,
        "git": sha,
    }
    print(json.dumps(record))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
