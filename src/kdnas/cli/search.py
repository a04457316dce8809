"""``kdnas search``: a real multi-fidelity search on a dataset, stored and resumable."""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    from kdnas.cli import non_negative_int, positive_int
    from kdnas.cli._options import (
        add_executor_arguments,
        add_protocol_arguments,
        add_space_argument,
        dataset_help,
    )
    from kdnas.cli.models import add_keep_weights_argument
    from kdnas.core import METHODS
    from kdnas.search.registry import DEFAULT_OPTIMIZER, registered_optimizers

    parser = subparsers.add_parser(
        "search",
        help="real multi-fidelity architecture search (stored, resumable, Ray optional)",
        description="Search a space's architectures by training them. By default "
        "(proxy-gp-ucb) a Gaussian-process search trains candidates on the full data in an "
        "order guided by a zero-cost prior (log multiply-adds): no teacher, no low fidelity. "
        "--algorithm alg2 is the paper's Algorithm 2: low-fidelity runs on 1/PART of the data "
        "distilling from a teacher with METHOD, then full-data runs (alg1: Algorithm 1). Every "
        "finished evaluation is committed to the --store at once; run the same command again "
        "to resume an interrupted search (finished evaluations are never rerun; a run the "
        "store holds goes on with the optimizer it was made with unless --algorithm is given).",
    )
    add_space_argument(parser)
    parser.add_argument(
        "--dataset",
        default="digits",
        help=dataset_help(),
    )
    entries = registered_optimizers()
    algorithms = ", ".join(
        f"{name} (experimental)" if entry.experimental else name for name, entry in entries.items()
    )
    parser.add_argument(
        "--algorithm",
        default=None,
        help=f"one of {algorithms}. Default: the optimizer of the run when the store already "
        f"holds it, else {DEFAULT_OPTIMIZER} (proxy-prior GP-UCB: full data only, no teacher, "
        f"the fastest measured); alg2 is the paper's Algorithm 2 (KD at a low fidelity)",
    )
    # Given or not matters (None = not given): these shape only the low fidelity, and a user
    # who passes one to an optimizer that has none is told so instead of being ignored.
    low_fidelity = ", ".join(name for name, entry in entries.items() if entry.uses_low_fidelity)
    parser.add_argument(
        "--method",
        default=None,
        help=f"low-fidelity loss: {', '.join(METHODS)} (default nst); "
        f"for the optimizers that evaluate at a low fidelity ({low_fidelity})",
    )
    parser.add_argument(
        "--part",
        type=positive_int,
        default=None,
        help="low fidelity trains on 1/PART (default 27; as --method)",
    )
    parser.add_argument(
        "--n-lf",
        type=positive_int,
        default=None,
        help="low-fidelity evaluations of alg1/alg2 (default 10)",
    )
    parser.add_argument(
        "--candidates",
        type=positive_int,
        default=100,
        help="architectures sampled from the space (100)",
    )
    parser.add_argument("--candidate-seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="optimizer and training seed"
    )
    add_protocol_arguments(parser)
    parser.add_argument(
        "--beta",
        type=float,
        default=None,
        help="UCB std weight (default: the optimizer's own: the paper's 0.5 for its "
        f"algorithms, {entries[DEFAULT_OPTIMIZER].default_beta} for {DEFAULT_OPTIMIZER})",
    )
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="hyperparameter of the --method loss, e.g. --hp tau=4 --hp lambda=0.9",
    )
    parser.add_argument(
        "--budget-seconds", type=float, default=None, help="summed evaluation seconds"
    )
    parser.add_argument(
        "--budget-evaluations",
        type=positive_int,
        default=None,
        help="evaluations in all, low-fidelity and full-data alike (alg1: n_lf + 1)",
    )
    parser.add_argument(
        "--store", default="kdnas-search.sqlite", help="SQLite store (default kdnas-search.sqlite)"
    )
    parser.add_argument("--run-id", default="search", help="run name within the store")
    parser.add_argument("--report", default=None, help="report folder (default <store>.report)")
    add_keep_weights_argument(parser)
    add_executor_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class AlgorithmChoice:
    """Which optimizer a ``kdnas search`` runs, and why.

    Args:
        name: the optimizer's registry name.
        given: named by ``--algorithm``.
        stored: the optimizer of the run the store already holds under ``--run-id`` (None: a
            new run); when not given, ``name`` is this one, whatever the default is now.
        preset: the optimizer's preset version to resume that run with, where it was made
            with another than the current one (None: the current one).
        stored_beta: the UCB weight that run was made with, used when ``--beta`` is not
            given and ``preset`` is set (an earlier preset's default may be another).
    """

    name: str
    given: bool
    stored: str | None
    preset: int | None = None
    stored_beta: float | None = None


