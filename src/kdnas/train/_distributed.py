"""One architecture's full (high-fidelity) training on one process or many, with checkpoints.

A high-fidelity run of the paper's ImageNet protocol is 150 epochs of a full dataset: too long
for one device and too long to lose to a crash. ``train_full`` trains one network with
``DistributedDataParallel`` when launched by ``torchrun`` (``kdnas train --nproc N``; NCCL on
CUDA, gloo on the CPU), saves a checkpoint after every epoch, and resumes from the last one
when started again with the same checkpoint folder: a killed run loses at most the epoch in
progress. Low-fidelity runs of a search stay one process each (``TrainingObjective``).

Semantics with ``world_size`` ranks: every global batch of ``epoch_plan(seed, epoch)`` (the
same plan as the one-process trainer) is split into ``world_size`` contiguous shards and rank r
trains on shard r; DDP averages the ranks' gradients, so a step equals one process averaging
the shards' mean losses. BatchNorm normalises over each rank's shard (SyncBatchNorm on CUDA
with ``sync_batchnorm=True`` normalises over the whole global batch instead; torch has no CPU
SyncBatchNorm). A global batch too small to give every rank two samples is skipped (BatchNorm
cannot train on one sample).

Data comes from a ``BatchSource``: ``ResidentBatches`` (a ``PreparedData`` subset held on the
device) or ``kdnas.data.StreamingLoader`` (an image folder decoded by DataLoader workers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from kdnas.data import (
    DeviceImages,
    EpochPlan,
    ImageSet,
    PreparedData,
    Subset,
    epoch_plan,
    shard,
    stream_seed,
)
from kdnas.train._config import TrainConfig, TrainResult
from kdnas.train._trainer import autocast, describe_device, pick_device

__all__ = [
    "BatchSource",
    "DistributedContext",
    "FullRun",
    "FullTrainingOutcome",
    "ResidentBatches",
    "train_full",
]

logger = logging.getLogger(__name__)

_CHECKPOINT = "checkpoint.pt"
_PROGRESS = "progress.json"


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a (possibly one-process) training job.

    Args:
        rank: global rank, 0-based.
        world_size: number of processes.
        device: this process's device.
    """

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str | None = None) -> DistributedContext:
        """The context ``torchrun`` describes in RANK, WORLD_SIZE and LOCAL_RANK (one process
        when they are absent); joins the process group (NCCL on CUDA, else gloo) whenever
        torchrun started this process, one process included: ``torchrun --nproc_per_node=1``
        then trains through DDP and NCCL, which a one-GPU machine can check that way.

        Each rank takes ``cuda:LOCAL_RANK`` when CUDA is present and ``device`` is not given.
        """
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device is None and torch.cuda.is_available():
            if local_rank >= torch.cuda.device_count():
                raise ValueError(
                    f"process {local_rank} of this machine needs GPU {local_rank}, but it has "
                    f"{torch.cuda.device_count()}: start at most that many processes"
                )
            chosen = torch.device("cuda", local_rank)
        else:
            chosen = pick_device(device)
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        launched = "WORLD_SIZE" in os.environ and "MASTER_ADDR" in os.environ
        if (world_size > 1 or launched) and not dist.is_initialized():
            dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        return cls(rank, world_size, chosen)


class BatchSource(Protocol):
    """Training and evaluation batches of one rank (see ``ResidentBatches``)."""

    #: Crop padding and flip of the epoch plans (what the batches' augmentation draws from).
    plan_padding: int
    plan_flip: bool
    #: C x H x W of one delivered image.
    image_shape: tuple[int, int, int]

    def __len__(self) -> int:
        """Samples in the training subset (all ranks together)."""
        raise NotImplementedError

    def train_batches(
        self, plan: EpochPlan, epoch: int, seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised images, labels) of this rank's shard of every batch of ``plan``."""
        raise NotImplementedError

    def eval_batches(
        self, split: str, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) of this rank's share of the "valid" or "test" split."""
        raise NotImplementedError


