"""TrainingObjective: teachers saved and verified, the shared teacher cache, statuses."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch

from kdnas.core import Architecture, EvalResult, Fidelity, Objective
from kdnas.data import epoch_plan
from kdnas.train import LiveTeacher, TeacherCache, TrainConfig, TrainingObjective
from kdnas.train._teacher_life import Teacher


def _config(**changes) -> TrainConfig:
    values = {"epochs": 2, "batch_size": 32, "crop_padding": 1, "horizontal_flip": False}
    values.update(changes)
    return TrainConfig(**values)


def test_cached_teacher_outputs_equal_recomputed_ones_exactly(digits, tiny_space) -> None:
    cache = TeacherCache()
    objective = TrainingObjective(tiny_space, digits, _config(), seed=3, device="cpu", cache=cache)
    fidelity = Fidelity(part=9, method="kd")
    first = objective.train(Architecture("tiny", (6,)), fidelity)
    assert first.status == "ok" and cache.misses == 2 and cache.hits == 0
    # Recompute every (epoch, batch) summary through the teacher and compare bit for bit.
    teacher = objective.teacher(9)
    images = objective.train_images(9)
    loss = objective._loss(fidelity, objective.build(Architecture("tiny", (6,))), teacher)
    live = LiveTeacher(teacher, loss, objective.config)
    (key,) = {k for k, _ in cache._memory}
    for epoch in range(2):
        plan = epoch_plan(len(images), 32, 3, epoch, 1, False)
        cached = cache.get(key, epoch)
        assert cached is not None and len(cached) == len(plan)
        for batch, (x, _, _) in enumerate(images.plan_batches(plan)):
            assert torch.equal(cached[batch]["logits"], live.summary(epoch, batch, x)["logits"])
    # A second student reuses the cache and learns exactly what it would with a live teacher.
    student = Architecture("tiny", (8,))
    from_cache = objective.train(student, fidelity)
    assert cache.hits >= 2 + 2
    objective.use_cache = False
    from_teacher = objective.train(student, fidelity)
    assert from_cache.final_loss == from_teacher.final_loss
    assert from_cache.valid_acc == from_teacher.valid_acc
    assert from_cache.terms == from_teacher.terms


def test_teacher_cache_on_disk_survives_a_new_process_and_respects_its_budget(
    tmp_path: Path,
) -> None:
    entry = [{"logits": torch.arange(6.0).view(2, 3)}, {"logits": torch.ones(1, 3)}]
    writer = TeacherCache(max_bytes=0, directory=tmp_path)  # nothing fits in memory
    writer.put("k", 0, entry)
    assert writer.bytes_in_memory == 0
    reader = TeacherCache(directory=tmp_path)
    loaded = reader.get("k", 0)
    assert loaded is not None and torch.equal(loaded[0]["logits"], entry[0]["logits"])
    assert reader.get("k", 1) is None and reader.misses == 1
    small = TeacherCache(max_bytes=40)
    small.put("a", 0, [{"x": torch.zeros(5)}])  # 20 bytes
    small.put("a", 1, [{"x": torch.zeros(5)}])
    small.put("a", 2, [{"x": torch.zeros(5)}])  # the latest epoch is the one left out
    assert small.bytes_in_memory == 40 and small.get("a", 0) is not None
    assert small.get("a", 2) is None


def test_teacher_is_saved_reused_and_retrained_when_corrupt(
    digits, tiny_space, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fidelity = Fidelity(part=27, method="kd", epochs=1)
    caplog.set_level(logging.INFO, logger="kdnas.train")
    first = TrainingObjective(tiny_space, digits, _config(), tmp_path, seed=0, device="cpu")
    assert first.train(Architecture("tiny", (4,)), fidelity).status == "ok"
    (weights,) = tmp_path.glob("teacher-*.pt")
    assert "training the teacher" in caplog.text
    trained = {k: v.clone() for k, v in first.teacher(27).state_dict().items()}

    caplog.clear()
    second = TrainingObjective(tiny_space, digits, _config(), tmp_path, seed=0, device="cpu")
    reloaded = second.teacher(27).state_dict()
    assert "training the teacher" not in caplog.text
    assert all(torch.equal(reloaded[k], v) for k, v in trained.items())

    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    caplog.clear()
    third = TrainingObjective(tiny_space, digits, _config(), tmp_path, seed=0, device="cpu")
    retrained = third.teacher(27).state_dict()
    assert "corrupt" in caplog.text and "training the teacher" in caplog.text
    assert all(torch.equal(retrained[k], v) for k, v in trained.items())  # same seed
    assert (
        third.teachers.load(
            third.teacher_key(27), tiny_space.build_network(tiny_space.original(), 10, 1)
        )
        is not None
    )  # the file is sound again

    other_seed = TrainingObjective(tiny_space, digits, _config(), tmp_path, seed=1, device="cpu")
    assert other_seed.teacher_key(27) != third.teacher_key(27)


def test_objective_reports_diverged_and_failed_without_raising(digits, tiny_space) -> None:
    objective = TrainingObjective(tiny_space, digits, _config(), seed=0, device="cpu")
    assert isinstance(objective, Objective)
    diverged = objective.evaluate(Architecture("tiny", (4, "nan")), Fidelity(27, "nokd"))
    assert isinstance(diverged, EvalResult) and diverged.status == "diverged"
    assert math.isnan(diverged.valid_acc) and diverged.cost_s > 0
    failed = objective.evaluate(Architecture("tiny", (0,)), Fidelity(27, "nokd"))
    assert failed.status == "failed" and "width must be >= 1" in failed.info["error"]


def test_objective_records_what_the_paper_asks(digits, tiny_space) -> None:
    objective = TrainingObjective(tiny_space, digits, _config(), seed=2, device="cpu")
    fidelity = Fidelity(part=9, method="nokd", epochs=1)
    result = objective.evaluate(Architecture("tiny", (4,)), fidelity)
    assert result.ok and 0.0 <= result.valid_acc <= 1.0
    assert result.metrics["epochs"] == 1 and result.metrics["params"] > 0
    assert result.metrics["multiply_adds"] > 0
    assert result.info["subset_hash"] == digits.subset(9, 2).content_hash
    assert result.info["device"].startswith("cpu") and result.seed == 2


def test_real_mobilenetv2_trains_on_digits(digits) -> None:
    from kdnas.models import count_parameters
    from kdnas.spaces import get_space

    space = get_space("mobilenetv2")
    config = TrainConfig.for_data(digits, epochs=1, width_multiplier=0.1, batch_size=64)
    objective = TrainingObjective(space, digits, config, seed=0, device="cpu")
    result = objective.train(space.original(), Fidelity(part=27, method="nokd"))
    assert result.status == "ok" and result.epochs == 1 and math.isfinite(result.final_loss)
    network = space.build_network(space.original(), 10, 1, 0.1)
    assert result.params == count_parameters(network)


def test_warm_up_trains_the_teacher_and_fills_the_cache_once(
    digits, tiny_space, tmp_path: Path
) -> None:
    cache = TeacherCache()
    objective = TrainingObjective(
        tiny_space, digits, _config(), tmp_path, seed=0, device="cpu", cache=cache
    )
    assert objective.warm_up(27, ("nokd", "kd")) > 0
    assert len(list(tmp_path.glob("teacher-*.pt"))) == 1
    assert cache.bytes_in_memory > 0 and len(cache._memory) == 2  # kd, both epochs
    misses = cache.misses
    result = objective.train(Architecture("tiny", (4,)), Fidelity(27, "kd"))
    assert result.status == "ok" and cache.misses == misses and cache.hits == 2


def _train_under_lock(directory: str, barrier, log: str) -> None:
    """A stand-in for a worker that needs a missing teacher: check, 'train', save."""
    import time

    from kdnas.train._teacher import TeacherStore

    store = TeacherStore(directory)
    barrier.wait()
    with store.lock("teacher-x"):
        _, record = store.paths("teacher-x")
        if not record.exists():
            with open(log, "a") as file:
                file.write("trained\n")
            time.sleep(0.3)  # long enough for the other worker to arrive and check
            record.write_text("{}")


def test_two_processes_train_a_missing_teacher_once(tmp_path: Path) -> None:
    import multiprocessing

    pytest.importorskip("fcntl", reason="the teacher lock uses POSIX flock")
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    log = tmp_path / "log.txt"
    workers = [
        context.Process(target=_train_under_lock, args=(str(tmp_path), barrier, str(log)))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
        assert worker.exitcode == 0
    assert log.read_text() == "trained\n"


def test_the_teacher_is_trained_while_its_lock_is_held(
    digits, tiny_space, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fcntl = pytest.importorskip("fcntl", reason="the teacher lock uses POSIX flock")
    objective = TrainingObjective(tiny_space, digits, _config(), tmp_path, seed=0, device="cpu")
    key = objective.teacher_key(27)
    original = Teacher._train
    held = []

    def checking(self, *args, **kwargs):
        with open(tmp_path / f"{key}.lock", "a+b") as other:
            try:
                fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held.append(True)
            else:
                fcntl.flock(other.fileno(), fcntl.LOCK_UN)
                held.append(False)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Teacher, "_train", checking)
    objective.teacher(27)
    assert held == [True]
    # Once trained and saved, a second objective loads it without training.
    TrainingObjective(tiny_space, digits, _config(), tmp_path, seed=0, device="cpu").teacher(27)
    assert held == [True]
