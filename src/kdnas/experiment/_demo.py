"""``kdnas demo``: a real multi-fidelity search with distillation on the embedded digits.

Steps, all real training on the CPU (or CUDA when present):

1. the teacher (the space's original network) is trained on all training images (never the
   validation split) with the high-fidelity protocol, as in the paper; that training is also
   the original network's high-fidelity evaluation;
2. Algorithm 2: GP-UCB over low-fidelity distillation runs, then GP-UCB over high-fidelity
   runs starting from the best low-fidelity architecture;
3. a small correlation study: a few architectures (the ones the search trained at high
   fidelity plus random others) at low fidelity with distillation and with plain
   cross-entropy, and at high fidelity, and the original network at high fidelity (the
   teacher's result, read back);
4. a report folder: JSON and PNG plots.

Every evaluation goes to one SQLite store, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from kdnas.core import Architecture, Fidelity, Suggestion
from kdnas.execute import SerialExecutor
from kdnas.experiment._grid import GridSearch, ReuseStored
from kdnas.experiment._health import FidelityHealth, check_teacher
from kdnas.experiment._report import (
    evaluation_rows,
    lf_hf_pairs,
    plot_lf_vs_hf,
    plot_trajectory,
    trajectory,
    write_json,
)
from kdnas.experiment._search import best_evaluation, search_cost
from kdnas.experiment._settings import (
    SearchSettings,
    build_objective,
    build_optimizer,
    prepare_search,
)
from kdnas.store import SQLiteStore, StoredEvaluation

__all__ = ["DemoOutcome", "DemoProgress", "DemoSettings", "run_demo"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. The defaults fit in about 5 minutes on 2 CPU cores.

    Args:
        method: the distillation method of the low-fidelity runs.
        part: the low-fidelity subset, 1/part of the digits' training images.
        n_candidates: architectures sampled from MobileNetV2 (the original included).
        n_lf: low-fidelity evaluations of Algorithm 2.
        n_hf: high-fidelity evaluations of Algorithm 2.
        n_correlation: architectures of the correlation study.
        lf_epochs: epochs of a low-fidelity run.
        hf_epochs: epochs of a high-fidelity run, and of the teacher's training.
        width_multiplier: channel scaling of every network (reduced: the CPU demo's networks
            are MobileNetV2 at this width on 8x8 digits).
        batch_size: training batch size.
        lr, weight_decay, crop_padding: the demo's training protocol. The paper's (lr 0.1,
            weight decay 5e-4, 4-pixel crops) learns too slowly on 8x8 digits in a dozen
            epochs; these values were picked by a few trials on the original network.
        kd_tau, kd_lambda: Hinton KD's temperature and weight (Hinton's and the paper's
            ImageNet values; the paper's CIFAR values tau=32, lambda=1 leave out the
            cross-entropy term, which hurt with the teacher kdnas trained on the subset
            before it followed the paper).
        allow_chance_teacher: distill even from a teacher no better than chance (the tiny
            smoke-test size trains one epoch and needs it).
        seed: seeds candidates, optimizer and training.
        device: None picks CUDA when available.
    """

    method: str = "kd"
    part: int = 4
    n_candidates: int = 30
    n_lf: int = 8
    n_hf: int = 3
    n_correlation: int = 7
    lf_epochs: int = 10
    hf_epochs: int = 8
    width_multiplier: float = 0.25
    batch_size: int = 64
    lr: float = 0.2
    weight_decay: float = 0.0
    crop_padding: int = 0
    kd_tau: float = 4.0
    kd_lambda: float = 0.9
    seed: int = 0
    device: str | None = None
    allow_chance_teacher: bool = False

    def __post_init__(self) -> None:
        for name in ("n_candidates", "n_lf", "n_hf", "n_correlation", "part"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"DemoSettings.{name} must be a positive integer, got {value!r}")
        if self.n_lf > self.n_candidates or self.n_correlation >= self.n_candidates:
            raise ValueError("DemoSettings: n_lf and n_correlation must be below n_candidates")
        if self.method == "nokd":
            raise ValueError("the demo compares a distillation method with nokd; pick another")

    @classmethod
    def tiny(cls, **overrides: Any) -> DemoSettings:
        """A smoke-test size: a few one-epoch runs of very narrow networks."""
        values: dict[str, Any] = {
            "part": 9,
            "n_candidates": 5,
            "n_lf": 2,
            "n_hf": 1,
            "n_correlation": 2,
            "lf_epochs": 1,
            "hf_epochs": 1,
            "width_multiplier": 0.125,
            "batch_size": 256,
            "allow_chance_teacher": True,
        }
        values.update(overrides)
        return cls(**values)

    def search_settings(self) -> SearchSettings:
        return SearchSettings(
            space="mobilenetv2",
            dataset="digits",
            algorithm="alg2",
            method=self.method,
            part=self.part,
            n_lf=self.n_lf,
            n_candidates=self.n_candidates,
            candidate_seed=self.seed,
            seed=self.seed,
            lf_epochs=self.lf_epochs,
            hf_epochs=self.hf_epochs,
            # Every run gives its epochs and the teacher learns at high fidelity, so this
            # only sets the cosine schedule's length, the longest run's.
            epochs=max(self.lf_epochs, self.hf_epochs),
            width_multiplier=self.width_multiplier,
            valid_fraction=0.2,
            budget_evaluations=self.n_lf + self.n_hf,
            train={
                "batch_size": self.batch_size,
                "lr": self.lr,
                "weight_decay": self.weight_decay,
                "crop_padding": self.crop_padding,
            },
            hyperparameters={"kd": {"tau": self.kd_tau, "lambda": self.kd_lambda}},
            device=self.device,
            allow_chance_teacher=self.allow_chance_teacher,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class DemoProgress(Protocol):
    """Where the demo reports progress (the CLI draws rich progress bars)."""

    def start_phase(self, key: str, description: str, total: int | None) -> None:
        """A phase begins; ``total`` evaluations (None: unknown)."""

    def advance(self, key: str, evaluation: StoredEvaluation | None, replayed: bool) -> None:
        """One step of phase ``key`` ended."""

    def end_phase(self, key: str) -> None:
        """The phase is over."""


class _Silent:
    def start_phase(self, key: str, description: str, total: int | None) -> None:
        pass

    def advance(self, key: str, evaluation: StoredEvaluation | None, replayed: bool) -> None:
        pass

    def end_phase(self, key: str) -> None:
        pass


class _PhaseRouter:
    """Executor callbacks -> progress phases, by the fidelity of each evaluation."""

    def __init__(self, progress: DemoProgress, phase_of: dict[Fidelity, str]) -> None:
        self.progress = progress
        self.phase_of = phase_of
        self.open: set[str] = set()

    def on_start(self, suggestion: Suggestion) -> None:
        pass

    def on_result(self, evaluation: StoredEvaluation, replayed: bool) -> None:
        key = self.phase_of.get(evaluation.result.fidelity)
        if key is not None:
            self.progress.advance(key, evaluation, replayed)


@dataclass(frozen=True)
class DemoOutcome:
    """What the demo found (see ``report`` for everything, as written to report.json)."""

    chosen: StoredEvaluation | None
    original: StoredEvaluation | None
    correlations: dict[str, dict[str, float]]
    report_dir: Path
    store_path: Path
    wall_s: float
    report: dict[str, Any]


def _correlation_archs(
    candidates: Sequence[Architecture],
    searched_hf: Sequence[Architecture],
    original: Architecture,
    count: int,
    seed: int,
) -> list[Architecture]:
    """The search's high-fidelity architectures, then random other candidates, up to count."""
    chosen = [a for a in searched_hf if a != original][:count]
    others = [a for a in candidates if a not in chosen and a != original]
    rng = np.random.default_rng(seed + 1)
    for index in rng.permutation(len(others)):
        if len(chosen) >= count:
            break
        chosen.append(others[int(index)])
    return chosen


def run_demo(
    settings: DemoSettings,
    out_dir: str | Path,
    progress: DemoProgress | None = None,
) -> DemoOutcome:
    """Run the demo; every evaluation goes to ``out_dir/store.sqlite``, the report to
    ``out_dir`` (report.json, trajectory.png, lf_vs_hf.png).

    Rerunning with the same ``out_dir`` and settings resumes (finished evaluations are read
    back, not rerun); other settings are refused with ``RunMismatchError``.
    """
    from kdnas.bench.correlation import correlations

    clock = time.perf_counter()
    progress = progress or _Silent()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "store.sqlite"
    search = settings.search_settings()
    low, high = search.low_fidelity, search.high_fidelity
    low_ce = Fidelity(part=low.part, method="nokd", epochs=low.epochs)

    prepared = prepare_search(search)
    space, data, archs, config = (
        prepared.space,
        prepared.data,
        list(prepared.archs),
        prepared.config,
    )
    original = space.original()
    objective = build_objective(search, data, out / "teachers")
    executor = SerialExecutor()

    progress.start_phase(
        "teacher", "teacher: original network on all training images (high fidelity)", 1
    )
    teacher = objective.teacher_summary(low.part)
    warnings = check_teacher(teacher, search.allow_chance_teacher)
    progress.advance("teacher", None, False)
    progress.end_phase("teacher")
    health = FidelityHealth(
        objective.chance(), lambda f: objective.optimisation_steps(f.part, f.epochs)
    )

    with SQLiteStore(store_path) as store:
        progress.start_phase("lf", f"low fidelity: {low.label()} (GP-UCB)", settings.n_lf)
        progress.start_phase("hf", f"high fidelity: {high.label()} (GP-UCB)", settings.n_hf)
        router = _PhaseRouter(progress, {low: "lf", high: "hf"})
        searched = executor.run(
            build_optimizer(search, prepared.candidates),
            objective,
            store,
            run_id="search",
            config=config,
            callbacks=[router, health],
        )
        progress.end_phase("lf")
        progress.end_phase("hf")

        searched_hf = [e.arch for e in searched.evaluations if e.result.fidelity == high]
        study = _correlation_archs(
            archs, searched_hf, original, settings.n_correlation, settings.seed
        )
        items = [(a, f) for a in study for f in (low, low_ce, high)] + [(original, high)]
        progress.start_phase(
            "study", f"correlation study: {len(study)} archs x 3 fidelities + original", len(items)
        )
        router = _PhaseRouter(progress, {low: "study", low_ce: "study", high: "study"})
        studied = executor.run(
            GridSearch(items),
            ReuseStored(objective, store, ["search"], search.seed),
            store,
            run_id="correlation",
            config={**config, "study": [a.to_json() for a in study], "low_ce": low_ce.label()},
            callbacks=[router, health],
        )
        progress.end_phase("study")

    warnings.extend(health.finish([*searched.evaluations, *studied.evaluations]))
    chosen = best_evaluation(searched.evaluations, search)
    original_hf = next(
        (e for e in studied.evaluations if e.arch == original and e.result.fidelity == high), None
    )
    series = {}
    stats: dict[str, dict[str, float]] = {}
    for label, fidelity in (
        (f"{low.label()} (distillation)", low),
        (f"{low_ce.label()} (cross-entropy)", low_ce),
    ):
        _, lf, hf = lf_hf_pairs(studied.evaluations, fidelity, high)
        stats[fidelity.method] = {**correlations(lf, hf), "n": float(len(lf))}
        series[label] = (lf, hf, stats[fidelity.method]["spearman"])
    plot_lf_vs_hf(
        series, out / "lf_vs_hf.png", f"digits, MobileNetV2 x{settings.width_multiplier}"
    )
    plot_trajectory(searched.evaluations, high, out / "trajectory.png", "Algorithm 2 on digits")
    wall = time.perf_counter() - clock

    def describe(evaluation: StoredEvaluation | None) -> dict[str, Any] | None:
        if evaluation is None:
            return None
        return {
            "arch": space.describe(evaluation.arch),
            "arch_json": evaluation.arch.to_json(),
            "valid_acc": evaluation.result.valid_acc,
            "test_acc": evaluation.result.test_acc,
            "params": evaluation.result.metrics.get("params"),
            "multiply_adds": evaluation.result.metrics.get("multiply_adds"),
        }

    report: dict[str, Any] = {
        "demo": settings.to_dict(),
        "reduced": {
            "width_multiplier": settings.width_multiplier,
            "dataset": "digits (8x8, 10 classes), not CIFAR-100",
            "epochs": {"lf": low.epochs, "hf": high.epochs, "teacher": teacher["epochs"]},
        },
        "device": str(objective.device),
        "wall_s": wall,
        "teacher_s": teacher["train_time_s"],
        "teacher": teacher,
        "cost": search_cost(searched.evaluations, high, teacher),
        "warnings": warnings,
        "chosen": describe(chosen),
        "original": describe(original_hf),
        "correlations_lf_valid_vs_hf_test": stats,
        "search": {
            "n_evaluations": len(searched.evaluations),
            "n_replayed": searched.n_replayed,
            "summed_evaluation_s": sum(e.result.cost_s for e in searched.evaluations),
            "trajectory": trajectory(searched.evaluations, high),
            "evaluations": evaluation_rows(searched.evaluations, space),
        },
        "correlation_study": {
            "n_evaluations": len(studied.evaluations),
            "evaluations": evaluation_rows(studied.evaluations, space),
        },
        "store": str(store_path),
    }
    write_json(out / "report.json", report)
    return DemoOutcome(
        chosen=chosen,
        original=original_hf,
        correlations=stats,
        report_dir=out,
        store_path=store_path,
        wall_s=wall,
        report=report,
    )
