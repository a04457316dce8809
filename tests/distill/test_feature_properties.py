"""Exact properties of the eight feature-based losses (kd_methods.md, sections 2-9).

Each test checks a closed form or an invariance stated in the specification, on hand-made
tensors in float64 where the comparison is tight.
"""

from __future__ import annotations

import logging
import math

import pytest
import torch
from _feature_taps import make_taps, random_maps

from kdnas.distill import build_loss
from kdnas.distill.attention import attention_map
from kdnas.distill.correlation import consecutive_correlation
from kdnas.distill.crd import nce_loss
from kdnas.distill.hint import build_connector
from kdnas.distill.nst import channel_patterns, mean_squared_kernel
from kdnas.distill.pkt import cosine_affinity, unit_rows
from kdnas.distill.similarity import similarity_matrix
from kdnas.paper import paper_figures

FEATURE_METHODS = ("hint", "attention", "similarity", "correlation", "vid", "pkt", "nst", "crd")
TEACHER_SHAPES = [(4, 8, 8), (6, 8, 8), (8, 4, 4), (10, 2, 2)]
STUDENT_SHAPES = [(3, 8, 8), (5, 8, 8), (7, 4, 4), (12, 2, 2)]
BATCH = 6


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def build(method: str, student, teacher, **hyperparameters):
    labels = torch.arange(BATCH * 4) % 3
    return build_loss(
        method,
        student_probe=student,
        teacher_probe=teacher,
        num_classes=5,
        n_train=labels.numel(),
        space="mobilenetv2",
        hyperparameters=hyperparameters,
        labels=labels,
    )


def run(loss, student, teacher_taps, labels=None, indices=None):
    batch = student.logits.shape[0]
    labels = torch.zeros(batch, dtype=torch.long) if labels is None else labels
    indices = torch.arange(batch) if indices is None else indices
    return loss(student, loss.teacher_summary(teacher_taps), labels, indices)


# ---------------------------------------------------------------------------------- common


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_total_is_cross_entropy_plus_beta_times_term(method: str, generator) -> None:
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator, requires_grad=True))
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    labels = torch.arange(BATCH) % 3
    loss = build(method, student, teacher)
    terms = run(loss, student, teacher, labels=labels)
    expected_beta = paper_figures()["appendix_a_kd_hyperparameters"][method]["mobilenet"]["beta"]
    assert loss.weights == {"ce": 1.0, method: float(expected_beta)}
    ce = torch.nn.functional.cross_entropy(student.logits, labels)
    assert torch.allclose(terms["ce"], ce)
    assert torch.allclose(terms["total"], ce + expected_beta * terms[method])
    assert torch.isfinite(terms["total"])
    if method != "crd":  # CRD's banks move with each call; its total is the same sum
        # The trainer's warm-up scales the method's weight only (scale 1: bit for bit).
        summary = loss.teacher_summary(teacher)
        indices = torch.arange(BATCH)
        one = loss(student, summary, labels, indices, distillation_scale=1.0)
        assert torch.equal(one["total"], terms["total"])
        quarter = loss(student, summary, labels, indices, distillation_scale=0.25)
        torch.testing.assert_close(quarter["total"], ce + 0.25 * expected_beta * terms[method])


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_gradient_reaches_student_and_own_parameters(method: str, generator) -> None:
    maps = random_maps(BATCH, STUDENT_SHAPES, generator, requires_grad=True)
    embedding = torch.randn(BATCH, 12, generator=generator, requires_grad=True)
    student = make_taps(maps, embedding=embedding)
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build(method, student, teacher)
    terms = run(loss, student, teacher, indices=torch.arange(BATCH) * 2)
    terms[method].backward()
    student_grads = [t.grad for t in [*maps, embedding] if t.grad is not None]
    assert student_grads and any(g.abs().sum() > 0 for g in student_grads)
    for name, parameter in loss.named_parameters():
        assert parameter.grad is not None, f"{method}: no gradient for {name}"
        assert parameter.grad.abs().sum() > 0, f"{method}: zero gradient for {name}"


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_teacher_summary_is_per_sample_and_detached(method: str, generator) -> None:
    teacher_maps = random_maps(BATCH, TEACHER_SHAPES, generator, requires_grad=True)
    teacher = make_taps(teacher_maps)
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    loss = build(method, student, teacher)
    summary = loss.teacher_summary(teacher)
    assert summary
    for key, value in summary.items():
        assert value.shape[0] == BATCH, key
        assert not value.requires_grad, key


