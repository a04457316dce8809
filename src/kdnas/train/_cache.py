"""The shared teacher cache: each (epoch, batch)'s teacher summary computed once per subset.

Because batch order and augmentation depend on (seed, epoch) only, every student trained with
one seed on one subset sees the same augmented batches, and the teacher (frozen, eval mode)
produces the same outputs for them. ``TeacherCache`` keeps those summaries, one entry per
(key, epoch), in memory up to a byte budget and optionally on disk (shared by processes:
files are written atomically and loaded with ``torch.load(weights_only=True)``). Students
read epochs in order, so when the budget cannot hold every epoch the memory keeps the
earliest ones: a least-recently-used policy would evict exactly the epoch the next student
needs first, and every later student would miss every epoch.
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
    return sum(_batch_nbytes(batch) for batch in entry)


def _batch_nbytes(batch: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in batch.values())


def _is_on(entry: EpochSummaries, device: torch.device) -> bool:
    """Whether every tensor of ``entry`` lives on ``device`` (an index-less device matches any
    index of its type, as ``torch.device("cuda")`` means the current GPU)."""
    return all(
        t.device.type == device.type and (device.index is None or t.device.index == device.index)
        for batch in entry
        for t in batch.values()
    )


def _moved(entry: EpochSummaries, device: torch.device) -> EpochSummaries:
    return [{k: v.to(device) for k, v in batch.items()} for batch in entry]


class TeacherCache:
    """Teacher summaries per (key, epoch), in memory (earliest epochs first within a byte
    budget) and on disk.

    Args:
        max_bytes: memory budget in bytes (default 1 GiB). Beyond it the latest epochs are
            dropped from memory, or not taken in (they stay on disk, if there is a directory):
            students read epochs in order, so the earliest ones are the most useful to keep.
        directory: folder for a persistent copy shared across processes and runs; None keeps
            the cache in memory only.
        max_disk_bytes: budget of the directory in bytes (default 16 GiB), earliest epochs
            first alike: a later epoch that does not fit is not written. Feature-map summaries
            are large (VID or NST on ShuffleNetV2 at 1/3 of CIFAR-100: about 1.5 GB an epoch).

    A pickled copy (a Ray task's) keeps the budget and the directory but starts with empty
    memory: the entries live on the device of the process that made them.
    """

    def __init__(
        self,
        max_bytes: int = 1 << 30,
        directory: str | Path | None = None,
        max_disk_bytes: int = 16 << 30,
    ) -> None:
        if max_bytes < 0 or max_disk_bytes < 0:
            raise ValueError(f"budgets must be >= 0, got {max_bytes} and {max_disk_bytes}")
        self.max_bytes = max_bytes
        self.max_disk_bytes = max_disk_bytes
        # Created with the first file written (``put``): nothing cached, no folder.
        self.directory = Path(directory) if directory is not None else None
        self._memory: dict[tuple[str, int], EpochSummaries] = {}
        self._sizes: dict[tuple[str, int], int] = {}
        self.bytes_in_memory = 0
        self.hits = 0
        self.misses = 0
        self._warned = False
        self._warned_disk = False

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_memory={}, _sizes={}, bytes_in_memory=0, hits=0, misses=0)
        return state

    def _path(self, key: str, epoch: int) -> Path:
        assert self.directory is not None
        return self.directory / key / f"epoch_{epoch:04d}.pt"

    def get(
        self, key: str, epoch: int, device: torch.device | None = None
    ) -> EpochSummaries | None:
        """The summaries of every batch of ``epoch`` on ``device`` (where they were made when
        None), or None when absent (or unreadable)."""
        entry = self._memory.get((key, epoch))
        if entry is not None:
            self.hits += 1
            if device is not None and not _is_on(entry, device):
                # Keep the moved copy: the next student asks for the same device.
                entry = _moved(entry, device)
                self._memory[(key, epoch)] = entry
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
        if self.directory is not None and _nbytes(entry) > self.disk_room(key, epoch):
            if not self._warned_disk:
                logger.warning(
                    "teacher-cache epoch %d (%d bytes) does not fit the disk budget (%d bytes "
                    "under %s, earliest epochs kept first): not written (warned once)",
                    epoch,
                    _nbytes(entry),
                    self.max_disk_bytes,
                    self.directory,
                )
                self._warned_disk = True
        elif self.directory is not None:
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

    def room(self, key: str, epoch: int) -> int:
        """Bytes an entry of (key, ``epoch``) may take in memory: the budget less what the
        entries of earlier epochs (and of the same epoch under other keys) hold, since the
        entries of later epochs would make way for it."""
        kept = sum(
            size for (k, e), size in self._sizes.items() if e <= epoch and (k, e) != (key, epoch)
        )
        return self.max_bytes - kept

    def disk_room(self, key: str, epoch: int) -> int:
        """Bytes (key, ``epoch``) may take in the directory: ``max_disk_bytes`` less the files
        of earlier epochs (and of the same epoch under other keys), whoever wrote them;
        0 without a directory."""
        if self.directory is None:
            return 0
        taken = 0
        for path in self.directory.glob("*/epoch_*.pt"):
            try:
                file_epoch, size = int(path.stem.removeprefix("epoch_")), path.stat().st_size
            except (ValueError, OSError):  # a foreign name, or a file just replaced
                continue
            if file_epoch <= epoch and (path.parent.name, file_epoch) != (key, epoch):
                taken += size
        return self.max_disk_bytes - taken

    def _remember(self, key: str, epoch: int, entry: EpochSummaries) -> None:
        size = _nbytes(entry)
        if size > self.room(key, epoch):
            if not self._warned:
                logger.warning(
                    "teacher-cache epoch %d (%d bytes) does not fit the memory budget (%d bytes, "
                    "earliest epochs kept first)%s (warned once)",
                    epoch,
                    size,
                    self.max_bytes,
                    ": it is kept on disk only" if self.directory else ": it is not cached",
                )
                self._warned = True
            return
        self._forget((key, epoch))
        self._memory[(key, epoch)] = entry
        self._sizes[(key, epoch)] = size
        self.bytes_in_memory += size
        while self.bytes_in_memory > self.max_bytes:
            # Only entries of later epochs can be over the budget (``room`` checked the rest).
            self._forget(max(self._sizes, key=lambda k: (k[1], k[0])))

    def _forget(self, item: tuple[str, int]) -> None:
        if item in self._memory:
            del self._memory[item]
            self.bytes_in_memory -= self._sizes.pop(item)

    def clear_memory(self) -> None:
        """Forget what is held in memory (the disk copy stays)."""
        self._memory.clear()
        self._sizes.clear()
        self.bytes_in_memory = 0


class CachedTeacher:
    """A ``TeacherSource`` that serves summaries from a ``TeacherCache`` and fills it.

    Args:
        cache: the shared cache.
        key: identifies the teacher, the loss's summary, the subset, the seed and every
            setting that shapes the batches (see ``TrainingObjective``).
        live: computes summaries on a cache miss.

    ``epochs_served`` and ``epochs_computed`` count this student's epochs read from the cache
    and run through the teacher.
    """

    def __init__(self, cache: TeacherCache, key: str, live: LiveTeacher) -> None:
        self.cache = cache
        self.key = key
        self.live = live
        self.epochs_served = 0
        self.epochs_computed = 0
        self._epoch: int | None = None
        self._served: EpochSummaries | None = None
        self._pending = _EpochCollector(cache, key)

    def summary(self, epoch: int, batch: int, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        if epoch != self._epoch:
            self._epoch = epoch
            self._served = self.cache.get(self.key, epoch, self.live.device)
            self._pending = _EpochCollector(self.cache, self.key)
            if self._served is not None:
                self.epochs_served += 1
            else:
                self.epochs_computed += 1
        if self._served is not None and batch < len(self._served):
            return self._served[batch]
        if self._served is not None:
            raise RuntimeError(
                f"teacher cache {self.key} epoch {epoch} has {len(self._served)} batches, "
                f"asked for batch {batch}: the cache key misses a setting that shapes batches"
            )
        computed = self.live.summary(epoch, batch, images)
        self._pending.add(epoch, computed)
        return computed

    def prefill(self, train: DeviceImages, config: TrainConfig, seed: int, epochs: int) -> float:
        """Compute and store every absent epoch's summaries up front; return the seconds spent.

        Optional: students fill the cache as they go. Prefilling moves the one-off cost out
        of the first student's training time (and measures it).
        """
        start = time.perf_counter()
        for epoch in range(epochs):
            # On the live device: the students that follow read it there.
            if self.cache.get(self.key, epoch, self.live.device) is not None:
                continue
            plan = epoch_plan(
                len(train),
                config.batch_size,
                seed,
                epoch,
                config.crop_padding,
                config.horizontal_flip,
            )
            collector = _EpochCollector(self.cache, self.key)
            for batch, (images, _, _) in enumerate(train.plan_batches(plan)):
                collector.add(epoch, self.live.summary(epoch, batch, images))
            collector.store(epoch)
        if self.live.device.type == "cuda":
            torch.cuda.synchronize(self.live.device)
        self._epoch = None
        return time.perf_counter() - start

    def end_epoch(self, epoch: int) -> None:
        if self._served is None and epoch == self._epoch:
            self._pending.store(epoch)
        self._pending = _EpochCollector(self.cache, self.key)


class _EpochCollector:
    """The summaries of the epoch being computed, held only as far as they can be stored.

    Once the epoch outgrows what the cache's memory would take in (``TeacherCache.room``),
    holding it on the training device is waste: when the directory cannot take it either
    (there is none, or its budget is spent) the epoch would be rejected at its end, so it is
    dropped at once and no more is held; otherwise it will be kept on disk only, so it is
    held in host memory until written.
    """

    def __init__(self, cache: TeacherCache, key: str) -> None:
        self.cache = cache
        self.key = key
        self.batches: EpochSummaries = []
        self.bytes = 0
        self.dropped = False
        # Set once the epoch outgrows the memory: then it is held on the host, for the disk.
        self.disk_room: int | None = None

    def add(self, epoch: int, summary: Mapping[str, torch.Tensor]) -> None:
        if self.dropped:
            return
        batch = dict(summary)
        self.bytes += _batch_nbytes(batch)
        if self.disk_room is None and self.bytes > self.cache.room(self.key, epoch):
            self.disk_room = self.cache.disk_room(self.key, epoch)  # one directory scan
            self.batches = _moved(self.batches, torch.device("cpu"))
        if self.disk_room is not None:
            if self.bytes > self.disk_room:
                self.batches, self.dropped = [], True
                return
            batch = _moved([batch], torch.device("cpu"))[0]
        self.batches.append(batch)

    def store(self, epoch: int) -> None:
        if self.batches and not self.dropped:
            self.cache.put(self.key, epoch, self.batches)
        self.batches = []