def choose_algorithm(args: argparse.Namespace) -> AlgorithmChoice:
    """``--algorithm``, else the optimizer of the run the store holds under ``--run-id``, else
    ``DEFAULT_OPTIMIZER``: a run made when another optimizer was the default resumes with the
    same command (its store is read, never written). A run of that optimizer made with an
    earlier preset of its settings resumes with that preset (and, without ``--beta``, its
    stored beta), so it goes on as it would have.

    Raises:
        kdnas.store.IncompatibleStoreError: ``--store`` is a file but not a kdnas store.
    """
    from kdnas.experiment import stored_optimizer
    from kdnas.search.registry import DEFAULT_OPTIMIZER, registered_optimizers

    stored = stored_optimizer(args.store, args.run_id) if args.run_id else None
    stored_name = None if stored is None else stored.algorithm
    given = args.algorithm is not None
    name = args.algorithm if given else (stored_name or DEFAULT_OPTIMIZER)
    entry = registered_optimizers().get(name)  # an unknown name is refused by the settings
    if stored is None or stored_name != name or entry is None or stored.preset == entry.preset:
        return AlgorithmChoice(name, given, stored_name)
    return AlgorithmChoice(name, given, stored_name, stored.preset, stored.beta)


def _low_fidelity_options(args: argparse.Namespace) -> list[str]:
    """The options given that shape only a low fidelity or its teacher."""
    given = (
        ("--method", args.method is not None),
        ("--part", args.part is not None),
        ("--n-lf", args.n_lf is not None),
        ("--lf-epochs", args.lf_epochs is not None),
        ("--hp", bool(args.hp)),
        ("--teacher", args.teacher is not None),
        ("--teacher-data subset", args.teacher_data != "full"),
        ("--allow-chance-teacher", args.allow_chance_teacher),
    )
    return [flag for flag, present in given if present]


def check_low_fidelity_options(args: argparse.Namespace, choice: AlgorithmChoice) -> None:
    """Refuse options that shape only a low fidelity or its teacher for a new run of an
    optimizer that evaluates at full data only: they would be silently ignored, and a user
    who passes ``--method kd`` expects distillation. A run the store holds is left to its
    fingerprint, which refuses other settings by name (earlier kdnas accepted such options:
    the command that made a run resumes it).

    Raises:
        UsageError: naming the options and the optimizers that use them.
    """
    from kdnas.cli import UsageError
    from kdnas.search.registry import get_optimizer, registered_optimizers

    if choice.stored is not None or get_optimizer(choice.name).uses_low_fidelity:
        return
    flags = _low_fidelity_options(args)
    if not flags:
        return
    users = ", ".join(
        name for name, entry in registered_optimizers().items() if entry.uses_low_fidelity
    )
    which = choice.name if choice.given else f"{choice.name} (the default)"
    raise UsageError(
        f"{', '.join(flags)} {'applies' if len(flags) == 1 else 'apply'} only to optimizers "
        f"that evaluate at a low fidelity ({users}); {which} trains every candidate on the "
        f"full data, with no teacher: add --algorithm alg2 for the paper's distillation "
        f"search, or leave {'it' if len(flags) == 1 else 'them'} out"
    )