def test_unknown_hyperparameter_lists_the_valid_ones(generator) -> None:
    taps = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    with pytest.raises(
        ValueError, match=r"unknown hyperparameter 'alpha'.*valid: beta, ce_weight"
    ):
        build("attention", taps, taps, alpha=1.0)
    with pytest.raises(ValueError, match="num_negatives"):
        build("crd", taps, taps, negatives=3)


def test_space_defaults_and_fallback(generator, caplog) -> None:
    taps = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))

    def beta(space: str | None) -> float:
        return build_loss(
            "nst",
            student_probe=taps,
            teacher_probe=taps,
            num_classes=5,
            n_train=10,
            space=space,
        ).beta

    assert beta("shufflenetv2") == beta("shufflenet") == 200.0
    assert beta("mobilenetv2") == beta("mobilenet") == 12.5
    with caplog.at_level(logging.INFO, logger="kdnas.distill._combined"):
        assert beta("my_space") == 12.5
    assert "MobileNetV2 values" in caplog.text
    overridden = build("nst", taps, taps, beta=3.0, ce_weight=0.5)
    assert overridden.weights == {"ce": 0.5, "nst": 3.0}


# ---------------------------------------------------------------------------------- hint


@pytest.mark.parametrize(
    ("student_hw", "teacher_hw"),
    [((8, 8), (4, 4)), ((4, 4), (8, 8)), ((7, 7), (4, 4)), ((4, 4), (4, 4))],
)
def test_hint_connector_maps_to_teacher_shape(student_hw, teacher_hw) -> None:
    connector = build_connector((3, *student_hw), (5, *teacher_hw))
    assert connector(torch.randn(2, 3, *student_hw)).shape == (2, 5, *teacher_hw)


def test_hint_zero_when_connector_output_equals_teacher(generator) -> None:
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build("hint", student, teacher)
    target = loss.connector(student.feature_maps[2]).detach()
    terms = loss(student, {"map": target}, torch.zeros(BATCH, dtype=torch.long), None)
    assert terms["hint"].item() == 0.0


def test_hint_floor_from_the_final_relu(generator) -> None:
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build("hint", student, teacher)
    floor = teacher.feature_maps[2].clamp_max(0).pow(2).mean()
    assert floor > 0.1
    assert run(loss, student, teacher)["hint"] >= floor
    # The floor is reached when the connector outputs max(F_T, 0).
    relu_target = teacher.feature_maps[2].clamp_min(0)
    assert torch.isclose(torch.nn.functional.mse_loss(relu_target, teacher.feature_maps[2]), floor)


# ---------------------------------------------------------------------------------- AT


def test_attention_invariances_and_zero(generator) -> None:
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    loss = build("attention", student, teacher)
    base = run(loss, student, teacher)["attention"]
    scaled_student = make_taps([3.7 * m for m in student.feature_maps])
    scaled_teacher = make_taps([0.2 * m for m in teacher.feature_maps])
    assert torch.isclose(run(loss, scaled_student, teacher)["attention"], base)
    assert torch.isclose(run(loss, student, scaled_teacher)["attention"], base)
    # Identical energy per position with a different channel count: the student repeats
    # every teacher channel twice.
    doubled = make_taps([torch.cat([m, m], dim=1) for m in teacher.feature_maps])
    loss_doubled = build("attention", doubled, teacher)
    assert run(loss_doubled, doubled, teacher)["attention"].abs() < 1e-7


