"""Datasets without torchvision, fixed stratified subsets, and batched augmentation.

Typical use::

    from kdnas.data import load_dataset, prepare

    data = prepare(load_dataset("digits"), valid_fraction=0.1, split_seed=0)
    subset = data.subset(part=27, seed=0)      # 1/27 of each class, with a content hash
"""

from __future__ import annotations

from kdnas.data._augment import DeviceImages, EpochPlan, epoch_plan, stream_seed
from kdnas.data._datasets import (
    EMBEDDED_DATASETS,
    Dataset,
    DatasetError,
    ImageSet,
    load_cifar,
    load_dataset,
    load_digits,
    load_image_folder,
)
from kdnas.data._splits import PreparedData, Subset, prepare, stratified_split

__all__ = [
    "EMBEDDED_DATASETS",
    "Dataset",
    "DatasetError",
    "DeviceImages",
    "EpochPlan",
    "ImageSet",
    "PreparedData",
    "Subset",
    "epoch_plan",
    "load_cifar",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "prepare",
    "stratified_split",
    "stream_seed",
]
