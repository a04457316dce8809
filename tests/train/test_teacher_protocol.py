"""The teacher as in the paper: the whole training split (never validation), high-fidelity
protocol, one for every part, and its training stored once as the original's evaluation."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from test_training_objective import _config

from kdnas.core import Architecture, Fidelity
from kdnas.execute import SerialExecutor
from kdnas.experiment import GridSearch
from kdnas.store import SQLiteStore
from kdnas.train import ChanceLevel, TeacherAtChanceError, TrainingObjective
from kdnas.train import _objective as objective_module


@pytest.fixture
def trainings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, torch.Tensor, str]]:
    """Every call of the trainer: (images, their labels, the loss), in order."""
    calls: list[tuple[int, torch.Tensor, str]] = []
    real = objective_module.train_network

    def spy(model, loss, images, *args, **kwargs):
        calls.append((len(images), images.labels.cpu().clone(), loss.name))
        return real(model, loss, images, *args, **kwargs)

    monkeypatch.setattr(objective_module, "train_network", spy)
    return calls


def test_the_teacher_learns_from_the_whole_training_split_and_never_validation(
    digits, tiny_space, trainings
) -> None:
    objective = TrainingObjective(tiny_space, digits, _config(), seed=0, device="cpu")
    assert objective.teacher_fidelity(9) == objective.teacher_fidelity(27) == Fidelity(1, "nokd")
    teacher = objective.teacher(9)
    assert objective.teacher(27) is teacher  # one teacher for every part
    ((n_images, labels, loss),) = trainings  # trained once, with cross-entropy
    assert loss == "nokd"
    # All of the training pool...
    pool = objective.subset(1)
    assert n_images == len(digits.train) == len(pool)
    assert torch.equal(pool.indices, torch.arange(len(digits.train)))
    assert torch.equal(labels, digits.train.labels)
    # ...which is the official training set minus the validation split, disjoint from it.
    assert len(digits.train) + len(digits.valid) == len(digits.dataset.train)
    train_rows = {row.numpy().tobytes() for row in digits.train.images.flatten(1)}
    valid_rows = [row.numpy().tobytes() for row in digits.valid.images.flatten(1)]
    assert not any(row in train_rows for row in valid_rows)
    summary = objective.teacher_summary(9)
    assert summary["images"] == len(digits.train) and summary["part"] == 1
    assert summary["data"] == "full" and summary["above_chance"]

    # Students of each part still see their own subset, and the teacher is not retrained.
    objective.train(Architecture("tiny", (4,)), Fidelity(27, "kd", epochs=1))
    assert [call[0] for call in trainings] == [len(digits.train), len(objective.subset(27))]


def test_the_old_behaviour_trains_the_teacher_on_the_students_subset(
    digits, tiny_space, trainings
) -> None:
    objective = TrainingObjective(
        tiny_space, digits, _config(), seed=0, device="cpu", teacher_data="subset"
    )
    assert objective.teacher_fidelity(9) == Fidelity(9, "nokd")
    objective.teacher_result(9)  # at 1/9 of the digits this teacher is at chance (0.126)
    assert [call[0] for call in trainings] == [len(objective.subset(9))]
    assert objective.teacher_key(9) != objective.teacher_key(27)
    with pytest.raises(ValueError, match="valid: full, subset"):
        TrainingObjective(tiny_space, digits, _config(), teacher_data="validation")


def test_the_teachers_high_fidelity_result_is_stored_once_and_reused(
    digits, tiny_space, trainings, tmp_path: Path
) -> None:
    original, other = tiny_space.original(), Architecture("tiny", (4,))
    high = Fidelity(1, "nokd", epochs=2)
    objective = TrainingObjective(
        tiny_space, digits, _config(epochs=3), tmp_path, seed=0, device="cpu", teacher_epochs=2
    )
    assert objective.teacher_fidelity(9) == high
    objective.teacher(9)  # the search trains it before the students
    assert len(trainings) == 1
    with SQLiteStore(tmp_path / "store.sqlite") as store:
        grid = [(other, Fidelity(9, "kd", epochs=1)), (original, high), (other, high)]
        summary = SerialExecutor().run(
            GridSearch(grid), objective, store, run_id="r", config={"grid": 1}
        )
        rows = store.results("r")
    assert len(trainings) == 3  # the teacher, the student, the other network at HF
    served = summary.evaluations[1].result
    teacher = objective.teacher_result(9)
    assert served.valid_acc == teacher.valid_acc and served.test_acc == teacher.test_acc
    assert served.info["reused_from"] == f"teacher {objective.teacher_key(9)}"
    assert served.cost_s < 0.1 * teacher.wall_time_s  # its seconds are the teacher's, once
    assert [r.result.fidelity for r in rows if r.arch == original] == [high]

    # The same evaluation made from scratch by an objective without a teacher is identical.
    fresh = TrainingObjective(tiny_space, digits, _config(epochs=3), seed=0, device="cpu")
    from_scratch = fresh._fit(original, high)[1]
    assert (from_scratch.valid_acc, from_scratch.test_acc) == (served.valid_acc, served.test_acc)

    # Another process reads the teacher (and so the evaluation) back without training.
    trainings.clear()
    again = TrainingObjective(
        tiny_space, digits, _config(epochs=3), tmp_path, seed=0, device="cpu", teacher_epochs=2
    )
    reread = again.evaluate(original, high)
    assert trainings == [] and reread.valid_acc == served.valid_acc
    assert reread.info["reused_from"] == served.info["reused_from"]
    assert again.teacher_summary(9)["loaded"]


def test_an_untrained_original_at_high_fidelity_trains_the_teacher_once(
    digits, tiny_space, trainings
) -> None:
    objective = TrainingObjective(tiny_space, digits, _config(), seed=0, device="cpu")
    first = objective.evaluate(tiny_space.original(), Fidelity(1, "nokd"))
    assert "reused_from" not in first.info and first.cost_s > 0
    objective.train(Architecture("tiny", (4,)), Fidelity(9, "kd", epochs=1))
    assert len(trainings) == 2  # the original once (it became the teacher), the student


class _ConstantSpace:
    """The tiny space with an original network whose output ignores its input."""

    def __init__(self, tiny_space) -> None:
        self.inner = tiny_space
        self.name = "tiny-constant"

    def original(self) -> Architecture:
        return Architecture("tiny", (16, "constant"))

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def test_a_teacher_at_chance_is_refused_unless_allowed(digits, tiny_space) -> None:
    space = _ConstantSpace(tiny_space)
    refusing = TrainingObjective(space, digits, _config(), seed=0, device="cpu")
    summary = refusing.teacher_summary(9)
    assert not summary["above_chance"] and summary["valid_acc"] <= summary["chance_acc"]
    with pytest.raises(TeacherAtChanceError, match="no better than chance") as error:
        refusing.teacher(9)
    assert "too few optimisation steps" in str(error.value)
    assert "--allow-chance-teacher" in str(error.value)
    student = refusing.evaluate(Architecture("tiny", (4,)), Fidelity(9, "kd", epochs=1))
    assert student.status == "failed" and "no better than chance" in student.info["error"]
    # Its own evaluation is a result like any other, not an error.
    assert refusing.evaluate(space.original(), Fidelity(1, "nokd")).ok

    allowing = TrainingObjective(
        space, digits, _config(), seed=0, device="cpu", allow_chance_teacher=True
    )
    assert allowing.evaluate(Architecture("tiny", (4,)), Fidelity(9, "kd", epochs=1)).ok

    # A healthy teacher passes silently (valid 0.54-0.71 over seeds 0-4; threshold 0.156).
    healthy = TrainingObjective(tiny_space, digits, _config(), seed=0, device="cpu")
    assert healthy.teacher_summary(9)["above_chance"]
    healthy.teacher(9)


def test_chance_level_is_the_majority_share_plus_two_standard_errors() -> None:
    level = ChanceLevel.of_labels(torch.tensor([0] * 30 + [1] * 70))
    assert level.accuracy == 0.7 and level.n == 100
    assert level.threshold == pytest.approx(0.7 + 2 * math.sqrt(0.7 * 0.3 / 100))
    assert not level.beaten_by(0.79) and level.beaten_by(0.80)
    assert not level.beaten_by(math.nan)


def test_a_validation_split_too_small_to_judge_says_so_and_how_to_grow_it() -> None:
    """Two validation images of two classes (the reported case): chance 0.5, threshold
    0.5 + 2 sqrt(0.25 / 2) = 1.207, which no accuracy can pass; the message blames the split."""
    import torch

    from kdnas.train import ChanceLevel, chance_teacher_message

    chance = ChanceLevel.of_labels(torch.tensor([3, 7]))
    assert chance.threshold == pytest.approx(0.5 + 2 * (0.25 / 2) ** 0.5)
    assert not chance.beaten_by(1.0)
    summary = {
        "epochs": 5,
        "images": 40,
        "steps": 10,
        "valid_acc": 1.0,
        "chance_acc": chance.accuracy,
        "chance_threshold": chance.threshold,
        "valid_images": chance.n,
    }
    message = chance_teacher_message(summary, "refused")
    assert "validation split (2 images) is too small" in message
    assert "--valid-fraction" in message and "threshold" not in message
    # A split large enough to judge keeps the teacher's own message.
    summary.update(chance_acc=0.1, chance_threshold=0.16, valid_acc=0.1, valid_images=500)
    assert "no better than chance (0.100; threshold 0.160)" in chance_teacher_message(
        summary, "refused"
    )
