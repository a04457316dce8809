"""A real search end to end: data, candidates, training objective, optimizer, store, report."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdnas.core import Architecture, Fidelity
from kdnas.execute import ExecutionSummary, RayExecutor, SerialExecutor
from kdnas.experiment._health import FidelityHealth, check_teacher, weaker_teacher_warning
from kdnas.experiment._health import logger as health_logger
from kdnas.experiment._limits import LatencyCache, accuracy_cost_fronts, latency_cache_for
from kdnas.experiment._report import (
    evaluation_rows,
    lf_hf_pairs,
    plot_lf_vs_hf,
    plot_trajectory,
    trajectory,
    write_json,
)
from kdnas.experiment._settings import (
    PreparedSearch,
    SearchSettings,
    build_objective,
    build_optimizer,
    gray_folder_as_before,
    open_search_run,
    prepare_search,
)
from kdnas.store import RunMismatchError, SQLiteStore, StoredEvaluation

if TYPE_CHECKING:
    from kdnas.train import KeepPolicy, WeightsFolder

__all__ = [
    "SearchOutcome",
    "best_evaluation",
    "run_search",
    "search_cost",
    "teacher_cache_dir_for",
    "teacher_dir_for",
    "time_to_best",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchOutcome:
    """What ``run_search`` did and found.

    Args:
        settings: the search's settings.
        run_id: the run within the store.
        store_path: the store file.
        summary: the executor's summary (every evaluation of the run, in tell order).
        best: the high-fidelity evaluation with the best validation accuracy, if any.
        report_dir: where the report was written, if asked.
        wall_s: seconds of the whole call (data loading and teacher training included).
        teacher: ``TrainingObjective.teacher_summary`` of the teacher the search distilled
            from (accuracies, recorded training seconds), or None when it needs none.
        warnings: what the guard rails found (a teacher or a fidelity no better than chance,
            identical low-fidelity results), also logged and written to the report.
        limits: the size limits and what they did, and the accuracy-versus-cost fronts
            (``size_limit_report``).
    """

    settings: SearchSettings
    run_id: str
    store_path: Path
    summary: ExecutionSummary
    best: StoredEvaluation | None
    report_dir: Path | None
    wall_s: float
    teacher: dict[str, Any] | None = None
    warnings: tuple[str, ...] = ()
    limits: dict[str, Any] = dataclasses.field(default_factory=dict)


def teacher_dir_for(store_path: str | os.PathLike[str]) -> Path | None:
    """Where teachers of a store's searches are saved: ``<store>.teachers`` beside it."""
    if str(store_path) == ":memory:":
        return None
    path = Path(store_path)
    return path.with_name(path.name + ".teachers")


def teacher_cache_dir_for(store_path: str | os.PathLike[str]) -> Path | None:
    """Where a store's searches cache teacher summaries: ``<store>.teacher-cache`` beside it
    (an absolute path, read by every worker on the machine; None for an in-memory store)."""
    if str(store_path) == ":memory:":
        return None
    path = Path(store_path).resolve()
    return path.with_name(path.name + ".teacher-cache")


def best_evaluation(
    evaluations: Sequence[StoredEvaluation], settings: SearchSettings
) -> StoredEvaluation | None:
    """The ok high-fidelity evaluation with the best validation accuracy (first on ties)."""
    high = [e for e in evaluations if e.result.ok and e.result.fidelity == settings.high_fidelity]
    return max(high, key=lambda e: e.result.valid_acc) if high else None


