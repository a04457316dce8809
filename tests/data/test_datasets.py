"""Dataset readers: CIFAR folders and archives, image folders, the embedded digits."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from kdnas.data import (
    DatasetError,
    load_cifar,
    load_dataset,
    load_digits,
    load_image_folder,
    prepare,
)


def _fake_cifar100(folder: Path, n_train: int = 20, n_test: int = 10) -> np.ndarray:
    """Write a cifar-100-python folder as the official one is laid out (protocol-2 pickles)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    train = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    for name, data in (("train", train), ("test", rng.integers(0, 256, (n_test, 3072), np.uint8))):
        batch = {
            "filenames": [f"img{i}.png" for i in range(len(data))],
            "fine_labels": [i % 100 for i in range(len(data))],
            "coarse_labels": [i % 20 for i in range(len(data))],
            "data": data,
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": ["x"] * 100}, protocol=2))
    return train


def test_cifar100_folder_and_archive_give_the_same_images(tmp_path: Path) -> None:
    train = _fake_cifar100(tmp_path / "cifar-100-python")
    archive = tmp_path / "cifar-100-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "cifar-100-python", arcname="cifar-100-python")
    from_folder = load_cifar(tmp_path / "cifar-100-python")
    from_parent = load_dataset(tmp_path)  # the folder torchvision's download leaves
    from_archive = load_dataset(archive)
    assert from_folder.name == "cifar100" and from_folder.num_classes == 100
    assert from_folder.train.images.shape == (20, 3, 32, 32)
    assert len(from_folder.test) == 10
    # Row layout: 1024 red, then green, then blue values, each row-major 32x32.
    assert from_folder.train.images[3, 1, 2, 5] == int(train[3, 1024 + 2 * 32 + 5])
    assert from_folder.train.labels.tolist() == [i % 100 for i in range(20)]
    for other in (from_parent, from_archive):
        assert torch.equal(other.train.images, from_folder.train.images)
        assert torch.equal(other.test.labels, from_folder.test.labels)


def test_cifar10_layout_is_detected(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": np.full((4, 3072), 7, np.uint8), "labels": [0, 1, 2, 9]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    data = load_dataset(folder)
    assert data.name == "cifar10" and data.num_classes == 10
    assert len(data.train) == 20 and len(data.test) == 4


def test_missing_and_corrupt_datasets_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"empty.*cifar-100-python"):
        load_dataset(empty)
    _fake_cifar100(tmp_path / "bad" / "cifar-100-python")
    (tmp_path / "bad" / "cifar-100-python" / "test").write_bytes(b"\x80\x02}q\x00(X")  # truncated
    with pytest.raises(DatasetError, match=r"cifar-100-python/test"):
        load_dataset(tmp_path / "bad")
    broken_archive = tmp_path / "broken.tar.gz"
    broken_archive.write_bytes(b"not a tar file")
    with pytest.raises(DatasetError, match=r"broken\.tar\.gz"):
        load_dataset(broken_archive)


def test_a_hostile_cifar_pickle_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    _fake_cifar100(folder)
    (folder / "train").write_bytes(pickle.dumps({"data": os.getcwd, "fine_labels": []}))
    with pytest.raises(DatasetError, match="refuses"):
        load_cifar(folder)


def test_image_folder_reads_classes_and_resizes(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "val"):
        for label, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            (tmp_path / split / label).mkdir(parents=True)
            for i in range(2):
                buffer = io.BytesIO()
                Image.new("RGB", (20 + i * 10, 12), colour).save(buffer, format="PNG")
                (tmp_path / split / label / f"{i}.png").write_bytes(buffer.getvalue())
    data = load_image_folder(tmp_path, resolution=8)
    assert data.num_classes == 2 and data.train.images.shape == (4, 3, 8, 8)
    assert data.train.labels.tolist() == [0, 0, 1, 1]
    assert data.train.images[0, 0].min() == 255 and data.train.images[0, 2].max() == 0
    assert data.test.images[3, 2].min() == 255  # "val" is taken as the test part
    with pytest.raises(DatasetError, match="train"):
        load_image_folder(tmp_path / "val")


def test_digits_load_offline_with_a_fixed_stratified_test_split() -> None:
    first, second = load_digits(), load_digits()
    assert first.train.images.shape[1:] == (1, 8, 8) and first.num_classes == 10
    assert len(first.train) + len(first.test) == 1797
    assert torch.equal(first.test.labels, second.test.labels)
    assert torch.equal(first.test.images, second.test.images)
    counts = torch.bincount(first.test.labels, minlength=10)
    totals = counts + torch.bincount(first.train.labels, minlength=10)
    assert torch.all((counts - 0.2 * totals).abs() <= 0.5)
    assert int(first.train.images.max()) == 255 and not first.flip_invariant
    prepared = prepare(first)
    assert prepared.resolution == 16 and prepare(first, resolution=8).resolution == 8


def test_flips_are_on_for_colour_image_folders_and_off_for_gray_ones(tmp_path: Path) -> None:
    from PIL import Image

    from kdnas.train import TrainConfig

    def folder(root: Path, colours: tuple[tuple[int, int, int], ...]) -> Path:
        for split in ("train", "test"):
            for label, colour in zip(("a", "b"), colours, strict=True):
                (root / split / label).mkdir(parents=True)
                buffer = io.BytesIO()
                Image.new("RGB", (8, 8), colour).save(buffer, format="PNG")
                (root / split / label / "0.png").write_bytes(buffer.getvalue())
        return root

    colour = load_image_folder(folder(tmp_path / "photos", ((255, 0, 0), (0, 0, 255))), 8)
    gray = load_image_folder(folder(tmp_path / "scans", ((30, 30, 30), (200, 200, 200))), 8)
    assert colour.flip_invariant and not gray.flip_invariant
    assert not load_digits().flip_invariant
    # The protocol follows the data unless told otherwise.
    assert TrainConfig.for_data(prepare(colour, valid_fraction=0.5)).horizontal_flip
    assert not TrainConfig.for_data(prepare(gray, valid_fraction=0.5)).horizontal_flip
    assert TrainConfig.for_data(
        prepare(gray, valid_fraction=0.5), horizontal_flip=True
    ).horizontal_flip