def test_attention_pair_bounds_and_disjoint_value(generator) -> None:
    # Disjoint energy on a 4x4 map: the pair term is 2 / 16 = 0.125 exactly.
    first = torch.zeros(1, 3, 4, 4)
    first[..., :2, :] = torch.rand(1, 3, 2, 4, generator=generator) + 0.1
    second = torch.zeros(1, 5, 4, 4)
    second[..., 2:, :] = torch.rand(1, 5, 2, 4, generator=generator) + 0.1
    pair = (attention_map(first) - attention_map(second)).pow(2).mean()
    assert torch.isclose(pair, torch.tensor(0.125))
    for _ in range(20):
        x, y = torch.randn(2, 4, 3, 4, 4, generator=generator)
        pair = (attention_map(x) - attention_map(y)).pow(2).mean()
        assert 0.0 <= pair <= 2.0 / 16


def test_attention_student_larger_map_is_pooled(generator) -> None:
    teacher = make_taps(random_maps(BATCH, [(4, 8, 8), (6, 4, 4), (8, 2, 2)], generator))
    student = make_taps(random_maps(BATCH, [(4, 8, 8), (6, 8, 8), (8, 2, 2)], generator))
    loss = build("attention", student, teacher, reference_side=8)  # an 8x8 stem: scale 1
    pooled = torch.nn.functional.adaptive_avg_pool2d(student.feature_maps[1], (4, 4))
    expected = (attention_map(pooled) - attention_map(teacher.feature_maps[1])).pow(2).mean()
    expected = expected + (
        (attention_map(student.feature_maps[2]) - attention_map(teacher.feature_maps[2]))
        .pow(2)
        .mean()
    )
    assert torch.isclose(run(loss, student, teacher)["attention"], expected)
    # And the other way round (the teacher map is larger): finite and zero for equal energy.
    assert torch.isfinite(run(build("attention", teacher, student), teacher, student)["total"])


def test_attention_reproduces_the_paper_at_a_32x32_stem_and_scales_with_its_area(
    generator,
) -> None:
    shapes = [(3, 32, 32), (4, 16, 16), (5, 8, 8), (6, 4, 4)]
    teacher = make_taps(random_maps(BATCH, shapes, generator))
    student = make_taps(random_maps(BATCH, shapes, generator))
    paper = sum(
        (attention_map(s) - attention_map(t)).pow(2).mean()
        for s, t in zip(student.feature_maps[1:], teacher.feature_maps[1:], strict=True)
    )
    assert torch.isclose(
        run(build("attention", student, teacher), student, teacher)["attention"], paper
    )
    assert build("attention", student, teacher).hyperparameters["reference_side"] == 32.0
    # The same maps behind a 16x16 stem (a 16x16 input): a quarter of the paper's term.
    small = [
        make_taps([torch.zeros(BATCH, 3, 16, 16), *t.feature_maps[1:]]) for t in (student, teacher)
    ]
    assert torch.isclose(run(build("attention", *small), *small)["attention"], paper / 4)
    with pytest.raises(ValueError, match="reference_side"):
        build("attention", student, teacher, reference_side=0.0)


def _upsampled(taps, factor: int = 2):
    return make_taps(
        [
            m.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
            for m in taps.feature_maps
        ],
        embedding=taps.embedding,
        logits=taps.logits,
    )


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_loss_does_not_depend_on_the_resolution(method: str, generator) -> None:
    """Every map upsampled 2x by replication (the same image seen at twice the resolution,
    stem included) gives the same loss: beta means the same at every image size."""
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    big_teacher, big_student = _upsampled(teacher), _upsampled(student)
    labels, indices = torch.arange(BATCH) % 3, torch.arange(BATCH)
    loss, big_loss = build(method, student, teacher), build(method, big_student, big_teacher)
    big_loss.load_state_dict(loss.state_dict())  # same connectors, heads, banks
    torch.manual_seed(0)
    value = run(loss, student, teacher, labels, indices)[method]
    torch.manual_seed(0)
    big_value = run(big_loss, big_student, big_teacher, labels, indices)[method]
    assert torch.isclose(big_value, value, rtol=1e-5, atol=1e-9), (big_value, value)


