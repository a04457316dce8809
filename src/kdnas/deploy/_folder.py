"""A model folder a user can take away: export from a store, load without it.

``export_model`` turns a stored full-data evaluation (the run's best by default) into a
folder::

    MODEL/
      model.json    architecture (space + genotype), classes, preprocessing, provenance,
                    the SHA-256 of every file
      weights.pt    the PyTorch state dict (read with ``torch.load(weights_only=True)``)
      model.pt2     the same network as a ``torch.export`` program (batch size free)
      model.onnx    optional (``onnx=True``; the ``kdnas[onnx]`` extra)

``load_model(MODEL)`` rebuilds the network from ``model.json`` and ``weights.pt`` alone: no
store, no training data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kdnas.core import Architecture
from kdnas.train import WeightsError, WeightsFolder, weights_dir_for, weights_key
from kdnas.train._weights import read_state_dict

if TYPE_CHECKING:
    from kdnas.store import RunInfo, StoredEvaluation

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LoadedModel",
    "MissingWeightsError",
    "ModelFolderError",
    "Preprocessing",
    "build_network",
    "choose_run",
    "evaluation_weights_key",
    "export_model",
    "find_evaluation",
    "full_data_evaluations",
    "load_model",
    "retrain_command",
]

#: What ``model.json`` says it is, and the version of its layout.
FORMAT = "kdnas-model"
FORMAT_VERSION = 1


class ModelFolderError(ValueError):
    """A model folder that cannot be used: missing, incomplete, corrupt or inconsistent."""


class MissingWeightsError(ValueError):
    """A stored evaluation whose weights were not kept (or no longer are); the message gives
    the command that retrains it and keeps them."""


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input.

    Args:
        resolution: side in pixels of the square input (shorter side resized to it with
            bilinear filtering, then centre-cropped: ``kdnas.data`` image folders' decoding).
        channels: 1 (grayscale) or 3 (RGB).
        mean: per-channel mean on the [0, 1] pixel scale, subtracted.
        std: per-channel standard deviation on the [0, 1] scale, divided by.
    """

    resolution: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.channels not in (1, 3) or self.resolution < 1:
            raise ModelFolderError(
                f"preprocessing needs channels 1 or 3 and a resolution >= 1, got "
                f"{self.channels}, {self.resolution}"
            )
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ModelFolderError(
                f"preprocessing: mean and std need {self.channels} value(s) each"
            )

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """``B x C x H x W`` uint8 images (0-255) as the network's float input."""
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return (images.float().div(255.0) - mean) / std

    def to_dict(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "channels": self.channels,
            "mean": list(self.mean),
            "std": list(self.std),
        }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- finding a stored evaluation ------------------------------------------------------------


def choose_run(runs: Sequence[RunInfo], run_id: str | None, where: str) -> RunInfo:
    names = [run.run_id for run in runs]
    if not runs:
        raise ValueError(f"store {where} holds no run")
    if run_id is None:
        if len(runs) == 1:
            return runs[0]
        if "search" in names:
            return runs[names.index("search")]
        raise ValueError(f"store {where} holds several runs ({', '.join(names)}): name one")
    if run_id not in names:
        raise ValueError(f"store {where} has no run {run_id!r}; its runs: {', '.join(names)}")
    return runs[names.index(run_id)]


def full_data_evaluations(evaluations: Sequence[StoredEvaluation]) -> list[StoredEvaluation]:
    """The ok full-data (part 1, plain cross-entropy) evaluations, best validation accuracy
    first (ties: the earlier one)."""
    high = [
        e
        for e in evaluations
        if e.result.ok and e.result.fidelity.part == 1 and e.result.fidelity.method == "nokd"
    ]
    order = sorted(range(len(high)), key=lambda i: (-high[i].result.valid_acc, i))
    return [high[i] for i in order]


def _matches(evaluation: StoredEvaluation, name: str) -> bool:
    from kdnas.spaces import get_space

    arch = evaluation.arch
    if name in (arch.key(), arch.to_json()):
        return True
    with contextlib.suppress(ValueError, TypeError):
        if Architecture.from_json(name) == arch:
            return True
    with contextlib.suppress(ValueError):
        return get_space(arch.space).describe(arch) == name
    return False