def run_search(
    settings: SearchSettings,
    store_path: str | os.PathLike[str],
    *,
    run_id: str = "search",
    executor: SerialExecutor | RayExecutor | None = None,
    callbacks: Sequence[object] = (),
    report_dir: str | os.PathLike[str] | None = None,
    teacher_dir: str | os.PathLike[str] | None = None,
    keep_weights: KeepPolicy | None = None,
    teacher_progress: Callable[[int, int], None] | None = None,
) -> SearchOutcome:
    """Run (or resume) a real multi-fidelity search and store every evaluation.

    Args:
        settings: what to search.
        store_path: the SQLite store; an existing run ``run_id`` in it is resumed (refused if
            it was made with other settings).
        run_id: the run's name within the store.
        executor: default ``SerialExecutor()``.
        callbacks: executor callbacks (progress bars).
        report_dir: if given, write ``report.json`` and the PNG plots there.
        teacher_dir: where teachers are saved (default: ``<store>.teachers``).
        keep_weights: which full-data evaluations keep their trained weights in
            ``<store>.weights`` (default: the best ``kdnas.train.DEFAULT_KEEP`` by validation
            accuracy; ``KeepPolicy(0)`` keeps none).
        teacher_progress: called as ``teacher_progress(done, epochs)`` when the teacher
            trains now, at its start (``done``: epochs restored from its epoch checkpoint,
            else 0) and after each epoch; never when it is loaded. Only with an executor
            whose ``prepare`` runs in this process (``in_process``: the serial one); with
            Ray the teacher trains in a task elsewhere and nothing is called.

    Raises:
        ValueError: unknown space, method or algorithm (the message lists the valid ones); a
            missing or corrupt dataset (``kdnas.data.DatasetError``, naming the path); a
            store run made with other settings (``kdnas.store.RunMismatchError``).
    """
    clock = time.perf_counter()
    if not run_id:
        raise ValueError("the run id must be a non-empty string")
    prepared = prepare_search(settings, latency_cache=LatencyCache(latency_cache_for(store_path)))
    data, archs, candidates, config = (
        prepared.data,
        list(prepared.archs),
        prepared.candidates,
        prepared.config,
    )
    warnings: list[str] = []
    teacher = None
    # Everything cheap is checked before the teacher trains or its folder is made: the store
    # is a kdnas store, and the run is new or was made with these settings.
    with SQLiteStore(store_path) as store:
        try:
            config = open_search_run(store, run_id, config)
        except RunMismatchError as mismatch:
            # A run made on a grayscale image folder by kdnas 0.1, which loaded it with three
            # equal channels: it resumes on the data as it was made with.
            if prepared.data.in_channels != 1 or not gray_folder_as_before(settings):
                raise
            as_before = prepare_search(
                settings,
                latency_cache=LatencyCache(latency_cache_for(store_path)),
                gray_as_rgb=True,
            )
            try:
                config = open_search_run(store, run_id, as_before.config)
            except RunMismatchError:
                raise mismatch from None
            prepared = as_before
            data, archs, candidates = prepared.data, list(prepared.archs), prepared.candidates
        teachers = teacher_dir if teacher_dir is not None else teacher_dir_for(store_path)
        if teachers is not None:
            teachers = Path(teachers).resolve()  # Ray workers may run in another directory
        objective = build_objective(
            settings,
            data,
            teachers,
            teacher_cache_dir_for(store_path),
            weights=_weights_folder(store_path, keep_weights),
        )
        optimizer = build_optimizer(settings, candidates, data.resolution)
        executor = executor or SerialExecutor()
        if settings.needs_teacher:
            # Train (or load) the teacher once, where evaluations run, before the workers
            # start: otherwise every parallel worker would train its own copy at its first task.
            follow = (teacher_progress,) if getattr(executor, "in_process", False) else ()
            teacher = executor.prepare(objective, _prepare_teacher, settings.part, *follow)
            warnings = check_teacher(teacher, settings.allow_chance_teacher)
        health = FidelityHealth(objective.chance(), lambda f: _steps(objective, f))
        keepers = []
        if report_dir is not None:

            def keep_report(so_far: _RunSoFar) -> None:
                best_so_far = best_evaluation(so_far.evaluations, settings)
                found = [*warnings, *health.warnings]
                write_search_report(
                    Path(report_dir), settings, so_far, best_so_far, archs, teacher, found,
                    plots=False,
                )  # fmt: skip

            keepers.append(_ReportKeeper(keep_report, run_id))
        summary = executor.run(
            optimizer,
            objective,
            store,
            run_id=run_id,
            config=config,
            callbacks=[*callbacks, health, *keepers],
        )
    warnings.extend(health.finish(summary.evaluations))
    weaker = weaker_teacher_warning(teacher, summary.evaluations)
    if weaker is not None:
        # Through the health checks' logger, so that the command prints it as its other
        # warnings (a plain "Warning: ..." line).
        health_logger.warning(weaker)
        warnings.append(weaker)
    best = best_evaluation(summary.evaluations, settings)
    report = None
    if report_dir is not None:
        report = write_search_report(
            Path(report_dir),
            settings,
            summary,
            best,
            archs,
            teacher,
            warnings,
            limits=size_limit_report(prepared, summary.evaluations),
        )
    return SearchOutcome(
        settings=settings,
        run_id=run_id,
        store_path=Path(store_path),
        summary=summary,
        best=best,
        report_dir=report,
        wall_s=time.perf_counter() - clock,
        teacher=teacher,
        warnings=tuple(warnings),
        limits=size_limit_report(prepared, summary.evaluations),
    )


