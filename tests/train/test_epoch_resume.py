"""Long trainings resume: the teacher's training and a full-data evaluation checkpoint every
epoch; a process killed with SIGKILL after an epoch resumes from that epoch in a fresh process,
and ends with the same weights and accuracies as an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

_TRAIN = textwrap.dedent(
    """
    import json, os, signal, sys
    import numpy as np
    import torch
    torch.set_num_threads(1)
    from kdnas.core import Fidelity
    from kdnas.data import load_dataset, prepare
    from kdnas.spaces import get_space
    from kdnas.train import (
        EpochCheckpoint, KeepPolicy, TrainConfig, TrainingObjective, WeightsFolder,
    )

    folder, what, kill_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    saves = []
    real_save = EpochCheckpoint.save

    def save(self, state):
        real_save(self, state)
        saves.append(int(state["epochs"]))
        if state["epochs"] == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # the epoch's checkpoint is on disk

    EpochCheckpoint.save = save
    data = prepare(load_dataset("digits"))
    config = TrainConfig.for_data(data, epochs=4, width_multiplier=0.125, batch_size=64)
    space = get_space("mobilenetv2")
    objective = TrainingObjective(
        space, data, config, teacher_dir=os.path.join(folder, "teachers"), seed=0,
        device="cpu", weights=WeightsFolder(os.path.join(folder, "weights"), KeepPolicy(None)),
    )
    if what == "teacher":
        result = objective.teacher_result(1)
    else:
        arch = space.sample(np.random.default_rng(1))
        result = objective.train(arch, Fidelity(part=1, method="nokd"))
    print(json.dumps({
        "saves": saves, "valid": result.valid_acc, "test": result.test_acc,
        "loss": result.final_loss, "status": result.status,
    }))
    """
)


def _run(folder: Path, what: str, kill_after: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _TRAIN, str(folder), what, str(kill_after)],
        capture_output=True,
        text=True,
        check=False,
    )


def _weights(folder: Path, what: str) -> dict[str, torch.Tensor]:
    files = sorted((folder / ("teachers" if what == "teacher" else "weights")).glob("*.pt"))
    assert len(files) == 1, files
    return torch.load(files[0], weights_only=True)


@pytest.mark.parametrize("what", ["teacher", "full-data evaluation"])
def test_a_training_killed_after_an_epoch_resumes_there_with_the_same_result(
    tmp_path: Path, what: str
) -> None:
    whole = _run(tmp_path / "whole", what, kill_after=0)
    assert whole.returncode == 0, whole.stderr[-2000:]
    uninterrupted = json.loads(whole.stdout)
    assert uninterrupted["status"] == "ok" and uninterrupted["saves"] == [1, 2, 3]

    killed = _run(tmp_path / "killed", what, kill_after=2)
    assert killed.returncode == -signal.SIGKILL
    checkpoints = list((tmp_path / "killed").rglob("*.ckpt"))
    assert len(checkpoints) == 1
    assert not list((tmp_path / "killed").rglob("*.pt"))  # nothing finished was kept

    again = _run(tmp_path / "killed", what, kill_after=0)
    assert again.returncode == 0, again.stderr[-2000:]
    resumed = json.loads(again.stdout)
    assert resumed["saves"] == [3]  # epochs 3 and 4 trained: it went on from epoch 2
    for name in ("valid", "test", "loss", "status"):
        assert resumed[name] == uninterrupted[name], name
    ours, theirs = _weights(tmp_path / "killed", what), _weights(tmp_path / "whole", what)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert not list((tmp_path / "killed").rglob("*.ckpt"))  # finished: checkpoint removed


def test_a_checkpoint_of_another_training_is_ignored(tmp_path: Path) -> None:
    from kdnas.train import EpochCheckpoint

    path = tmp_path / "x.ckpt"
    EpochCheckpoint(path, "teacher-a").save({"epochs": 1})
    assert EpochCheckpoint(path, "teacher-a").load()["epochs"] == 1
    assert EpochCheckpoint(path, "teacher-b").load() is None
    path.write_bytes(b"torn")
    assert EpochCheckpoint(path, "teacher-a").load() is None
