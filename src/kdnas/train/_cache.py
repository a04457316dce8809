"""The shared teacher cache: each (epoch, batch)'s teacher summary computed once per subset.

Because batch order and augmentation depend on (seed, epoch) only, every student trained with
one seed on one subset sees the same augmented batches, and the teacher (frozen, eval mode)
produces the same outputs for them. ``TeacherCache`` keeps those summaries, one entry per
(key, epoch), in memory up to a byte budget and optionally on disk (shared by processes:
files are written atomically and loaded with ``torch.load(weights_only=True)``).
``CachedTeacher`` is the ``TeacherSource`` a student trains with: it serves an epoch from the
cache, or computes it live through the teacher and stores it at the epoch's end, so the first
student of a subset fills the cache and the others reuse it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kdnas.data import DeviceImages, epoch_plan
from kdnas.train._config import TrainConfig
from kdnas.train._teacher import atomic_write
from kdnas.train._trainer import LiveTeacher

__all__ = ["CachedTeacher", "TeacherCache", "cache_key"]

logger = logging.getLogger(__name__)

EpochSummaries = list[dict[str, torch.Tensor]]


def cache_key(**parts: Any) -> str:
    """24 hex digits of SHA-256 over the sorted ``parts`` (everything the batches depend on)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _nbytes(entry: EpochSummaries) -> int:
    return sum(t.numel() * t.element_size() for batch in entry for t in batch.values())


class TeacherCache:
    """Teacher summaries per (key, epoch), in memory (LRU within a byte budget) and on disk.

    Args:
        max_bytes: memory budget in bytes (default 1 GiB); the least recently used epochs
            are dropped from memory beyond it (they stay on disk, if there is a directory).
        directory: folder for a persistent copy shared across processes and runs; None keeps
            the cache in memory only.
    """

    def __init__(self, max_bytes: int = 1 << 30, directory: str | Path | None = None) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.directory = Path(directory) if directory is not None else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._memory: OrderedDict[tuple[str, int], EpochSummaries] = OrderedDict()
        self.bytes_in_memory = 0
        self.hits = 0
        self.misses = 0
        self._warned = False

    def _path(self, key: str, epoch: int) -> Path:
        assert self.directory is not None
        return self.directory / key / f"epoch_{epoch:04d}.pt"

    def get(
        self, key: str, epoch: int, device: torch.device | None = None
    ) -> EpochSummaries | None:
        """The summaries of every batch of ``epoch``, or None when absent (or unreadable)."""
        entry = self._memory.get((key, epoch))
        if entry is not None:
            self._memory.move_to_end((key, epoch))
            self.hits += 1
            return entry
        if self.directory is not None and self._path(key, epoch).is_file():
            path = self._path(key, epoch)
            try:
                loaded = torch.load(path, map_location=device or "cpu", weights_only=True)
                if not isinstance(loaded, list):
                    raise TypeError("not a list of batch summaries")
            except (OSError, RuntimeError, TypeError, EOFError, ValueError) as error:
                logger.warning("ignoring unreadable teacher-cache file %s (%s)", path, error)
                return None
            self._remember(key, epoch, loaded)
            self.hits += 1
            return loaded
        self.misses += 1
        return None

    def put(self, key: str, epoch: int, entry: EpochSummaries) -> None:
        """Store the summaries of every batch of ``epoch`` (tensors are detached first)."""
        entry = [{k: v.detach() for k, v in batch.items()} for batch in entry]
        self._remember(key, epoch, entry)
        if self.directory is not None:
            path = self._path(key, epoch)
            cpu = [{k: v.cpu() for k, v in batch.items()} for batch in entry]
            buffer = io.BytesIO()
            torch.save(cpu, buffer)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, buffer.getvalue())
            except OSError as error:
                # The disk copy only saves recomputing the teacher: a full or read-only disk
                # must not fail the evaluation that is filling the cache.
                logger.warning("teacher-cache file %s not written (%s)", path, error)

    def _remember(self, key: str, epoch: int, entry: EpochSummaries) -> None:
        size = _nbytes(entry)
        if size > self.max_bytes:
            if not self._warned:
                logger.warning(
                    "a teacher-cache epoch (%d bytes) exceeds the memory budget (%d bytes)%s",
                    size,
                    self.max_bytes,
                    "; it is kept on disk only" if self.directory else "; it is not cached",
                )
                self._warned = True
            return
        old = self._memory.pop((key, epoch), None)
        if old is not None:
            self.bytes_in_memory -= _nbytes(old)
        self._memory[(key, epoch)] = entry
        self.bytes_in_memory += size
        while self.bytes_in_memory > self.max_bytes:
            _, dropped = self._memory.popitem(last=False)
            self.bytes_in_memory -= _nbytes(dropped)

    def clear_memory(self) -> None:
        """Forget what is held in memory (the disk copy stays)."""
        self._memory.clear()
        self.bytes_in_memory = 0


class CachedTeacher:
    """A ``TeacherSource`` that serves summaries from a ``TeacherCache`` and fills it.

    Args:
        cache: the shared cache.
        key: identifies the teacher, the loss's summary, the subset, the seed and every
            setting that shapes the batches (see ``TrainingObjective``).
        live: computes summaries on a cache miss.
    """

    def __init__(self, cache: TeacherCache, key: str, live: LiveTeacher) -> None:
        self.cache = cache
        self.key = key
        self.live = live
        self._epoch: int | None = None
        self._served: EpochSummaries | None = None
        self._pending: EpochSummaries = []

    def summary(self, epoch: int, batch: int, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        if epoch != self._epoch:
            self._epoch = epoch
            self._served = self.cache.get(self.key, epoch, self.live.device)
            self._pending = []
        if self._served is not None and batch < len(self._served):
            return self._served[batch]
        if self._served is not None:
            raise RuntimeError(
                f"teacher cache {self.key} epoch {epoch} has {len(self._served)} batches, "
                f"asked for batch {batch}: the cache key misses a setting that shapes batches"
            )
        computed = self.live.summary(epoch, batch, images)
        self._pending.append(computed)
        return computed

    def prefill(self, train: DeviceImages, config: TrainConfig, seed: int, epochs: int) -> float:
        """Compute and store every absent epoch's summaries up front; return the seconds spent.

        Optional: students fill the cache as they go. Prefilling moves the one-off cost out
        of the first student's training time (and measures it).
        """
        start = time.perf_counter()
        for epoch in range(epochs):
            if self.cache.get(self.key, epoch) is not None:
                continue
            plan = epoch_plan(
                len(train),
                config.batch_size,
                seed,
                epoch,
                config.crop_padding,
                config.horizontal_flip,
            )
            summaries = [
                self.live.summary(epoch, batch, images)
                for batch, (images, _, _) in enumerate(train.plan_batches(plan))
            ]
            self.cache.put(self.key, epoch, summaries)
        if self.live.device.type == "cuda":
            torch.cuda.synchronize(self.live.device)
        self._epoch = None
        return time.perf_counter() - start

    def end_epoch(self, epoch: int) -> None:
        if self._served is None and self._pending and epoch == self._epoch:
            self.cache.put(self.key, epoch, self._pending)
        self._pending = []