def settings_from_args(args: argparse.Namespace, choice: AlgorithmChoice | None = None) -> Any:
    """The ``SearchSettings`` of the command line (validated: bad names list valid ones),
    with the optimizer ``choice`` (default: ``choose_algorithm(args)``)."""
    from kdnas.cli import hyperparameter_overrides
    from kdnas.cli._options import protocol_settings
    from kdnas.experiment import SearchSettings
    from kdnas.spaces import get_space

    get_space(args.space)  # unknown names fail here, listing the valid spaces
    choice = choice or choose_algorithm(args)
    check_low_fidelity_options(args, choice)
    # The low fidelity's options take SearchSettings' defaults where not given.
    low = {
        name: value
        for name, value in (("method", args.method), ("part", args.part), ("n_lf", args.n_lf))
        if value is not None
    }
    method = low.get("method", SearchSettings.method)
    overrides = hyperparameter_overrides(args.hp, method, args.space)
    return SearchSettings(
        space=args.space,
        dataset=args.dataset,
        algorithm=choice.name,
        **low,
        n_candidates=args.candidates,
        candidate_seed=args.candidate_seed,
        seed=args.seed,
        budget_evaluations=args.budget_evaluations,
        budget_seconds=args.budget_seconds,
        beta=args.beta if args.beta is not None or choice.preset is None else choice.stored_beta,
        hyperparameters={method: overrides} if overrides else {},
        device=args.device,
        optimizer_preset=choice.preset,
        **protocol_settings(args),
    )


def _algorithm_note(choice: AlgorithmChoice, settings: Any, args: argparse.Namespace) -> str:
    """One line on the optimizer when the command line did not name it (else empty)."""
    from kdnas.cli._console import shown
    from kdnas.search.registry import DEFAULT_OPTIMIZER

    if choice.given:
        return ""
    if choice.name != DEFAULT_OPTIMIZER:
        return (
            f"Run {shown(repr(args.run_id))} of {shown(args.store)} was made with "
            f"{shown(choice.name)}: it goes on with {shown(choice.name)} (the default is now "
            f"{DEFAULT_OPTIMIZER}; another --run-id starts one)"
        )
    if settings.needs_teacher:
        return ""
    return (
        f"{DEFAULT_OPTIMIZER} evaluates at full data only: no teacher is trained; "
        f"--algorithm alg2 for the paper's KD search"
    )