def size_limit_report(
    prepared: PreparedSearch, evaluations: Sequence[StoredEvaluation]
) -> dict[str, Any]:
    """The size limits of a search and what they did: the limits, how many drawn
    architectures they left out, the latency measurements' spread over their repeats, and
    the accuracy-versus-cost fronts of the ok high-fidelity evaluations (every search has
    these fronts; latency's only where it was measured)."""
    high = [e for e in evaluations if e.result.fidelity.is_high]
    latency_batch = prepared.config.get("size_limits", {}).get("latency_batch_size", 1)
    at_limit = {
        key: next(m.median_ms for m in measured if m.batch_size == latency_batch)
        for key, measured in prepared.latencies.items()
    }
    report: dict[str, Any] = {
        "limits": prepared.config.get("size_limits", {}),
        "candidates": len(prepared.archs),
        "rejected": prepared.rejected,
        "fronts": accuracy_cost_fronts(high, prepared.space.describe, at_limit),
    }
    if prepared.latencies:
        report["latency"] = latency_summary(prepared)
    return report


def latency_summary(prepared: PreparedSearch) -> dict[str, Any]:
    """Per batch size: the device, repeats, and the spread of the repeats ((max - min) /
    median) over the measured architectures (median and largest), and each measurement."""
    by_batch: dict[int, list[Any]] = {}
    for measured in prepared.latencies.values():
        for measurement in measured:
            by_batch.setdefault(measurement.batch_size, []).append(measurement)
    summary: dict[str, Any] = {}
    for batch, measurements in sorted(by_batch.items()):
        spreads = sorted(m.spread for m in measurements)
        summary[f"batch_{batch}"] = {
            "device": measurements[0].device,
            "repeats": measurements[0].repeats,
            "warmup": measurements[0].warmup,
            "architectures": len(measurements),
            "median_spread": spreads[len(spreads) // 2],
            "largest_spread": spreads[-1],
        }
    summary["measurements"] = {
        key: [dataclasses.asdict(m) for m in measured]
        for key, measured in prepared.latencies.items()
    }
    return summary


@dataclass(frozen=True)
class _RunSoFar:
    """What a report needs of a search still running (an ``ExecutionSummary`` has a stop
    reason, which a running search has not)."""

    run_id: str
    evaluations: Sequence[StoredEvaluation]
    n_replayed: int
    stop_reason: str | None = None


class _ReportKeeper:
    """An executor callback that rewrites report.json after each evaluation (the plots are
    drawn once, at the end), so the report folder of a running search is current."""

    def __init__(self, write: Callable[[_RunSoFar], None], run_id: str) -> None:
        self.write = write
        self.run_id = run_id
        self.evaluations: list[StoredEvaluation] = []
        self.replayed = 0

    def on_start(self, suggestion: object) -> None:
        pass

    def on_result(self, evaluation: StoredEvaluation, replayed: bool) -> None:
        self.evaluations.append(evaluation)
        self.replayed += int(replayed)
        try:
            self.write(_RunSoFar(self.run_id, list(self.evaluations), self.replayed))
        except OSError as error:  # a report that cannot be written must not stop the search
            logger.warning("could not update the report: %s", error)


def _weights_folder(
    store_path: str | os.PathLike[str], policy: KeepPolicy | None
) -> WeightsFolder | None:
    """The store's kept-weights folder under ``policy`` (None: nothing kept)."""
    from kdnas.train import KeepPolicy, WeightsFolder, weights_dir_for

    policy = policy if policy is not None else KeepPolicy()
    folder = weights_dir_for(store_path)
    if folder is None or not policy.keeps_any:
        return None
    return WeightsFolder(folder, policy)


def _prepare_teacher(
    objective: Any, part: int, on_epoch: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    summary = objective.teacher_summary(part, on_epoch)
    if summary["status"] != "ok":
        objective.teacher(part)  # raises TeacherTrainingError, naming how the training ended
    return summary


def _steps(objective: Any, fidelity: Fidelity) -> int:
    return objective.optimisation_steps(fidelity.part, fidelity.epochs)


def time_to_best(evaluations: Sequence[StoredEvaluation], high: Fidelity) -> float | None:
    """Summed evaluation seconds until the search first held its final incumbent (the best
    high-fidelity validation accuracy), or None without an ok high-fidelity result."""
    points = trajectory(evaluations, high)
    if not points or not math.isfinite(points[-1]["best_valid_acc"]):
        return None
    final = points[-1]["best_valid_acc"]
    return next(p["seconds"] for p in points if p["best_valid_acc"] == final)


def write_search_report(
    folder: Path,
    settings: SearchSettings,
    summary: ExecutionSummary | _RunSoFar,
    best: StoredEvaluation | None,
    archs: Sequence[Architecture],
    teacher: dict[str, Any] | None = None,
    warnings: Sequence[str] = (),
    limits: dict[str, Any] | None = None,
    *,
    plots: bool = True,
) -> Path:
    """Write report.json, trajectory.png and, when some architecture has both, lf_vs_hf.png
    (the PNGs only with ``plots``; a running search rewrites the JSON alone).

    The teacher's seconds are reported once, beside the summed evaluation seconds, and the
    seconds to the final incumbent are given with and without them."""
    from kdnas.bench.correlation import correlations
    from kdnas.spaces import get_space

    space = get_space(settings.space)
    folder.mkdir(parents=True, exist_ok=True)
    evaluations = list(summary.evaluations)
    high, low = settings.high_fidelity, settings.low_fidelity
    if plots:
        plot_trajectory(
            evaluations,
            high,
            folder / "trajectory.png",
            f"{settings.algorithm} on {settings.dataset} ({settings.space})",
        )
    _, lf, hf = lf_hf_pairs(evaluations, low, high)
    stats = correlations(lf, hf) if len(lf) else {}
    if len(lf) and plots:
        plot_lf_vs_hf(
            {low.label(): (lf, hf, stats.get("spearman", float("nan")))},
            folder / "lf_vs_hf.png",
            "low vs high fidelity",
        )
    payload: dict[str, Any] = {
        "settings": settings.to_dict(),
        "run_id": summary.run_id,
        "n_candidates": len(archs),
        "n_evaluations": len(evaluations),
        "n_replayed": summary.n_replayed,
        "stop_reason": summary.stop_reason,
        "summed_evaluation_s": sum(e.result.cost_s for e in evaluations),
        "teacher": teacher,
        "cost": search_cost(evaluations, high, teacher),
        "warnings": list(warnings),
        "best": None
        if best is None
        else {
            "arch": space.describe(best.arch),
            "arch_json": best.arch.to_json(),
            "valid_acc": best.result.valid_acc,
            "test_acc": best.result.test_acc,
            "params": best.result.metrics.get("params"),
        },
        "size_limits": limits or {},
        "lf_vs_hf": {"n": len(lf), "correlations": stats},
        "trajectory": trajectory(evaluations, high),
        "evaluations": evaluation_rows(evaluations, space),
    }
    write_json(folder / "report.json", payload)
    return folder


def search_cost(
    evaluations: Sequence[StoredEvaluation], high: Fidelity, teacher: dict[str, Any] | None
) -> dict[str, float | None]:
    """Seconds of a search: evaluations, the teacher (once), and to the final incumbent with
    and without the teacher's training."""
    teacher_s = float(teacher["train_time_s"]) if teacher is not None else 0.0
    to_best = time_to_best(evaluations, high)
    return {
        "summed_evaluation_s": sum(e.result.cost_s for e in evaluations),
        "teacher_s": teacher_s,
        "time_to_best_s": to_best,
        "time_to_best_with_teacher_s": None if to_best is None else to_best + teacher_s,
    }
