"""Device and kernel flags of the commands: --deterministic, and cuda without Ray GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from kdnas.cli import main


@pytest.fixture
def restore_torch_state():
    saved = (
        torch.get_num_threads(),
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.set_num_threads(saved[0])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[1:3]
    torch.use_deterministic_algorithms(saved[3], warn_only=saved[4])


def test_train_deterministic_is_recorded_with_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_torch_state
) -> None:
    args = ["train", "--arch", "original", "--dataset", "digits", "--resolution", "8",
            "--part", "27", "--epochs", "1", "--width-multiplier", "0.1", "--threads", "1",
            "--teacher-dir", str(tmp_path / "teachers"), "--output", str(tmp_path / "r.json"),
            "--deterministic"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["config"]["deterministic"] is True


@pytest.mark.parametrize("command", ["search", "bench"])
def test_cuda_with_ray_tasks_that_ask_for_no_gpu_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    pytest.importorskip("ray")
    store = str(tmp_path / "s.db")
    if command == "search":
        args = ["search", "--store", store, "--executor", "ray", "--device", "cuda"]
    else:
        args = ["bench", "build", "--store", store, "--executor", "ray", "--device", "cuda:1"]
    assert main(args) == 2
    assert "needs --gpus-per-eval > 0 under Ray" in capsys.readouterr().err
    assert not Path(store).exists()


def test_a_search_resumes_with_or_without_deterministic_kernels() -> None:
    from kdnas.experiment import SearchSettings, load_data, run_config

    plain = SearchSettings(n_candidates=4, n_lf=2)
    deterministic = SearchSettings(n_candidates=4, n_lf=2, train={"deterministic": True})
    data = load_data(plain)
    assert run_config(plain, data, []) == run_config(deterministic, data, [])
    assert run_config(plain, data, []) != run_config(
        SearchSettings(n_candidates=4, n_lf=2, train={"lr": 0.2}), data, []
    )