def find_evaluation(
    store_path: str | os.PathLike[str], run_id: str | None = None, arch: str | None = None
) -> tuple[StoredEvaluation, RunInfo]:
    """The stored full-data evaluation to export and its run.

    Args:
        store_path: the SQLite store of a search.
        run_id: its run (None: the only run, else the one called "search").
        arch: an architecture key, JSON or short name (``kdnas best`` shows them); None
            takes the run's best by validation accuracy.

    Raises:
        ValueError: no such store, run, or full-data evaluation (the message says which).
    """
    from kdnas.store import SQLiteStore

    if not Path(store_path).is_file():
        raise FileNotFoundError(2, "no such store", str(store_path))
    with SQLiteStore(store_path, read_only=True) as store:
        run = choose_run(store.runs(), run_id, str(store_path))
        ranked = full_data_evaluations(store.results(run.run_id))
    if not ranked:
        raise ValueError(
            f"run {run.run_id!r} of {store_path} has no finished full-data evaluation to export"
        )
    if arch is None:
        return ranked[0], run
    chosen = [e for e in ranked if _matches(e, arch)]
    if not chosen:
        raise ValueError(
            f"run {run.run_id!r} of {store_path} has no full-data evaluation of {arch[:80]!r} "
            "(kdnas best lists them)"
        )
    return chosen[0], run


def evaluation_weights_key(evaluation: StoredEvaluation, run: RunInfo) -> str:
    """The key under which ``evaluation``'s weights are kept (``kdnas.train.weights_key``),
    from the row and its run's training protocol."""
    protocol = dict(run.config.get("train_config") or {})
    epochs = evaluation.result.fidelity.epochs or protocol.get("epochs")
    subset_hash = evaluation.result.info.get("subset_hash", "")
    if epochs is None or not subset_hash:
        raise ValueError(
            f"run {run.run_id!r} records too little to find kept weights (an older store?)"
        )
    return weights_key(
        evaluation.arch.key(), int(epochs), evaluation.result.seed, protocol, subset_hash
    )


def retrain_command(
    evaluation: StoredEvaluation, run: RunInfo, store_path: str | os.PathLike[str]
) -> str:
    """The one-line ``kdnas train`` command that retrains ``evaluation`` with its run's
    protocol and keeps its weights where ``kdnas export`` looks for them."""
    config = run.config
    protocol = config.get("train_config") or {}
    train = config.get("train") or {}
    epochs = evaluation.result.fidelity.epochs or protocol.get("epochs")
    words = [
        "kdnas",
        "train",
        "--space",
        evaluation.arch.space,
        "--dataset",
        str(config.get("dataset", "DATASET")),
        "--arch",
        evaluation.arch.to_json(),
        "--epochs",
        str(epochs),
        "--width-multiplier",
        str(protocol.get("width_multiplier", 1.0)),
        "--seed",
        str(evaluation.result.seed),
        "--valid-fraction",
        str(config.get("valid_fraction", 0.1)),
    ]
    for name, option in (("batch_size", "--batch-size"), ("lr", "--lr")):
        if name in train:
            words += [option, str(train[name])]
    if train.get("precise_bn"):
        words.append("--precise-bn")
    if "distillation_warmup" in train:
        words += ["--distillation-warmup", str(train["distillation_warmup"])]
    if "horizontal_flip" in train:
        words.append("--flip" if train["horizontal_flip"] else "--no-flip")
    folder = weights_dir_for(store_path)
    words += ["--keep-weights-dir", str(folder)]
    return shlex.join(words)


# -- writing a model folder -----------------------------------------------------------------


def build_network(
    space_name: str, arch: Architecture, description: Mapping[str, Any]
) -> nn.Module:
    """The untrained network of a model description (eval mode, the training's layout).

    Raises:
        ModelFolderError: an unknown space, or an architecture that is not of the space.
    """
    from kdnas.spaces import get_space

    if arch.space != space_name:
        raise ModelFolderError(
            f"the architecture is of space {arch.space!r} but the model says {space_name!r}"
        )
    try:
        space = get_space(space_name)
        space.validate(arch)
    except ValueError as error:
        raise ModelFolderError(f"space {space_name!r}: {error}") from None
    network = space.build_network(
        arch,
        num_classes=int(description["num_classes"]),
        in_channels=int(description["preprocessing"]["channels"]),
        width_multiplier=float(description["width_multiplier"]),
    )
    if description.get("channels_last", False):
        network = network.to(memory_format=torch.channels_last)
    return network.eval()


