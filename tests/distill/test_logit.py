"""Cross-entropy and Hinton's KD against closed forms (the paper's Eq. 2)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from kdnas.core import Taps
from kdnas.distill import build_loss
from kdnas.distill.logit import CrossEntropyLoss, HintonKDLoss, kd_defaults


def _taps(logits: torch.Tensor) -> Taps:
    return Taps([], [], logits.new_zeros(len(logits), 1), logits)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kd_with_lambda_zero_is_cross_entropy(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(6, 5, generator=generator, dtype=dtype)
    teacher = torch.randn(6, 5, generator=generator, dtype=dtype)
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    kd = HintonKDLoss(tau=4.0, lam=0.0)(_taps(student), {"logits": teacher}, labels, labels)
    ce = CrossEntropyLoss()(_taps(student), None, labels, labels)
    assert torch.equal(kd["total"], ce["total"])
    assert float(ce["total"]) == pytest.approx(float(F.cross_entropy(student.float(), labels)))


@pytest.mark.parametrize("tau", [1.0, 4.0, 32.0])
def test_kd_of_identical_logits_is_tau_squared_times_the_soft_entropy(tau: float) -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    terms = HintonKDLoss(tau=tau, lam=1.0)(
        _taps(logits), {"logits": logits.clone()}, torch.tensor([0, 1]), torch.arange(2)
    )
    entropies = []
    for row in logits.tolist():
        weights = [math.exp(z / tau) for z in row]
        p = [w / sum(weights) for w in weights]
        entropies.append(-sum(q * math.log(q) for q in p))
    expected = tau**2 * sum(entropies) / 2
    assert float(terms["kd"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["total"]) == pytest.approx(expected, rel=1e-5)
    assert float(terms["kd_kl"]) == pytest.approx(0.0, abs=1e-4)
    assert expected > 0  # the uniform row alone contributes tau^2 * log 4


def test_kd_gradient_is_tau_over_batch_times_probability_gap() -> None:
    generator = torch.Generator().manual_seed(1)
    tau, batch = 3.0, 4
    student = torch.randn(batch, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(batch, 6, generator=generator, dtype=torch.float64)
    labels = torch.zeros(batch, dtype=torch.int64)
    loss = HintonKDLoss(tau=tau, lam=1.0)(_taps(student), {"logits": teacher}, labels, labels)
    loss["total"].backward()
    expected = (tau / batch) * (torch.softmax(student / tau, 1) - torch.softmax(teacher / tau, 1))
    torch.testing.assert_close(student.grad, expected.detach())


def test_kd_ignores_a_constant_added_to_one_sample_s_logits() -> None:
    student = torch.tensor([[1.0, 2.0, 0.0], [0.5, -0.5, 1.5]])
    teacher = torch.tensor([[0.0, 1.0, 3.0], [2.0, 2.0, 0.0]])
    shifted = student + torch.tensor([[10.0], [0.0]])
    loss = HintonKDLoss(tau=2.0, lam=0.5)
    labels = torch.tensor([2, 0])
    a = loss(_taps(student), {"logits": teacher}, labels, labels)["total"]
    b = loss(_taps(shifted), {"logits": teacher}, labels, labels)["total"]
    assert float(a) == pytest.approx(float(b), rel=1e-5)


def test_paper_defaults_records_and_registry() -> None:
    assert kd_defaults("mobilenetv2") == {"tau": 32.0, "lambda": 1.0}
    assert kd_defaults("shufflenetv2") == {"tau": 32.0, "lambda": 1.0}
    assert kd_defaults("mobilenetv2-imagenet") == {"tau": 4.0, "lambda": 0.9}
    probe = _taps(torch.zeros(2, 3))
    loss = build_loss(
        "kd",
        student_probe=probe,
        teacher_probe=probe,
        num_classes=3,
        n_train=10,
        space="mobilenetv2",
        hyperparameters={"tau": 4},
    )
    assert isinstance(loss, HintonKDLoss)
    assert loss.hyperparameters == {"tau": 4.0, "lambda": 1.0}
    assert loss.weights == {"ce": 0.0, "kd": 1.0}
    ce = build_loss("nokd", student_probe=probe, teacher_probe=None, num_classes=3, n_train=10)
    assert isinstance(ce, CrossEntropyLoss) and not ce.needs_teacher
    with pytest.raises(ValueError, match="valid: lambda, tau"):
        build_loss(
            "kd",
            student_probe=probe,
            teacher_probe=probe,
            num_classes=3,
            n_train=10,
            hyperparameters={"temperature": 4},
        )
    with pytest.raises(ValueError, match="lambda"):
        HintonKDLoss(tau=4.0, lam=1.5)
