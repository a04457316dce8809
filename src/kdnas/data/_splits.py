"""Validation split, fixed stratified 1/k training subsets, and their content hashes.

Notation: the official training set is split once into a *training pool* and a *validation
split* (``valid_fraction`` of every class, seeded by ``split_seed``). Subsets 1/k are drawn from
the training pool only, so they never overlap the validation split. For one seed the subsets
are nested: each class is shuffled once and 1/k keeps the first round(n_c / k) of it, so the
1/27 subset lies inside the 1/9 subset, which lies inside 1/3 (low fidelities see a part of
what higher fidelities see).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from kdnas.data._datasets import Dataset, ImageSet

__all__ = ["PreparedData", "Subset", "prepare", "stratified_split", "subset_positions"]

logger = logging.getLogger(__name__)


def _class_permutations(labels: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        int(label): rng.permutation(np.flatnonzero(labels == label)) for label in np.unique(labels)
    }


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask selecting round(fraction * n_c) samples of every class c, seeded.

    Args:
        labels: ``N`` class indices.
        fraction: share of each class to select, in [0, 1).
        seed: the random seed.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must lie in [0, 1), got {fraction!r}")
    mask = np.zeros(len(labels), dtype=bool)
    for members in _class_permutations(labels, seed).values():
        mask[members[: round(len(members) * fraction)]] = True
    return mask


def subset_positions(labels: np.ndarray, part: int, seed: int) -> np.ndarray:
    """Sorted int64 positions of the fixed, class-stratified ``1/part`` subset of ``labels``.

    Each class keeps max(1, round(n_c / part)) samples, the first of its seeded shuffle, so
    for one seed the subsets are nested (1/27 inside 1/9 inside 1/3). The resident and the
    streaming data paths both draw their subsets here, so they train on the same images.

    Raises:
        ValueError: part is not a positive integer.
    """
    if isinstance(part, bool) or not isinstance(part, int) or part < 1:
        raise ValueError(f"part must be an integer >= 1, got {part!r}")
    chosen = [
        members[: max(1, round(len(members) / part))]
        for members in _class_permutations(labels, seed).values()
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


@dataclass(frozen=True)
class Subset:
    """A fixed training subset: ``1/part`` of each class of the training pool.

    Args:
        part: k of the 1/k subset (1 = the whole training pool).
        seed: the seed that drew it.
        indices: sorted int64 positions within ``PreparedData.train``.
        content_hash: the first 16 hex digits of SHA-256 over the subset's images and labels
            (and the normalisation), recorded with every result: equal hashes mean equal data.
    """

    part: int
    seed: int
    indices: torch.Tensor
    content_hash: str

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(frozen=True, eq=False)
class PreparedData:
    """A dataset made ready for training: resized, split and with its normalisation.

    Build it with ``prepare``. ``mean`` and ``std`` are per-channel statistics of the
    training pool on the [0, 1] pixel scale, used to normalise every split.
    """

    dataset: Dataset
    train: ImageSet
    valid: ImageSet
    test: ImageSet
    mean: tuple[float, ...]
    std: tuple[float, ...]
    valid_fraction: float
    split_seed: int
    _subsets: dict[tuple[int, int], Subset] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def in_channels(self) -> int:
        return int(self.train.images.shape[1])

    @property
    def resolution(self) -> int:
        return int(self.train.images.shape[2])

    def subset(self, part: int, seed: int = 0) -> Subset:
        """The fixed, class-stratified ``1/part`` subset of the training pool for ``seed``.

        Each class keeps max(1, round(n_c / part)) samples. Computed once, then memoised.

        Raises:
            ValueError: part is not a positive integer.
        """
        key = (part, seed)
        if key not in self._subsets:
            indices = torch.from_numpy(subset_positions(self.train.labels.numpy(), part, seed))
            digest = hashlib.sha256()
            digest.update(f"{tuple(self.train.images.shape[1:])}|{self.mean}|{self.std}".encode())
            digest.update(self.train.images[indices].numpy().tobytes())
            digest.update(self.train.labels[indices].numpy().tobytes())
            self._subsets[key] = Subset(part, seed, indices, digest.hexdigest()[:16])
            logger.debug("subset 1/%d seed %d: %d samples", part, seed, len(indices))
        return self._subsets[key]


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[2] == resolution and images.shape[3] == resolution:
        return images
    out = []
    for start in range(0, images.shape[0], 4096):
        chunk = images[start : start + 4096].float()
        chunk = F.interpolate(
            chunk,
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=resolution < images.shape[2],
        )
        out.append(chunk.round().clamp(0, 255).to(torch.uint8))
    return (
        torch.cat(out) if out else images.new_zeros((0, images.shape[1], resolution, resolution))
    )


def prepare(
    dataset: Dataset,
    valid_fraction: float = 0.1,
    split_seed: int = 0,
    resolution: int | None = None,
) -> PreparedData:
    """Split off a stratified validation set, resize, and compute the normalisation.

    Args:
        dataset: the loaded dataset.
        valid_fraction: share of each class of the official training set held out for
            validation (default 10 %), a fraction in (0, 1).
        split_seed: seed of the validation split (fixed per dataset, not per evaluation, so
            that every evaluation is validated on the same images).
        resolution: image side in pixels after bilinear resizing; None takes the dataset's
            ``default_resolution`` (16 for the digits), else keeps the native size.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ValueError(
            f"valid_fraction must lie in (0, 1): every result reports a validation accuracy; "
            f"got {valid_fraction!r}"
        )
    if resolution is not None and resolution < 1:
        raise ValueError(f"resolution must be a positive number of pixels, got {resolution}")
    labels = dataset.train.labels.numpy()
    is_valid = torch.from_numpy(stratified_split(labels, valid_fraction, split_seed))
    side = resolution or dataset.default_resolution or dataset.resolution
    train_images = _resize(dataset.train.images[~is_valid], side)
    pixels = train_images.double().div_(255.0)
    mean = pixels.mean(dim=(0, 2, 3))
    std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return PreparedData(
        dataset=dataset,
        train=ImageSet(train_images, dataset.train.labels[~is_valid].clone()),
        valid=ImageSet(
            _resize(dataset.train.images[is_valid], side), dataset.train.labels[is_valid].clone()
        ),
        test=ImageSet(_resize(dataset.test.images, side), dataset.test.labels.clone()),
        mean=tuple(round(float(m), 6) for m in mean),
        std=tuple(round(float(s), 6) for s in std),
        valid_fraction=valid_fraction,
        split_seed=split_seed,
    )