class _Bar:
    """Executor callbacks drawing one rich progress bar (evaluations or seconds of budget)."""

    def __init__(
        self,
        progress: Any,
        console: Any,
        total: float | None,
        seconds: bool,
        teacher: bool = False,
        epochs_followed: bool = True,
    ) -> None:
        self.progress = progress
        self.console = console
        self.seconds = seconds
        # The teacher trains before the first evaluation (minutes on real data): its own line,
        # whose clock runs until the first evaluation starts, so the wait is not silent. It
        # becomes an epoch bar when the teacher trains in this process (``teacher_epoch``);
        # with Ray it trains in a task elsewhere and the clock is all there is to show.
        where = "" if epochs_followed else " in a Ray task"
        self.teacher = (
            progress.add_task(f"teacher (loaded, or trained once{where})", total=1, of="")
            if teacher
            else None
        )
        self.epochs_followed = epochs_followed
        self.epochs_seen = False
        unit = "budget seconds" if seconds else "evaluations"
        of = "" if total is None else f"/{total:.0f}"
        self.task = progress.add_task(f"search ({unit})", total=total, of=of)

    def teacher_epoch(self, done: int, epochs: int) -> None:
        """The teacher trains here: ``done`` of ``epochs`` finished (``run_search``'s
        ``teacher_progress``; first called at its start, with the epochs a checkpoint
        restored). Each finished epoch is also a line, for logs that keep no bar."""
        if self.teacher is None:
            return
        self.progress.update(
            self.teacher,
            description="teacher epoch",
            total=epochs,
            completed=done,
            of=f"/{epochs}",
        )
        if not done and not self.epochs_seen:
            self.console.log(f"teacher trains for {epochs} epoch(s)")
        elif done and not self.epochs_seen:
            self.console.log(f"teacher resumes after epoch {done}/{epochs} (its checkpoint)")
        elif done:
            self.console.log(f"teacher epoch {done}/{epochs}")
        self.epochs_seen = True

    def _teacher_ready(self) -> None:
        if self.teacher is not None:
            if self.epochs_seen:
                self.progress.update(self.teacher, description="teacher ready")
            else:  # here, a teacher that did not train was loaded
                loaded = "teacher loaded" if self.epochs_followed else "teacher ready"
                self.progress.update(self.teacher, completed=1, description=loaded)
            self.progress.stop_task(self.teacher)
            self.teacher = None

    def on_start(self, suggestion: Any) -> None:
        self._teacher_ready()

    def on_result(self, evaluation: Any, replayed: bool) -> None:
        self._teacher_ready()
        result = evaluation.result
        self.progress.advance(self.task, result.cost_s if self.seconds else 1)
        accuracy = "-" if not math.isfinite(result.valid_acc) else f"{result.valid_acc:.4f}"
        note = " (from store)" if replayed else ""
        self.console.log(
            f"trial {evaluation.trial_id:>3}  {result.fidelity.label():>14}  valid "
            f"{accuracy}  {result.status:>8}  {result.cost_s:7.1f}s  {evaluation.arch.key()}{note}"
        )