# ---------------------------------------------------------------------------------- SP


def test_similarity_invariances(generator) -> None:
    x = torch.randn(BATCH, 10, 2, 2, generator=generator, dtype=torch.float64)
    stem = torch.randn(BATCH, 1, 2, 2, dtype=torch.float64)
    teacher = make_taps([stem, x])
    loss = build("similarity", teacher, teacher)
    assert run(loss, teacher, teacher)["similarity"] == 0.0
    # One positive scale of the whole batch, and an orthogonal transform of the features.
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=generator, dtype=torch.float64))
    rotated = (x.flatten(1) @ q).view(BATCH, 40, 1, 1)
    for student_map in (2.5 * x, rotated, torch.cat([x, torch.zeros_like(x)], dim=1)):
        student = make_taps([stem, student_map])
        assert run(loss, student, teacher)["similarity"] < 1e-12
    # Not invariant to scaling one sample.
    x_scaled = x.clone()
    x_scaled[0] *= 3.0
    assert run(loss, make_taps([stem, x_scaled]), teacher)["similarity"] > 1e-6


def test_similarity_bounds(generator) -> None:
    stem = torch.zeros(BATCH, 1, 1, 1)
    loss = build("similarity", make_taps([stem, stem]), make_taps([stem, stem]))
    for _ in range(20):
        s, t = torch.randn(2, BATCH, 3, 2, 2, generator=generator)
        assert (
            0.0 <= run(loss, make_taps([stem, s]), make_taps([stem, t]))["similarity"] <= 4 / BATCH
        )
        value = run(loss, make_taps([stem, s.abs()]), make_taps([stem, t.abs()]))["similarity"]
        assert value <= 2 / BATCH
    # The bound 4/B is reached when every Gram row flips sign.
    g = similarity_matrix(s)
    assert torch.isclose((g - (-g)).pow(2).sum() / BATCH**2, torch.tensor(4.0 / BATCH))


def test_similarity_rejects_a_summary_of_another_batch(generator) -> None:
    taps = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build("similarity", taps, taps)
    other = make_taps(random_maps(BATCH + 1, TEACHER_SHAPES, generator))
    with pytest.raises(ValueError, match="per batch"):
        loss(taps, loss.teacher_summary(other), torch.zeros(BATCH, dtype=torch.long), None)
    assert loss.summary_is_per_batch


# ---------------------------------------------------------------------------------- CC


def test_correlation_closed_form_and_symmetry(generator) -> None:
    u = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert consecutive_correlation(u, torch.zeros(2, 2)).item() == 11.0
    assert consecutive_correlation(torch.zeros(2, 2), u).item() == 11.0
    a, b = torch.randn(2, BATCH, 7, generator=generator)
    assert consecutive_correlation(a, b) == consecutive_correlation(b, a)
    assert consecutive_correlation(a, a).item() == 0.0


def test_correlation_zero_when_heads_agree(generator) -> None:
    taps = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build("correlation", taps, taps)
    loss.teacher_head.load_state_dict(loss.student_head.state_dict())
    assert run(loss, taps, taps)["correlation"].item() == 0.0
    assert loss.student_head.out_features == 128


# ---------------------------------------------------------------------------------- VID


def test_vid_closed_forms_at_initialisation(generator) -> None:
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build("vid", student, teacher)
    middle = student.feature_maps[1:]
    with torch.no_grad():
        means = [r.mean(m) for r, m in zip(loss.regressors, middle, strict=True)]
    summary = {f"map_{i}": m for i, m in enumerate(means)}
    zero_labels = torch.zeros(BATCH, dtype=torch.long)
    value = loss(student, summary, zero_labels, None)["vid"]
    assert math.isclose(value.item(), 3 * 0.5 * math.log(5.0), rel_tol=1e-6)
    assert math.isclose(0.5 * math.log(5.0), 0.804719, abs_tol=1e-6)
    d = 0.7
    shifted = {key: m + d for key, m in summary.items()}
    value = loss(student, shifted, zero_labels, None)["vid"]
    assert math.isclose(value.item(), 3 * 0.5 * (d**2 / 5 + math.log(5.0)), rel_tol=1e-5)


