"""Validation split, stratified 1/k subsets with content hashes, and the batch stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kdnas.data import Dataset, DeviceImages, ImageSet, epoch_plan, prepare


def _unique_dataset(per_class: tuple[int, ...] = (60, 45, 30)) -> Dataset:
    """Each image carries its own index in its pixels, so images identify samples."""
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    n = len(labels)
    images = np.zeros((n, 1, 4, 4), np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 0, 1] = np.arange(n) // 256
    train = ImageSet(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)))
    test = ImageSet(torch.from_numpy(images[:5]), torch.from_numpy(labels[:5].astype(np.int64)))
    return Dataset("unique", train, test, num_classes=len(per_class))


def _ids(images: torch.Tensor) -> set[int]:
    return set((images[:, 0, 0, 0].long() + 256 * images[:, 0, 0, 1].long()).tolist())


def test_validation_split_is_stratified_seeded_and_disjoint() -> None:
    data = prepare(_unique_dataset(), valid_fraction=0.1, split_seed=0)
    assert torch.bincount(data.valid.labels).tolist() == [6, 4, 3]  # round(0.1 * n_c)
    assert len(data.train) + len(data.valid) == 135
    assert not _ids(data.train.images) & _ids(data.valid.images)
    again = prepare(_unique_dataset(), valid_fraction=0.1, split_seed=0)
    assert _ids(again.valid.images) == _ids(data.valid.images)
    other = prepare(_unique_dataset(), valid_fraction=0.1, split_seed=1)
    assert _ids(other.valid.images) != _ids(data.valid.images)
    with pytest.raises(ValueError, match="valid_fraction"):
        prepare(_unique_dataset(), valid_fraction=0.0)


@pytest.mark.parametrize("part", [1, 3, 9, 27])
def test_subsets_are_stratified_disjoint_from_validation_and_reproducible(part: int) -> None:
    data = prepare(_unique_dataset())
    subset = data.subset(part, seed=4)
    pool_counts = torch.bincount(data.train.labels).tolist()
    expected = [max(1, round(n / part)) for n in pool_counts]
    assert torch.bincount(data.train.labels[subset.indices]).tolist() == expected
    assert not _ids(data.train.images[subset.indices]) & _ids(data.valid.images)
    fresh = prepare(_unique_dataset()).subset(part, seed=4)
    assert torch.equal(fresh.indices, subset.indices)
    assert fresh.content_hash == subset.content_hash and len(subset.content_hash) == 16


def test_subsets_nest_and_their_hash_tracks_content() -> None:
    data = prepare(_unique_dataset())
    small, middle, large = (set(data.subset(k, seed=2).indices.tolist()) for k in (27, 9, 3))
    assert small <= middle <= large
    assert data.subset(3, seed=2).content_hash != data.subset(3, seed=3).content_hash
    assert data.subset(1, seed=2).content_hash == data.subset(1, seed=3).content_hash
    with pytest.raises(ValueError, match="part"):
        data.subset(0)


def test_normalisation_uses_training_pool_statistics() -> None:
    data = prepare(_unique_dataset())
    pixels = data.train.images.double() / 255
    assert data.mean[0] == pytest.approx(float(pixels.mean()), abs=1e-6)
    assert data.std[0] == pytest.approx(float(pixels.std()), abs=1e-6)


def test_epoch_plan_depends_on_seed_and_epoch_only() -> None:
    a = epoch_plan(50, 16, seed=1, epoch=3, padding=2, flip=True)
    b = epoch_plan(50, 16, seed=1, epoch=3, padding=2, flip=True)
    c = epoch_plan(50, 16, seed=1, epoch=4, padding=2, flip=True)
    for name in ("order", "shift_y", "shift_x", "flip"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.order, c.order)
    assert sorted(a.order.tolist()) == list(range(50))
    assert a.bounds == ((0, 16), (16, 32), (32, 48), (48, 50))
    assert int(a.shift_x.max()) <= 4 and bool(a.flip.any()) and not bool(a.flip.all())
    assert len(epoch_plan(49, 16, 0, 0, 0, False)) == 3  # a last batch of one is dropped


def test_batched_crop_and_flip_match_a_per_sample_reference() -> None:
    rng = np.random.default_rng(0)
    raw = torch.from_numpy(rng.integers(0, 256, (10, 3, 6, 6), dtype=np.uint8))
    images = ImageSet(raw, torch.arange(10) % 2)
    mean, std, padding = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), 2
    device_images = DeviceImages(images, mean, std, padding, torch.device("cpu"))
    plan = epoch_plan(10, 4, seed=5, epoch=0, padding=padding, flip=True)
    seen = 0
    for batch, labels, positions in device_images.plan_batches(plan):
        assert batch.is_contiguous(memory_format=torch.channels_last)
        for row, position in enumerate(positions.tolist()):
            padded = torch.nn.functional.pad(raw[position].float(), [padding] * 4)  # black
            y, x = int(plan.shift_y[position]), int(plan.shift_x[position])
            crop = padded[:, y : y + 6, x : x + 6]
            if bool(plan.flip[position]):
                crop = crop.flip(2)
            expected = (crop / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
                :, None, None
            ]
            torch.testing.assert_close(batch[row], expected)
            assert int(labels[row]) == position % 2
            seen += 1
    assert seen == 10
    centre = device_images.batch(torch.tensor([7]))[0]
    torch.testing.assert_close(
        centre,
        (raw[7].float() / 255 - torch.tensor(mean)[:, None, None])
        / torch.tensor(std)[:, None, None],
    )