class _PlainWarnings(logging.Handler):
    """The health checks' warnings, printed as the user's own lines ("Warning: ...") the
    moment they are found, instead of as developer log lines
    (``WARNING kdnas.experiment._health: ...``) by the root logger's stderr handler, which
    leaves them out while this handler is attached (other handlers, a test's included, still
    receive them)."""

    def __init__(self, console: Any) -> None:
        super().__init__(logging.WARNING)
        self.console = console
        self.logger = logging.getLogger("kdnas.experiment._health")

    def emit(self, record: logging.LogRecord) -> None:
        from rich.markup import escape

        from kdnas.cli._console import one_line

        # Whole: the cause and the fix come last in these messages (kdnas's own text; control
        # characters and markup still escaped).
        text = escape(one_line(record.getMessage(), limit=None))
        self.console.print(f"[bold yellow]Warning:[/bold yellow] {text}")

    def _silenced(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(self.logger.name)

    def __enter__(self) -> _PlainWarnings:
        self.logger.addHandler(self)
        for handler in logging.getLogger().handlers:
            if type(handler) is logging.StreamHandler:  # basicConfig's, not a capture's
                handler.addFilter(self._silenced)
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self._silenced)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from kdnas.cli import UsageError
    from kdnas.cli._console import make_console, shown
    from kdnas.cli._options import check_run_arguments, executor_from_args
    from kdnas.execute import RayExecutor
    from kdnas.experiment import run_search, search_cost
    from kdnas.search.registry import get_optimizer
    from kdnas.store import RunMismatchError

    choice = choose_algorithm(args)
    settings = settings_from_args(args, choice)
    executor, device = executor_from_args(args, settings.device)
    settings = dataclasses.replace(settings, device=device)
    check_run_arguments(args)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = Path(args.report) if args.report else Path(args.store + ".report")
    console = make_console(stderr=args.json)
    if settings.budget_seconds is not None:
        total, seconds = settings.budget_seconds, True
    elif settings.budget_evaluations is not None:
        total, seconds = float(settings.budget_evaluations), False
    elif settings.algorithm == "alg1":
        total, seconds = float(settings.n_lf + 1), False
    else:
        total, seconds = None, False
    fidelities = f"high fidelity {shown(settings.high_fidelity.label())}"
    if get_optimizer(settings.algorithm).uses_low_fidelity:
        fidelities = f"low fidelity {shown(settings.low_fidelity.label())}, {fidelities}"
    console.print(
        f"[bold]kdnas search[/bold]: {shown(settings.algorithm)} over {settings.n_candidates} "
        f"{shown(settings.space)} architectures on {shown(settings.dataset)}; {fidelities}; "
        f"store {shown(args.store)} (run {shown(repr(args.run_id))}); executor "
        f"{shown(args.executor)}"
        + (f" ({type(executor).__name__})" if isinstance(executor, RayExecutor) else "")
    )
    note = _algorithm_note(choice, settings, args)
    if note:
        console.print(note)
    if choice.preset is not None:
        console.print(
            f"Resuming {shown(repr(args.run_id))} with {shown(choice.name)}'s settings as of "
            f"that run (preset {choice.preset}; a new --run-id gets preset "
            f"{get_optimizer(choice.name).preset})"
        )
    with (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.0f}{task.fields[of]}"),
            TimeElapsedColumn(),
            console=console,
        ) as progress,
        _PlainWarnings(console),
    ):
        bar = _Bar(
            progress,
            console,
            total,
            seconds,
            settings.needs_teacher,
            epochs_followed=getattr(executor, "in_process", False),
        )
        try:
            outcome = run_search(
                settings,
                args.store,
                run_id=args.run_id,
                executor=executor,
                callbacks=[bar],
                report_dir=report,
                keep_weights=args.keep_weights,
                teacher_progress=bar.teacher_epoch,
            )
        except RunMismatchError as error:
            if "teacher." not in str(error) or "file_sha256" in str(error):
                raise  # (a --teacher file's hash differing: another teacher, no hint to give)
            raise UsageError(
                f"{error}. Stores made before the teacher learned from the whole training "
                f"set resume with --teacher-data subset"
            ) from None
    best = outcome.best
    cost = search_cost(outcome.summary.evaluations, settings.high_fidelity, outcome.teacher)
    summary = {
        "run_id": outcome.run_id,
        "algorithm": settings.algorithm,
        "store": str(outcome.store_path),
        "report": str(outcome.report_dir),
        "evaluations": len(outcome.summary.evaluations),
        "replayed": outcome.summary.n_replayed,
        "new": outcome.summary.n_new,
        "wall_s": round(outcome.wall_s, 3),
        "teacher": outcome.teacher,
        "cost": cost,
        "warnings": list(outcome.warnings),
        "size_limits": {k: v for k, v in outcome.limits.items() if k != "latency"},
        "latency": _latency_spread(outcome.limits),
        "best": None
        if best is None
        else {
            "arch": best.arch.to_json(),
            "valid_acc": best.result.valid_acc,
            "test_acc": best.result.test_acc,
        },
    }
    failure = _all_failed(outcome.summary.evaluations)
    summary["all_failed"] = failure
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0 if failure is None else 1
    teacher = outcome.teacher
    if teacher is not None and teacher["data"] == "file":
        console.print(
            f"Teacher: your network {teacher['file']} (sha256 {teacher['sha256'][:12]}, "
            f"{teacher['params']:,} parameters), not trained here: valid "
            f"{teacher['valid_acc']:.4f}, test {teacher['test_acc']:.4f} (chance "
            f"{teacher['chance_acc']:.3f})"
        )
    elif teacher is not None:
        where = "all" if teacher["part"] == 1 else f"1/{teacher['part']} of the"
        console.print(
            f"Teacher: the original network on {where} training images "
            f"({teacher['images']}), {teacher['epochs']} epochs: valid "
            f"{teacher['valid_acc']:.4f}, test {teacher['test_acc']:.4f} (chance "
            f"{teacher['chance_acc']:.3f}), {teacher['train_time_s']:.1f} s of training"
            + (" (loaded)" if teacher["loaded"] else "")
        )
    to_best = cost["time_to_best_s"]
    if teacher is None:
        console.print(
            f"Seconds: {cost['summed_evaluation_s']:.1f} of evaluations (no teacher)"
            + ("" if to_best is None else f"; to the best network {to_best:.1f}")
        )
    else:
        console.print(
            f"Seconds: {cost['summed_evaluation_s']:.1f} of evaluations + "
            f"{cost['teacher_s']:.1f} of teacher"
            + (
                ""
                if to_best is None
                else f"; to the best network {to_best:.1f} without the teacher, "
                f"{cost['time_to_best_with_teacher_s']:.1f} with it"
            )
        )
    if outcome.warnings:
        console.print(f"{len(outcome.warnings)} warning(s) above, also in the report.")
    if failure is not None:
        console.print(f"[bold red]Every evaluation failed[/bold red]: {shown(failure)}")
        return 1
    _print_limits(console, outcome.limits)
    if best is None:
        console.print("No high-fidelity evaluation finished; see the report for the rest.")
    else:
        console.print(
            f"Best at high fidelity: {shown(best.arch.to_json())}\n  valid "
            f"{best.result.valid_acc:.4f}  test {best.result.test_acc:.4f}  "
            f"({summary['evaluations']} evaluations, {summary['replayed']} read back from the "
            f"store). Report: {shown(outcome.report_dir)}"
        )
        console.print(f"Use it: kdnas export {args.store} --run-id {outcome.run_id} --to MODEL")
    return 0


