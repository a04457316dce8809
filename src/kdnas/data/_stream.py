"""Image folders too large for memory: decoded and augmented in DataLoader worker processes.

The resident path (``load_image_folder`` + ``prepare`` + ``DeviceImages``) holds every image
as uint8; fine for CIFAR or 1/27 of ImageNet at 64 px, not for full ImageNet at 224 px. Here
only the file list lives in memory. Each batch's files are decoded with Pillow, cropped and
flipped by worker processes, and normalised on the training device in one batched operation.

What stays the same as the resident path:

- the validation split and the fixed 1/k subsets are drawn by ``stratified_split`` and
  ``subset_positions`` from the labels, so a folder gives the same subset positions either way;
- the batch order, crop offsets and flips of an epoch come from ``epoch_plan(seed, epoch)``, so
  with ``crop="pad"`` a streamed batch equals the resident one pixel for pixel (tested);
- the random-resized crop (the ImageNet protocol, ``crop="resized"``) draws its box from a
  generator seeded by (seed, epoch, position): neither the number of workers nor of ranks
  changes what a sample looks like.

Distributed training: each global batch of the plan is split into ``world_size`` contiguous
shards (``shard``); rank r loads and trains on shard r only.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kdnas.data._augment import EpochPlan, stream_seed
from kdnas.data._datasets import (
    DatasetError,
    class_folder_files,
    decode_square,
    image_folder_layout,
)
from kdnas.data._splits import stratified_split, subset_positions

__all__ = [
    "CROPS",
    "FileImages",
    "StreamAugment",
    "StreamSubset",
    "StreamingFolder",
    "StreamingLoader",
    "normalise_batch",
    "shard",
]

logger = logging.getLogger(__name__)

#: Training crops of the streaming path: "pad" (random crop of the zero-padded image, the
#: paper's CIFAR protocol), "resized" (random-resized crop, the ImageNet protocol), "none".
CROPS: tuple[str, ...] = ("pad", "resized", "none")

# A sample request travelling to a worker: (file index, shift_y, shift_x, flip, crop seed,
# position in the subset). Plain tuples pickle cheaply.
SampleKey = tuple[int, int, int, bool, int, int]


@dataclass(frozen=True)
class StreamAugment:
    """Training augmentation of the streaming path.

    Args:
        crop: one of ``CROPS``.
        padding: pixels of black padding for ``crop="pad"`` (the plan's shifts lie in
            [0, 2 * padding]).
        flip: mirror the samples the plan marks (half of them, at random).
        scale: range of the crop's area as a fraction of the image's, for ``crop="resized"``.
        ratio: range of the crop's aspect ratio (width / height), for ``crop="resized"``.
    """

    crop: str = "pad"
    padding: int = 4
    flip: bool = True
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        if self.crop not in CROPS:
            raise ValueError(f"crop must be one of {', '.join(CROPS)}, got {self.crop!r}")
        if isinstance(self.padding, bool) or not isinstance(self.padding, int) or self.padding < 0:
            raise ValueError(f"padding must be an integer >= 0, got {self.padding!r}")
        low, high = self.scale
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale!r}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio!r}")

    @property
    def plan_padding(self) -> int:
        """The padding the epoch plan draws shifts for (0 unless cropping with padding)."""
        return self.padding if self.crop == "pad" else 0


def resized_crop_box(
    rng: np.random.Generator, width: int, height: int, augment: StreamAugment
) -> tuple[int, int, int, int]:
    """A random crop box (left, top, right, bottom) of the random-resized-crop protocol: area a
    uniform fraction of the image's within ``augment.scale``, aspect ratio log-uniform within
    ``augment.ratio``; after 10 failed draws the largest centred box of an allowed ratio."""
    area = width * height
    log_low, log_high = math.log(augment.ratio[0]), math.log(augment.ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*augment.scale)
        aspect = math.exp(rng.uniform(log_low, log_high))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    aspect = min(max(width / height, augment.ratio[0]), augment.ratio[1])
    w, h = (
        (width, round(width / aspect))
        if width / height < aspect
        else (round(height * aspect), height)
    )
    w, h = min(w, width), min(h, height)
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


class FileImages(torch.utils.data.Dataset):
    """Image files decoded on request (in DataLoader workers): a map-style dataset.

    ``dataset[i]`` is file i centre-cropped (evaluation); ``dataset[key]`` with a
    ``SampleKey`` tuple is the augmented training sample the key describes. Both return a
    ``C x H x W`` uint8 tensor (H = W = ``resolution``) and the int label.

    Args:
        files: the image files.
        labels: their class indices.
        resolution: output side in pixels.
        channels: 3 (RGB) or 1 (grayscale).
        augment: the training augmentation.
    """

    def __init__(
        self,
        files: Sequence[Path],
        labels: np.ndarray,
        resolution: int,
        channels: int,
        augment: StreamAugment,
    ) -> None:
        self.files = [str(f) for f in files]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.resolution = resolution
        self.channels = channels
        self.augment = augment

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: int | SampleKey) -> tuple[torch.Tensor, int]:
        if isinstance(key, (int, np.integer)):
            array = decode_square(Path(self.files[key]), self.resolution, self.channels)
            return torch.from_numpy(array.transpose(2, 0, 1).copy()), int(self.labels[key])
        index, shift_y, shift_x, flip, crop_seed, position = key
        if self.augment.crop == "resized":
            array = self._resized_crop(index, np.random.default_rng([crop_seed, position]))
        else:
            array = decode_square(Path(self.files[index]), self.resolution, self.channels)
            p = self.augment.plan_padding
            if p:
                padded = np.zeros((self.resolution + 2 * p,) * 2 + (self.channels,), np.uint8)
                padded[p : p + self.resolution, p : p + self.resolution] = array
                array = padded[
                    shift_y : shift_y + self.resolution, shift_x : shift_x + self.resolution
                ]
        if flip:
            array = array[:, ::-1]
        return torch.from_numpy(array.transpose(2, 0, 1).copy()), int(self.labels[index])

    def _resized_crop(self, index: int, rng: np.random.Generator) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        file = self.files[index]
        try:
            with Image.open(file) as image:
                image = image.convert("RGB" if self.channels == 3 else "L")
                box = resized_crop_box(rng, image.width, image.height, self.augment)
                side = (self.resolution, self.resolution)
                image = image.resize(side, Image.Resampling.BILINEAR, box=box)
                array = np.asarray(image, dtype=np.uint8)
        except (UnidentifiedImageError, OSError) as error:
            raise DatasetError(f"{file}: unreadable image ({error})") from None
        return array.reshape(self.resolution, self.resolution, self.channels)


def shard(positions: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous part of one global batch (``np.array_split`` order)."""
    return np.array_split(np.asarray(positions), world_size)[rank]


