"""The streaming image-folder path: same subsets and batches as the resident path, decoding in
workers, sharding over ranks, the random-resized crop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdnas.data import (
    DatasetError,
    DeviceImages,
    ImageSet,
    StreamAugment,
    StreamingFolder,
    StreamingLoader,
    epoch_plan,
    load_image_folder,
    prepare,
)
from kdnas.data._stream import resized_crop_box

_CPU = torch.device("cpu")


def write_image_folder(root: Path, classes: int = 3, train: int = 10, test: int = 3) -> Path:
    """Random-content PNG and JPEG images of varied sizes in ``root/train|test/<class>/``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for part, count in (("train", train), ("test", test)):
        for label in range(classes):
            folder = root / part / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = int(rng.integers(10, 20)), int(rng.integers(10, 20))
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                pixels[..., label] //= 2  # a class signal
                suffix = ".png" if i % 3 else ".jpg"
                Image.fromarray(pixels).save(folder / f"img{i}{suffix}")
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    return write_image_folder(tmp_path / "images")


def _resident_and_streaming(root: Path, resolution: int = 8):
    data = prepare(load_image_folder(root, resolution=resolution), valid_fraction=0.2)
    streaming = StreamingFolder(
        root, resolution=resolution, valid_fraction=0.2, mean=data.mean, std=data.std
    )
    return data, streaming


def test_splits_and_subsets_are_the_resident_ones(folder_root: Path) -> None:
    data, streaming = _resident_and_streaming(folder_root)
    assert streaming.num_classes == 3 and len(streaming.test_files) == 9
    assert np.array_equal(streaming.train_labels, data.train.labels.numpy())
    assert np.array_equal(streaming.valid_labels, data.valid.labels.numpy())
    for part in (1, 2, 3):
        resident = data.subset(part, seed=4).indices.numpy()
        assert np.array_equal(streaming.subset(part, seed=4).indices, resident)
    assert streaming.subset(3, 4).content_hash != streaming.subset(3, 5).content_hash


def test_padded_crop_batches_equal_the_resident_path(folder_root: Path) -> None:
    data, streaming = _resident_and_streaming(folder_root)
    subset = streaming.subset(2, seed=1)
    augment = StreamAugment(crop="pad", padding=2, flip=True)
    loader = StreamingLoader(streaming, subset, augment, batch_size=4, device=_CPU, workers=0)
    index = torch.from_numpy(subset.indices)
    resident = DeviceImages(
        ImageSet(data.train.images[index], data.train.labels[index]),
        data.mean,
        data.std,
        padding=2,
        device=_CPU,
    )
    plan = epoch_plan(len(subset), 4, seed=3, epoch=1, padding=2, flip=True)
    assert bool(plan.flip.any()) and int(plan.shift_x.max()) > 0  # the test crops and flips
    streamed = list(loader.train_batches(plan, epoch=1, seed=3))
    expected = list(resident.plan_batches(plan))
    assert len(streamed) == len(expected) == len(plan)
    for (images, labels), (want, want_labels, _) in zip(streamed, expected, strict=True):
        assert torch.equal(labels, want_labels)
        assert torch.allclose(images, want, atol=1e-5)
        assert images.is_contiguous(memory_format=torch.channels_last)


def test_workers_and_ranks_do_not_change_the_samples(folder_root: Path) -> None:
    streaming = StreamingFolder(folder_root, resolution=8, valid_fraction=0.2)
    subset = streaming.subset(1)
    augment = StreamAugment(crop="resized", flip=True)
    plan = epoch_plan(len(subset), 6, seed=0, epoch=2, padding=0, flip=True)

    def batches(workers: int, rank: int = 0, world: int = 1) -> list[torch.Tensor]:
        loader = StreamingLoader(
            streaming, subset, augment, 6, _CPU, workers=workers, rank=rank, world_size=world
        )
        return [images for images, _ in loader.train_batches(plan, epoch=2, seed=0)]

    single = batches(0)
    for with_workers, alone in zip(batches(2), single, strict=True):
        assert torch.equal(with_workers, alone)
    # Rank 0 then rank 1 of every global batch: the global batch itself.
    for first, second, alone in zip(batches(0, 0, 2), batches(0, 1, 2), single, strict=True):
        assert torch.equal(torch.cat([first, second]), alone)
    # Another epoch draws other crops.
    other = next(
        StreamingLoader(streaming, subset, augment, 6, _CPU, workers=0).train_batches(
            epoch_plan(len(subset), 6, seed=0, epoch=2, padding=0, flip=True), epoch=3, seed=0
        )
    )[0]
    assert not torch.equal(other, single[0])


def test_evaluation_shards_cover_each_image_once(folder_root: Path) -> None:
    streaming = StreamingFolder(folder_root, resolution=8, valid_fraction=0.2)
    subset = streaming.subset(1)
    labels = []
    for rank in range(2):
        loader = StreamingLoader(
            streaming, subset, StreamAugment(), 4, _CPU, workers=0, rank=rank, world_size=2
        )
        labels += [lab for _, batch in loader.eval_batches("test", 2) for lab in batch.tolist()]
    assert sorted(labels) == sorted(streaming.test_labels.tolist())


def test_resized_crop_boxes_respect_scale_and_ratio() -> None:
    rng = np.random.default_rng(0)
    augment = StreamAugment(crop="resized", scale=(0.2, 0.6))
    for _ in range(200):
        left, top, right, bottom = resized_crop_box(rng, 300, 200, augment)
        assert 0 <= left < right <= 300 and 0 <= top < bottom <= 200
        width, height = right - left, bottom - top
        assert 0.19 <= width * height / 60000 <= 0.61
        assert 3 / 4 - 0.05 <= width / height <= 4 / 3 + 0.05
    # A very thin image makes every draw fail: the centred fallback stays inside it.
    left, top, right, bottom = resized_crop_box(rng, 400, 4, StreamAugment(scale=(0.9, 1.0)))
    assert 0 <= left < right <= 400 and (top, bottom) == (0, 4)


def test_bad_input_is_a_clear_error(tmp_path: Path, folder_root: Path) -> None:
    with pytest.raises(DatasetError, match="train"):
        StreamingFolder(tmp_path / "missing")
    with pytest.raises(ValueError, match="crop must be one of"):
        StreamAugment(crop="zoom")
    with pytest.raises(ValueError, match="mean and std"):
        StreamingFolder(folder_root, resolution=8, mean=(0.5,), std=(0.2,))
    (folder_root / "train" / "class0" / "img1.png").write_bytes(b"not a png")
    streaming = StreamingFolder(folder_root, resolution=8, mean=(0.5,) * 3, std=(0.2,) * 3)
    with pytest.raises(DatasetError, match="unreadable image"):
        [streaming.images("train")[i] for i in range(len(streaming.train_files))]
