"""The field's leaderboard at the issue's protocol (100 runs per cell), resumable, and across
Python environments: kdnas's optimizers, the zero-cost baseline, Optuna, SMAC, DEHB and Syne
Tune (each peer with both encodings of the candidates: one categorical id, and the features) on
the paper's benchmark through kdnas's simulated clock (the rows, cells and metrics are
``kdnas.peers.leaderboard``'s; ``kdnas reproduce field`` is the 10-minute version).

Work is cut into chunks of --chunk-runs runs of one row in one cell and spread over --jobs
processes; with --cells FILE every finished chunk is appended to FILE (JSON lines) at once and
a rerun skips the runs FILE already holds, so an interrupted run loses at most the chunks in
flight. DEHB needs numpy < 2 and so its own environment: run its rows there with the same
--cells FILE, then render the union from either environment with --render-only.

    .venv/bin/python benchmarks/field_comparison.py --cells field.jsonl          # 100 runs/cell
    /path/to/dehb-venv/bin/python benchmarks/field_comparison.py --cells field.jsonl \\
        --rows dehb_nokd dehb_best dehb_choice dehb_nokd_features dehb_best_features \\
        dehb_choice_features
    .venv/bin/python benchmarks/field_comparison.py --cells field.jsonl --render-only \\
        --out docs/img --markdown field.md --json field.json
    .venv/bin/python benchmarks/field_comparison.py --ten-minutes                 # as reproduce

Options: --runs N (every row; default 100), --runs-for LIBRARY=N (e.g. smac=10: one library's
rows), --rows KEY... (a peer's features twin is KEY_features), --kinds whole sub, --horizon-s,
--jobs, --seed, --chunk-runs. Besides the leaderboard it prints each peer's better encoding
per cell and the cells where a peer, with the better of its encodings, beats kdnas's best.
Cost per simulated run, measured on the shared machine (CPU seconds; see docs/results.md):
SMAC ~10 s, Optuna ~1 s, DEHB and kdnas's rows well under 1 s.

--benchmark defaults to $KDNAS_BENCHMARK (in this checkout:
../shared/data/mf_nas_kd/benchmark.pickle).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdnas.bench import resolve_benchmark_path
from kdnas.peers.leaderboard import (
    KINDS,
    MIN_RUNS_FOR_A_CLAIM,
    anecdotal_losses,
    available_rows,
    better_encodings,
    encodings_markdown,
    leaderboard_markdown,
    leaderboard_rows,
    losses_of_best,
    make_chunks,
    merge_chunks,
    one_encoding_only,
    plot_curves,
    run_chunks,
    runs_per_cell,
    summarise,
)


def _read_cells(path: Path | None, seed: int, horizon_s: float) -> list[dict[str, Any]]:
    if path is None or not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if (r["seed"], r["horizon_s"]) == (seed, horizon_s)]


def _library_runs(values: Sequence[str]) -> dict[str, int]:
    out = {}
    for value in values:
        library, _, runs = value.partition("=")
        if not runs.isdigit() or int(runs) < 1:
            raise SystemExit(f"--runs-for wants LIBRARY=N with N >= 1, got {value!r}")
        out[library] = int(runs)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", default=None, help="benchmark.pickle ($KDNAS_BENCHMARK)")
    parser.add_argument("--runs", type=int, default=100, help="runs per cell, every row")
    parser.add_argument("--runs-for", nargs="*", default=[], metavar="LIBRARY=N")
    parser.add_argument("--ten-minutes", action="store_true", help="kdnas reproduce field's runs")
    parser.add_argument("--horizon-s", type=float, default=40_000.0)
    parser.add_argument("--jobs", type=int, default=2, help="processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-runs", type=int, default=10)
    parser.add_argument(
        "--rows", nargs="*", default=list(leaderboard_rows()), choices=list(leaderboard_rows())
    )
    parser.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--cells", type=Path, default=None, help="JSON lines: append, resume")
    parser.add_argument("--render-only", action="store_true", help="table from --cells only")
    parser.add_argument("--out", type=Path, default=None, help="folder for field_<space>.png")
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    benchmark = resolve_benchmark_path(args.benchmark)
    rows, versions, skipped = available_rows(args.rows)
    print("libraries: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    for row, install in [] if args.render_only else skipped:
        print(f"skipped: {row.label} ({row.library} is not installed: {install})")
    if args.ten_minutes:
        runs_of = runs_per_cell(rows)
    else:
        runs_of = {
            **runs_per_cell(rows, args.runs),
            **{
                row.key: n
                for row in rows
                for lib, n in _library_runs(args.runs_for).items()
                if row.library == lib
            },
        }
    records = _read_cells(args.cells, args.seed, args.horizon_s)
    if not args.render_only:
        done: dict[str, set[int]] = {}
        for record in records:
            cell = f"{record['row']}/{record['space']}/{record['workers']}/{record['kind']}"
            first = record["first_run"]
            done.setdefault(cell, set()).update(range(first, first + record["runs"]))
        chunks = make_chunks(runs_of, kinds=args.kinds, chunk_runs=args.chunk_runs, done=done)
        print(f"{len(chunks)} chunks to run ({sum(c.runs for c in chunks)} runs)", flush=True)
        started = time.perf_counter()

        def save(record: dict[str, Any]) -> None:
            if args.cells is not None:
                # One write() of the whole line on an O_APPEND file: invocations over
                # disjoint rows may share one --cells file without interleaving lines.
                fd = os.open(args.cells, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    os.write(fd, (json.dumps(record) + "\n").encode())
                finally:
                    os.close(fd)
            print(
                f"  {time.perf_counter() - started:7.0f} s  {record['row']}/{record['space']}/"
                f"{record['workers']}/{record['kind']} runs {record['first_run']}-"
                f"{record['first_run'] + record['runs'] - 1}: {record['cpu_s']:.1f} CPU s",
                flush=True,
            )

        records += run_chunks(
            benchmark, chunks, args.seed, args.horizon_s, args.jobs, on_record=save
        )
        print(f"ran in {time.perf_counter() - started:.0f} s wall")
    cells = merge_chunks(records)
    recorded = sorted({cell["library"] for cell in cells.values()})
    print("libraries of the runs in this table: " + ", ".join(recorded))
    summary = {key: summarise(cell, args.horizon_s) for key, cell in cells.items()}
    table = leaderboard_markdown(summary, args.horizon_s)
    print(table)
    encodings = encodings_markdown(summary)
    if encodings:
        print("\nEach peer's better encoding per cell (its mean seconds to the optimum; the")
        print("other encoding's in brackets):\n")
        print(encodings)
    losses = losses_of_best(summary)
    print(
        "\nWhere a peer, with the better of its encodings, beats kdnas's best optimizer "
        f"(rows with at least {MIN_RUNS_FOR_A_CLAIM} runs in the cell):"
    )
    print("\n".join(f"- {line}" for line in losses) if losses else "- nowhere")
    anecdotes = anecdotal_losses(summary)
    if anecdotes:
        print(f"Anecdotes, not counted (fewer than {MIN_RUNS_FOR_A_CLAIM} runs in the cell):")
        print("\n".join(f"- {line}" for line in anecdotes))
    single = one_encoding_only(summary)
    if single:
        print(
            "Measured with one encoding only (a claim there rests on it alone): "
            + ", ".join(single)
        )
    cpu = {}
    for key, cell in cells.items():
        row = key.split("/")[0]
        total, runs = cpu.get(row, (0.0, 0))
        cpu[row] = (total + cell["cpu_s"], runs + cell["runs"])
    print(
        "\nCPU seconds per simulated run: "
        + ", ".join(f"{row} {total / runs:.2f}" for row, (total, runs) in cpu.items())
    )
    if args.out:
        for path in plot_curves(cells, args.out, args.horizon_s):
            print(f"wrote {path}")
    if args.markdown:
        args.markdown.write_text(table + "\n\n" + encodings + "\n")
    if args.json:
        payload = {
            "versions": versions,
            "args": {k: str(v) for k, v in vars(args).items()},
            "summary": summary,
            "better_encodings": {
                key: {k: v for k, v in better.items() if k != "by_encoding"}
                for key, better in better_encodings(summary).items()
            },
            "losses_of_best": losses,
            "anecdotal_losses": anecdotes,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