class ResidentBatches:
    """A ``PreparedData`` subset held on the device (as the one-process trainer holds it),
    cut into this rank's shards.

    Args:
        data: the prepared dataset.
        subset: the training subset.
        config: the protocol (crop padding, flips).
        context: this process's rank, world size and device.
    """

    def __init__(
        self, data: PreparedData, subset: Subset, config: TrainConfig, context: DistributedContext
    ) -> None:
        self.plan_padding = config.crop_padding
        self.plan_flip = config.horizontal_flip
        self.image_shape = (data.in_channels, data.resolution, data.resolution)
        self.context = context
        images = ImageSet(data.train.images[subset.indices], data.train.labels[subset.indices])
        self.train = DeviceImages(images, data.mean, data.std, config.crop_padding, context.device)
        self._eval = {
            split: DeviceImages(images, data.mean, data.std, 0, context.device)
            for split, images in (("valid", data.valid), ("test", data.test))
        }

    def __len__(self) -> int:
        return len(self.train)

    def train_batches(
        self, plan: EpochPlan, epoch: int, seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start, stop in plan.bounds:
            positions = torch.from_numpy(
                shard(plan.order[start:stop].numpy(), self.context.rank, self.context.world_size)
            )
            images = self.train.batch(
                positions, plan.shift_y[positions], plan.shift_x[positions], plan.flip[positions]
            )
            yield images, self.train.labels[positions.to(self.context.device)]

    def eval_batches(
        self, split: str, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        images = self._eval[split]
        rank, world = self.context.rank, self.context.world_size
        for start in range(rank * batch_size, len(images), batch_size * world):
            index = torch.arange(start, min(start + batch_size, len(images)))
            yield images.batch(index), images.labels[index.to(images.device)]


@dataclass(frozen=True)
class FullRun:
    """What identifies a full training run; a checkpoint resumes only the run it belongs to.

    Args:
        arch_key: ``Architecture.key()`` of the network.
        dataset: the dataset's name.
        subset_hash: content hash of the training subset.
        protocol: ``TrainConfig.protocol_key()``.
        seed: the training seed.
        epochs: epochs of the whole run (the schedule anneals over them).
    """

    arch_key: str
    dataset: str
    subset_hash: str
    protocol: str
    seed: int
    epochs: int

    def fingerprint(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FullTrainingOutcome:
    """The result of ``train_full``.

    Attributes:
        result: accuracies, times and the rest, as for any training run.
        step_losses: the cross-entropy of every step of every epoch trained so far (resumed
            epochs included), averaged over the ranks.
        resumed_from_epoch: epochs restored from a checkpoint (0 for a fresh start).
        world_size: processes that trained the epochs of this call.
        backend: the process group's backend ("nccl", "gloo") the epochs were trained
            through (with DistributedDataParallel), None without a process group.
    """

    result: TrainResult
    step_losses: tuple[float, ...]
    resumed_from_epoch: int
    world_size: int
    backend: str | None = None


def _usable(plan: EpochPlan, world_size: int) -> EpochPlan:
    bounds = tuple(b for b in plan.bounds if b[1] - b[0] >= 2 * world_size)
    return dataclasses.replace(plan, bounds=bounds)


def _all_reduce(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    if context.world_size > 1:
        dist.all_reduce(tensor)
    return tensor


def _barrier(context: DistributedContext) -> None:
    if context.world_size > 1:
        dist.barrier()


def _save_checkpoint(folder: Path, state: dict, epoch: int, epochs: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{_CHECKPOINT}.tmp"
    torch.save(state, temporary)
    os.replace(temporary, folder / _CHECKPOINT)
    progress = folder / f".{_PROGRESS}.tmp"
    progress.write_text(json.dumps({"epochs_done": epoch, "epochs": epochs}) + "\n")
    os.replace(progress, folder / _PROGRESS)


def _load_checkpoint(folder: Path, run: FullRun, device: torch.device) -> dict | None:
    path = folder / _CHECKPOINT
    if not path.is_file():
        return None
    state = torch.load(path, map_location=device, weights_only=True)
    if state.get("fingerprint") != run.fingerprint():
        raise ValueError(
            f"{path} belongs to another run (architecture, data, protocol, seed or epochs "
            "differ); pass another checkpoint folder or remove it to start afresh"
        )
    return state


def train_full(
    network: nn.Module,
    batches: BatchSource,
    config: TrainConfig,
    run: FullRun,
    *,
    checkpoint_dir: str | Path | None = None,
    context: DistributedContext | None = None,
    sync_batchnorm: bool = True,
    stop_after_epochs: int | None = None,
) -> FullTrainingOutcome:
    """Train ``network`` with cross-entropy over ``run.epochs`` (the high-fidelity protocol).

    Args:
        network: the initialised network (rank 0's weights are broadcast to every rank).
        batches: this rank's batches.
        config: the protocol (optimiser, schedule, AMP, memory layout).
        run: the run's identity; ``run.epochs`` is the schedule's length.
        checkpoint_dir: where the checkpoint of every epoch goes; a checkpoint already there
            of the same run is resumed. None keeps nothing.
        context: rank, world size and device (default: one process, CUDA when present).
        sync_batchnorm: on CUDA with several ranks, normalise over the global batch.
        stop_after_epochs: end after this many epochs of this call (the checkpoint stays, to
            resume later); None trains to the end.

    Returns:
        The outcome: accuracies of the network after the epochs done (``result.epochs``;
        fewer than ``run.epochs`` after ``stop_after_epochs``), NaN when training diverged.

    Raises:
        ValueError: a checkpoint in ``checkpoint_dir`` belongs to another run, or
            ``config.precise_bn`` (not implemented here: the pass would have to gather
            statistics across ranks and streamed batches).
    """
    if config.precise_bn:
        raise ValueError(
            "precise_bn is not implemented for full training (several processes, streaming "
            "or checkpoints); train without --precise-bn, or in one process"
        )
    context = context or DistributedContext(device=pick_device())
    device = context.device
    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    start = time.perf_counter()
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    network = network.to(device, memory_format=memory)
    optimizer = torch.optim.SGD(
        network.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    schedule = dataclasses.replace(config, epochs=run.epochs)
    state = _load_checkpoint(folder, run, device) if folder is not None else None
    done = 0
    step_losses: list[float] = []
    train_time = 0.0
    if state is not None:
        network.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        done = int(state["epoch"])
        step_losses = [float(v) for v in state["step_losses"]]
        train_time = float(state["train_time_s"])
        if int(state["world_size"]) != context.world_size and context.is_main:
            logger.warning(
                "resuming a run checkpointed with %d processes on %d: BatchNorm now sees "
                "shards of another size",
                state["world_size"],
                context.world_size,
            )
        logger.info("resumed %s after epoch %d", folder, done)
    model: nn.Module = network
    # Any process group (torchrun with one process too) trains through DDP, so a one-GPU
    # machine exercises NCCL and SyncBatchNorm the way several GPUs would.
    grouped = dist.is_available() and dist.is_initialized()
    if context.world_size > 1 or grouped:
        if device.type == "cuda" and sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    status = "ok"
    # The mean loss of the last epoch done (restored with the checkpoint).
    final_loss = float(state["final_loss"]) if state is not None else math.nan
    last = run.epochs if stop_after_epochs is None else min(run.epochs, done + stop_after_epochs)
    resumed_from = done
    cuda = [device.index or 0] if device.type == "cuda" else []
    for epoch in range(done, last):
        epoch_start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = schedule.learning_rate(epoch)
        plan = _usable(
            epoch_plan(
                len(batches), config.batch_size, run.seed, epoch, batches.plan_padding,
                batches.plan_flip,
            ),
            context.world_size,
        )  # fmt: skip
        if not plan.bounds:
            raise ValueError(
                f"a training subset of {len(batches)} samples in batches of "
                f"{config.batch_size} cannot give each of {context.world_size} processes two "
                "samples per batch"
            )
        model.train()
        with torch.random.fork_rng(devices=cuda):
            # Dropout draws from a stream per (epoch, rank): a resumed epoch draws the same.
            torch.manual_seed(stream_seed(run.seed, epoch, f"dropout-{context.rank}"))
            losses = _train_epoch(model, optimizer, batches, plan, epoch, run.seed, config)
        epoch_losses = _all_reduce(torch.stack(losses).float(), context) / context.world_size
        if not bool(torch.isfinite(epoch_losses).all()):
            status = "diverged"
            final_loss = float(epoch_losses.mean())
            logger.info("full training diverged in epoch %d", epoch)
            break
        step_losses.extend(epoch_losses.tolist())
        final_loss = float(epoch_losses.mean())
        done = epoch + 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_time += time.perf_counter() - epoch_start
        if folder is not None:
            if context.is_main:
                _save_checkpoint(
                    folder,
                    {
                        "model": network.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": done,
                        "step_losses": step_losses,
                        "train_time_s": train_time,
                        "final_loss": final_loss,
                        "world_size": context.world_size,
                        "fingerprint": run.fingerprint(),
                    },
                    done,
                    run.epochs,
                )
            _barrier(context)
    finished = status == "ok"
    if finished and context.world_size > 1:
        # Each rank's last forward updated its own BatchNorm statistics: evaluate rank 0's.
        for buffer in network.buffers():
            dist.broadcast(buffer, 0)
    # The plain network, not DDP: ranks score different numbers of batches.
    valid = _accuracy(network, batches, "valid", config, context) if finished else math.nan
    test = _accuracy(network, batches, "test", config, context) if finished else math.nan
    from kdnas.models import count_multiply_adds, count_parameters

    result = TrainResult(
        status=status,
        valid_acc=valid,
        test_acc=test,
        wall_time_s=time.perf_counter() - start,
        train_time_s=train_time,
        teacher_time_s=0.0,
        params=count_parameters(network),
        multiply_adds=count_multiply_adds(network, batches.image_shape),
        epochs=done,
        final_loss=final_loss,
        seed=run.seed,
        subset_hash=run.subset_hash,
        device=f"{describe_device(device)} x{context.world_size}",
        method="nokd",
        terms={"ce": final_loss, "total": final_loss},
    )
    backend = str(dist.get_backend()) if grouped else None
    return FullTrainingOutcome(
        result, tuple(step_losses), resumed_from, context.world_size, backend
    )


def _train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: BatchSource,
    plan: EpochPlan,
    epoch: int,
    seed: int,
    config: TrainConfig,
) -> list[torch.Tensor]:
    """One epoch of SGD steps on this rank's shards; the detached loss of every step."""
    device = next(model.parameters()).device
    losses = []
    for images, labels in batches.train_batches(plan, epoch, seed):
        with autocast(device, config):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return losses


@torch.no_grad()
def _accuracy(
    model: nn.Module,
    batches: BatchSource,
    split: str,
    config: TrainConfig,
    context: DistributedContext,
) -> float:
    """Top-1 accuracy over the whole split, each rank scoring its share."""
    model.eval()
    counts = torch.zeros(2, dtype=torch.float64, device=context.device)
    for images, labels in batches.eval_batches(split, config.eval_batch_size):
        with autocast(context.device, config):
            logits = model(images)
        counts[0] += (logits.argmax(dim=1) == labels).sum()
        counts[1] += len(labels)
    _all_reduce(counts, context)
    return float(counts[0] / counts[1]) if counts[1] > 0 else math.nan
