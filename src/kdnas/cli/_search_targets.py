"""``kdnas reproduce table2|table4|figures``: the paper's search experiments.

Registered into ``kdnas.cli.reproduce.TARGETS``; shares its options (--benchmark, --json,
--out, --trials, --seed).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from kdnas.cli._console import make_console, shown
from kdnas.paper import METHOD_LABELS, TABLE2_TOLERANCE, TABLE4_TOLERANCE, paper_figures

__all__ = ["SEARCH_TARGETS", "json_path"]


@contextmanager
def _one_thread() -> Iterator[None]:
    # The engine pins its own threads; the whole target runs pinned too, so the loop-based
    # rows' small tensors do not oversubscribe a busy machine either.
    from kdnas.replay.engine import cpu_threads

    with cpu_threads(1):
        yield


def _spaces(args: argparse.Namespace) -> dict[str, Any]:
    from kdnas.bench import TabularBenchmark, resolve_benchmark_path
    from kdnas.replay.arrays import load_space_arrays

    path = resolve_benchmark_path(args.benchmark)
    bench = TabularBenchmark.load(path)
    listed = path.parent if path.is_file() else path
    if args.dataset not in bench.datasets():
        raise ValueError(
            f"the benchmark holds no dataset {args.dataset!r}; it holds: "
            f"{', '.join(bench.datasets())} (choose one with --dataset)"
        )
    return {
        key: load_space_arrays(bench, key, listed, dataset=args.dataset)
        for key in bench.spaces(args.dataset)
    }


@contextmanager
def _progress(console: Console, title: str, total: int) -> Iterator[Callable[[str], None]]:
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[cell]}"),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(title, total=total, cell="")
        yield lambda label: bar.update(task, advance=1, cell=label)


def json_path(args: argparse.Namespace, target: str) -> Path | None:
    if args.json is None:
        return None
    if getattr(args, "_all", False):
        return args.json.with_name(f"{args.json.stem}.{target}{args.json.suffix or '.json'}")
    return args.json


def _diff(ours: float, paper: float, tolerance: float, relative: bool = False) -> str:
    diff = ours / paper - 1 if relative else ours - paper
    text = f"{100 * diff:+.1f}%" if relative else f"{diff:+.2f}"
    return f"[bold red]{text}[/]" if abs(diff) > tolerance else text


def _target_table2(args: argparse.Namespace) -> int:
    """Table 2: Algorithm 1 (n_lf=30, 1000 runs) per space, part and method, vs the paper."""
    with _one_thread():
        return _target_table2_body(args)


def _target_table2_body(args: argparse.Namespace) -> int:
    from kdnas.experiment import write_json
    from kdnas.reproduction.table2 import TABLE2_PARTS, run_table2

    console = make_console()
    spaces = _spaces(args)
    runs = args.trials or 1000
    total = sum(
        (m, p) in arrays.low
        for arrays in spaces.values()
        for p in TABLE2_PARTS
        for m in METHOD_LABELS
    )
    start = time.perf_counter()
    with _progress(console, f"Table 2, {runs} runs per cell", total) as tick:
        result = run_table2(spaces, runs=runs, seed=args.seed, progress=tick)
    seconds = time.perf_counter() - start
    pct_paper = paper_figures()["table2a_alg1_avg_percentile"]
    acc_paper = paper_figures()["table2b_alg1_avg_test_accuracy_percent"]
    off = 0
    for space, by_part in result.items():
        table = Table(
            title=f"Table 2, {space}: Algorithm 1 (n_lf=30, {runs} runs); percentile (lower is "
            "better) and test accuracy % of the chosen architecture",
            title_justify="left",
        )
        for header in (
            "part", "method", "pct", "±se", "paper", "diff", "acc %", "±se", "paper", "diff",
            "p vs no KD",
        ):  # fmt: skip
            table.add_column(header, justify="left" if header in ("part", "method") else "right")
        for part, cells in by_part.items():
            for method in [m for m in METHOD_LABELS if m in cells]:
                cell = cells[method]
                pp = pct_paper.get(space, {}).get(str(part), {}).get(method, math.nan)
                ap = acc_paper.get(space, {}).get(str(part), {}).get(method, math.nan)
                bad = abs(cell.percentile.mean - pp) > TABLE2_TOLERANCE[0] or (
                    abs(cell.test_acc.mean - ap) > TABLE2_TOLERANCE[1]
                )
                off += bool(bad)
                p_text = "-" if math.isnan(cell.p_value_vs_nokd) else f"{cell.p_value_vs_nokd:.3g}"
                table.add_row(
                    f"1/{part}",
                    METHOD_LABELS[method],
                    f"{cell.percentile.mean:.2f}",
                    f"{cell.percentile.stderr:.2f}",
                    f"{pp:.2f}",
                    _diff(cell.percentile.mean, pp, TABLE2_TOLERANCE[0]),
                    f"{cell.test_acc.mean:.2f}",
                    f"{cell.test_acc.stderr:.2f}",
                    f"{ap:.2f}",
                    _diff(cell.test_acc.mean, ap, TABLE2_TOLERANCE[1]),
                    p_text,
                )
            table.add_section()
        console.print(table)
    cells_total = sum(len(c) for by_part in result.values() for c in by_part.values())
    console.print(
        f"Cells outside {TABLE2_TOLERANCE[0]} percentile / {TABLE2_TOLERANCE[1]} accuracy "
        f"points of the paper: {off} of {cells_total} (red). {seconds:.1f} s."
    )
    path = json_path(args, "table2")
    if path is not None:
        data = {
            space: {
                str(part): {
                    method: {
                        "percentile": cell.percentile.mean,
                        "test_acc": cell.test_acc.mean,
                        "p_value_vs_nokd": cell.p_value_vs_nokd,
                    }
                    for method, cell in cells.items()
                }
                for part, cells in by_part.items()
            }
            for space, by_part in result.items()
        }
        write_json(path, data)
        console.print(f"wrote {shown(path)}")
    return 0


def _target_table4(args: argparse.Namespace) -> int:
    """Table 4: seconds to the optimum, Algorithm 2 (n_lf=10) vs GP-UCB and random search."""
    with _one_thread():
        return _target_table4_body(args)


def _target_table4_body(args: argparse.Namespace) -> int:
    from kdnas.experiment import write_json
    from kdnas.reproduction.statistics import CellStats
    from kdnas.reproduction.table4 import Table4Settings, run_table4, table4_steps

    console = make_console()
    spaces = _spaces(args)
    settings = Table4Settings(runs=args.trials or 100, seed=args.seed)
    start = time.perf_counter()
    total = table4_steps(spaces, settings)
    with _progress(console, f"Table 4, {settings.runs} runs per cell", total) as tick:
        result = run_table4(spaces, settings, progress=tick)
    seconds = time.perf_counter() - start
    paper = paper_figures()["table4_mf_avg_wall_time_to_optimum_seconds"]
    off = 0
    for space, cells in result.items():
        table = Table(
            title=f"Table 4, {space}: average seconds to the optimum ({settings.runs} runs; "
            "GP-UCB with mean-centred targets, as the paper)",
            title_justify="left",
        )
        for header in ("row", "seconds", "±se", "paper", "diff"):
            table.add_column(header, justify="left" if header == "row" else "right")

        def paper_value(column: str, method: str | None, space: str = space) -> float:
            if column == "random_search":
                return float(paper.get("random_search_hf", {}).get(space, math.nan))
            node = paper.get(space, {}).get(column, math.nan)
            if method is not None:
                node = node.get(method, math.nan) if isinstance(node, dict) else math.nan
            return float(node) if not isinstance(node, dict) else math.nan

        def add(label: str, stats: CellStats, reference: float, table: Table = table) -> None:
            nonlocal off
            if math.isnan(reference):
                diff = "-"
            else:
                off += abs(stats.mean / reference - 1) > TABLE4_TOLERANCE
                diff = _diff(stats.mean, reference, TABLE4_TOLERANCE, relative=True)
            ref_text = "-" if math.isnan(reference) else f"{reference:,.0f}"
            table.add_row(label, f"{stats.mean:,.0f}", f"{stats.stderr:,.0f}", ref_text, diff)

        for column, value in cells.items():
            if isinstance(value, CellStats):
                add(column, value, paper_value(column, None))
            elif column.isdigit():  # Algorithm 2 at low fidelity 1/column
                for method, stats in value.items():
                    label = f"LF 1/{column} {METHOD_LABELS.get(method, method)} + HF"
                    add(label, stats, paper_value(column, method))
            else:  # a registered row with cells per low fidelity
                for part, by_method in value.items():
                    for method, stats in by_method.items():
                        add(f"{column} 1/{part} {method}", stats, math.nan)
        console.print(table)
    console.print(
        f"Cells more than {100 * TABLE4_TOLERANCE:.0f}% from the paper: {off} (red). "
        f"{seconds:.1f} s."
    )
    path = json_path(args, "table4")
    if path is not None:

        def plain(node: Any) -> Any:
            if isinstance(node, CellStats):
                return node.mean
            return {str(k): plain(v) for k, v in node.items()}

        write_json(path, plain(result))
        console.print(f"wrote {shown(path)}")
    return 0


def _target_figures(args: argparse.Namespace) -> int:
    """Figures 1, 3, 4, 5 and anytime curves as PNG files in --out (default ./figures)."""
    with _one_thread():
        return _target_figures_body(args)


def _target_figures_body(args: argparse.Namespace) -> int:
    from kdnas.reproduction.figures import figure_steps, make_figures

    console = make_console()
    spaces = _spaces(args)
    out = args.out or Path("figures")
    runs = args.trials or 100
    with _progress(console, f"Figures, {runs} runs per point", figure_steps(spaces)) as tick:
        paths = make_figures(spaces, out, runs=runs, seed=args.seed, progress=tick)
    for path in paths:
        console.print(f"wrote {shown(path)}")
    return 0


#: Targets this module adds to ``kdnas reproduce``.
SEARCH_TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {
    "table2": _target_table2,
    "table4": _target_table4,
    "figures": _target_figures,
}