def _load_weights(network: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise ModelFolderError(
            f"{where}: the weights do not fit the architecture (a foreign weights file?): "
            f"{first[1].strip() if len(first) > 1 else first[0]}"
        ) from None


def _description(record: Mapping[str, Any], provenance: Mapping[str, Any]) -> dict[str, Any]:
    from kdnas import __version__
    from kdnas.spaces import get_space

    arch = Architecture.from_json(record["arch"])
    config = record["train_config"]
    classes = list(record.get("class_names") or [])
    if not classes:
        classes = [str(i) for i in range(int(record["num_classes"]))]
    preprocessing = dict(record["preprocessing"])
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "space": record["space"],
        "arch": json.loads(arch.to_json()),
        "arch_name": get_space(arch.space).describe(arch),
        "width_multiplier": config["width_multiplier"],
        "num_classes": int(record["num_classes"]),
        "classes": classes,
        "preprocessing": {
            "resolution": int(preprocessing["resolution"]),
            "channels": int(preprocessing["channels"]),
            "mean": list(preprocessing["mean"]),
            "std": list(preprocessing["std"]),
        },
        "channels_last": bool(config.get("channels_last", False)),
        # How the store scored it, so that `kdnas evaluate` scores it the same way.
        "evaluation": {
            "valid_fraction": preprocessing.get("valid_fraction"),
            "split_seed": preprocessing.get("split_seed"),
            "eval_batch_size": config.get("eval_batch_size"),
            "amp": config.get("amp"),
        },
        "provenance": {
            **provenance,
            "dataset": record.get("dataset"),
            "fidelity": record.get("fidelity"),
            "epochs": record.get("epochs"),
            "seed": record.get("seed"),
            "valid_acc": record.get("valid_acc"),
            "test_acc": record.get("test_acc"),
            "params": record.get("params"),
            "multiply_adds": record.get("multiply_adds"),
            "weights_key": record.get("key"),
            "trained_with_kdnas": record.get("kdnas_version"),
            "exported_with_kdnas": __version__,
            "torch_version": torch.__version__,
            "train_config": config,
        },
    }


def _export_program(network: nn.Module, preprocessing: Mapping[str, Any], path: Path) -> None:
    side, channels = int(preprocessing["resolution"]), int(preprocessing["channels"])
    example = torch.zeros(2, channels, side, side)
    batch = torch.export.Dim("batch", min=1, max=65536)
    program = torch.export.export(network, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def _export_onnx(network: nn.Module, preprocessing: Mapping[str, Any], path: Path) -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ValueError("ONNX export needs the onnx extra: pip install 'kdnas[onnx]'") from None
    side, channels = int(preprocessing["resolution"]), int(preprocessing["channels"])
    example = torch.zeros(2, channels, side, side)
    torch.onnx.export(
        network,
        (example,),
        str(path),
        input_names=["images"],
        output_names=["logits"],
        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=65536)},),
        dynamo=True,
        external_data=False,  # one file a user can move
        verbose=False,
    )


