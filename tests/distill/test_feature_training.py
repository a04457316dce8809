"""Every loss trains a student end to end on the embedded digits, through the real trainer.

The teacher is a small ShuffleNetV2 trained with cross-entropy on the whole digits training
split (about 80 % validation accuracy); the student has other stage widths and depths and
trains for 48 steps on 768 images with the paper's ShuffleNetV2 weights, each method through
``train_network`` and the shared teacher cache. Each must end with finite loss terms and
validation accuracy well above chance (10 %). About 5 s per method on a loaded 2-core CPU.
"""

from __future__ import annotations

import math

import pytest
import torch

from kdnas.core import METHODS, Architecture
from kdnas.data import DeviceImages, ImageSet, load_dataset, prepare
from kdnas.distill import build_loss
from kdnas.spaces import get_space
from kdnas.train import (
    CachedTeacher,
    LiveTeacher,
    TeacherCache,
    TrainConfig,
    accuracy,
    train_network,
)

TEACHER = {"out_channels": [16, 32, 64, 64], "num_blocks": [1, 1, 1]}
STUDENT = {"out_channels": [24, 40, 48, 64], "num_blocks": [1, 2, 1]}
TEACHER_EPOCHS, EPOCHS, STUDENT_IMAGES = 4, 4, 768


@pytest.fixture(scope="module")
def setting():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    data = prepare(load_dataset("digits"))
    config = TrainConfig.for_data(
        data, epochs=EPOCHS, batch_size=64, lr=0.1, channels_last=False, amp=False
    )
    device = torch.device("cpu")
    full = DeviceImages(data.train, data.mean, data.std, config.crop_padding, device)
    part = ImageSet(data.train.images[:STUDENT_IMAGES], data.train.labels[:STUDENT_IMAGES])
    train = DeviceImages(part, data.mean, data.std, config.crop_padding, device)
    valid = DeviceImages(data.valid, data.mean, data.std, 0, device)
    space = get_space("shufflenetv2")
    torch.manual_seed(0)
    teacher = space.build_network(
        Architecture("shufflenetv2", TEACHER), num_classes=10, in_channels=1
    )
    ce = build_loss(
        "nokd", student_probe=None, teacher_probe=None, num_classes=10, n_train=len(full)
    )
    outcome = train_network(teacher, ce, full, config, seed=0, epochs=TEACHER_EPOCHS)
    assert outcome.status == "ok"
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    assert accuracy(teacher, valid, config) > 0.6
    yield config, train, valid, space, teacher
    torch.set_num_threads(previous)


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_to_better_than_chance(method: str, setting) -> None:
    config, train, valid, space, teacher = setting
    torch.manual_seed(1)
    student = space.build_network(
        Architecture("shufflenetv2", STUDENT), num_classes=10, in_channels=1
    )
    probe = train.batch(torch.arange(4))
    with torch.no_grad():
        student_probe, teacher_probe = student.forward_taps(probe), teacher.forward_taps(probe)
    loss = build_loss(
        method,
        student_probe=student_probe,
        teacher_probe=teacher_probe if method != "nokd" else None,
        num_classes=10,
        n_train=len(train),
        space="shufflenetv2",
        labels=train.labels,
    )
    source = None
    if loss.needs_teacher:
        source = CachedTeacher(TeacherCache(), method, LiveTeacher(teacher, loss, config))
    outcome = train_network(student, loss, train, config, seed=0, teacher=source)
    assert outcome.status == "ok", outcome
    assert outcome.epochs == EPOCHS
    assert all(math.isfinite(v) for v in outcome.terms.values()), outcome.terms
    if source is not None:  # every epoch's summaries went into the cache
        assert source.cache.misses == EPOCHS and source.cache.bytes_in_memory > 0
    assert accuracy(student, valid, config) > 0.25, method