def test_vid_variance_minimiser_is_the_squared_error(generator) -> None:
    student = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build("vid", student, teacher)
    regressor = loss.regressors[0]
    s_map = student.feature_maps[1]
    with torch.no_grad():
        mu = regressor.mean(s_map)
        target = mu + torch.randn(mu.shape, generator=generator)
        r = (mu - target).pow(2).mean(dim=(0, 2, 3))
        regressor.variance_logit.copy_(torch.log(torch.expm1(r - 1e-5)))
    assert torch.allclose(regressor.variance(), r, rtol=1e-5)
    regressor.negative_log_likelihood(s_map, target).backward()
    assert regressor.variance_logit.grad.abs().max() < 1e-6


# ---------------------------------------------------------------------------------- PKT


def test_pkt_zero_scale_and_rotation_invariance(generator) -> None:
    x = torch.randn(BATCH, 9, generator=generator, dtype=torch.float64)
    y = torch.randn(BATCH, 5, generator=generator, dtype=torch.float64)
    stem = [torch.zeros(BATCH, 1, 1, 1, dtype=torch.float64)]
    loss = build("pkt", make_taps(stem, embedding=x), make_taps(stem, embedding=y))
    scales = torch.rand(BATCH, 1, generator=generator, dtype=torch.float64) + 0.1
    same = run(loss, make_taps(stem, embedding=x * scales), make_taps(stem, embedding=x))
    assert same["pkt"].abs() < 1e-6
    base = run(loss, make_taps(stem, embedding=x), make_taps(stem, embedding=y))["pkt"]
    assert base > 1e-4
    q, _ = torch.linalg.qr(torch.randn(9, 9, generator=generator, dtype=torch.float64))
    rotated = run(loss, make_taps(stem, embedding=x @ q), make_taps(stem, embedding=y))["pkt"]
    assert torch.isclose(rotated, base, rtol=1e-6)
    for _ in range(10):
        a, b = torch.randn(2, BATCH, 4, generator=generator)
        p_a = cosine_affinity(unit_rows(a))
        assert torch.allclose(p_a.sum(dim=1), torch.ones(BATCH))
        value = run(loss, make_taps(stem, embedding=a), make_taps(stem, embedding=b))["pkt"]
        assert value >= -1e-6
    # A zero embedding gives no NaN.
    assert torch.isfinite(unit_rows(torch.zeros(2, 3))).all()


# ---------------------------------------------------------------------------------- NST


def test_nst_zero_and_invariances(generator) -> None:
    teacher = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    loss = build("nst", teacher, teacher)
    assert run(loss, teacher, teacher)["nst"].abs() < 1e-6
    # Non-zero per-channel scales (negative ones too), a channel permutation, and every
    # channel repeated twice (same distribution of channel patterns, twice the count).
    changed = []
    for m in teacher.feature_maps:
        c = m.shape[1]
        scale = torch.linspace(-2.0, 3.0, c)
        scale = torch.where(scale.abs() < 0.1, torch.tensor(0.5), scale)
        permuted = (m * scale.view(1, -1, 1, 1))[:, torch.randperm(c, generator=generator)]
        changed.append(torch.cat([permuted, permuted], dim=1))
    student = make_taps(changed)
    assert run(build("nst", student, teacher), student, teacher)["nst"].abs() < 1e-5
    other = make_taps(random_maps(BATCH, STUDENT_SHAPES, generator))
    assert run(build("nst", other, teacher), other, teacher)["nst"] > 1e-3