def export_model(
    source: str | os.PathLike[str],
    to: str | os.PathLike[str],
    *,
    run_id: str | None = None,
    arch: str | None = None,
    program: bool = True,
    onnx: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write the model folder ``to`` from a stored evaluation or a kept weights file.

    Args:
        source: a search's SQLite store, or a kept weights file (``<key>.pt`` or its
            ``<key>.json``, as ``kdnas train`` keeps them).
        to: the model folder to write (made whole in a temporary folder, then renamed).
        run_id: the store's run (None: the only one, else "search").
        arch: which evaluation (key, JSON or short name; None: the run's best).
        program: also write ``model.pt2`` (``torch.export``).
        onnx: also write ``model.onnx`` (needs the ``kdnas[onnx]`` extra).
        overwrite: replace an existing folder ``to``.

    Raises:
        MissingWeightsError: the evaluation's weights were not kept or failed their check
            (the message gives the command that retrains and keeps them).
        ValueError: no such store, run or evaluation; ``to`` exists.
    """
    source = Path(source)
    target = Path(to)
    if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(17, "the model folder exists (--overwrite replaces it)", str(target))
    if source.suffix in (".pt", ".json") and source.name.startswith("weights-"):
        folder = WeightsFolder(source.parent)
        key = source.stem
        provenance: dict[str, Any] = {"weights_file": str(source.with_suffix(".pt").resolve())}
        try:
            state, record = folder.load(key)
        except WeightsError as error:
            raise MissingWeightsError(str(error)) from None
    else:
        evaluation, run = find_evaluation(source, run_id, arch)
        key = evaluation_weights_key(evaluation, run)
        folder_path = weights_dir_for(source)
        assert folder_path is not None
        try:
            state, record = WeightsFolder(folder_path).load(key)
        except WeightsError as error:
            reason = "were not kept" if "no kept weights" in str(error) else f"fail ({error})"
            raise MissingWeightsError(
                f"the weights of {evaluation.arch.key()} (run {run.run_id!r}) {reason}; "
                f"retrain and keep them with: {retrain_command(evaluation, run, source)}"
            ) from None
        provenance = {
            "store": str(source.resolve()),
            "run_id": run.run_id,
            "trial_id": evaluation.trial_id,
            "store_valid_acc": evaluation.result.valid_acc,
            "store_test_acc": evaluation.result.test_acc,
        }
    description = _description(record, provenance)
    arch_value = Architecture.from_json(record["arch"])
    network = build_network(description["space"], arch_value, description)
    _load_weights(network, state, str(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # a folder like any other, not mkdtemp's private 0700
    try:
        torch.save(
            {k: v.detach().cpu() for k, v in network.state_dict().items()}, staging / "weights.pt"
        )
        if program:
            _export_program(network, description["preprocessing"], staging / "model.pt2")
        if onnx:
            _export_onnx(network, description["preprocessing"], staging / "model.onnx")
        description["files"] = {
            path.name: _sha256(path) for path in sorted(staging.iterdir()) if path.is_file()
        }
        (staging / "model.json").write_text(json.dumps(description, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# -- loading a model folder -----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model folder in memory: the network with its classes and preprocessing.

    Args:
        path: the model folder.
        network: the trained network (eval mode, on the CPU).
        classes: the name of each output index.
        preprocessing: how images become the network's input.
        description: ``model.json`` as read.
    """

    path: Path
    network: nn.Module
    classes: tuple[str, ...]
    preprocessing: Preprocessing
    description: Mapping[str, Any]

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Class probabilities (``B x K``, rows summing to 1) of ``B x C x H x W`` uint8
        images already at the model's resolution and channels."""
        expected = (self.preprocessing.channels, self.preprocessing.resolution)
        if images.dim() != 4 or (images.shape[1], images.shape[2]) != expected:
            raise ValueError(
                f"images must be B x {expected[0]} x {expected[1]} x {expected[1]}, got "
                f"{tuple(images.shape)}"
            )
        self.network.eval()
        out = [
            torch.softmax(self.network(self.preprocessing.normalise(chunk)).float(), dim=1)
            for chunk in images.split(batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, len(self.classes))


def _read_description(folder: Path) -> dict[str, Any]:
    if not folder.is_dir():
        raise ModelFolderError(f"{folder}: no such model folder")
    path = folder / "model.json"
    if not path.is_file():
        raise ModelFolderError(f"{folder}: not a kdnas model folder (no model.json)")
    try:
        description = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelFolderError(f"{path}: unreadable ({error})") from None
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise ModelFolderError(f"{path}: not a kdnas model description")
    if description.get("format_version") != FORMAT_VERSION:
        raise ModelFolderError(
            f"{path}: model format version {description.get('format_version')!r}; this kdnas "
            f"reads version {FORMAT_VERSION}"
        )
    for name in ("space", "arch", "num_classes", "preprocessing", "width_multiplier"):
        if name not in description:
            raise ModelFolderError(f"{path}: no {name!r} entry")
    classes = description.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ModelFolderError(
            f"{path}: no class list ('classes'); the model cannot name its outputs"
        )
    if len(classes) != description["num_classes"]:
        raise ModelFolderError(
            f"{path}: {len(classes)} class names for {description['num_classes']} outputs"
        )
    return description


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Rebuild the network of a model folder (``export_model``) from the folder alone.

    Raises:
        ModelFolderError: no model folder, a missing class list, an architecture of another
            space or unknown to this kdnas, weights failing their checksum, or weights that
            do not fit the architecture (the message says which, in one line).
    """
    folder = Path(path)
    description = _read_description(folder)
    try:
        arch = Architecture.from_json(json.dumps(description["arch"]))
    except (ValueError, TypeError, KeyError) as error:
        raise ModelFolderError(f"{folder}: unreadable architecture ({error})") from None
    network = build_network(str(description["space"]), arch, description)
    files = description.get("files") or {}
    try:
        state = read_state_dict(folder / "weights.pt", files.get("weights.pt"))
    except WeightsError as error:
        raise ModelFolderError(str(error)) from None
    _load_weights(network, state, str(folder / "weights.pt"))
    values = description["preprocessing"]
    try:
        preprocessing = Preprocessing(
            int(values["resolution"]),
            int(values["channels"]),
            tuple(float(v) for v in values["mean"]),
            tuple(float(v) for v in values["std"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFolderError(f"{folder}: unreadable preprocessing ({error})") from None
    return LoadedModel(
        folder, network, tuple(str(c) for c in description["classes"]), preprocessing, description
    )
