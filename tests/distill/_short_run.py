"""The short distillation run on the embedded digits that the tests and a benchmark share.

A ShuffleNetV2 teacher (other stage widths and depths than the student) trained with
cross-entropy on the digits' whole training split at 16x16, and a mismatched ShuffleNetV2
student trained for a few epochs on 768 of those images with a method's default weights, through
``train_network`` and the shared teacher cache, as a search trains its students.
"""

from __future__ import annotations

import dataclasses

import torch

from kdnas.core import Architecture
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


def short_run_setting(
    resolution: int | None = None,
    student_images: int = 768,
    epochs: int = 4,
    teacher_epochs: int = 4,
    teacher_seed: int = 0,
    **train_options,
):
    """(config, train, valid, space, teacher): the digits, a trained teacher, a student subset.

    ``train_options`` are further ``TrainConfig`` fields (``precise_bn``,
    ``distillation_warmup``), used by the students; the teacher trains without them.
    """
    data = prepare(load_dataset("digits"), resolution=resolution)
    teacher_config = TrainConfig.for_data(
        data, epochs=epochs, batch_size=64, lr=0.1, channels_last=False, amp=False
    )
    config = dataclasses.replace(teacher_config, **train_options)
    device = torch.device("cpu")
    full = DeviceImages(data.train, data.mean, data.std, config.crop_padding, device)
    part = ImageSet(data.train.images[:student_images], data.train.labels[:student_images])
    train = DeviceImages(part, data.mean, data.std, config.crop_padding, device)
    valid = DeviceImages(data.valid, data.mean, data.std, 0, device)
    space = get_space("shufflenetv2")
    torch.manual_seed(teacher_seed)
    teacher = space.build_network(
        Architecture("shufflenetv2", TEACHER), num_classes=10, in_channels=1
    )
    ce = build_loss(
        "nokd", student_probe=None, teacher_probe=None, num_classes=10, n_train=len(full)
    )
    outcome = train_network(
        teacher, ce, full, teacher_config, seed=teacher_seed, epochs=teacher_epochs
    )
    if outcome.status != "ok":
        raise RuntimeError(f"the teacher did not train: {outcome}")
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return config, train, valid, space, teacher


def train_student(
    method: str,
    seed: int,
    setting,
    hyperparameters: dict[str, float] | None = None,
    weights: str = "shufflenetv2",
):
    """(validation accuracy, TrainOutcome, loss, teacher source) of one student."""
    config, train, valid, space, teacher = setting
    torch.manual_seed(seed)
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
        space=weights,
        hyperparameters=hyperparameters,
        labels=train.labels,
    )
    source = None
    if loss.needs_teacher:
        source = CachedTeacher(TeacherCache(), method, LiveTeacher(teacher, loss, config))
    outcome = train_network(student, loss, train, config, seed=0, teacher=source)
    valid_acc = accuracy(student, valid, config) if outcome.status == "ok" else float("nan")
    return valid_acc, outcome, loss, source
