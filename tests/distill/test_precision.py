"""Every loss computes in float32 whatever the autocast state.

The trainer runs the student under bfloat16 autocast on CUDA; autocast would also run the
losses' matrix products and convolutions (PKT's and SP's Gram matrices, NST's kernels, CRD's
scores, the trainable heads) in bfloat16, which put PKT's loss 2.5 % off on random inputs.
CPU autocast casts the same operations, so it stands in for CUDA here: each loss, its teacher
summary and its gradients must agree with a plain float32 run to float32 rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _feature_taps import make_taps, random_maps

from kdnas.core import METHODS, Taps
from kdnas.distill import build_loss

TEACHER_SHAPES = [(4, 8, 8), (6, 8, 8), (8, 4, 4), (10, 2, 2)]
STUDENT_SHAPES = [(3, 8, 8), (5, 8, 8), (7, 4, 4), (12, 2, 2)]
BATCH, N_TRAIN = 8, 40


def _taps(shapes, seed: int, dtype: torch.dtype = torch.float32) -> Taps:
    generator = torch.Generator().manual_seed(seed)
    maps = [m.to(dtype).requires_grad_(True) for m in random_maps(BATCH, shapes, generator)]
    embedding = torch.randn(BATCH, 12, generator=generator).to(dtype).requires_grad_(True)
    logits = torch.randn(BATCH, 5, generator=generator).to(dtype).requires_grad_(True)
    return make_taps(maps, embedding=embedding, logits=logits)


def _leaves(taps: Taps) -> list[torch.Tensor]:
    return [*taps.feature_maps, taps.embedding, taps.logits]


def _run(loss, student: Taps, teacher: Taps, autocast: bool):
    """Loss terms, the teacher summary and the gradients of "total", optionally under autocast."""
    labels = torch.arange(BATCH) % 5
    indices = torch.arange(BATCH) * 3 % N_TRAIN
    torch.manual_seed(7)  # CRD's negatives
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        summary = loss.teacher_summary(teacher)
        terms = loss(student, summary if loss.needs_teacher else None, labels, indices)
    terms["total"].backward()  # outside autocast, as the trainer does
    gradients = [t.grad for t in _leaves(student) if t.grad is not None]
    gradients += [p.grad for p in loss.parameters()]
    return terms, summary, gradients


def _build(method: str, student: Taps, teacher: Taps):
    return build_loss(
        method,
        student_probe=student,
        teacher_probe=teacher if method != "nokd" else None,
        num_classes=5,
        n_train=N_TRAIN,
        space="mobilenetv2",
        labels=torch.arange(N_TRAIN) % 5,
    )


def _assert_same(reference, candidate, method: str) -> None:
    terms, summary, gradients = reference
    other_terms, other_summary, other_gradients = candidate
    for key, value in terms.items():
        assert other_terms[key].dtype == torch.float32, (method, key)
        torch.testing.assert_close(other_terms[key], value, rtol=1e-6, atol=1e-9, msg=key)
    for key, value in summary.items():
        torch.testing.assert_close(other_summary[key].float(), value.float(), rtol=1e-6, atol=0)
    assert len(gradients) == len(other_gradients) > 0
    for mine, theirs in zip(gradients, other_gradients, strict=True):
        # A bfloat16 leaf receives the float32 gradient rounded to bfloat16 (its own dtype).
        torch.testing.assert_close(theirs, mine.to(theirs.dtype), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_loss_is_float32_under_bf16_autocast(method: str) -> None:
    student, teacher = _taps(STUDENT_SHAPES, 1), _taps(TEACHER_SHAPES, 2)
    loss = _build(method, student, teacher)
    twin = copy.deepcopy(loss)  # CRD's banks and normalisers change with each call
    reference = _run(loss, student, teacher, autocast=False)
    twin_student = _taps(STUDENT_SHAPES, 1)
    _assert_same(reference, _run(twin, twin_student, teacher, autocast=True), method)


@pytest.mark.parametrize("method", ["similarity", "pkt", "nst", "crd", "hint", "vid"])
def test_bfloat16_student_taps_are_computed_in_float32(method: str) -> None:
    """Taps that come out of an autocast forward pass in bfloat16 give the loss of their
    float32 values: nothing downstream is rounded again."""
    student_bf16, teacher = _taps(STUDENT_SHAPES, 3, torch.bfloat16), _taps(TEACHER_SHAPES, 4)
    student_fp32 = make_taps(
        [m.detach().float().requires_grad_(True) for m in student_bf16.feature_maps],
        embedding=student_bf16.embedding.detach().float().requires_grad_(True),
        logits=student_bf16.logits.detach().float().requires_grad_(True),
    )
    loss = _build(method, student_fp32, teacher)
    twin = copy.deepcopy(loss)
    reference = _run(loss, student_fp32, teacher, autocast=False)
    _assert_same(reference, _run(twin, student_bf16, teacher, autocast=True), method)
