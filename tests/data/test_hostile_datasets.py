"""Datasets a hostile or careless user may bring: labels out of range, numpy labels, empty
class folders, the same folder spelled several ways."""

from __future__ import annotations

import io
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from kdnas.data import Dataset, ImageSet, load_cifar, load_image_folder


def _images(n: int) -> torch.Tensor:
    return torch.zeros(n, 1, 4, 4, dtype=torch.uint8)


def test_negative_labels_are_refused_up_front() -> None:
    good = ImageSet(_images(2), torch.tensor([0, 1]))
    negative = ImageSet(_images(2), torch.tensor([-1, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9.*found -1\.\.1"):
        Dataset("d", train=negative, test=good, num_classes=10)
    with pytest.raises(ValueError, match=r"test labels must lie in 0\.\.1"):
        Dataset("d", train=good, test=ImageSet(_images(2), torch.tensor([0, 2])), num_classes=2)


def test_cifar_batches_with_numpy_integer_labels_load(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 6), ("test", 4)):
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            # a list of numpy integers, as a batch re-saved from numpy arrays holds
            "fine_labels": [np.int64(i % 100) for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    data = load_cifar(folder)
    assert data.train.labels.tolist() == [0, 1, 2, 3, 4, 5]


def _write_png(path: Path, colour: tuple[int, int, int]) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


def test_an_empty_class_folder_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for split in ("train", "test"):
        _write_png(tmp_path / split / "cat" / "0.png", (255, 0, 0))
        _write_png(tmp_path / split / "dog" / "0.png", (0, 0, 255))
    (tmp_path / "train" / "emu").mkdir()
    (tmp_path / "train" / "emu" / "notes.txt").write_text("no image here")
    caplog.set_level(logging.WARNING, logger="kdnas.data")
    data = load_image_folder(tmp_path, resolution=4)
    assert data.num_classes == 3
    assert "emu" in caplog.text and "no image" in caplog.text


def test_cifar_labels_out_of_range_name_the_folder(tmp_path: Path) -> None:
    from kdnas.data import DatasetError

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for name in ("train", "test"):
        batch = {"data": np.zeros((2, 3072), dtype=np.uint8), "fine_labels": [-1, 3]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=r"cifar-100-python: train labels must lie in 0\.\.99"):
        load_cifar(folder)
