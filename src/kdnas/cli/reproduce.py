"""``kdnas reproduce TARGET``: recompute one of the paper's tables or figures from its benchmark.

Each target is a function ``(args) -> exit code`` in ``TARGETS``; they share the options
defined once in ``register`` (--benchmark, --json, --out, --trials, --seed), and a target
ignores the options it has no use for. To add a target, write ``_target_<name>(args)`` with a
one-line docstring (it becomes the help text) and add it to ``TARGETS``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from kdnas.bench import BENCHMARK_ENV_VAR, TabularBenchmark, resolve_benchmark_path
from kdnas.cli import non_negative_int, positive_int
from kdnas.cli._console import make_console, shown
from kdnas.cli._field_target import FIELD_TARGETS
from kdnas.cli._search_targets import SEARCH_TARGETS, json_path
from kdnas.cli._table3_target import TABLE3_TARGETS
from kdnas.paper import METHOD_LABELS, SPACE_TITLES, TABLE1_TOLERANCE, paper_figures

__all__ = ["TABLE1_TOLERANCE", "TARGETS", "register"]


def _load_benchmark(args: argparse.Namespace) -> TabularBenchmark:
    bench = TabularBenchmark.load(resolve_benchmark_path(args.benchmark))
    if args.dataset not in bench.datasets():
        raise ValueError(
            f"the benchmark holds no dataset {args.dataset!r}; it holds: "
            f"{', '.join(bench.datasets())} (choose one with --dataset)"
        )
    return bench


def _format(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:+.3f}"


def _target_table1(args: argparse.Namespace) -> int:
    """Table 1: correlation of low-fidelity valid_acc with high-fidelity test_acc."""
    # Imported here: scipy.stats takes about a second, which `kdnas --help` should not pay.
    from kdnas.bench.correlation import compare_with_paper, table1

    bench = _load_benchmark(args)
    ours = table1(bench, dataset=args.dataset)
    # The published figures are for CIFAR-100; another dataset is shown without them.
    paper = paper_figures()["table1_pearson_lf_vs_hf"] if args.dataset == "cifar100" else {}
    paired = {
        (cell.space, cell.part, cell.method): cell for cell in compare_with_paper(ours, paper)
    }
    console = make_console()
    for space, by_part in ours.items():
        size = bench.num_architectures(space, args.dataset)
        table = Table(
            title=f"{SPACE_TITLES.get(space, space)} ({space}, {size} architectures): "
            "low-fidelity valid_acc vs high-fidelity test_acc",
            title_justify="left",
        )
        for header in ("part", "method", "pearson", "paper", "diff", "kendall", "spearman"):
            table.add_column(header, justify="left" if header in ("part", "method") else "right")
        for part, by_method in by_part.items():
            # The paper's column order first, so rows read like its table.
            order = [m for m in METHOD_LABELS if m in by_method]
            order += [m for m in by_method if m not in METHOD_LABELS]
            for method in order:
                values = by_method[method]
                cell = paired.get((space, part, method))
                paper_text = diff_text = "-"
                if cell is not None:
                    paper_text = f"{cell.paper:+.2f}"
                    diff_text = _format(cell.difference)
                    if not cell.within(TABLE1_TOLERANCE):
                        diff_text = f"[bold red]{diff_text}[/]"
                label = METHOD_LABELS.get(method)
                table.add_row(
                    f"1/{part}",
                    f"{method} ({label})" if label else method,
                    _format(values["pearson"]),
                    paper_text,
                    diff_text,
                    _format(values["kendall"]),
                    _format(values["spearman"]),
                )
            table.add_section()
        console.print(table)
    if paired:
        off = [cell for cell in paired.values() if not cell.within(TABLE1_TOLERANCE)]
        console.print(
            f"Pearson within {TABLE1_TOLERANCE} of the paper: "
            f"{len(paired) - len(off)} of {len(paired)} cells."
        )
        for cell in off:
            console.print(
                f"  off: {cell.space} 1/{cell.part} {cell.method}: ours {cell.ours:+.3f}, "
                f"paper {cell.paper:+.2f} (diff {cell.difference:+.3f})"
            )
    if args.json is not None:
        from kdnas.experiment import write_json

        write_json(args.json, ours)
        console.print(f"wrote {shown(args.json)}")
    return 0


#: Target name -> function(args) -> exit code. The help text is the function's docstring.
TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {
    "table1": _target_table1,
}
# The search experiments (Tables 2 and 4, figures) live in their own module.
TARGETS.update(SEARCH_TARGETS)
# Table 3 (ImageNet) too ("all" runs every target in this dict, whatever the order).
TARGETS.update(TABLE3_TARGETS)


#: Targets "all" leaves out: itself, and the field's leaderboard (no table of the paper).
_NOT_IN_ALL = ("all", "field")


def _target_all(args: argparse.Namespace) -> int:
    """Every table and figure of the paper (not field; --json FILE: FILE-stem.<target>.json)."""
    status = 0
    for name, function in TARGETS.items():
        if name in _NOT_IN_ALL:
            continue
        one = argparse.Namespace(**vars(args))
        one._all = True
        if name == "table1" and args.json is not None:
            one.json = json_path(one, "table1")
        status = max(status, function(one))
    return status


TARGETS["all"] = _target_all
# The field's leaderboard (issue 15); "all" leaves it out.
TARGETS.update(FIELD_TARGETS)


def _run(args: argparse.Namespace) -> int:
    return TARGETS[args.target](args)


def register(subparsers: Any) -> None:
    """Add the ``reproduce`` sub-command to the ``kdnas`` parser."""
    listing = "\n".join(
        f"  {name:<10} {(function.__doc__ or '').strip().splitlines()[0]}"
        for name, function in TARGETS.items()
    )
    parser = subparsers.add_parser(
        "reproduce",
        help="recompute the paper's tables from its tabular benchmark",
        description="Recompute one of the paper's tables from its tabular benchmark and "
        "print it next to the published figures.\n\ntargets:\n" + listing,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", choices=list(TARGETS), metavar="TARGET", help="what to compute")
    parser.add_argument(
        "--benchmark",
        metavar="PATH",
        help=f"benchmark.pickle of the paper, or an open-format folder (default: "
        f"${BENCHMARK_ENV_VAR})",
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write the numbers to this JSON file"
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for figures and other files a target writes",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        metavar="N",
        help="repetitions of a simulated search (default: the paper's count for the target)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of simulated searches"
    )
    parser.add_argument(
        "--rows",
        nargs="+",
        metavar="ROW",
        help="field only: the leaderboard's rows (default: every row whose library is "
        "installed; names: kdnas.peers.leaderboard.leaderboard_rows())",
    )
    parser.add_argument(
        "--dataset",
        default="cifar100",
        help="dataset key within the benchmark (default cifar100, the paper's; a benchmark "
        "exported from your own store carries your dataset's name)",
    )
    parser.set_defaults(func=_run)
