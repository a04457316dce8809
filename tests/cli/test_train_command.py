"""``kdnas train`` end to end on the embedded digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdnas.cli import main


def test_train_command_prints_and_saves_the_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    threads = torch.get_num_threads()
    output = tmp_path / "result.json"
    code = main(
        [
            "train",
            "--space",
            "mobilenetv2",
            "--arch",
            "original",
            "--dataset",
            "digits",
            "--resolution",
            "8",
            "--part",
            "27",
            "--loss",
            "kd",
            "--epochs",
            "1",
            "--width-multiplier",
            "0.1",
            "--threads",
            "1",
            "--teacher-dir",
            str(tmp_path / "teachers"),
            "--output",
            str(output),
            "--allow-chance-teacher",  # one epoch teaches the teacher nothing
        ]
    )
    torch.set_num_threads(threads)  # the command sets the process's threads
    assert code == 0
    saved = json.loads(output.read_text())
    printed = json.loads(capsys.readouterr().out)
    assert saved == printed
    assert saved["status"] == "ok" and saved["method"] == "kd" and saved["epochs"] == 1
    assert saved["loss_settings"] == {
        "tau": 32.0,
        "lambda": 1.0,
        "weight.ce": 0.0,
        "weight.kd": 1.0,
    }
    assert saved["part"] == 27 and len(saved["subset_hash"]) == 16
    assert list((tmp_path / "teachers").glob("teacher-*.pt"))


def test_train_command_lists_valid_losses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--arch", "original", "--loss", "distil"]) == 2
    error = capsys.readouterr().err
    assert "unknown loss 'distil'" in error and "nokd, kd, hint" in error


def test_train_command_takes_a_listed_architecture_by_index(
    paper_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from kdnas.spaces import load_listed_architectures

    threads = torch.get_num_threads()
    output = tmp_path / "result.json"
    code = main(
        [
            "train",
            "--arch",
            "5",
            "--archs",
            str(paper_data_dir),
            "--resolution",
            "8",
            "--part",
            "27",
            "--epochs",
            "1",
            "--width-multiplier",
            "0.1",
            "--threads",
            "1",
            "--teacher-dir",
            str(tmp_path / "teachers"),
            "--output",
            str(output),
        ]
    )
    torch.set_num_threads(threads)
    assert code == 0
    saved = json.loads(output.read_text())
    assert saved["arch_key"] == load_listed_architectures("mobilenetv2", paper_data_dir)[5].key()
    assert saved["method"] == "nokd" and not list((tmp_path / "teachers").glob("*.pt"))
    assert main(["train", "--arch", "100", "--archs", str(paper_data_dir)]) == 2
    assert "out of range 0..99" in capsys.readouterr().err


def test_bad_hyperparameter_is_refused_before_anything_trains(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["train", "--arch", "original", "--loss", "kd", "--hp", "foo=1"]) == 2
    error = capsys.readouterr().err
    assert "unknown hyperparameter 'foo'" in error and "lambda, tau" in error
    assert main(["train", "--arch", "original", "--hp", "tau"]) == 2
    assert "NAME=NUMBER" in capsys.readouterr().err