def _all_failed(evaluations: Any) -> str | None:
    """Why a search whose every evaluation failed or diverged has nothing to show (the last
    evaluation's reason and how many share it), or None when some evaluation finished ok or
    none ran."""
    if not evaluations or any(e.result.status == "ok" for e in evaluations):
        return None
    reasons = [_reason(e.result) for e in evaluations]
    last = reasons[-1]
    return f"all {len(reasons)} evaluations failed ({reasons.count(last)} alike); the last: {last}"


def _reason(result: Any) -> str:
    if result.info.get("error"):
        return str(result.info["error"])
    if result.status == "diverged":
        return "training diverged (a NaN or infinite loss: is the learning rate too high?)"
    return result.status


def _latency_spread(limits: dict[str, Any]) -> dict[str, Any] | None:
    """The latency summary without the individual measurements (those are in the report)."""
    latency = limits.get("latency")
    if not latency:
        return None
    return {k: v for k, v in latency.items() if k != "measurements"}


def _print_limits(console: Any, limits: dict[str, Any]) -> None:
    """The limits, what they left out, the latency spread and the accuracy-versus-cost
    fronts, as text (the same figures as the report's ``size_limits``)."""
    from kdnas.cli._console import shown

    if limits.get("limits"):
        given = ", ".join(f"{k} {v:,}" for k, v in limits["limits"].items())
        console.print(
            f"Size limits ({given}): {limits['candidates']} candidates within them, "
            f"{limits['rejected']} drawn architectures left out before training"
        )
    for batch, figures in (_latency_spread(limits) or {}).items():
        console.print(
            f"Latency at {batch.replace('_', ' ')} on {shown(figures['device'])}: median of "
            f"{figures['repeats']} repeats after {figures['warmup']} warm-up; spread "
            f"(interquartile range / median) {figures['median_spread']:.1%} typical, "
            f"{figures['largest_spread']:.1%} largest over {figures['architectures']} networks"
        )
    for cost, front in limits.get("fronts", {}).items():
        if len(front) < 1:
            continue
        unit = " ms" if cost == "latency_ms" else ""
        points = "; ".join(
            f"{shown(row['arch'])} {_figure(row[cost])}{unit}: {row['valid_acc']:.4f}"
            for row in front
        )
        console.print(f"Accuracy-versus-{cost} front (high fidelity, valid accuracy): {points}")


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
