"""A flat ``<class>/`` image folder, as most users keep their images: split into train and test
deterministically and stratified, gray images kept one channel, ``train/`` + ``test/`` (or
``val/``) folders unchanged; and a search on a flat folder of real images (PNGs of the
scikit-learn digits) without any preparation."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from kdnas.data import DatasetError, load_dataset, load_flat_image_folder, load_image_folder


def write_digit_pngs(root: Path, per_class: int | None = None) -> dict[str, int]:
    """scikit-learn's digits as 8x8 gray PNGs in ``root/digit<k>/``; images per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    counts: Counter[str] = Counter()
    for index, (image, target) in enumerate(zip(bunch.images, bunch.target, strict=True)):
        name = f"digit{target}"
        if per_class is not None and counts[name] >= per_class:
            continue
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.rint(image * 255.0 / 16.0).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{index:04d}.png")
        counts[name] += 1
    return dict(counts)


def test_a_flat_folder_is_split_deterministically_and_stratified(tmp_path: Path) -> None:
    counts = write_digit_pngs(tmp_path / "flat", per_class=23)
    (tmp_path / "flat" / ".thumbnails").mkdir()  # hidden folders are not classes
    data = load_flat_image_folder(tmp_path / "flat", resolution=16, test_fraction=0.25)
    assert data.num_classes == 10 and data.split == {"test_fraction": 0.25, "seed": 0}
    assert data.train.images.shape[1:] == (1, 16, 16)  # gray stays one channel
    assert not data.flip_invariant
    # round(0.25 * 23) = 6 of every class in the test part, the 17 others in train
    assert Counter(data.test.labels.tolist()) == {k: 6 for k in range(10)}
    assert Counter(data.train.labels.tolist()) == {k: 17 for k in range(10)}
    assert len(data.train) + len(data.test) == sum(counts.values())
    # The same split from a copy whose files were written in another order.
    copy = tmp_path / "copy"
    for folder in sorted((tmp_path / "flat").iterdir(), reverse=True):
        if folder.name.startswith("."):
            continue
        for file in sorted(folder.iterdir(), reverse=True):
            (copy / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(file, copy / folder.name / file.name)
    again = load_dataset(copy, resolution=16, test_fraction=0.25)
    assert again.split == data.split
    assert bool((again.test.images == data.test.images).all())
    other = load_dataset(copy, resolution=16)  # the default fraction, 0.2: another split
    assert other.split == {"test_fraction": 0.2, "seed": 0}
    assert Counter(other.test.labels.tolist()) == {k: 5 for k in range(10)}  # round(4.6)


def test_bad_flat_folders_and_fractions_are_refused_in_one_line(tmp_path: Path) -> None:
    write_digit_pngs(tmp_path / "flat", per_class=3)
    with pytest.raises(ValueError, match=r"test fraction must lie in \(0, 1\), got 1.5"):
        load_dataset(tmp_path / "flat", test_fraction=1.5)
    with pytest.raises(DatasetError, match=r"digit0: 3 images cannot give both .* 0.1"):
        load_dataset(tmp_path / "flat", test_fraction=0.1)  # round(0.3) = 0 test images
    with pytest.raises(ValueError, match="--test-fraction splits a flat <class>/ image folder"):
        load_dataset("digits", test_fraction=0.3)
    single = tmp_path / "single"
    shutil.copytree(tmp_path / "flat" / "digit0", single / "digit0")
    with pytest.raises(DatasetError, match="found 1 class folders holding images, need >= 2"):
        load_dataset(single)
    with pytest.raises(DatasetError, match="no dataset found there; expected 'digits'"):
        load_dataset(tmp_path / "single" / "digit0" / ".." / "..")  # no class images at top


def test_train_and_test_or_val_folders_still_load_and_gray_stays_one_channel(
    tmp_path: Path,
) -> None:
    write_digit_pngs(tmp_path / "split" / "train", per_class=4)
    write_digit_pngs(tmp_path / "split" / "val", per_class=2)
    data = load_dataset(tmp_path / "split", resolution=12)
    assert data.split is None and data.num_classes == 10
    assert data.train.images.shape[1:] == data.test.images.shape[1:] == (1, 12, 12)
    assert (len(data.train), len(data.test)) == (40, 20)
    with pytest.raises(ValueError, match="has its own test part"):
        load_dataset(tmp_path / "split", test_fraction=0.2)
    colour = load_image_folder(tmp_path / "split", resolution=12)
    assert colour.in_channels == 1  # the same loader: one channel for gray images


def test_a_flat_folder_of_real_images_is_searched_without_preparation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from kdnas.cli import main
    from kdnas.store import SQLiteStore

    write_digit_pngs(tmp_path / "my digits", per_class=40)
    store = tmp_path / "flat.db"
    args = [
        "search", "--dataset", str(tmp_path / "my digits"), "--resolution", "16",
        "--test-fraction", "0.25", "--algorithm", "alg2", "--method", "kd", "--part", "3",
        "--candidates", "4", "--n-lf", "2", "--budget-evaluations", "3", "--epochs", "1",
        "--width-multiplier", "0.125", "--batch-size", "64", "--threads", "1",
        "--store", str(store), "--json", "--allow-chance-teacher",
    ]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(args) == 0, capsys.readouterr().err
    finally:
        torch.set_num_threads(threads)
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluations"] == 3 and summary["all_failed"] is None
    with SQLiteStore(store) as opened:
        config = opened.run("search").config
        rows = opened.results("search")
    assert all(e.result.ok for e in rows)
    assert config["dataset"] == "my digits" and config["resolution"] == 16
    assert config["dataset_split"] == {"test_fraction": 0.25, "seed": 0}
    # 40 per class: 10 to test, 30 left, of which 10 % (3) validate: 27 x 10 in the pool
    assert summary["teacher"]["images"] == 270
    assert os.path.isdir(tmp_path / "my digits")  # nothing was moved or written there
    assert sorted(p.name for p in (tmp_path / "my digits").iterdir()) == [
        f"digit{k}" for k in range(10)
    ]
