"""``kdnas reproduce field``: the field's leaderboard (issue 15), in about 10 minutes on 2 cores.

Registered into ``kdnas.cli.reproduce.TARGETS`` (not part of ``reproduce all``: it is not one
of the paper's tables); uses the shared options --benchmark, --json, --out, --trials, --seed
and --rows (--dataset must stay cifar100). The work is ``kdnas.peers.leaderboard``'s;
this module only prints.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from kdnas.cli._console import make_console, shown

__all__ = ["FIELD_TARGETS"]


def _target_field(args: argparse.Namespace) -> int:
    """The field: Optuna, SMAC, DEHB, Syne Tune, zero-cost vs kdnas on a KD ladder (~10 min).

    Each peer runs with both encodings of the candidates (an id; the features)."""
    from kdnas.bench import TabularBenchmark, resolve_benchmark_path
    from kdnas.cli._search_targets import _progress
    from kdnas.experiment import write_json
    from kdnas.peers.leaderboard import (
        BUDGETS_S,
        HORIZON_S,
        KDNAS_BEST,
        MIN_RUNS_FOR_A_CLAIM,
        SPACES,
        anecdotal_losses,
        available_rows,
        better_encodings,
        encodings_table,
        leaderboard_rows,
        losses_of_best,
        make_chunks,
        merge_chunks,
        plot_curves,
        run_chunks,
        runs_per_cell,
        summarise,
    )

    console = make_console()
    if not console.is_terminal:
        # Piped to a file or a log: wide enough for the table's rows not to wrap.
        console = make_console(width=170)
    if args.dataset != "cifar100":
        # The leaderboard's cells, horizon and best method are the paper's CIFAR-100 ones.
        raise ValueError(
            f"kdnas reproduce field runs on the paper's CIFAR-100 spaces only; --dataset "
            f"{args.dataset!r} is not supported (kdnas search runs your own data)"
        )
    path = resolve_benchmark_path(args.benchmark)
    missing = set(SPACES) - set(TabularBenchmark.load(path).spaces("cifar100"))
    if missing:
        raise ValueError(
            f"the field's leaderboard runs on the paper's benchmark; {path} has no "
            f"{', '.join(sorted(missing))} space on cifar100"
        )
    rows, versions, skipped = available_rows(args.rows)
    console.print("libraries: " + ", ".join(f"{name} {v}" for name, v in versions.items()))
    for row, install in skipped:
        console.print(
            f"skipped: {row.label} ({row.library} is not installed: {install})", markup=False
        )
    runs_of = runs_per_cell(rows, args.trials)
    by_library: dict[str, int] = {}
    for row in rows:
        by_library[row.library] = runs_of[row.key]
    console.print(
        "runs per cell: "
        + ", ".join(f"{library} {runs}" for library, runs in by_library.items())
        + (
            ""
            if all(runs >= 100 for runs in by_library.values())
            else " (fewer than the issue's 100 where below it, to fit in 10 minutes; the full "
            "protocol: benchmarks/field_comparison.py)"
        )
    )
    chunks = make_chunks(runs_of)
    jobs = max(1, min(len(os.sched_getaffinity(0)), len(chunks)))
    started = time.perf_counter()
    with _progress(console, "the field", len(chunks)) as tick:
        records = run_chunks(
            path,
            chunks,
            seed=args.seed,
            jobs=jobs,
            on_record=lambda r: tick(f"{r['row']} {r['space']} {r['workers']}w {r['kind']}"),
        )
    seconds = time.perf_counter() - started
    cells = merge_chunks(records)
    summary = {key: summarise(cell) for key, cell in cells.items()}
    _print_tables(console, summary, rows)
    console.print(
        f"Runs that never reach the optimum by {HORIZON_S:,.0f} s count as {HORIZON_S:,.0f} s "
        "(the mean is then a lower bound, marked >=); regret in HF valid accuracy points "
        "over the runs with a full-data result by then, holds = share of runs holding the "
        "optimum."
    )
    titles, lines = encodings_table(summary)
    if lines:
        table = Table(
            title="Each peer's better encoding per cell: its mean seconds to the optimum (the "
            "other encoding's)",
            title_justify="left",
        )
        table.add_column("peer")
        for title in titles:
            table.add_column(title, justify="right")
        for label, entries in lines:
            table.add_row(label, *entries)
        console.print(table)
    losses = losses_of_best(summary)
    console.print(
        "\nWhere a peer, with the better of its encodings, beats kdnas's best optimizer "
        f"({leaderboard_rows()[KDNAS_BEST].label}), counting rows with at least "
        f"{MIN_RUNS_FOR_A_CLAIM} runs in the cell:"
    )
    console.print("\n".join(f"- {line}" for line in losses) if losses else "- nowhere")
    anecdotes = anecdotal_losses(summary)
    if anecdotes:
        console.print(
            f"Anecdotes, not counted (rows with fewer than {MIN_RUNS_FOR_A_CLAIM} runs in the "
            "cell, where one lucky run decides; the full protocol: "
            "benchmarks/field_comparison.py):"
        )
        console.print("\n".join(f"- {line}" for line in anecdotes))
    console.print(f"{len(chunks)} chunks in {seconds:.0f} s on {jobs} processes")
    if args.out is not None:
        for written in plot_curves(cells, args.out):
            console.print(f"wrote {shown(written)}")
    if args.json is not None:
        write_json(
            args.json,
            {
                "versions": versions,
                "skipped": {row.key: install for row, install in skipped},
                "runs_per_cell": runs_of,
                "budgets_s": list(BUDGETS_S),
                "horizon_s": HORIZON_S,
                "summary": summary,
                "losses_of_best": losses,
                "anecdotal_losses": anecdotes,
                "better_encodings": {
                    key: {k: v for k, v in better.items() if k != "by_encoding"}
                    for key, better in better_encodings(summary).items()
                },
            },
        )
        console.print(f"wrote {shown(args.json)}")
    return 0


def _print_tables(console: Console, summary: dict[str, Any], rows: list[Any]) -> None:
    from kdnas.peers.leaderboard import (
        BUDGETS_S,
        KDNAS_BEST,
        KINDS,
        SPACES,
        WORKERS,
        format_incumbent,
    )

    for space in SPACES:
        for kind in KINDS:
            table = Table(
                title=f"{space}, {'whole space' if kind == 'whole' else 'random 2/3 sub-spaces'}",
                title_justify="left",
            )
            for header in ("optimizer", "workers", "runs", "s to optimum", "reached"):
                table.add_column(header, justify="left" if header == "optimizer" else "right")
            for budget in BUDGETS_S:
                table.add_column(f"{budget:,.0f} s regret / holds", justify="right")
            for workers in WORKERS:
                for row in rows:
                    cell = summary.get(f"{row.key}/{space}/{workers}/{kind}")
                    if cell is None:
                        continue
                    mark = "" if cell["found_share"] == 1.0 else ">= "
                    at = [format_incumbent(cell[f"at_{int(b)}"]) for b in BUDGETS_S]
                    label = f"[bold]{row.label}[/]" if row.key == KDNAS_BEST else row.label
                    table.add_row(
                        label,
                        str(workers),
                        str(cell["runs"]),
                        f"{mark}{cell['time_to_optimum_s']:,.0f} ± {cell['se_s']:,.0f}",
                        f"{cell['found_share']:.0%}",
                        *at,
                    )
                table.add_section()
            console.print(table)


FIELD_TARGETS = {"field": _target_field}