def test_nst_pair_term_is_two_for_orthogonal_shared_patterns() -> None:
    first = torch.zeros(1, 1, 2, 2)
    first[..., 0, 0] = 1.0
    second = torch.zeros(1, 1, 2, 2)
    second[..., 1, 1] = 1.0
    student = make_taps(
        [first, first.expand(1, 3, 2, 2) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)]
    )
    teacher = make_taps([first, second.expand(1, 5, 2, 2).clone()])
    loss = build("nst", student, teacher)
    assert torch.isclose(run(loss, student, teacher)["nst"], torch.tensor(2.0))
    for seed in range(10):
        g = torch.Generator().manual_seed(seed)
        s, t = torch.randn(3, 4, 3, 3, generator=g), torch.randn(3, 6, 3, 3, generator=g)
        student, teacher = make_taps([s, s]), make_taps([t, t])
        assert -1e-6 <= run(build("nst", student, teacher), student, teacher)["nst"] <= 2.0


def test_mean_squared_kernel_both_routes_agree(generator) -> None:
    x = channel_patterns(torch.randn(3, 5, 3, 3, generator=generator, dtype=torch.float64))
    y = channel_patterns(torch.randn(3, 40, 3, 3, generator=generator, dtype=torch.float64))
    direct = torch.bmm(x, y.transpose(1, 2)).pow(2).mean(dim=(1, 2))
    assert torch.allclose(mean_squared_kernel(x, y), direct)  # the Gram route (P small)
    wide_x = channel_patterns(torch.randn(3, 2, 8, 8, generator=generator, dtype=torch.float64))
    wide_y = channel_patterns(torch.randn(3, 3, 8, 8, generator=generator, dtype=torch.float64))
    direct = torch.bmm(wide_x, wide_y.transpose(1, 2)).pow(2).mean(dim=(1, 2))
    assert torch.allclose(mean_squared_kernel(wide_x, wide_y), direct)


# ---------------------------------------------------------------------------------- CRD


def _crd(n_data: int, classes: int, **hyperparameters):
    labels = torch.arange(n_data) % classes
    taps = make_taps([torch.zeros(1, 1, 1, 1)], embedding=torch.zeros(1, 6))
    loss = build_loss(
        "crd",
        student_probe=taps,
        teacher_probe=taps,
        num_classes=classes,
        n_train=n_data,
        space="mobilenetv2",
        hyperparameters=hyperparameters,
        labels=labels,
    )
    return loss, labels


def test_crd_nce_closed_form() -> None:
    n_data, k = 50_000, 4
    scores = torch.full((1, k + 1), 1.0 / n_data, dtype=torch.float64)
    assert math.isclose(nce_loss(scores, n_data).item(), 2.50701, abs_tol=5e-6)
    p = 1.0 / n_data
    expected = -math.log(p / ((k + 1) * p + 1e-7)) - k * math.log(k * p / ((k + 1) * p + 1e-7))
    assert math.isclose(nce_loss(scores, n_data).item(), expected, rel_tol=1e-12)


def test_crd_first_batch_with_identical_memory_rows() -> None:
    loss, labels = _crd(50_000, 10, num_negatives=4)
    assert loss.num_negatives == 4
    loss.student_bank.copy_(loss.student_bank[:1].expand_as(loss.student_bank))
    loss.teacher_bank.copy_(loss.teacher_bank[:1].expand_as(loss.teacher_bank))
    taps = make_taps([torch.zeros(1, 1, 1, 1)], embedding=torch.randn(1, 6))
    value = loss.method_term(taps, {"embedding": torch.randn(1, 6)}, labels[:1], torch.tensor([0]))
    assert math.isclose(value.item(), 2 * 2.50701, abs_tol=1e-4)


