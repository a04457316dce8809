"""Kept weights: the trained networks of full-data (high-fidelity) evaluations, on disk.

A search's high-fidelity evaluations are the networks a user wants to take away, so their
weights are kept beside the store (``<store>.weights/``): ``<key>.pt`` (a PyTorch state
dict) and ``<key>.json`` (the file's SHA-256 and everything needed to rebuild and use the
network without the store or the training data: architecture, classes, preprocessing,
accuracies). Both files are written atomically, the record after the weights, so a process
killed mid-write leaves either no record or the previous complete pair; a pair whose checksum
fails is reported missing and never loaded.

The key (``weights_key``) is a function of what decides the trained weights (architecture,
epochs, seed, training protocol, training data), so a store row finds its weights from its own
columns and its run's configuration, and retraining the evaluation elsewhere (``kdnas train
--keep-weights-dir``) writes under the same key.

A keep policy bounds the disk used: by default only the ``DEFAULT_KEEP`` evaluations with the
best validation accuracy in the folder keep their files (``KeepPolicy``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdnas.train._teacher import atomic_write

#: What ``torch.load(weights_only=True)`` raises on a torn, foreign or hostile file (the
#: unpickler's error varies with where the bytes break).
UNREADABLE_TORCH_FILE: tuple[type[BaseException], ...] = (
    RuntimeError,
    ValueError,
    EOFError,
    IndexError,
    KeyError,
    pickle.UnpicklingError,
)

__all__ = [
    "DEFAULT_KEEP",
    "KeepPolicy",
    "WeightsError",
    "WeightsFolder",
    "weights_dir_for",
    "weights_key",
]

logger = logging.getLogger(__name__)

#: Evaluations whose weights a folder keeps by default: the best five by validation accuracy
#: (measured on the 100 candidates of a default digits search: a MobileNetV2 at width 1.0 is
#: 15 MB in the median, 28 MB at most, so 75 MB, at most 140 MB, per folder).
DEFAULT_KEEP = 5


class WeightsError(ValueError):
    """Kept weights are missing, corrupt or foreign; the message says which and where."""


def weights_dir_for(store_path: str | Path) -> Path | None:
    """Where a store's evaluations keep their weights: ``<store>.weights`` beside it (None
    for an in-memory store)."""
    if str(store_path) == ":memory:":
        return None
    path = Path(store_path).resolve()
    return path.with_name(path.name + ".weights")


def weights_key(
    arch_key: str, epochs: int, seed: int, protocol: Mapping[str, Any], subset_hash: str
) -> str:
    """``weights-`` and 20 hex digits of SHA-256 over what decides a full-data training.

    Args:
        arch_key: ``Architecture.key()``.
        epochs: the epochs the network trained for (the fidelity's, else the protocol's).
        seed: the training seed.
        protocol: ``TrainConfig.protocol_dict()``; its ``epochs`` is left out (the learning
            rate anneals over the run's own epochs), so a run of 4 epochs under a protocol of
            100 and one under a protocol of 4 share a key.
        subset_hash: ``Subset.content_hash`` of the training data (the whole training pool).
    """
    values = {
        "arch": arch_key,
        "epochs": int(epochs),
        "seed": int(seed),
        "protocol": {k: v for k, v in protocol.items() if k != "epochs"},
        "data": subset_hash,
    }
    text = json.dumps(values, sort_keys=True, default=str)
    return "weights-" + hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class KeepPolicy:
    """Which evaluations keep their weights.

    Args:
        best: keep the ``best`` evaluations by validation accuracy (ties: the earlier key in
            sorted order); None keeps every one, 0 keeps none.
    """

    best: int | None = DEFAULT_KEEP

    def __post_init__(self) -> None:
        if self.best is not None and (
            isinstance(self.best, bool) or not isinstance(self.best, int) or self.best < 0
        ):
            raise ValueError(f"KeepPolicy.best must be an integer >= 0 or None, got {self.best!r}")

    @classmethod
    def parse(cls, text: str) -> KeepPolicy:
        """``"all"``, ``"none"`` or a count K (the best K by validation accuracy).

        Raises:
            ValueError: anything else.
        """
        value = str(text).strip().lower()
        if value == "all":
            return cls(None)
        if value == "none":
            return cls(0)
        if value.isdigit():
            return cls(int(value))
        raise ValueError(f"--keep-weights expects all, none or a count K >= 0, got {text!r}")

    @property
    def keeps_any(self) -> bool:
        return self.best is None or self.best > 0

    def describe(self) -> str:
        if self.best is None:
            return "all"
        return "none" if self.best == 0 else f"the best {self.best} by validation accuracy"


def _rank(record: Mapping[str, Any]) -> tuple[float, str]:
    accuracy = record.get("valid_acc")
    value = float(accuracy) if isinstance(accuracy, (int, float)) else -math.inf
    return (-value if math.isfinite(value) else math.inf, str(record.get("key", "")))


class WeightsFolder:
    """A folder of kept weights under a keep policy.

    Args:
        directory: the folder (created at the first save).
        policy: which evaluations keep their files (default: the best ``DEFAULT_KEEP``).
    """

    def __init__(self, directory: str | Path, policy: KeepPolicy | None = None) -> None:
        self.directory = Path(directory)
        self.policy = policy if policy is not None else KeepPolicy()

    def paths(self, key: str) -> tuple[Path, Path]:
        """The weights file and the JSON record of ``key``."""
        return self.directory / f"{key}.pt", self.directory / f"{key}.json"

    def records(self) -> list[dict[str, Any]]:
        """Every readable record of the folder (their weights not checked), best first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("weights-*.json")):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
                if isinstance(record, dict) and record.get("key") == path.stem:
                    found.append(record)
        return sorted(found, key=_rank)

    def would_keep(self, valid_acc: float) -> bool:
        """Whether a new evaluation of validation accuracy ``valid_acc`` makes the cut."""
        if self.policy.best is None:
            return True
        if self.policy.best == 0:
            return False
        kept = self.records()
        if len(kept) < self.policy.best:
            return True
        worst = kept[self.policy.best - 1].get("valid_acc")
        return not isinstance(worst, (int, float)) or valid_acc > worst

    def save(self, key: str, network: nn.Module, record: Mapping[str, Any]) -> Path | None:
        """Save ``network``'s weights under ``key`` with ``record`` (plus their checksum and
        size), then drop the files the policy no longer keeps.

        Returns:
            The weights file, or None when the policy does not keep this evaluation.
        """
        valid = float(record.get("valid_acc", math.nan))
        if not self.would_keep(valid):
            return None
        self.directory.mkdir(parents=True, exist_ok=True)
        weights_path, record_path = self.paths(key)
        buffer = io.BytesIO()
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, buffer)
        data = buffer.getvalue()
        write_bytes(weights_path, data)
        full = {
            **record,
            "key": key,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
        write_bytes(record_path, json.dumps(full, indent=2, sort_keys=True).encode())
        logger.info("kept weights %s (%d bytes)", weights_path, len(data))
        self.prune()
        return weights_path if weights_path.exists() else None

    def prune(self) -> list[str]:
        """Delete the files of evaluations the policy no longer keeps; their keys."""
        if self.policy.best is None:
            return []
        dropped = [str(r["key"]) for r in self.records()[self.policy.best :]]
        for key in dropped:
            for path in self.paths(key):  # the weights first: a record alone is "missing"
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return dropped

    def status(self, key: str) -> str:
        """ "kept" (intact), "missing" (never kept, dropped, or a torn write) or "corrupt"."""
        weights_path, record_path = self.paths(key)
        if not weights_path.is_file() or not record_path.is_file():
            return "missing"
        try:
            self.load(key)
        except WeightsError:
            return "corrupt"
        return "kept"

    def load(self, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The state dict and record of ``key``, checked against the record's checksum.

        Raises:
            WeightsError: missing files, a checksum that fails, or a file that is not a
                state dict of tensors (read with ``torch.load(weights_only=True)``, so a file
                that would run code is refused, not run).
        """
        weights_path, record_path = self.paths(key)
        if not weights_path.is_file() or not record_path.is_file():
            raise WeightsError(f"no kept weights {key} in {self.directory}")
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError) as error:
            raise WeightsError(f"{record_path}: unreadable record ({error})") from None
        state = read_state_dict(weights_path, record.get("sha256"))
        return state, record


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a reader sees the old file or the new one)."""
    atomic_write(path, data)


def read_state_dict(path: Path, sha256: object) -> dict[str, torch.Tensor]:
    """The state dict saved in ``path``, whose SHA-256 must equal ``sha256``.

    Raises:
        WeightsError: unreadable, a checksum mismatch, or not a state dict of tensors.
    """
    try:
        data = path.read_bytes()
    except OSError as error:
        raise WeightsError(f"{path}: unreadable ({error.strerror or error})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise WeightsError(
            f"{path}: checksum mismatch (file {digest[:12]}, recorded {str(sha256)[:12]}): "
            "the file is corrupt or was replaced; it is not loaded"
        )
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except UNREADABLE_TORCH_FILE as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        raise WeightsError(f"{path}: not a PyTorch state dict ({reason})") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(f"{path}: not a state dict of named tensors")
    return state
