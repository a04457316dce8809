"""``kdnas reproduce table3``: Algorithm 1 on ImageNet (the benchmark's imagenet/mobilenet).

Registered into ``kdnas.cli.reproduce.TARGETS``; uses its shared options (--benchmark, --json,
--trials, --seed). The dataset is always the benchmark's "imagenet" key (the paper's Table 3).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from rich.table import Table

from kdnas.cli._console import make_console, shown
from kdnas.paper import METHOD_LABELS, paper_figures

__all__ = ["TABLE3_TARGETS"]

#: Runs of the steadier row (the paper's 10 runs are noisy).
_STEADY_RUNS = 1000


def _number(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _target_table3(args: argparse.Namespace) -> int:
    """Table 3: Algorithm 1 on ImageNet 1/27 (no KD vs KD), and LF-vs-HF Kendall tau."""
    import torch

    from kdnas.bench import TabularBenchmark, resolve_benchmark_path
    from kdnas.cli._search_targets import json_path
    from kdnas.experiment import write_json
    from kdnas.reproduction.table3 import load_table3_arrays, run_table3

    console = make_console()
    path = resolve_benchmark_path(args.benchmark)
    bench = TabularBenchmark.load(path)
    if "imagenet" not in bench.datasets():
        message = (
            f"the benchmark holds no 'imagenet' dataset (it holds: "
            f"{', '.join(bench.datasets())}); Table 3 needs the paper's imagenet/mobilenet"
        )
        if getattr(args, "_all", False):
            console.print(f"table3 skipped: {shown(message)}")
            return 0
        raise ValueError(message)
    paper = paper_figures()["table3_imagenet_mobilenet"]
    part = int(paper["low_fidelity_part"])
    arrays = load_table3_arrays(bench, path.parent if path.is_file() else path, part=part)
    runs = args.trials or int(paper["runs"])
    # The batched GP engine works on many small matrices: one thread avoids oversubscription.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = run_table3(arrays, runs=runs, seed=args.seed, part=part)
        steady = run_table3(arrays, runs=_STEADY_RUNS, seed=args.seed, part=part)
    finally:
        torch.set_num_threads(threads)
    known = arrays.with_high_fidelity
    table = Table(
        title=f"Table 3, ImageNet, MobileNetV2 space: Algorithm 1 (n_lf=30, LF 1/{part}, "
        "KD lambda 0.9 tau 4); high-fidelity test accuracy % of the chosen architectures",
        title_justify="left",
    )
    table.add_column("", justify="left")
    for method in rows:
        table.add_column(METHOD_LABELS.get(method, method), justify="right")
        table.add_column("paper", justify="right")

    def add(label: str, ours: Callable[[Any], str], theirs: Callable[[str], str]) -> None:
        cells = [text for m, r in rows.items() for text in (ours(r), theirs(m))]
        table.add_row(label, *cells)

    def published(key: str) -> Callable[[str], str]:
        return lambda method: _number(paper.get(method, {}).get(key, math.nan))

    add("runs judged at HF", lambda r: f"{r.judged}/{r.runs}", lambda m: str(paper["runs"]))
    add("mean", lambda r: _number(r.test_acc_mean), published("mean"))
    add("std", lambda r: _number(r.test_acc_std), published("std"))
    add("best", lambda r: _number(r.test_acc_best), published("best"))
    add(
        f"mean, {_STEADY_RUNS} runs",
        lambda r: _number(steady[r.method].test_acc_mean),
        lambda m: "",
    )
    add(
        f"Kendall tau ({len(known)} archs)",
        lambda r: _number(r.kendall_tau),
        lambda m: _number(paper["kendall_tau_lf_vs_hf_10_archs"].get(m, math.nan)) + " (10)",
    )
    add(
        "tau, one arch left out",
        lambda r: "{}..{}".format(*map(_number, r.kendall_tau_leave_one_out)),
        lambda m: "",
    )
    console.print(table)
    for method, row in rows.items():
        console.print(
            f"{METHOD_LABELS.get(method, method)}: chose {row.distinct_chosen} "
            f"({row.runs - row.judged} of {row.runs} runs chose an architecture with no "
            "high-fidelity result in the benchmark)"
        )
    known_acc = 100 * arrays.hf_test[known]
    console.print(
        f"High-fidelity results in the benchmark: architectures {known.tolist()}, test "
        f"accuracy {known_acc.min():.2f}..{known_acc.max():.2f} %."
    )
    console.print(
        f"The original MobileNetV2: {_number(paper['original_mobilenetv2'])} % in the paper. "
        f"Over {_STEADY_RUNS} runs, "
        + ", ".join(f"{r.judged} ({METHOD_LABELS.get(m, m)})" for m, r in steady.items())
        + " were judged."
    )
    target = json_path(args, "table3")
    if target is not None:
        write_json(
            target,
            {
                "runs": runs,
                "high_fidelity_architectures": known.tolist(),
                "rows": {m: r.to_dict() for m, r in rows.items()},
                f"rows_{_STEADY_RUNS}_runs": {
                    m: {k: v for k, v in r.to_dict().items() if k != "chosen"}
                    for m, r in steady.items()
                },
            },
        )
        console.print(f"wrote {shown(target)}")
    return 0


#: Targets this module adds to ``kdnas reproduce``.
TABLE3_TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {"table3": _target_table3}
