"""Using a loaded model: predicting image files, scoring a dataset, and a run's best table."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdnas.deploy._folder import (
    LoadedModel,
    choose_run,
    evaluation_weights_key,
    full_data_evaluations,
)
from kdnas.train import WeightsFolder, weights_dir_for

__all__ = [
    "IMAGE_SUFFIXES",
    "BestRow",
    "Prediction",
    "best_rows",
    "evaluate_model",
    "format_best_table",
    "image_files",
    "predict_files",
]

#: File suffixes ``predict_files`` reads in a folder (those of ``kdnas.data`` image folders).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one image.

    Args:
        file: the image file.
        label: the most probable class's name.
        index: its output index.
        probability: its probability, a fraction in [0, 1].
    """

    file: str
    label: str
    index: int
    probability: float


def image_files(target: str | os.PathLike[str]) -> list[Path]:
    """``target`` itself, or the image files under the folder ``target`` (sorted, recursive).

    Raises:
        FileNotFoundError: ``target`` does not exist.
        ValueError: a folder without images.
    """
    path = Path(target)
    if not path.exists():
        raise FileNotFoundError(2, "no such image or folder", str(path))
    if path.is_file():
        return [path]
    files = sorted(
        p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise ValueError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def predict_files(
    model: LoadedModel, files: Sequence[str | os.PathLike[str]], batch_size: int = 256
) -> list[Prediction]:
    """The model's class for each image file, decoded with the model's own preprocessing:
    shorter side resized to its resolution (bilinear) and centre-cropped, converted to its
    channels (a grayscale image stays one channel for a one-channel model), normalised.

    Raises:
        kdnas.data.DatasetError: a file that is not a readable image.
    """
    from kdnas.data._datasets import decode_square

    side, channels = model.preprocessing.resolution, model.preprocessing.channels
    predictions: list[Prediction] = []
    for start in range(0, len(files), batch_size):
        chunk = [Path(f) for f in files[start : start + batch_size]]
        arrays = np.stack([decode_square(f, side, channels).transpose(2, 0, 1) for f in chunk])
        probabilities = model.probabilities(torch.from_numpy(arrays))
        best, index = probabilities.max(dim=1)
        for file, p, i in zip(chunk, best.tolist(), index.tolist(), strict=True):
            predictions.append(Prediction(str(file), model.classes[i], int(i), float(p)))
    return predictions


def evaluate_model(model: LoadedModel, dataset: str) -> dict[str, Any]:
    """Accuracy of ``model`` on the validation and test splits of ``dataset``, computed as the
    store computed it (``kdnas.train.accuracy``: the same images, resized as in training,
    normalised with the model's statistics, in the same batches and memory layout).

    Args:
        dataset: "digits" or a dataset path, as given to ``kdnas search``.

    Returns:
        ``{"dataset", "valid_acc", "test_acc", "n_valid", "n_test"}`` (fractions; the
        validation split is the training's only when its share and seed are recorded).

    Raises:
        ValueError: the dataset's classes or channels differ from the model's.
    """
    from kdnas.data import DeviceImages, load_dataset, prepare
    from kdnas.train import TrainConfig, accuracy

    preprocessing = model.preprocessing
    loaded = load_dataset(dataset, resolution=preprocessing.resolution)
    if loaded.num_classes != len(model.classes):
        raise ValueError(
            f"{dataset} has {loaded.num_classes} classes, the model {len(model.classes)}"
        )
    if loaded.class_names and tuple(loaded.class_names) != model.classes:
        raise ValueError(f"{dataset}'s class names differ from the model's")
    if loaded.in_channels != preprocessing.channels:
        raise ValueError(
            f"{dataset} has {loaded.in_channels}-channel images, the model takes "
            f"{preprocessing.channels}"
        )
    scoring = model.description.get("evaluation") or {}
    valid_fraction = scoring.get("valid_fraction") or 0.1
    split_seed = scoring.get("split_seed") or 0
    data = prepare(
        loaded,
        valid_fraction=float(valid_fraction),
        split_seed=int(split_seed),
        resolution=preprocessing.resolution,
    )
    config = TrainConfig(
        eval_batch_size=int(scoring.get("eval_batch_size") or 1024),
        channels_last=bool(model.description.get("channels_last", False)),
        amp=bool(scoring.get("amp", True)),
    )
    device = torch.device("cpu")
    result: dict[str, Any] = {"dataset": dataset}
    for split, images in (("valid", data.valid), ("test", data.test)):
        on_device = DeviceImages(
            images,
            preprocessing.mean,
            preprocessing.std,
            0,
            device,
            channels_last=config.channels_last,
        )
        result[f"{split}_acc"] = accuracy(model.network, on_device, config)
        result[f"n_{split}"] = len(images)
    return result


@dataclass(frozen=True)
class BestRow:
    """One full-data evaluation of a run, as ``kdnas best`` shows it.

    Args:
        rank: 1 for the best validation accuracy.
        name: the space's short name of the architecture.
        arch_key: ``Architecture.key()``.
        params: trainable parameters.
        multiply_adds: multiply-accumulates of one forward pass on one image.
        valid_acc: validation accuracy, a fraction.
        test_acc: test accuracy, a fraction.
        weights: the kept weights file, or "missing" / "corrupt".
    """

    rank: int
    name: str
    arch_key: str
    params: int
    multiply_adds: int
    valid_acc: float
    test_acc: float
    weights: str


def best_rows(
    store_path: str | os.PathLike[str], run_id: str | None = None, top: int = 10
) -> tuple[str, list[BestRow]]:
    """The run's ``top`` full-data evaluations by validation accuracy, with where their
    weights are; and the run's name.

    Raises:
        ValueError: no such store or run.
    """
    from kdnas.spaces import get_space
    from kdnas.store import SQLiteStore

    if not Path(store_path).is_file():
        raise FileNotFoundError(2, "no such store", str(store_path))
    with SQLiteStore(store_path, read_only=True) as store:
        run = choose_run(store.runs(), run_id, str(store_path))
        ranked = full_data_evaluations(store.results(run.run_id))
    folder_path = weights_dir_for(store_path)
    folder = WeightsFolder(folder_path) if folder_path is not None else None
    rows = []
    for rank, evaluation in enumerate(ranked[:top], start=1):
        metrics = evaluation.result.metrics
        where = "missing"
        if folder is not None:
            try:
                key = evaluation_weights_key(evaluation, run)
            except ValueError:
                key = ""
            status = folder.status(key) if key else "missing"
            where = str(folder.paths(key)[0]) if status == "kept" else status
        try:
            name = get_space(evaluation.arch.space).describe(evaluation.arch)
        except ValueError:
            name = evaluation.arch.key()
        rows.append(
            BestRow(
                rank,
                name,
                evaluation.arch.key(),
                int(metrics.get("params", 0) or 0),
                int(metrics.get("multiply_adds", 0) or 0),
                evaluation.result.valid_acc,
                evaluation.result.test_acc,
                where,
            )
        )
    return run.run_id, rows


def _fmt_count(value: int) -> str:
    if value >= 1_000_000:
        return f"{value / 1e6:.2f}M"
    if value >= 1_000:
        return f"{value / 1e3:.1f}k"
    return str(value)


def format_best_table(rows: Sequence[BestRow]) -> str:
    """``rows`` as a plain-text table (one line per evaluation)."""
    header = ("#", "architecture", "params", "mult-adds", "valid", "test", "weights")
    lines = [
        (
            str(r.rank),
            r.name,
            _fmt_count(r.params),
            _fmt_count(r.multiply_adds),
            "nan" if math.isnan(r.valid_acc) else f"{r.valid_acc:.4f}",
            "nan" if math.isnan(r.test_acc) else f"{r.test_acc:.4f}",
            r.weights,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for line in lines:
        out.append("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return "\n".join(out)
