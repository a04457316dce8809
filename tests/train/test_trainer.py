"""The training loop, its config, and the batch stream that students share."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import pytest
import torch

from kdnas.core import Architecture, Fidelity
from kdnas.data import DeviceImages, ImageSet, load_digits, prepare
from kdnas.distill.logit import CrossEntropyLoss
from kdnas.train import TrainConfig, TrainResult, accuracy, train_network


@pytest.fixture(scope="module")
def digits():
    return prepare(load_digits(), resolution=8)


def _device_images(data, count: int, padding: int = 0) -> DeviceImages:
    images = ImageSet(data.train.images[:count], data.train.labels[:count])
    return DeviceImages(images, data.mean, data.std, padding, torch.device("cpu"))


def test_a_network_overfits_64_samples(digits, tiny_space) -> None:
    torch.manual_seed(0)
    network = tiny_space.build_network(Architecture("tiny", (16,)), 10, 1)
    network = network.to(memory_format=torch.channels_last)
    train = _device_images(digits, 64)
    config = TrainConfig(
        epochs=60,
        batch_size=32,
        lr=0.05,
        crop_padding=0,
        horizontal_flip=False,
        schedule="constant",
    )
    before = accuracy(network, train, config)
    outcome = train_network(network, CrossEntropyLoss(), train, config, seed=0)
    assert outcome.status == "ok" and outcome.epochs == 60
    # Seeds 0-4, 1 and 2 torch threads: training accuracy 1.0 every time, final loss
    # 0.022-0.031 (benchmarks/threshold_spreads.py overfit).
    assert accuracy(network, train, config) == 1.0 > before
    assert outcome.final_loss < 0.1
    assert outcome.terms["total"] == outcome.terms["ce"] == outcome.final_loss


class _Recorder:
    """A teacher source that records the batches it is shown and returns nothing."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int, torch.Tensor]] = []

    def summary(self, epoch: int, batch: int, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        self.seen.append((epoch, batch, images.clone()))
        return {}

    def end_epoch(self, epoch: int) -> None:
        return None


class _RecordedCE(CrossEntropyLoss):
    needs_teacher = True


def test_students_see_the_identical_augmented_batch_stream(digits, tiny_space) -> None:
    config = TrainConfig(epochs=2, batch_size=16, crop_padding=1)
    train = _device_images(digits, 40, padding=1)
    streams = []
    for width in (4, 12):  # two different students
        recorder = _Recorder()
        network = tiny_space.build_network(Architecture("tiny", (width,)), 10, 1)
        train_network(network, _RecordedCE(), train, config, seed=7, teacher=recorder)
        streams.append(recorder.seen)
    assert [(e, b) for e, b, _ in streams[0]] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    for (_, _, a), (_, _, b) in zip(*streams, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(streams[0][0][2], streams[0][3][2])  # epochs differ
    other = _Recorder()
    network = tiny_space.build_network(Architecture("tiny", (4,)), 10, 1)
    train_network(network, _RecordedCE(), train, config, seed=8, teacher=other)
    assert not torch.equal(other.seen[0][2], streams[0][0][2])  # seeds differ


def test_a_nan_loss_ends_training_as_diverged(digits, tiny_space) -> None:
    network = tiny_space.build_network(Architecture("tiny", (4, "nan")), 10, 1)
    config = TrainConfig(epochs=3, batch_size=16, crop_padding=0)
    outcome = train_network(network, CrossEntropyLoss(), _device_images(digits, 32), config, 0)
    assert outcome.status == "diverged" and outcome.epochs == 0
    assert math.isnan(outcome.final_loss)


def test_config_validates_and_keys_the_protocol() -> None:
    config = TrainConfig()
    paper = (config.epochs, config.batch_size, config.lr, config.momentum, config.weight_decay)
    assert paper == (100, 128, 0.1, 0.9, 5e-4)
    assert config.learning_rate(0) == 0.1
    assert config.learning_rate(50) == pytest.approx(0.05)
    assert config.protocol_key() == TrainConfig(eval_batch_size=7).protocol_key()
    assert config.protocol_key() != TrainConfig(lr=0.05).protocol_key()
    assert TrainConfig.from_dict(config.to_dict()) == config
    for bad in ({"lr": -1.0}, {"epochs": 0}, {"schedule": "step"}, {"batch_size": 1}):
        with pytest.raises(ValueError, match="TrainConfig"):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown TrainConfig fields: colour"):
        TrainConfig.from_dict({"colour": 1})


def test_config_for_digits_scales_padding_and_drops_flips(digits) -> None:
    config = TrainConfig.for_data(digits, epochs=5)
    assert (config.crop_padding, config.horizontal_flip, config.epochs) == (1, False, 5)


def test_train_result_becomes_an_eval_result() -> None:
    result = TrainResult(
        status="ok",
        valid_acc=0.5,
        test_acc=0.25,
        wall_time_s=3.0,
        train_time_s=2.0,
        teacher_time_s=1.0,
        params=10,
        multiply_adds=20,
        epochs=2,
        final_loss=0.3,
        seed=1,
        subset_hash="abc",
        device="cpu",
        method="kd",
        terms={"total": 0.3},
        loss_settings={"tau": 32.0},
    )
    arch = Architecture("tiny", (3,))
    evaluated = result.to_eval_result(arch, Fidelity(3, "kd"))
    assert (evaluated.valid_acc, evaluated.test_acc, evaluated.cost_s) == (0.5, 0.25, 3.0)
    assert evaluated.info["subset_hash"] == "abc" and evaluated.metrics["loss.tau"] == 32.0
    assert evaluated.arch_key == arch.key()
    diverged = dataclasses.replace(
        result, status="diverged", valid_acc=math.nan, final_loss=math.inf
    )
    assert diverged.to_dict()["final_loss"] is None
    with pytest.raises(ValueError, match="valid_acc"):
        dataclasses.replace(result, valid_acc=1.5)


def test_on_epoch_follows_the_epochs_and_a_resume_starts_at_its_checkpoint(
    digits, tiny_space, tmp_path
) -> None:
    from kdnas.train import EpochCheckpoint

    config = TrainConfig(epochs=3, batch_size=32, crop_padding=0, horizontal_flip=False)
    checkpoint = EpochCheckpoint(tmp_path / "run.ckpt", "run")
    train = _device_images(digits, 64)
    calls: list[tuple[int, int]] = []
    torch.manual_seed(0)
    network = tiny_space.build_network(Architecture("tiny", (8,)), 10, 1)
    train_network(
        network, CrossEntropyLoss(), train, config, 0, checkpoint=checkpoint,
        on_epoch=lambda done, epochs: calls.append((done, epochs)),
    )  # fmt: skip
    assert calls == [(0, 3), (1, 3), (2, 3), (3, 3)]
    # The checkpoint holds epoch 2 (none is written after the last): a second call resumes
    # there, and its first report says so.
    calls.clear()
    network = tiny_space.build_network(Architecture("tiny", (8,)), 10, 1)
    outcome = train_network(
        network, CrossEntropyLoss(), train, config, 0, checkpoint=checkpoint,
        on_epoch=lambda done, epochs: calls.append((done, epochs)),
    )  # fmt: skip
    assert outcome.resumed_from_epoch == 2
    assert calls == [(2, 3), (3, 3)]
