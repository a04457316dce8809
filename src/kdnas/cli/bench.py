"""``kdnas bench build|export``: train your own tabular benchmark and write it out."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["EXPORT_FORMATS", "register"]

#: What ``kdnas bench export --format`` writes.
EXPORT_FORMATS: tuple[str, ...] = ("open", "syne-tune")


def _int_list(text: str) -> tuple[int, ...]:
    message = f"expected positive integers separated by commas, got {text!r}"
    try:
        values = tuple(int(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(message)
    return values


def register(subparsers: Any) -> None:
    from kdnas.bench import BENCHMARK_ENV_VAR
    from kdnas.cli import non_negative_int, positive_int
    from kdnas.cli._options import (
        add_executor_arguments,
        add_protocol_arguments,
        add_space_argument,
        dataset_help,
    )
    from kdnas.core import METHODS

    parser = subparsers.add_parser(
        "bench",
        help="build your own tabular benchmark (train a grid into a store) and export it",
        description="Build a tabular benchmark: 'build' trains every architecture x part x "
        "method into an SQLite store (resumable: run it again after an interruption); "
        "'export' writes a store in the open benchmark format that 'kdnas reproduce "
        "--benchmark FOLDER' and kdnas.bench.TabularBenchmark.load read, or (--format "
        "syne-tune) a benchmark as Syne Tune blackboxes.",
    )
    commands = parser.add_subparsers(dest="bench_command", metavar="{build,export}")

    build = commands.add_parser("build", help="train a grid of evaluations into a store")
    add_space_argument(build)
    build.add_argument("--dataset", default="digits", help=dataset_help())
    build.add_argument("--parts", type=_int_list, default=(27, 9, 3), help="e.g. 27,9,3")
    build.add_argument(
        "--methods", default="nokd,kd", help=f"comma list of {', '.join(METHODS)} (nokd,kd)"
    )
    build.add_argument("--archs", type=positive_int, default=10, help="architectures sampled (10)")
    build.add_argument("--arch-seed", type=non_negative_int, default=0)
    build.add_argument(
        "--no-high-fidelity", action="store_true", help="skip part 1 nokd for every arch"
    )
    add_protocol_arguments(build)
    build.add_argument("--seed", type=non_negative_int, default=0)
    build.add_argument("--store", required=True, help="SQLite store to fill")
    build.add_argument("--run-id", default="bench")
    add_executor_arguments(build)
    build.set_defaults(func=run_build)

    export = commands.add_parser(
        "export",
        help="write a store as an open-format benchmark, or a benchmark as Syne Tune blackboxes",
        description="--format open (the default): write a store (kdnas bench build's) in "
        "kdnas's open benchmark format: kdnas bench export STORE FOLDER. --format syne-tune: "
        "write a benchmark as Syne Tune blackboxes, one per search space, into a new or empty "
        "DIR: kdnas bench export --format syne-tune [SOURCE] DIR, where SOURCE is a store, "
        f"benchmark.pickle or an open-format folder (default: --benchmark, else "
        f"${BENCHMARK_ENV_VAR}); see docs/benchmark.md.",
    )
    export.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="open: STORE FOLDER; syne-tune: [SOURCE] DIR",
    )
    export.add_argument(
        "--format", choices=EXPORT_FORMATS, default="open", help="what to write (open)"
    )
    export.add_argument(
        "--benchmark",
        metavar="PATH",
        help=f"syne-tune: the benchmark to write (default ${BENCHMARK_ENV_VAR})",
    )
    export.add_argument("--run-id", action="append", default=None, help="runs (default all)")
    export.add_argument("--dataset", default=None, help="dataset key (default: the run's)")
    export.set_defaults(func=run_export)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_build(args: argparse.Namespace) -> int:
    import torch
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from kdnas.cli import UsageError
    from kdnas.cli._console import make_console, shown
    from kdnas.cli._options import check_run_arguments, executor_from_args, protocol_settings
    from kdnas.experiment import SearchSettings
    from kdnas.experiment._bench import BenchGrid, run_bench_build
    from kdnas.spaces import get_space

    get_space(args.space)
    executor, device = executor_from_args(args, args.device)
    check_run_arguments(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    from kdnas.distill import LOGIT_METHODS

    beyond_logits = [m for m in methods if m not in LOGIT_METHODS]
    if args.teacher is not None and beyond_logits:
        raise UsageError(
            f"--teacher gives a network's logits only, which {', '.join(beyond_logits)} "
            f"cannot distill from: use --methods among {', '.join(LOGIT_METHODS)}"
        )
    settings = SearchSettings(
        space=args.space,
        dataset=args.dataset,
        algorithm="random",
        method=methods[0] if methods else "nokd",
        part=args.parts[0],
        n_lf=1,
        n_candidates=args.archs,
        candidate_seed=args.arch_seed,
        seed=args.seed,
        device=device,
        **protocol_settings(args),
    )
    grid = BenchGrid(settings, args.parts, methods, high_fidelity=not args.no_high_fidelity)
    total = args.archs * (
        len(set(args.parts)) * len(methods) + (0 if args.no_high_fidelity else 1)
    )
    console = make_console()

    class Bar:
        def __init__(self, progress: Any) -> None:
            self.progress = progress
            self.task = progress.add_task("bench build", total=total)

        def on_result(self, evaluation: Any, replayed: bool) -> None:
            self.progress.advance(self.task)
            result = evaluation.result
            accuracy = "-" if not math.isfinite(result.valid_acc) else f"{result.valid_acc:.4f}"
            console.log(
                f"{evaluation.arch.key()} {result.fidelity.label():>14} valid {accuracy} "
                f"{result.status}" + (" (from store)" if replayed else "")
            )

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        summary = run_bench_build(
            grid,
            args.store,
            run_id=args.run_id,
            executor=executor,
            callbacks=[Bar(progress)],
        )
    console.print(
        f"{len(summary.evaluations)} evaluations in {shown(args.store)} (run "
        f"{shown(repr(args.run_id))}; {summary.n_replayed} read back, {summary.n_new} new). "
        f"Export with: kdnas bench export {shown(args.store)} FOLDER"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from kdnas.cli import UsageError

    if args.format == "syne-tune":
        return _export_syne_tune(args)
    if len(args.paths) != 2 or args.benchmark is not None:
        raise UsageError(
            "--format open writes a store: kdnas bench export STORE FOLDER (--benchmark is for "
            "--format syne-tune)"
        )
    from kdnas.store import SQLiteStore, export_benchmark

    store_path, folder = args.paths
    if not Path(store_path).is_file():
        raise FileNotFoundError(f"store {store_path}: no such file")
    # Read-only: exporting never writes to the store, which may lie on read-only media.
    with SQLiteStore(store_path, read_only=True) as store:
        folder = export_benchmark(store, folder, run_ids=args.run_id, dataset=args.dataset)
    print(f"wrote {folder} (open benchmark format; architectures in architectures.json)")
    return 0


def _is_store(path: Path) -> bool:
    """An SQLite file (a kdnas store), by its header."""
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(16) == b"SQLite format 3\x00"


def _export_syne_tune(args: argparse.Namespace) -> int:
    from kdnas.bench import PAPER_SPACE_KEYS, TabularBenchmark, resolve_benchmark_path
    from kdnas.bench.syne_tune_format import check_new_folder, write_syne_tune_blackboxes
    from kdnas.cli import UsageError

    if len(args.paths) > 2:
        raise UsageError("--format syne-tune takes [SOURCE] DIR")
    if len(args.paths) == 2 and args.benchmark is not None:
        raise UsageError("give the source once: SOURCE DIR, or --benchmark PATH DIR")
    folder = args.paths[-1]
    check_new_folder(folder)  # before anything is loaded
    source = Path(args.paths[0]) if len(args.paths) == 2 else None
    if source is None:
        source = resolve_benchmark_path(args.benchmark)
    elif not source.exists():
        raise FileNotFoundError(f"{source}: no such store, benchmark file or folder")
    architectures = None
    if _is_store(source):
        from kdnas.store import SQLiteStore, store_to_benchmark

        with SQLiteStore(str(source), read_only=True) as store:
            bench, order = store_to_benchmark(store, run_ids=args.run_id, dataset=args.dataset)
        # The store names spaces as kdnas does ("mobilenetv2"), the benchmark as the paper.
        architectures = {
            PAPER_SPACE_KEYS.get(space, space): [json.loads(a.to_json()) for a in archs]
            for space, archs in order.items()
        }
    else:
        if args.run_id or args.dataset:
            raise UsageError("--run-id and --dataset select runs of a store, not of a benchmark")
        bench = TabularBenchmark.load(source)
    try:
        export = write_syne_tune_blackboxes(bench, folder, architectures)
    except ImportError as error:
        raise UsageError(str(error)) from None
    for box in export.blackboxes:
        resources = ", ".join(map(str, box.resources))
        parts = ", ".join("full data" if p == 1 else f"1/{p}" for p in box.parts)
        print(
            f"wrote {export.folder / box.name}: Syne Tune blackbox, task(s) "
            f"{', '.join(box.tasks)}; {box.num_configurations} configurations "
            f"({box.num_architectures} architectures x {len(box.methods)} methods) x "
            f"resource {resources} ({parts})"
        )
    for line in export.skipped:
        print(f"note: {line}")
    print(
        "read back with syne_tune.blackbox_repository.blackbox_tabular.deserialize(FOLDER); "
        "the incumbent comes from top-rung rows only (docs/benchmark.md)"
    )
    return 0
