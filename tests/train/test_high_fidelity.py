"""``DistributedHighFidelity``: high fidelity on 2 gloo processes, low fidelity on one,
checkpoints that keep a finished run from training again."""

from __future__ import annotations

import json

import pytest

from kdnas.core import Fidelity
from kdnas.data import load_digits, prepare
from kdnas.spaces import get_space
from kdnas.train import DistributedHighFidelity, TrainConfig, TrainingObjective


@pytest.fixture(scope="module")
def low():
    data = prepare(load_digits(), resolution=8)
    config = TrainConfig.for_data(data, epochs=1, batch_size=128, width_multiplier=0.25)
    return TrainingObjective(get_space("mobilenetv2"), data, config, device="cpu", seed=0)


@pytest.mark.slow  # 10-45 s on 2 busy cores: two processes train the full digits
def test_high_fidelity_runs_on_two_processes_and_is_kept(low, tmp_path) -> None:
    objective = DistributedHighFidelity(
        low, nproc=2, checkpoint_root=tmp_path, start_method="fork"
    )
    arch = low.space.original()
    high = objective.evaluate(arch, Fidelity(part=1, method="nokd"))
    assert high.status == "ok", high.info.get("error")
    assert high.info["device"].endswith("x2") and high.metrics["epochs"] == 1
    assert 0.0 <= high.valid_acc <= 1.0
    (folder,) = tmp_path.iterdir()
    assert json.loads((folder / "progress.json").read_text()) == {"epochs_done": 1, "epochs": 1}
    # Asked again (a search resumed without its store, say): restored, not trained again.
    again = objective.evaluate(arch, Fidelity(part=1, method="nokd"))
    assert again.valid_acc == high.valid_acc
    assert again.metrics["train_time_s"] == high.metrics["train_time_s"]
    low_result = objective.evaluate(arch, Fidelity(part=27, method="nokd", epochs=1))
    assert low_result.status == "ok" and not low_result.info["device"].endswith("x2")


def test_bad_process_counts_are_refused(low, tmp_path) -> None:
    with pytest.raises(ValueError, match="nproc must be >= 1"):
        DistributedHighFidelity(low, nproc=0, checkpoint_root=tmp_path)
