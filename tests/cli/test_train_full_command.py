"""``kdnas train`` on the full-training path: --stream, --checkpoint-dir (resume), --nproc."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kdnas.cli import main


def _folder(root: Path) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for part, count in (("train", 12), ("val", 2)):
        for label in range(2):
            (root / part / f"c{label}").mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / part / f"c{label}" / f"{i}.jpg")
    return root


def _train(tmp_path: Path, *extra: str) -> list[str]:
    return [
        "train", "--arch", "original", "--width-multiplier", "0.1", "--threads", "1",
        "--epochs", "2", "--batch-size", "6", "--output", str(tmp_path / "out.json"),
        *extra,
    ]  # fmt: skip


def test_streamed_training_checkpoints_and_resumes(tmp_path, capsys) -> None:
    import torch

    threads = torch.get_num_threads()
    folder = str(_folder(tmp_path / "images"))
    checkpoints = str(tmp_path / "ck")
    argv = _train(
        tmp_path, "--dataset", folder, "--resolution", "8", "--stream", "--workers", "0",
        "--crop", "pad", "--checkpoint-dir", checkpoints,
    )  # fmt: skip
    assert main([*argv, "--stop-after-epochs", "1"]) == 0
    first = json.loads((tmp_path / "out.json").read_text())
    assert first["epochs"] == 1 and first["world_size"] == 1 and first["resumed_from_epoch"] == 0
    assert main(argv) == 0
    torch.set_num_threads(threads)
    second = json.loads((tmp_path / "out.json").read_text())
    assert second["resumed_from_epoch"] == 1 and second["epochs"] == 2
    assert second["step_losses"][: len(first["step_losses"])] == first["step_losses"]
    assert len(second["step_losses"]) == 2 * len(first["step_losses"])
    assert 0.0 <= second["valid_acc"] <= 1.0 and second["dataset"] == "images"
    capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--nproc", "2", "--loss", "kd"), "use --loss nokd"),
        (("--nproc", "0"), "argument --nproc: expected a positive integer"),
    ],
)
def test_bad_full_path_options_are_one_line_errors(tmp_path, capsys, extra, message) -> None:
    try:
        status = main(_train(tmp_path, *extra))
    except SystemExit as stop:  # argparse's own refusals exit from within main
        status = stop.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_nproc_two_launches_torchrun(tmp_path, capsys) -> None:
    argv = _train(
        tmp_path, "--dataset", "digits", "--resolution", "8", "--part", "9", "--nproc", "2",
        "--checkpoint-dir", str(tmp_path / "ck"), "--batch-size", "32",
    )  # fmt: skip
    assert main(argv) == 0
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved["world_size"] == 2 and saved["epochs"] == 2 and saved["device"].endswith("x2")
    capsys.readouterr()
