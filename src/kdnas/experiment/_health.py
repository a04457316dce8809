"""Guard rails: say clearly when a teacher or a fidelity has learned nothing a search can use.

A low fidelity whose results are all at chance, or all identical, gives the Gaussian process
nothing to rank: the search goes on as a random one while looking normal. The usual cause is
too few optimisation steps (a few epochs of a small subset at a large batch), so every
message names the steps and the settings that add some.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kdnas.core import Fidelity
from kdnas.store import StoredEvaluation
from kdnas.train import ChanceLevel, TeacherAtChanceError, chance_teacher_message

__all__ = ["FidelityHealth", "check_teacher", "teacher_warning", "weaker_teacher_warning"]

logger = logging.getLogger(__name__)


def teacher_warning(summary: Mapping[str, Any], refused: bool) -> str | None:
    """The warning for a teacher no better than chance (None for a sound teacher).

    Args:
        summary: ``TrainingObjective.teacher_summary``.
        refused: whether the search refuses to distill from it (else it goes on, as told).
    """
    if summary["above_chance"]:
        return None
    consequence = (
        "the search refuses to distill from it (pass --allow-chance-teacher to go on anyway)"
        if refused
        else "distilling from it anyway, as told (--allow-chance-teacher)"
    )
    return chance_teacher_message(summary, consequence)


def check_teacher(summary: Mapping[str, Any], allow_chance: bool) -> list[str]:
    """Refuse a teacher at chance unless ``allow_chance``; else its warnings (logged).

    Raises:
        TeacherAtChanceError: the teacher is no better than chance and not allowed.
    """
    warning = teacher_warning(summary, refused=not allow_chance)
    if warning is None:
        return []
    if not allow_chance:
        raise TeacherAtChanceError(warning)
    logger.warning(warning)
    return [warning]


def weaker_teacher_warning(
    teacher: Mapping[str, Any] | None, evaluations: Sequence[StoredEvaluation]
) -> str | None:
    """A warning when networks of the search reached a higher validation accuracy than the
    teacher (None when none did, or the search had no teacher).

    Distillation pulls a student toward its teacher's answers, mistakes included; a teacher
    its own students beat teaches them less than the labels do, and the search's ranking at
    low fidelity then rewards networks for imitating it. Every ok evaluation counts except
    the teacher's own (the original network's result reused as the teacher's training).
    """
    if teacher is None or not math.isfinite(teacher.get("valid_acc", math.nan)):
        return None
    students = [
        e
        for e in evaluations
        if e.result.ok and not str(e.result.info.get("reused_from", "")).startswith("teacher")
    ]
    better = [e for e in students if e.result.valid_acc > teacher["valid_acc"]]
    if not better:
        return None
    best = max(better, key=lambda e: e.result.valid_acc)
    given = "your --teacher network" if teacher.get("data") == "file" else "the teacher"
    fix = (
        "give a stronger network (--teacher)"
        if teacher.get("data") == "file"
        else "train it longer (--hf-epochs, --epochs) or give one you trained (--teacher)"
    )
    return (
        f"{given} reached {teacher['valid_acc']:.3f} validation accuracy, but {len(better)} "
        f"of the {len(students)} networks this search trained did better (best "
        f"{best.result.valid_acc:.3f}, at {best.result.fidelity.label()}): its students learn "
        f"from a network weaker than they can become, which teaches them its mistakes, and "
        f"the low-fidelity ranking may follow it rather than the data; {fix}"
    )


class FidelityHealth:
    """Watches a search's results per fidelity and warns once per problem; an executor callback.

    A fidelity is degenerate when all its ok results (at least ``min_results``) are no better
    than chance, or all have the same validation accuracy. Each problem is logged once as a
    warning when it first shows; its message is kept up to date with the results that follow,
    and ``finish`` checks the whole run again (from two results) for the report.

    Args:
        chance: the validation split's chance level.
        steps: the SGD steps of one run at a fidelity (for the message's likely cause).
        min_results: results at one fidelity before it is judged during the run.
    """

    def __init__(
        self, chance: ChanceLevel, steps: Callable[[Fidelity], int], min_results: int = 3
    ) -> None:
        self.chance = chance
        self.steps = steps
        self.min_results = min_results
        self._found: dict[tuple[Fidelity, str], str] = {}
        self._accuracies: dict[Fidelity, list[float]] = {}

    @property
    def warnings(self) -> list[str]:
        """Every problem found so far, in the order they showed."""
        return list(self._found.values())

    def on_start(self, suggestion: object) -> None:
        pass

    def on_result(self, evaluation: StoredEvaluation, replayed: bool) -> None:
        result = evaluation.result
        if not result.ok:
            return
        values = self._accuracies.setdefault(result.fidelity, [])
        values.append(result.valid_acc)
        if len(values) >= self.min_results:
            self._judge(result.fidelity, values)

    def finish(self, evaluations: Sequence[StoredEvaluation]) -> list[str]:
        """Judge every fidelity of ``evaluations`` (two ok results suffice); all warnings."""
        by_fidelity: dict[Fidelity, list[float]] = {}
        for evaluation in evaluations:
            if evaluation.result.ok:
                by_fidelity.setdefault(evaluation.result.fidelity, []).append(
                    evaluation.result.valid_acc
                )
        for fidelity, values in by_fidelity.items():
            if len(values) >= 2:
                self._judge(fidelity, values)
        return self.warnings

    def _judge(self, fidelity: Fidelity, values: list[float]) -> None:
        problems = []
        if all(not self.chance.beaten_by(value) for value in values):
            problems.append(
                (
                    "chance",
                    f"all {len(values)} results are no better than chance (best "
                    f"{max(values):.3f}; chance {self.chance.accuracy:.3f}, threshold "
                    f"{self.chance.threshold:.3f})",
                )
            )
        if len(values) >= 2 and max(values) == min(values):
            problems.append(
                (
                    "identical",
                    f"all {len(values)} results have the same validation accuracy "
                    f"({values[0]:.4f}), so the Gaussian process cannot rank anything",
                )
            )
        for kind, text in problems:
            message = f"fidelity {fidelity.label()}: {text}. {self._cause(fidelity)}"
            if (fidelity, kind) not in self._found:
                logger.warning(message)
            self._found[(fidelity, kind)] = message

    def _cause(self, fidelity: Fidelity) -> str:
        fixes = ["more epochs (--lf-epochs, --hf-epochs, --epochs)"]
        if fidelity.part > 1:
            fixes.append("a larger subset (a smaller --part)")
        fixes.append("a smaller --batch-size")
        return (
            f"Likely cause: too few optimisation steps ({self.steps(fidelity)} SGD steps per "
            f"run). Fix: {', '.join(fixes)}"
        )