def test_crd_scores_units_negatives_and_bank_updates(generator) -> None:
    loss, labels = _crd(60, 3, num_negatives=1000)
    assert loss.num_negatives == 40  # capped at the smallest other-class pool (60 - 20)
    indices = torch.tensor([0, 4, 8, 13, 17, 22])
    negatives = loss.draw_negatives(indices.repeat(50))
    assert (labels[negatives] != labels[indices.repeat(50)].unsqueeze(1)).all()
    assert set(negatives[0::6].flatten().tolist()) == set(
        (labels != labels[0]).nonzero().flatten().tolist()
    )
    s_emb, t_emb = torch.randn(2, len(indices), 6, generator=generator)
    candidates = torch.cat([indices.unsqueeze(1), loss.draw_negatives(indices)], dim=1)
    s = torch.nn.functional.normalize(loss.student_head(s_emb), dim=1)
    scores = loss._scores(s, loss.teacher_bank, candidates, side=0)
    assert math.isclose(scores.mean().item(), 1.0 / 60, rel_tol=1e-5)
    before = loss.student_bank.clone()
    loss.eval()
    loss.method_term(
        make_taps([torch.zeros(1, 1, 1, 1)], embedding=s_emb),
        {"embedding": t_emb},
        labels[indices],
        indices,
    )
    assert torch.equal(loss.student_bank, before)
    loss.train()
    loss.method_term(
        make_taps([torch.zeros(1, 1, 1, 1)], embedding=s_emb),
        {"embedding": t_emb},
        labels[indices],
        indices,
    )
    changed = (loss.student_bank != before).any(dim=1)
    assert changed.nonzero().flatten().tolist() == indices.tolist()
    norms = torch.cat([loss.student_bank[indices], loss.teacher_bank[indices]]).norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms))
    assert (loss.normalisers > 0).all()
    assert {"student_bank", "teacher_bank", "normalisers"} <= dict(loss.named_buffers()).keys()


def test_crd_negatives_are_distinct_other_class_draws() -> None:
    """A 1/27 CIFAR-100-like subset (N = 1,851, 100 classes): K is capped at the smallest
    other-class pool, and every row's K draws are distinct (with replacement only 63 % were)."""
    torch.manual_seed(0)
    loss, labels = _crd(1851, 100)
    assert loss.num_negatives == 1851 - 19
    indices = torch.randperm(1851)[:64]
    negatives = loss.draw_negatives(indices)
    assert negatives.shape == (64, loss.num_negatives)
    assert (labels[negatives] != labels[indices].unsqueeze(1)).all()
    distinct = torch.tensor([row.unique().numel() for row in negatives]) / loss.num_negatives
    assert (distinct == 1.0).all(), distinct.min()
    # K below the pool: distinct too, and each other-class sample equally likely. 4,000 draws
    # of K = 90 from a pool of 180 put each member in a row with frequency 0.5, standard
    # deviation 0.008; over 180 members the largest deviation stays near 0.025 (seeds 0-4:
    # 0.020-0.026); 0.05 is 6 standard deviations, while a draw that favoured part of the pool
    # (e.g. its first half twice as likely) would move frequencies by 0.17.
    loss, labels = _crd(200, 10, num_negatives=90)
    negatives = loss.draw_negatives(torch.zeros(4000, dtype=torch.long))
    assert all(row.unique().numel() == 90 for row in negatives[:200])
    frequency = torch.bincount(negatives.flatten(), minlength=200).float() / 4000
    pool = labels != labels[0]
    assert (frequency[~pool] == 0).all()
    assert (frequency[pool] - 0.5).abs().max() < 0.05


def test_crd_gather_route_equals_product_route(generator) -> None:
    loss, _ = _crd(400, 4, num_negatives=8)
    indices = torch.arange(5)
    candidates = torch.cat([indices.unsqueeze(1), loss.draw_negatives(indices)], dim=1)
    v = torch.nn.functional.normalize(torch.randn(5, 128, generator=generator), dim=1)
    loss.normalisers.fill_(1.0)
    loss._normalisers_fixed = True
    gathered = loss._scores(v, loss.teacher_bank, candidates, side=0)  # N > 4 (K+1): gather
    direct = torch.exp((loss.teacher_bank[candidates] * v.unsqueeze(1)).sum(-1) / loss.temperature)
    assert torch.allclose(gathered, direct, rtol=1e-5)


def test_crd_needs_labels(generator) -> None:
    taps = make_taps(random_maps(BATCH, TEACHER_SHAPES, generator))
    with pytest.raises(ValueError, match="labels"):
        build_loss("crd", student_probe=taps, teacher_probe=taps, num_classes=3, n_train=9)
