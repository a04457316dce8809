"""Saved teachers, keyed by (dataset, subset, protocol, seed) and verified by checksum.

A teacher is the space's original architecture; by default it is trained once on the whole
training pool with the high-fidelity protocol and shared by every student of every part, as
in the paper (see ``TEACHER_DATA``). ``TeacherStore`` saves its weights as
``<key>.pt`` with a ``<key>.json`` record holding the file's SHA-256 and how it was trained.
A teacher whose file is missing, fails its checksum or does not load into the network is
reported and retrained, never used; weights are read with ``torch.load(weights_only=True)``.

``TeacherStore.lock(key)`` is an exclusive advisory file lock (``<key>.lock``, POSIX
``flock``) so that processes sharing the folder train a missing teacher once: the first trains
and saves, the others wait and then load. On a cluster the folder must be on a filesystem
whose ``flock`` works across machines (NFSv4, most Lustre and GPFS setups); where it does not,
the lock is per machine and the worst case is the old one, a teacher trained twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
import os
import pickle
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "TEACHER_DATA",
    "ChanceLevel",
    "TeacherAtChanceError",
    "TeacherStore",
    "TeacherTrainingError",
    "chance_teacher_message",
    "teacher_key",
]

logger = logging.getLogger(__name__)


class TeacherTrainingError(RuntimeError):
    """The teacher's own training failed or diverged (a learning rate too high, say): no
    student can distill from it. Not a defect of kdnas: the CLI reports it in one line."""


def teacher_key(**parts: Any) -> str:
    """``teacher-`` and 20 hex digits of SHA-256 over the sorted ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return "teacher-" + hashlib.sha256(text.encode()).hexdigest()[:20]


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` all at once: readers see the old file or the new one.

    On failure (a full disk) the temporary file is removed and the error raised. The file
    is created with mode 0666 less the umask, like any new file (mkstemp's 0600 would keep
    other users of a shared teacher folder out).
    """
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


class TeacherStore:
    """A folder of trained teachers.

    Args:
        directory: where teachers are saved (created with the first lock or save, so a
            search that trains no teacher leaves no empty folder).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold an exclusive lock on ``key`` across processes (blocks until it is free)."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; processes may train the same teacher twice
            yield
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / f"{key}.lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def paths(self, key: str) -> tuple[Path, Path]:
        """The weights file and the JSON record of ``key``."""
        return self.directory / f"{key}.pt", self.directory / f"{key}.json"

    def load(self, key: str, network: nn.Module) -> dict[str, Any] | None:
        """Load the saved weights of ``key`` into ``network``; return its record.

        Returns None (after logging why) when nothing is saved under ``key`` or the saved
        teacher is corrupt: checksum mismatch, unreadable file, or weights that do not fit.
        """
        weights_path, record_path = self.paths(key)
        if not weights_path.is_file() or not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text())
            if not isinstance(record, dict):
                raise ValueError(f"the record is a JSON {type(record).__name__}, not an object")
            data = weights_path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != record.get("sha256"):
                raise ValueError(
                    f"checksum mismatch ({digest[:12]} != {str(record.get('sha256'))[:12]})"
                )
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            network.load_state_dict(state, strict=True)
        except (
            OSError,
            ValueError,
            RuntimeError,
            KeyError,
            EOFError,
            json.JSONDecodeError,
            # weights_only refuses a file that would run code: never use it, retrain
            pickle.UnpicklingError,
        ) as error:
            # torch's message on a refused payload goes on to advise weights_only=False;
            # only its first line is logged.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            logger.warning(
                "saved teacher %s is corrupt and will be retrained: %s", weights_path, reason
            )
            return None
        return record

    def save(self, key: str, network: nn.Module, record: dict[str, Any]) -> Path:
        """Save ``network``'s weights under ``key`` with ``record`` (plus their checksum)."""
        weights_path, record_path = self.paths(key)
        buffer = io.BytesIO()
        state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
        torch.save(state, buffer)
        data = buffer.getvalue()
        self.directory.mkdir(parents=True, exist_ok=True)
        atomic_write(weights_path, data)
        full = {**record, "key": key, "sha256": hashlib.sha256(data).hexdigest()}
        atomic_write(record_path, json.dumps(full, indent=2, sort_keys=True).encode())
        logger.info("saved teacher %s", weights_path)
        return weights_path


# -- how good a teacher (or any result) must be to be worth anything ---------------------------

#: Where the teacher learns: "full" (default, as in the paper): the whole training pool (the
#: training split minus validation) with the high-fidelity protocol, shared by every part;
#: "subset": the student's own 1/part subset with the protocol's epochs (the
#: behaviour of earlier kdnas versions, kept to resume their stores).
TEACHER_DATA: tuple[str, ...] = ("full", "subset")

#: Standard errors above the chance level an accuracy must reach to count as learning.
_CHANCE_MARGIN_SE = 2.0


class TeacherAtChanceError(ValueError):
    """The teacher is no better than chance: distilling from it would teach noise."""


@dataclass(frozen=True)
class ChanceLevel:
    """What guessing achieves on a split, and the accuracy that is significantly better.

    Args:
        accuracy: the share of the split's most frequent class (a constant guess), a fraction.
        n: images in the split.
    """

    accuracy: float
    n: int

    @classmethod
    def of_labels(cls, labels: torch.Tensor) -> ChanceLevel:
        """The chance level of a split with these labels."""
        n = int(labels.numel())
        if n == 0:
            return cls(accuracy=0.0, n=0)
        return cls(accuracy=float(torch.bincount(labels).max()) / n, n=n)

    @property
    def threshold(self) -> float:
        """Chance plus two binomial standard errors (one-sided p of about 0.02): an accuracy
        at or below it is no better than guessing on a split of this size."""
        if self.n == 0:
            return self.accuracy
        spread = math.sqrt(self.accuracy * (1.0 - self.accuracy) / self.n)
        return self.accuracy + _CHANCE_MARGIN_SE * spread

    def beaten_by(self, accuracy: float) -> bool:
        """Whether ``accuracy`` (a fraction) is significantly better than chance."""
        return math.isfinite(accuracy) and accuracy > self.threshold


def chance_teacher_message(summary: Mapping[str, Any], consequence: str) -> str:
    """Why a teacher at chance is a problem, its likely cause and the fixes.

    Args:
        summary: ``TrainingObjective.teacher_summary`` of the teacher.
        consequence: what happens next (refused, or going on as told).
    """
    if summary["chance_threshold"] >= 1.0:
        # No accuracy can pass the test: the split, not the teacher, is the problem.
        images = summary.get("valid_images", "too few")
        return (
            f"the validation split ({images} images) is too small to tell the teacher from "
            f"chance: even a perfect score would not count as better than guessing "
            f"({summary['chance_acc']:.3f} of it is one class): {consequence}. Fix: a "
            f"larger validation split (--valid-fraction) or more images"
        )
    if summary.get("data") == "file":
        return (
            f"the teacher ({summary['file']}, given with --teacher) reached "
            f"{summary['valid_acc']:.3f} validation accuracy, no better than chance "
            f"({summary['chance_acc']:.3f}; threshold {summary['chance_threshold']:.3f}): "
            f"{consequence}. Check that it was trained on these classes in this order (image "
            f"folders: class folders sorted by name) and on images prepared as kdnas prepares "
            f"them (this resolution, pixels / 255 normalised by the training split's mean and "
            f"std per channel)"
        )
    return (
        f"the teacher (the original network, {summary['epochs']} epoch(s) on "
        f"{summary['images']} images) reached {summary['valid_acc']:.3f} validation accuracy, "
        f"no better than chance ({summary['chance_acc']:.3f}; threshold "
        f"{summary['chance_threshold']:.3f}): {consequence}. Likely cause: too few "
        f"optimisation steps ({summary['steps']} SGD steps). Fix: more epochs (--epochs, "
        f"--hf-epochs), a smaller --batch-size, or a wider network (--width-multiplier)"
    )
