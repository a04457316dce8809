"""``kdnas demo``: real multi-fidelity NAS with distillation on the embedded digits."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    from kdnas.cli import non_negative_int, positive_int

    parser = subparsers.add_parser(
        "demo",
        help="real multi-fidelity NAS with distillation on the embedded digits (~5 min, CPU)",
        description="Train a teacher, search MobileNetV2 architectures with Algorithm 2 "
        "(GP-UCB over low-fidelity distillation runs, then over full-data runs), measure how "
        "well low-fidelity accuracy ranks architectures with and without distillation, and "
        "write a report folder. Everything is real training on the embedded handwritten "
        "digits, with networks at reduced width so that it fits in about 5 minutes on 2 CPU "
        "cores. Rerun with the same --out to resume an interrupted demo.",
    )
    parser.add_argument("--out", default="kdnas-demo", help="report folder (default kdnas-demo)")
    parser.add_argument(
        "--tiny", action="store_true", help="smoke-test size: a few one-epoch runs (seconds)"
    )
    parser.add_argument("--method", default=None, help="distillation method (default kd)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="seed of everything (default 0)"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: auto)")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads (default 1)"
    )
    parser.set_defaults(func=run)


class _RichProgress:
    """The demo's phases as rich progress bars, with a line per finished evaluation."""

    def __init__(self, progress: Any, console: Any) -> None:
        self.progress = progress
        self.console = console
        self.tasks: dict[str, Any] = {}

    def start_phase(self, key: str, description: str, total: int | None) -> None:
        self.tasks[key] = self.progress.add_task(description, total=total)

    def advance(self, key: str, evaluation: Any, replayed: bool) -> None:
        self.progress.advance(self.tasks[key])
        if evaluation is None:
            return
        result = evaluation.result
        accuracy = "-" if not math.isfinite(result.valid_acc) else f"{result.valid_acc:.3f}"
        note = " (from store)" if replayed else ""
        note += " (reused)" if "reused_from" in result.info else ""
        self.console.log(
            f"{evaluation.arch.key()}  {result.fidelity.label():>16}  valid {accuracy}  "
            f"{result.status}  {result.cost_s:.1f}s{note}"
        )

    def end_phase(self, key: str) -> None:
        self.progress.stop_task(self.tasks[key])


def run(args: argparse.Namespace) -> int:
    import time

    import torch
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Table

    from kdnas.cli import UsageError, check_device_option
    from kdnas.cli._console import make_console, shown
    from kdnas.core import METHODS
    from kdnas.experiment import DemoSettings, run_demo
    from kdnas.store import RunMismatchError

    if args.method is not None and args.method not in METHODS:
        raise UsageError(f"unknown method {args.method!r}; valid methods: {', '.join(METHODS)}")
    check_device_option(args.device, here=True)
    # The demo's networks are too small to gain from intra-op threads, and several threads
    # slow down by 5x and more when the cores are shared (measured on 2 cores).
    torch.set_num_threads(args.threads or 1)
    overrides: dict[str, Any] = {"seed": args.seed, "device": args.device}
    if args.method is not None:
        overrides["method"] = args.method
    settings = DemoSettings.tiny(**overrides) if args.tiny else DemoSettings(**overrides)
    console = make_console()
    size = "tiny smoke-test size" if args.tiny else "full demo"
    console.print(
        f"[bold]kdnas demo[/bold] ({size}): MobileNetV2 space at [bold]reduced width "
        f"x{settings.width_multiplier}[/bold] on the embedded 8x8 handwritten digits "
        f"(not CIFAR-100), {settings.n_candidates} candidate architectures; low fidelity = "
        f"1/{settings.part} of the data with {shown(repr(settings.method))} distillation, "
        f"{settings.lf_epochs} epochs; high fidelity = all data, plain cross-entropy, "
        f"{settings.hf_epochs} epochs; teacher = the original network trained at high "
        f"fidelity (all training images, never the validation ones, as in the paper), "
        f"which is also its high-fidelity result; {torch.get_num_threads()} CPU threads."
    )
    clock = time.perf_counter()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        try:
            outcome = run_demo(settings, Path(args.out), _RichProgress(progress, console))
        except RunMismatchError as error:
            raise UsageError(f"{error} (for the demo: pass another --out)") from None
    wall = time.perf_counter() - clock

    table = Table(title="What the search found (test accuracy at high fidelity)")
    for column in ("", "architecture", "params", "valid acc", "test acc"):
        table.add_column(column)
    for label, evaluation in (("chosen", outcome.chosen), ("original", outcome.original)):
        if evaluation is None:
            table.add_row(label, "-", "-", "-", "-")
            continue
        result = evaluation.result
        from kdnas.spaces import get_space

        table.add_row(
            label,
            get_space("mobilenetv2").describe(evaluation.arch),
            f"{result.metrics.get('params', float('nan')):,.0f}",
            f"{result.valid_acc:.3f}",
            f"{result.test_acc:.3f}",
        )
    console.print(table)
    n_study = settings.n_correlation
    correlations = Table(
        title=f"Low-fidelity valid vs high-fidelity test accuracy, rank correlation over "
        f"{n_study} architectures (indicative only at this size)"
    )
    for column in ("low fidelity", "n", "Spearman", "Kendall"):
        correlations.add_column(column)
    for method, values in outcome.correlations.items():
        label = f"1/{settings.part} {method}" + (" (plain CE)" if method == "nokd" else " (KD)")
        correlations.add_row(
            label,
            f"{values['n']:.0f}",
            _number(values["spearman"]),
            _number(values["kendall"]),
        )
    console.print(correlations)
    teacher = outcome.report["teacher"]
    evaluations_s = outcome.report["cost"]["summed_evaluation_s"]
    console.print(
        f"Teacher: valid {teacher['valid_acc']:.3f}, test {teacher['test_acc']:.3f} (chance "
        f"{teacher['chance_acc']:.3f}); {teacher['train_time_s']:.1f} s of training, counted "
        f"once: the search's evaluations took {evaluations_s:.1f} s."
    )
    for warning in outcome.report["warnings"]:
        console.print(f"[bold yellow]Warning:[/bold yellow] {shown(warning)}")
    console.print(
        f"Report: {shown(outcome.report_dir / 'report.json')}, trajectory.png, lf_vs_hf.png; "
        f"store: {shown(outcome.store_path)}. Wall time {wall:.0f} s."
    )
    return 0


def _number(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:+.2f}"
