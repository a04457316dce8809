"""How ``ProxyPriorConfig()`` was chosen: a grid over its settings on sub-spaces.

Protocol (docs/results.md, "Beyond the paper"): every setting of a 30-point grid (beta 0,
0.1, 0.25, 0.5, 1; prior slope 0.008, 0.016, 0.03; slope std 0 or 0.016) runs on 100 random
sub-spaces of 2/3 of the architectures of each space of the paper's benchmark (draw A:
``--tune-seed``). The preset is the setting with the lowest sum of the two spaces' mean
seconds to the optimum. Its figures are then reported on 200 fresh sub-spaces (draw B, the
draw of ``benchmarks/multifidelity_speedup.py``) and on the whole spaces, which this script
prints beside the grid so that the sensitivity is visible too.

    .venv/bin/python benchmarks/proxy_prior_grid.py [--subsets 100] [--tune-seed 1]
        [--benchmark PATH]

About 6 minutes on one core.
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kdnas.bench import TabularBenchmark
from kdnas.replay.arrays import SpaceArrays, cell_rng, load_space_arrays
from kdnas.replay.benchmark_requests import simulate_proxy_prior
from kdnas.search.proxy_prior import ProxyPriorConfig

DEFAULT_BENCHMARK = os.environ.get(
    "KDNAS_BENCHMARK",
    str(Path(__file__).resolve().parents[2] / "shared/data/mf_nas_kd/benchmark.pickle"),
)
BETAS = (0.0, 0.1, 0.25, 0.5, 1.0)
SLOPES = (0.008, 0.016, 0.03)
SLOPE_STDS = (0.0, 0.016)


def sub_spaces(arrays: SpaceArrays, count: int, seed: int) -> list[SpaceArrays]:
    """``count`` random sub-spaces of 2/3 of the architectures (the same draw as
    ``benchmarks/multifidelity_speedup.py`` for the same seed)."""
    rng = cell_rng(seed, "subspaces", arrays.space)
    keep = (2 * arrays.size) // 3
    return [
        arrays.subset(np.sort(rng.choice(arrays.size, keep, replace=False))) for _ in range(count)
    ]


def seconds(arrays: SpaceArrays, config: ProxyPriorConfig) -> float:
    return float(simulate_proxy_prior(arrays, config, seeds=[0]).time_to_optimum_s[0])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=DEFAULT_BENCHMARK)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--tune-seed", type=int, default=1)
    args = parser.parse_args(argv)
    bench = TabularBenchmark.load(args.benchmark)
    listed = Path(args.benchmark).parent
    spaces = {key: load_space_arrays(bench, key, listed) for key in ("mobilenet", "shufflenet")}
    draws = {key: sub_spaces(a, args.subsets, args.tune_seed) for key, a in spaces.items()}
    print(
        f"{'beta':>5s}{'slope':>7s}{'std':>7s}  "
        + "".join(f"{key + ' whole':>17s}{key + ' draw A':>18s}" for key in spaces)
        + f"{'sum of draw A':>15s}"
    )
    best: tuple[float, ProxyPriorConfig] | None = None
    for beta, slope, std in itertools.product(BETAS, SLOPES, SLOPE_STDS):
        config = ProxyPriorConfig(beta=beta, proxy_slope=slope, proxy_slope_std=std)
        cells, total = [], 0.0
        for key, arrays in spaces.items():
            tuned = np.array([seconds(sub, config) for sub in draws[key]])
            total += tuned.mean()
            cells.append(f"{seconds(arrays, config):17,.0f}{tuned.mean():18,.0f}")
        print(f"{beta:5.2f}{slope:7.3f}{std:7.3f}  " + "".join(cells) + f"{total:15,.0f}")
        if best is None or total < best[0]:
            best = (total, config)
    assert best is not None
    chosen = best[1]
    preset = ProxyPriorConfig()
    print(
        f"\nlowest sum on draw A: beta {chosen.beta}, slope {chosen.proxy_slope}, slope std "
        f"{chosen.proxy_slope_std}; the preset is "
        f"{'the same' if chosen == preset else 'DIFFERENT: ' + repr(preset)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
