"""The short-run options of ``TrainConfig``: precise BatchNorm statistics and a distillation
warm-up. Each changes training only when asked for, and only in what it says; each joins the
protocol's identity only at a value other than the one every older result was trained with."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping

import pytest
import torch

from kdnas.core import Architecture, Taps
from kdnas.data import DeviceImages, ImageSet, epoch_plan, load_digits, prepare
from kdnas.distill.logit import CrossEntropyLoss, HintonKDLoss
from kdnas.train import (
    LEGACY_FIELD_VALUES,
    TrainConfig,
    recompute_batchnorm_statistics,
    train_network,
)


@pytest.fixture(scope="module")
def digits():
    return prepare(load_digits(), resolution=8)


def _images(data, count: int, padding: int = 1) -> DeviceImages:
    images = ImageSet(data.train.images[:count], data.train.labels[:count])
    return DeviceImages(images, data.mean, data.std, padding, torch.device("cpu"))


def _batchnorms(network) -> list[torch.nn.BatchNorm2d]:
    return [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_precise_bn_replaces_running_statistics_by_the_pass_average(digits, tiny_space) -> None:
    torch.manual_seed(0)
    network = tiny_space.build_network(Architecture("tiny", (8,)), 10, 1)
    train = _images(digits, 50)
    config = TrainConfig(epochs=2, batch_size=16, crop_padding=1, lr=0.05)
    train_network(network, CrossEntropyLoss(), train, config, seed=3)
    weights = {k: v.clone() for k, v in network.state_dict().items() if "running" not in k}
    stem = _batchnorms(network)[0]
    # What the pass must give: the mean over its batches of each batch's channel means and
    # unbiased variances of the stem convolution's output (epoch 2's plan: the pass after
    # two epochs).
    plan = epoch_plan(50, 16, 3, 2, 1, config.horizontal_flip)
    means, variances = [], []
    with torch.no_grad():
        for images, _, _ in train.plan_batches(plan):
            out = network.stem[0](images)
            means.append(out.mean(dim=(0, 2, 3)))
            variances.append(out.var(dim=(0, 2, 3), unbiased=True))
    recompute_batchnorm_statistics(network, train, config, seed=3, epoch=2)
    torch.testing.assert_close(stem.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(stem.running_var, torch.stack(variances).mean(0))
    assert stem.momentum == 0.1  # restored
    for key, value in network.state_dict().items():
        if key in weights:
            assert torch.equal(value, weights[key]), key  # nothing else changed


def test_precise_bn_runs_only_when_asked(digits, tiny_space) -> None:
    train = _images(digits, 50)
    finals = {}
    for precise in (False, True):
        torch.manual_seed(0)
        network = tiny_space.build_network(Architecture("tiny", (8,)), 10, 1)
        config = TrainConfig(epochs=2, batch_size=16, crop_padding=1, precise_bn=precise)
        train_network(network, CrossEntropyLoss(), train, config, seed=3)
        finals[precise] = network.state_dict()
    for key, value in finals[False].items():
        same = torch.equal(value, finals[True][key])
        # The weights are trained identically; only the population statistics differ.
        assert same != key.endswith(("running_mean", "running_var")), key


class _ScaleSpy(CrossEntropyLoss):
    """Cross-entropy that records the distillation scale the trainer hands it each step."""

    needs_teacher = False

    def __init__(self) -> None:
        super().__init__()
        self.scales: list[float] = []

    def forward(self, student, teacher, labels, indices, distillation_scale: float = 1.0):
        self.scales.append(distillation_scale)
        return super().forward(student, teacher, labels, indices)


def test_the_warmup_ramps_linearly_over_its_fraction_of_the_steps(digits, tiny_space) -> None:
    train = _images(digits, 50)  # 16 + 16 + 16 + 2: four steps an epoch
    network = tiny_space.build_network(Architecture("tiny", (4,)), 10, 1)
    spy = _ScaleSpy()
    config = TrainConfig(epochs=5, batch_size=16, crop_padding=1, distillation_warmup=0.4)
    train_network(network, spy, train, config, seed=0)
    assert len(spy.scales) == 20
    assert spy.scales[:8] == pytest.approx([k / 8 for k in range(1, 9)])  # 0.4 x 20 steps
    assert spy.scales[8:] == [1.0] * 12
    spy.scales.clear()
    train_network(network, spy, train, dataclasses.replace(config, distillation_warmup=0), 0)
    assert spy.scales == [1.0] * 20
    with pytest.raises(ValueError, match="distillation_warmup must lie in"):
        TrainConfig(distillation_warmup=1.5)


def test_the_scale_weighs_only_the_distillation_term() -> None:
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)
    taps = Taps(feature_maps=(), preactivations=(), embedding=torch.zeros(6, 1), logits=logits)
    labels = torch.randint(0, 5, (6,))
    teacher = {"logits": torch.randn(6, 5)}
    kd = HintonKDLoss(tau=4.0, lam=0.9)
    args = (taps, teacher, labels, torch.arange(6))
    full, none, half = (kd(*args, distillation_scale=s) for s in (1.0, 0.0, 0.5))
    assert torch.equal(full["total"], kd(*args)["total"])  # scale 1 is the method, bit for bit
    torch.testing.assert_close(none["total"], full["ce"])  # scale 0: plain cross-entropy
    torch.testing.assert_close(half["total"], 0.55 * full["ce"] + 0.45 * full["kd"])


def _old_protocol_key(config: TrainConfig) -> str:
    """The key as computed before the short-run fields existed."""
    values = {
        k: v
        for k, v in config.to_dict().items()
        if k not in {"eval_batch_size", "deterministic", *LEGACY_FIELD_VALUES}
    }
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def test_the_options_join_the_protocol_only_when_they_change_training() -> None:
    for config in (TrainConfig(), TrainConfig(lr=0.05, epochs=4)):
        assert config.protocol_key() == _old_protocol_key(config)  # older keys still match
        assert set(LEGACY_FIELD_VALUES).isdisjoint(config.protocol_dict())
        for change in ({"precise_bn": True}, {"distillation_warmup": 0.2}):
            changed = dataclasses.replace(config, **change)
            assert changed.protocol_key() != config.protocol_key()
            assert changed.protocol_dict().items() >= change.items()
            assert TrainConfig.from_dict(changed.to_dict()) == changed


def test_a_search_with_the_options_never_resumes_one_without() -> None:
    from kdnas.experiment import SearchSettings, load_data, run_config

    def config(train: Mapping[str, object]) -> dict:
        settings = SearchSettings(n_candidates=4, n_lf=2, train=dict(train))
        return run_config(settings, load_data(settings), [])

    plain = config({})
    assert "precise_bn" not in plain["train_config"]  # older stores keep their fingerprint
    assert config({"precise_bn": False, "distillation_warmup": 0.0}) == plain
    assert config({"precise_bn": True}) != plain
    assert config({"distillation_warmup": 0.2}) != plain
    assert config({"distillation_warmup": 0.2}) != config({"distillation_warmup": 0.1})


def test_the_command_line_sets_the_options_and_refuses_what_it_cannot_do(tmp_path, capsys) -> None:
    from kdnas.cli import main

    common = ["train", "--arch", "original", "--dataset", "digits", "--resolution", "8",
              "--part", "27", "--epochs", "1", "--width-multiplier", "0.1", "--threads", "1",
              "--teacher-dir", str(tmp_path / "teachers")]  # fmt: skip
    assert main([*common, "--distillation-warmup", "1.5"]) == 2
    assert "--distillation-warmup must lie in [0, 1]" in capsys.readouterr().err
    assert main([*common, "--precise-bn", "--checkpoint-dir", str(tmp_path / "c")]) == 2
    assert "--precise-bn is not implemented with --nproc" in capsys.readouterr().err
    output = tmp_path / "r.json"
    options = ["--precise-bn", "--distillation-warmup", "0.25", "--output", str(output)]
    assert main([*common, *options]) == 0
    config = json.loads(capsys.readouterr().out)["config"]
    assert config["precise_bn"] is True and config["distillation_warmup"] == 0.25
