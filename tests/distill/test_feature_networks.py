"""The eight feature-based losses on real networks of both spaces, with mismatched students.

Students are sampled architectures (other depths and widths than the teacher, the space's
original network), so every tapped map differs in channels from the teacher's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdnas.distill import build_loss
from kdnas.spaces import get_space

FEATURE_METHODS = ("hint", "attention", "similarity", "correlation", "vid", "pkt", "nst", "crd")
SPACES = ("mobilenetv2", "shufflenetv2")
BATCH, CLASSES, N_TRAIN = 4, 10, 40

#: Teacher-summary floats per sample at 32x32 input, width 1 (docs/distillation.md's table);
#: similarity's is B, the batch size (2 here).
DOCUMENTED_SUMMARY_FLOATS = {
    "mobilenetv2": {
        "hint": 2048,
        "attention": 340,
        "similarity": 2,
        "correlation": 1280,
        "vid": 11008,
        "pkt": 1280,
        "nst": 11012,
        "crd": 1280,
    },
    "shufflenetv2": {
        "hint": 14848,
        "attention": 336,
        "similarity": 2,
        "correlation": 1024,
        "vid": 51968,
        "pkt": 1024,
        "nst": 51971,
        "crd": 1024,
    },
}


def _networks(space_name: str, seed: int):
    torch.manual_seed(seed)
    space = get_space(space_name)
    teacher = space.build_network(
        space.original(), num_classes=CLASSES, in_channels=3, width_multiplier=0.25
    ).eval()
    arch = space.sample(np.random.default_rng(seed))
    student = space.build_network(arch, num_classes=CLASSES, in_channels=3, width_multiplier=0.25)
    return teacher, student


@pytest.mark.parametrize("space_name", SPACES)
def test_every_method_trains_a_mismatched_student(space_name: str) -> None:
    teacher, student = _networks(space_name, seed=3)
    x = torch.randn(BATCH, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(BATCH) % CLASSES
    indices = torch.tensor([1, 7, 22, 39])
    with torch.no_grad():
        teacher_taps = teacher.forward_taps(x)
    student_taps = student.forward_taps(x)
    t_channels = [m.shape[1] for m in teacher_taps.feature_maps]
    s_channels = [m.shape[1] for m in student_taps.feature_maps]
    assert t_channels != s_channels  # really mismatched
    for method in FEATURE_METHODS:
        loss = build_loss(
            method,
            student_probe=student_taps,
            teacher_probe=teacher_taps,
            num_classes=CLASSES,
            n_train=N_TRAIN,
            space=space_name,
            labels=torch.arange(N_TRAIN) % CLASSES,
        )
        student.zero_grad()
        taps = student.forward_taps(x)
        terms = loss(taps, loss.teacher_summary(teacher_taps), labels, indices)
        assert torch.isfinite(terms["total"]), method
        # The method's own term alone must reach the student's first layer and every
        # trainable part of the loss.
        terms[method].backward()
        stem_grad = next(student.parameters()).grad
        assert stem_grad is not None and stem_grad.abs().sum() > 0, method
        for name, parameter in loss.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, (method, name)


@pytest.mark.parametrize("space_name", SPACES)
def test_cached_summary_gives_the_same_loss_as_a_fresh_one(space_name: str) -> None:
    teacher, student = _networks(space_name, seed=5)
    x = torch.randn(BATCH, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        teacher_taps = teacher.forward_taps(x)
        student_taps = student.forward_taps(x)
    for method in FEATURE_METHODS:
        loss = build_loss(
            method,
            student_probe=student_taps,
            teacher_probe=teacher_taps,
            num_classes=CLASSES,
            n_train=N_TRAIN,
            space=space_name,
            labels=torch.arange(N_TRAIN) % CLASSES,
        ).eval()  # eval: CRD's banks stay put, so the two calls are comparable
        cached = {k: v.clone() for k, v in loss.teacher_summary(teacher_taps).items()}
        with torch.no_grad():
            fresh = loss.teacher_summary(teacher.forward_taps(x))
        labels, indices = torch.zeros(BATCH, dtype=torch.long), torch.arange(BATCH)
        torch.manual_seed(0)
        a = loss(student_taps, cached, labels, indices)["total"]
        torch.manual_seed(0)
        b = loss(student_taps, fresh, labels, indices)["total"]
        assert torch.equal(a, b), method


@pytest.mark.parametrize("space_name", SPACES)
def test_documented_summary_sizes(space_name: str) -> None:
    space = get_space(space_name)
    teacher = space.build_network(space.original(), num_classes=100).eval()
    with torch.no_grad():
        taps = teacher.forward_taps(torch.randn(2, 3, 32, 32))
    for method, floats in DOCUMENTED_SUMMARY_FLOATS[space_name].items():
        loss = build_loss(
            method,
            student_probe=taps,
            teacher_probe=taps,
            num_classes=100,
            n_train=10,
            space=space_name,
            labels=torch.arange(10) % 3,
        )
        summary = loss.teacher_summary(taps)
        assert sum(v[0].numel() for v in summary.values()) == floats, method
