"""A single-process training's state after every epoch, to resume where it was interrupted.

``train_network`` saves, after each finished epoch, everything the next epochs depend on: the
network's and the loss's parameters and buffers, the optimizer's momentum, the step counter,
the last epoch's losses, and torch's global random state (dropout draws from it); the batch
order and augmentation of an epoch are a function of (seed, epoch) alone. Started again with
the same checkpoint, it restores that state and goes on from the next epoch, so the result
equals an uninterrupted run's bit for bit on the same device. The file is written atomically
(``atomic_write``): a process killed mid-write leaves the previous epoch's checkpoint.

The teacher's training checkpoints into its teacher folder (``<key>.ckpt``) and full-data
evaluations of a search into the store's kept-weights folder; a finished training removes its
checkpoint.
"""

from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from kdnas.train._teacher import atomic_write
from kdnas.train._weights import UNREADABLE_TORCH_FILE

__all__ = ["EpochCheckpoint"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochCheckpoint:
    """The checkpoint file of one training.

    Args:
        path: the file (its folder is created at the first save).
        fingerprint: what identifies the training (a teacher's or a weights key); a file of
            another fingerprint is ignored, never resumed.
    """

    path: Path
    fingerprint: str

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None (nothing saved, another training's, or unreadable: the
        training then starts from the beginning)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(
                io.BytesIO(self.path.read_bytes()), map_location="cpu", weights_only=True
            )
        except (OSError, *UNREADABLE_TORCH_FILE) as error:  # a torn or foreign file
            logger.warning(
                "checkpoint %s is unreadable (%s): training from the start", self.path, error
            )
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != self.fingerprint:
            logger.warning("checkpoint %s belongs to another training: ignored", self.path)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (plus the fingerprint) atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save({**state, "fingerprint": self.fingerprint}, buffer)
        atomic_write(self.path, buffer.getvalue())

    def clear(self) -> None:
        """Remove the file (the training it saved has finished)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