def normalise_batch(
    images: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    channels_last: bool = True,
) -> torch.Tensor:
    """uint8 ``B x C x H x W`` pixels -> normalised float32 on ``device`` (channels-last)."""
    images = images.to(device, non_blocking=True)
    shape = (1, images.shape[1], 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(shape)
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(shape)
    memory = torch.channels_last if channels_last else torch.contiguous_format
    # One allocation per batch, computed in place: with several temporaries per batch, glibc's
    # heap kept growing on the CPU by about a batch per step when workers deliver the pixels
    # (measured: 250 to 750 MiB over 60 batches); with one it stays flat.
    out = torch.empty(images.shape, dtype=torch.float32, device=device, memory_format=memory)
    return out.copy_(images).div_(255.0).sub_(mean_t).div_(std_t)


@dataclass(frozen=True)
class StreamSubset:
    """A fixed 1/part training subset of a ``StreamingFolder``.

    Args:
        part: k of the 1/k subset.
        seed: the seed that drew it.
        indices: sorted positions within ``StreamingFolder.train_files``.
        content_hash: 16 hex digits of SHA-256 over the subset's relative file paths, file
            sizes and labels (and resolution and normalisation): an identity of the data that
            costs no decoding, unlike the resident path's hash of the pixels.
    """

    part: int
    seed: int
    indices: np.ndarray
    content_hash: str

    def __len__(self) -> int:
        return len(self.indices)


class _EpochBatches:
    """A DataLoader batch sampler whose batches are replaced every epoch (so that persistent
    workers can be kept across epochs)."""

    def __init__(self) -> None:
        self.batches: list[list[SampleKey]] = []

    def __iter__(self) -> Iterator[list[SampleKey]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamingFolder:
    """An ImageNet-style folder (``train/<class>/``, ``test/`` or ``val/``) read lazily.

    Args:
        root: the folder.
        resolution: side of the training and evaluation images in pixels.
        valid_fraction: share of each class of ``train`` held out for validation.
        split_seed: seed of the validation split.
        channels: 3 (RGB) or 1 (grayscale).
        mean, std: per-channel normalisation on the [0, 1] scale; None estimates both from
            ``stats_images`` training-pool images spread evenly over the pool (the resident
            path uses the whole pool, which here would mean decoding all of it).
        stats_images: images decoded to estimate the normalisation.
        flip_invariant: whether horizontal flips preserve the class.

    Raises:
        DatasetError: the folder layout is wrong, or it holds no images.
    """

    def __init__(
        self,
        root: str | Path,
        resolution: int = 224,
        valid_fraction: float = 0.1,
        split_seed: int = 0,
        *,
        channels: int = 3,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        stats_images: int = 1024,
        flip_invariant: bool = True,
    ) -> None:
        if resolution < 1 or channels not in (1, 3):
            raise ValueError(
                f"need resolution >= 1 and channels 1 or 3, got {resolution}, {channels}"
            )
        if not 0.0 < valid_fraction < 1.0:
            raise ValueError(f"valid_fraction must lie in (0, 1), got {valid_fraction!r}")
        self.root = Path(root)
        self.name = self.root.name
        self.resolution = resolution
        self.channels = channels
        self.valid_fraction = valid_fraction
        self.split_seed = split_seed
        self.flip_invariant = flip_invariant
        self.classes, test_root = image_folder_layout(self.root)
        files, labels = class_folder_files(self.root / "train", self.classes)
        is_valid = stratified_split(labels, valid_fraction, split_seed)
        self.train_files = [f for f, v in zip(files, is_valid, strict=True) if not v]
        self.train_labels = labels[~is_valid]
        self.valid_files = [f for f, v in zip(files, is_valid, strict=True) if v]
        self.valid_labels = labels[is_valid]
        self.test_files, self.test_labels = class_folder_files(test_root, self.classes)
        if mean is None or std is None:
            mean, std = self._estimate_normalisation(stats_images)
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ValueError(f"mean and std need {channels} values (std > 0), got {mean}, {std}")
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._subsets: dict[tuple[int, int], StreamSubset] = {}

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.channels

    def _estimate_normalisation(self, count: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        picks = np.unique(np.linspace(0, len(self.train_files) - 1, max(1, count)).astype(int))
        sums = np.zeros(self.channels)
        squares = np.zeros(self.channels)
        for index in picks:
            pixels = decode_square(self.train_files[index], self.resolution, self.channels)
            pixels = pixels.reshape(-1, self.channels).astype(np.float64) / 255.0
            sums += pixels.mean(0)
            squares += (pixels**2).mean(0)
        mean = sums / len(picks)
        std = np.sqrt(np.maximum(squares / len(picks) - mean**2, 0.0))
        return (
            tuple(round(float(m), 6) for m in mean),
            tuple(round(max(float(s), 1e-3), 6) for s in std),
        )

    def subset(self, part: int, seed: int = 0) -> StreamSubset:
        """The fixed, class-stratified 1/part subset of the training pool (memoised); the same
        positions ``PreparedData.subset`` draws for the same folder, split and seed."""
        key = (part, seed)
        if key not in self._subsets:
            indices = subset_positions(self.train_labels, part, seed)
            digest = hashlib.sha256()
            digest.update(f"{self.resolution}|{self.channels}|{self.mean}|{self.std}".encode())
            for index in indices:
                file = self.train_files[index]
                relative = file.relative_to(self.root).as_posix()
                digest.update(f"{relative}|{file.stat().st_size}|".encode())
            digest.update(self.train_labels[indices].tobytes())
            self._subsets[key] = StreamSubset(part, seed, indices, digest.hexdigest()[:16])
        return self._subsets[key]

    def images(self, split: str, augment: StreamAugment | None = None) -> FileImages:
        """The "train" pool, "valid" or "test" split as a ``FileImages`` dataset."""
        files, labels = {
            "train": (self.train_files, self.train_labels),
            "valid": (self.valid_files, self.valid_labels),
            "test": (self.test_files, self.test_labels),
        }[split]
        return FileImages(
            files, labels, self.resolution, self.channels, augment or StreamAugment()
        )


class StreamingLoader:
    """Batches of a ``StreamingFolder`` subset, decoded by DataLoader workers.

    Args:
        folder: the folder.
        subset: the training subset (``folder.subset(part, seed)``).
        augment: the training augmentation.
        batch_size: the global batch size (all ranks together).
        device: where batches are delivered (normalised, channels-last).
        workers: DataLoader worker processes (0 decodes in the training process).
        rank, world_size: this process's share of each global batch.
        channels_last: memory layout of the delivered batches.
    """

    def __init__(
        self,
        folder: StreamingFolder,
        subset: StreamSubset,
        augment: StreamAugment,
        batch_size: int,
        device: torch.device,
        *,
        workers: int = 2,
        rank: int = 0,
        world_size: int = 1,
        channels_last: bool = True,
    ) -> None:
        self.folder = folder
        self.subset = subset
        self.augment = augment
        self.batch_size = batch_size
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.channels_last = channels_last
        self.workers = workers
        self.plan_padding = augment.plan_padding
        self.plan_flip = augment.flip
        self.image_shape = (folder.channels, folder.resolution, folder.resolution)
        self._sampler = _EpochBatches()
        self._train = torch.utils.data.DataLoader(
            folder.images("train", augment),
            batch_sampler=self._sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )

    def __len__(self) -> int:
        return len(self.subset)

    def epoch_keys(self, plan: EpochPlan, epoch: int, seed: int) -> list[list[SampleKey]]:
        """This rank's sample keys of every batch of ``plan``."""
        crop_seed = stream_seed(seed, epoch, "resized-crop")
        order = plan.order.numpy()
        shift_y, shift_x, flip = plan.shift_y.numpy(), plan.shift_x.numpy(), plan.flip.numpy()
        batches = []
        for start, stop in plan.bounds:
            positions = shard(order[start:stop], self.rank, self.world_size)
            batches.append(
                [
                    (
                        int(self.subset.indices[p]),
                        int(shift_y[p]),
                        int(shift_x[p]),
                        bool(flip[p]) and self.augment.flip,
                        crop_seed,
                        int(p),
                    )
                    for p in positions
                ]
            )
        return batches

    def train_batches(
        self, plan: EpochPlan, epoch: int, seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised images, labels) on the device for this rank's shard of every batch."""
        self._sampler.batches = self.epoch_keys(plan, epoch, seed)
        for images, labels in self._train:
            yield self._deliver(images, labels)

    def eval_batches(
        self, split: str, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(centre-cropped normalised images, labels) of this rank's share of ``split``: every
        ``world_size``-th batch starting at ``rank``."""
        dataset = self.folder.images(split)
        starts = range(self.rank * batch_size, len(dataset), batch_size * self.world_size)
        sampler = [list(range(s, min(s + batch_size, len(dataset)))) for s in starts]
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        for images, labels in loader:
            yield self._deliver(images, labels)

    def _deliver(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = normalise_batch(
            images, self.folder.mean, self.folder.std, self.device, self.channels_last
        )
        return batch, labels.to(self.device, non_blocking=True)
