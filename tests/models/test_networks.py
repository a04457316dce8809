"""The PyTorch networks: sizes against the closed forms, taps, layouts, listed architectures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from kdnas.core import Architecture, Taps
from kdnas.models import (
    MobileNetV2Network,
    ShuffleNetV2Network,
    count_multiply_adds,
    count_parameters,
)
from kdnas.spaces import SPACE_NAMES, get_space, load_listed_architectures
from kdnas.spaces.mobilenetv2 import mobilenetv2_plan, plan_parameter_count
from kdnas.spaces.shufflenetv2 import plan_parameter_count as shuffle_plan_parameter_count
from kdnas.spaces.shufflenetv2 import shufflenetv2_plan

#: Spatial sizes of the taps at a 32x32 input, and the teacher's tap channels.
TAP_SIZES = {"mobilenetv2": (32, 16, 8, 4, 2), "shufflenetv2": (32, 16, 8, 4)}
TEACHER_TAP_CHANNELS = {"mobilenetv2": (32, 24, 32, 96, 320), "shufflenetv2": (24, 116, 232, 464)}
EMBEDDING = {"mobilenetv2": 1280, "shufflenetv2": 1024}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # These networks are tiny at batch 2; with several threads on a busy 2-core machine the
    # thread pool thrashes and a forward pass takes seconds instead of milliseconds.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    torch.manual_seed(0)


def _spread(archs: list[Architecture], space_name: str) -> list[Architecture]:
    """A deterministic subset covering the extremes: smallest, largest, deepest, widest."""
    space = get_space(space_name)
    features = space.feature_matrix(archs)
    params = [space.parameter_count(a) for a in archs]
    depth_columns = slice(1, 14, 2) if space_name == "mobilenetv2" else slice(4, 7)
    depth = features[:, depth_columns].sum(axis=1)
    picks = {
        int(np.argmin(params)),
        int(np.argmax(params)),
        int(np.argmax(depth)),
        int(np.argmin(depth)),
        int(np.argmax(features[:, -2 if space_name == "mobilenetv2" else 3])),
        *range(0, len(archs), 25),
    }
    return [archs[i] for i in sorted(picks)]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_teacher_taps_have_the_documented_shapes(name: str) -> None:
    space = get_space(name)
    net = space.build_network(space.original()).eval()
    with torch.no_grad():
        taps = net.forward_taps(torch.randn(2, 3, 32, 32))
    assert isinstance(taps, Taps)
    shapes = [tuple(f.shape) for f in taps.feature_maps]
    expected = [
        (2, c, s, s) for c, s in zip(TEACHER_TAP_CHANNELS[name], TAP_SIZES[name], strict=True)
    ]
    assert shapes == expected
    assert tuple(net.tap_channels) == TEACHER_TAP_CHANNELS[name]
    assert tuple(taps.embedding.shape) == (2, EMBEDDING[name])
    assert tuple(taps.logits.shape) == (2, 100)
    assert len(taps.preactivations) == len(taps.feature_maps)


def test_preactivations() -> None:
    shuffle = get_space("shufflenetv2")
    net = shuffle.build_network(shuffle.original()).eval()
    with torch.no_grad():
        taps = net.forward_taps(torch.randn(2, 3, 32, 32))
    for feature, preact in zip(taps.feature_maps, taps.preactivations, strict=True):
        assert preact is not None and preact.shape == feature.shape
        assert bool((preact < 0).any())  # really before the ReLU
        torch.testing.assert_close(torch.relu(preact), feature)
    mobile = get_space("mobilenetv2")
    net = mobile.build_network(mobile.original()).eval()
    with torch.no_grad():
        taps = net.forward_taps(torch.randn(2, 3, 32, 32))
    stem_pre = taps.preactivations[0]
    assert stem_pre is not None
    torch.testing.assert_close(stem_pre.clamp(0, 6), taps.feature_maps[0])
    # block outputs are linear projections: no activation, so no pre-activation
    assert list(taps.preactivations[1:]) == [None] * 4
    assert bool((taps.feature_maps[1] < 0).any())


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_students_share_the_teachers_spatial_sizes(name: str) -> None:
    space = get_space(name)
    rng = np.random.default_rng(3)
    for arch in [space.sample(rng) for _ in range(3)]:
        net = space.build_network(arch).eval()
        with torch.no_grad():
            taps = net.forward_taps(torch.randn(2, 3, 32, 32))
        sizes = tuple(f.shape[-1] for f in taps.feature_maps)
        assert sizes == TAP_SIZES[name]
        assert tuple(f.shape[1] for f in taps.feature_maps) == tuple(net.tap_channels)
        assert tuple(taps.embedding.shape) == (
            2,
            space.features(arch)[-2 if name == "mobilenetv2" else 3],
        )


def test_mobilenet_taps_are_stage_ends() -> None:
    # Stage 2 has 4 blocks here: the tap must come after its 4th block, not at flat position 2.
    space = get_space("mobilenetv2")
    arch = space.from_stages([16, 24, 32, 64, 96, 160, 320], [1, 4, 1, 1, 1, 1, 1], 1280)
    net = MobileNetV2Network(arch).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        taps = net.forward_taps(x)
        out = net.stem(x)
        for block in net.blocks[:5]:  # stage 1 (1 block) + stage 2 (4 blocks)
            out = block(out)
    torch.testing.assert_close(taps.feature_maps[1], out)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_forward_equals_forward_taps_and_channels_last(name: str) -> None:
    space = get_space(name)
    arch = space.sample(np.random.default_rng(5))
    net = space.build_network(arch, width_multiplier=0.5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = net(x)
        torch.testing.assert_close(net.forward_taps(x).logits, logits)
        net_cl = net.to(memory_format=torch.channels_last)
        torch.testing.assert_close(
            net_cl(x.to(memory_format=torch.channels_last)), logits, rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_small_inputs_options_and_gradients(name: str) -> None:
    space = get_space(name)
    net = space.build_network(
        space.original(), num_classes=10, in_channels=1, width_multiplier=0.25
    )
    taps = net.forward_taps(torch.randn(3, 1, 8, 8))
    assert tuple(taps.logits.shape) == (3, 10)
    (taps.logits.square().mean() + sum(f.mean() for f in taps.feature_maps)).backward()
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad():
        # adaptive pooling: 40x40 inputs work too, and 32x32 matches a fixed global mean
        assert tuple(net.eval()(torch.randn(1, 1, 40, 40)).shape) == (1, 10)


def test_adaptive_pool_equals_the_papers_4x4_pool() -> None:
    space = get_space("shufflenetv2")
    net = space.build_network(space.original(), width_multiplier=0.25).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        taps = net.forward_taps(x)
        last = net.head(taps.feature_maps[-1])
        assert last.shape[-2:] == (4, 4)
        pooled = torch.nn.functional.avg_pool2d(last, 4).flatten(1)
    torch.testing.assert_close(taps.embedding, pooled)


def test_mobilenet_init() -> None:
    net = MobileNetV2Network(get_space("mobilenetv2").original())
    # Sampled weights: over torch seeds 0-4 the classifier's std is 0.996-1.001 x 0.01 and the
    # 1x1 expansion's 0.975-1.005 x sqrt(2/144) (benchmarks/threshold_spreads.py init).
    assert float(net.classifier.weight.detach().std()) == pytest.approx(0.01, rel=0.05)
    assert float(net.classifier.bias.detach().abs().max()) == 0.0
    conv = net.blocks[3].body[0][0]  # 1x1 expansion 24 -> 144: fan_out = 144
    assert float(conv.weight.detach().std()) == pytest.approx((2.0 / 144) ** 0.5, rel=0.1)
    bn = net.blocks[3].body[-1]
    assert torch.equal(bn.weight, torch.ones_like(bn.weight))


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_closed_forms_equal_torch_counts(name: str) -> None:
    space = get_space(name)
    rng = np.random.default_rng(11)
    archs = [space.original(), *(space.sample(rng) for _ in range(4))]
    for arch in archs:
        net = space.build_network(arch)
        assert count_parameters(net) == space.parameter_count(arch)
        for resolution in (32, 20):
            macs = count_multiply_adds(net, (3, resolution, resolution))
            assert macs == space.multiply_adds(arch, resolution=resolution)
        assert count_parameters(
            space.build_network(arch, num_classes=10)
        ) == space.parameter_count(arch, num_classes=10)


def test_closed_forms_with_options() -> None:
    mobile, shuffle = get_space("mobilenetv2"), get_space("shufflenetv2")
    for width in (0.25, 0.5, 1.3):
        arch = mobile.original()
        net = MobileNetV2Network(arch, num_classes=7, in_channels=1, width_multiplier=width)
        plan = mobilenetv2_plan(arch, in_channels=1, width_multiplier=width)
        assert count_parameters(net) == plan_parameter_count(plan, 7)
        arch = shuffle.original()
        net = ShuffleNetV2Network(arch, num_classes=7, in_channels=1, width_multiplier=width)
        plan = shufflenetv2_plan(arch, in_channels=1, width_multiplier=width)
        assert count_parameters(net) == shuffle_plan_parameter_count(plan, 7)
        assert all(c % 2 == 0 for c in plan.stage_channels)


def test_teacher_multiply_adds() -> None:
    # Independent arithmetic for the MobileNetV2 stem: 32x32 outputs x 32 channels x 27.
    mobile = get_space("mobilenetv2")
    assert mobile.multiply_adds(mobile.original()) == 24_576_512
    assert (
        get_space("shufflenetv2").multiply_adds(get_space("shufflenetv2").original()) == 44_504_448
    )
    net = MobileNetV2Network(mobile.original())
    stem_only = count_multiply_adds(net.stem, (3, 32, 32))
    assert stem_only == 32 * 32 * 32 * 27


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="needs a mobilenetv2 architecture"):
        MobileNetV2Network(get_space("shufflenetv2").original())
    with pytest.raises(ValueError, match="needs a shufflenetv2 architecture"):
        ShuffleNetV2Network(get_space("mobilenetv2").original())
    with pytest.raises(ValueError, match="width_multiplier must be > 0"):
        MobileNetV2Network(get_space("mobilenetv2").original(), width_multiplier=0)
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        ShuffleNetV2Network(get_space("shufflenetv2").original(), num_classes=0)
    with pytest.raises(ValueError, match="8 rows"):
        MobileNetV2Network([(1, 16, 1, 1)])
    with pytest.raises(ValueError, match="input_shape must be"):
        count_multiply_adds(torch.nn.Linear(2, 2), (2, 2))


def _build_and_run(space_name: str, archs: list[Architecture]) -> None:
    space = get_space(space_name)
    p = space.reference_parameters
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for arch in archs:
            net = space.build_network(arch).eval()
            logits = net(x)
            assert tuple(logits.shape) == (2, 100) and bool(torch.isfinite(logits).all())
            params = count_parameters(net)
            assert params == space.parameter_count(arch)
            # within (P/3, 3P) up to the four listed exceptions (tests/spaces), all within 8 %
            assert p / 3 * 0.98 < params < 3 * p * 1.03


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_listed_architectures_build_and_run(name: str, paper_data_dir: Path) -> None:
    archs = load_listed_architectures(name, paper_data_dir)
    _build_and_run(name, _spread(archs, name))


@pytest.mark.slow
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_every_listed_architecture_builds_and_runs(name: str, paper_data_dir: Path) -> None:
    _build_and_run(name, load_listed_architectures(name, paper_data_dir))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_cuda_channels_last(name: str) -> None:
    space = get_space(name)
    net = space.build_network(space.original()).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32, device="cuda").to(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        taps = net.forward_taps(x)
        taps.logits.float().mean().backward()
    assert taps.logits.shape == (4, 100) and taps.logits.device.type == "cuda"
    assert count_multiply_adds(net.eval(), (3, 32, 32)) == space.multiply_adds(space.original())
