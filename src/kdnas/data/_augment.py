"""Batch order and augmentation as a function of (seed, epoch) only, applied to whole batches.

Every student trained with the same seed on the same subset sees exactly the same batches:
the same samples in the same order with the same crops and flips. These common random numbers
make comparisons between architectures less noisy, and they let the teacher's outputs for each
(epoch, batch) be computed once and reused by every student (``kdnas.train.TeacherCache``).

Images live on the training device as one normalised, padded ``N x H x W x C`` float tensor;
a batch is cut out by one gather (random crop and horizontal flip folded into the gather's
column indices), giving an ``N x C x H x W`` view in channels-last memory layout at no copy
(or, when asked for the classic layout, one more copy into contiguous ``N x C x H x W``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from kdnas.data._datasets import ImageSet

__all__ = ["DeviceImages", "EpochPlan", "epoch_plan", "stream_seed"]


def stream_seed(seed: int, epoch: int, stream: str = "epoch") -> int:
    """A 63-bit seed derived from (seed, epoch, stream) by SHA-256, stable across platforms."""
    text = f"kdnas|{stream}|{seed}|{epoch}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


@dataclass(frozen=True)
class EpochPlan:
    """One epoch's batches: which samples, in which order, cropped and flipped how.

    Args:
        order: positions within the subset (0-based), in batch order.
        shift_y: per position in ``order``, the crop's top offset in [0, 2 * padding].
        shift_x: per position, the crop's left offset in [0, 2 * padding].
        flip: per position, whether the crop is mirrored horizontally.
        bounds: (start, stop) of each batch within ``order``.
    """

    order: torch.Tensor
    shift_y: torch.Tensor
    shift_x: torch.Tensor
    flip: torch.Tensor
    bounds: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.bounds)


def epoch_plan(
    n: int, batch_size: int, seed: int, epoch: int, padding: int, flip: bool
) -> EpochPlan:
    """The batches of one epoch, a function of its arguments only (drawn on the CPU).

    A final batch of a single sample is dropped (BatchNorm cannot train on one sample); it
    is a different sample each epoch because the order is reshuffled.

    Args:
        n: number of training samples.
        batch_size: samples per batch.
        seed: the evaluation's seed.
        epoch: 0-based epoch.
        padding: crop padding in pixels (0 = no crop).
        flip: whether to mirror half the samples horizontally.
    """
    if n < 2 or batch_size < 2:
        raise ValueError(f"need at least 2 samples and batch_size >= 2, got {n}, {batch_size}")
    generator = torch.Generator().manual_seed(stream_seed(seed, epoch))
    order = torch.randperm(n, generator=generator)
    shift_y = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    shift_x = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    if not flip:
        flips = torch.zeros(n, dtype=torch.bool)
    bounds = [(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]
    if bounds[-1][1] - bounds[-1][0] == 1:
        bounds.pop()
    return EpochPlan(order, shift_y, shift_x, flips, tuple(bounds))


class DeviceImages:
    """Normalised images held on the training device, cut into batches by index.

    Args:
        images: the source images.
        mean: per-channel mean on the [0, 1] scale.
        std: per-channel standard deviation on the [0, 1] scale.
        padding: zero padding (in raw pixel value 0, i.e. black, as torchvision's random crop
            pads) added on every side for random crops.
        device: where the tensors live.
        channels_last: batches in channels-last memory layout (free: the gather's natural
            layout); False copies each batch into contiguous ``B x C x H x W``.
    """

    def __init__(
        self,
        images: ImageSet,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        padding: int,
        device: torch.device,
        *,
        channels_last: bool = True,
    ) -> None:
        self.padding = padding
        self.channels_last = channels_last
        self.device = device
        n, c, h, w = images.images.shape
        self.size = (h, w)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
        padded = (
            ((torch.zeros(1, c, 1, 1) - mean_t) / std_t)
            .expand(n, c, h + 2 * padding, w + 2 * padding)
            .clone()
        )
        padded[:, :, padding : padding + h, padding : padding + w] = (
            images.images.float().div(255.0) - mean_t
        ) / std_t
        self.images = padded.permute(0, 2, 3, 1).contiguous().to(device)  # N x H x W x C
        self.labels = images.labels.to(device)
        self._rows = torch.arange(h, device=device)
        self._cols = torch.arange(w, device=device)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(
        self,
        index: torch.Tensor,
        shift_y: torch.Tensor | None = None,
        shift_x: torch.Tensor | None = None,
        flip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Crop (and mirror) the images at ``index``: a ``B x C x H x W`` tensor, channels-last
        in memory unless this set was made with ``channels_last=False``.

        Without shifts the crop is the centre (the unpadded image).
        """
        index = index.to(self.device)
        p = self.padding
        top = shift_y.to(self.device) if shift_y is not None else torch.full_like(index, p)
        left = shift_x.to(self.device) if shift_x is not None else torch.full_like(index, p)
        rows = top[:, None] + self._rows[None, :]
        cols = self._cols[None, :].expand(len(index), -1)
        if flip is not None:
            cols = torch.where(flip.to(self.device)[:, None], cols.flip(1), cols)
        cols = left[:, None] + cols
        out = self.images[index[:, None, None], rows[:, :, None], cols[:, None, :]]
        out = out.permute(0, 3, 1, 2)
        return out if self.channels_last else out.contiguous()

    def plan_batches(
        self, plan: EpochPlan, subset_indices: torch.Tensor | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yield (images, labels, positions in the subset) for every batch of ``plan``.

        Args:
            plan: the epoch's plan over positions 0..len(subset)-1.
            subset_indices: the subset's positions within these images (on any device); None
                when these images are the subset itself.
        """
        if subset_indices is None:
            subset_indices = torch.arange(len(self), device=self.device)
        subset_indices = subset_indices.to(self.device)
        order = plan.order.to(self.device)
        shift_y = plan.shift_y.to(self.device)
        shift_x = plan.shift_x.to(self.device)
        flip = plan.flip.to(self.device)
        for start, stop in plan.bounds:
            positions = order[start:stop]
            index = subset_indices[positions]
            images = self.batch(index, shift_y[positions], shift_x[positions], flip[positions])
            yield images, self.labels[index], positions

    def eval_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (centre-cropped images, labels) in order, ``batch_size`` at a time."""
        all_index = torch.arange(len(self), device=self.device)
        for start in range(0, len(self), batch_size):
            index = all_index[start : start + batch_size]
            yield self.batch(index), self.labels[index]
