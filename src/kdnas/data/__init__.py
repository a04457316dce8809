"""Datasets without torchvision, fixed stratified subsets, and batched augmentation.

Typical use::

    from kdnas.data import load_dataset, prepare

    data = prepare(load_dataset("digits"), valid_fraction=0.1, split_seed=0)
    subset = data.subset(part=27, seed=0)      # 1/27 of each class, with a content hash

Image folders too large for memory stream instead (``StreamingFolder``, ``StreamingLoader``):
decoded and augmented in DataLoader workers, with the same subsets and batch plans.
"""

from __future__ import annotations

from kdnas.data._augment import DeviceImages, EpochPlan, epoch_plan, stream_seed
from kdnas.data._datasets import (
    DATASET_FORMS,
    EMBEDDED_DATASETS,
    FLAT_TEST_FRACTION,
    Dataset,
    DatasetError,
    ImageSet,
    load_cifar,
    load_dataset,
    load_digits,
    load_flat_image_folder,
    load_image_folder,
)
from kdnas.data._splits import (
    PreparedData,
    Subset,
    prepare,
    stratified_split,
    subset_positions,
)
from kdnas.data._stream import (
    CROPS,
    FileImages,
    StreamAugment,
    StreamingFolder,
    StreamingLoader,
    StreamSubset,
    normalise_batch,
    shard,
)

__all__ = [
    "CROPS",
    "DATASET_FORMS",
    "EMBEDDED_DATASETS",
    "FLAT_TEST_FRACTION",
    "Dataset",
    "DatasetError",
    "DeviceImages",
    "EpochPlan",
    "FileImages",
    "ImageSet",
    "PreparedData",
    "StreamAugment",
    "StreamSubset",
    "StreamingFolder",
    "StreamingLoader",
    "Subset",
    "epoch_plan",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_flat_image_folder",
    "load_image_folder",
    "normalise_batch",
    "prepare",
    "shard",
    "stratified_split",
    "stream_seed",
    "subset_positions",
]
