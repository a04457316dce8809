"""The training loop: tensors on the device, whole-batch augmentation, AMP and channels-last.

One call of ``train_network`` trains a network with a ``TrainingLoss`` under a ``TrainConfig``
and returns what happened (``TrainOutcome``). The batches of every epoch come from
``kdnas.data.epoch_plan(seed, epoch)``, so two networks trained with the same seed on the same
subset see identical batches; the teacher's part of the loss comes from a ``TeacherSource``
(live: the teacher runs on each batch; cached: looked up, see ``kdnas.train.TeacherCache``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn

from kdnas.data import DeviceImages, epoch_plan
from kdnas.distill.base import TrainingLoss
from kdnas.models.taps import network_taps
from kdnas.train._config import TrainConfig
from kdnas.train._epoch_checkpoint import EpochCheckpoint

__all__ = [
    "LiveTeacher",
    "TeacherSource",
    "TrainOutcome",
    "accuracy",
    "autocast",
    "check_device_available",
    "describe_device",
    "kernel_mode",
    "pick_device",
    "precision",
    "recompute_batchnorm_statistics",
    "seeded_generators",
    "train_network",
]

logger = logging.getLogger(__name__)


def pick_device(name: str | None = None) -> torch.device:
    """``name`` as a device, or CUDA when available, else the CPU.

    Raises:
        ValueError: ``name`` is not a device torch knows (e.g. "tpu").
    """
    if name:
        try:
            return torch.device(name)
        except RuntimeError:
            raise ValueError(
                f"unknown device {name!r}; expected cpu, cuda, cuda:N or mps"
            ) from None
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device_available(name: str | None) -> None:
    """Check, before anything trains, that the device ``name`` exists on this machine.

    Not done by ``pick_device``: a Ray driver builds objectives for GPU workers on a machine
    that may have none.

    Raises:
        ValueError: an unknown device, CUDA asked for where there is none (or an index
            beyond the GPUs present), MPS where it is unavailable, or a device type kdnas
            does not train on.
    """
    device = pick_device(name)
    if device.type == "cpu":
        return
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r}: this machine has no CUDA (GPU) available")
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {name!r}: this machine has {count} CUDA device(s)")
        return
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r}: MPS is not available on this machine")
        return
    raise ValueError(f"device {name!r}: kdnas trains on cpu, cuda or mps only")


def describe_device(device: torch.device) -> str:
    """A readable device label recorded with results ("cpu (16 threads)", "cuda:0 NVIDIA ...")."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} {torch.cuda.get_device_name(index)}"
    return f"{device.type} ({torch.get_num_threads()} threads)"


def precision(device: torch.device, config: TrainConfig) -> str:
    """The precision training runs in on ``device``: "bfloat16" or "float32".

    bfloat16 autocast when ``config.amp`` on a CUDA GPU of compute capability 8.0 or more;
    float32 elsewhere: on the CPU, and on older GPUs, where bfloat16 is emulated and slower
    than float32. Float16 with loss scaling is deliberately not used there: a forward
    overflow would read as a diverged run, and skipped steps would make what is learned
    depend on the GPU.
    """
    if device.type != "cuda" or not config.amp:
        return "float32"
    # Tensor cores compute bfloat16 from compute capability 8.0 (Ampere) on; before that
    # torch emulates it. (The capability is read from torch's cached device properties.)
    native = torch.cuda.get_device_capability(device) >= (8, 0)
    return "bfloat16" if native else "float32"


def autocast(device: torch.device, config: TrainConfig) -> contextlib.AbstractContextManager:
    """bfloat16 autocast where ``precision`` says so; a no-op elsewhere.

    bfloat16 has float32's range, so no loss scaling is needed (and none can hide a NaN).
    """
    if precision(device, config) == "bfloat16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def kernel_mode(deterministic: bool) -> None:
    """Choose deterministic GPU kernels, or cuDNN autotuning, for this process.

    Deterministic: cuDNN's deterministic algorithms without autotuning, deterministic cuBLAS
    workspaces, and ``torch.use_deterministic_algorithms`` (warning, not failing, on an
    operation that has no deterministic implementation). Otherwise ``cudnn.benchmark`` times
    the convolution algorithms of each new input shape and keeps the fastest, which may
    differ from run to run. The CPU computes the same bits either way. ``train_network``
    calls it with ``config.deterministic`` (the flags are torch's, process-wide).
    """
    if deterministic:
        # Read by cuBLAS when a handle's workspace is made; needed for deterministic matmuls.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


class TeacherSource(Protocol):
    """Where the teacher summaries of each training batch come from."""

    def summary(self, epoch: int, batch: int, images: torch.Tensor) -> Mapping[str, torch.Tensor]:
        """The summary of batch ``batch`` of ``epoch``, whose augmented images are ``images``."""
        raise NotImplementedError

    def end_epoch(self, epoch: int) -> None:
        """Called after the last batch of ``epoch`` has been trained."""
        raise NotImplementedError


class LiveTeacher:
    """Runs the teacher (eval mode, no gradient) on every batch.

    Args:
        teacher: the trained teacher network, already on the device.
        loss: the loss whose ``teacher_summary`` turns the teacher's taps into its summary.
        config: the training config (for autocast and memory layout).
    """

    def __init__(self, teacher: nn.Module, loss: TrainingLoss, config: TrainConfig) -> None:
        self.teacher = teacher.eval()
        self.loss = loss
        self.config = config
        self.device = next(teacher.parameters()).device

    @torch.no_grad()
    def summary(self, epoch: int, batch: int, images: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast(self.device, self.config):
            taps = network_taps(self.teacher, images)
            return {k: v.detach() for k, v in self.loss.teacher_summary(taps).items()}

    def end_epoch(self, epoch: int) -> None:
        return None


@dataclass
class TrainOutcome:
    """What ``train_network`` did (mutable while training; wrapped in ``TrainResult`` later).

    Attributes:
        status: "ok" or "diverged".
        epochs: epochs completed (a diverged epoch does not count).
        final_loss: mean total loss of the last completed epoch (or of the diverged one).
        terms: mean of each named term over that epoch.
        train_time_s: seconds spent in the epochs (those of an interrupted call included).
        resumed_from_epoch: epochs restored from a checkpoint (0: a fresh start).
    """

    status: str = "ok"
    epochs: int = 0
    final_loss: float = math.nan
    terms: dict[str, float] = field(default_factory=dict)
    train_time_s: float = 0.0
    resumed_from_epoch: int = 0


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_network(
    model: nn.Module,
    loss: TrainingLoss,
    train: DeviceImages,
    config: TrainConfig,
    seed: int,
    *,
    epochs: int | None = None,
    teacher: TeacherSource | None = None,
    checkpoint: EpochCheckpoint | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> TrainOutcome:
    """Train ``model`` (in place) with ``loss`` on all images of ``train``.

    Args:
        model: the network, already on ``train.device`` (``forward_taps`` is read where it
            has one, else only its logits: ``kdnas.models.network_taps``).
        loss: the training loss, already on the device; its parameters are trained too.
        train: the training subset on the device (positions 0..n-1 are the subset).
        config: the protocol. The learning-rate schedule runs over ``config.epochs``
            unless ``epochs`` is given, in which case it is annealed over ``epochs``.
        seed: seeds the batch order and augmentation of every epoch (and nothing else:
            initialise the model before calling).
        epochs: number of epochs to train (default ``config.epochs``).
        teacher: the source of teacher summaries; required when ``loss.needs_teacher``.
        checkpoint: save the training's state after every epoch there, and resume from it
            when it holds an earlier call's (``EpochCheckpoint``); the result equals an
            uninterrupted run's.
        on_epoch: called as ``on_epoch(done, epochs)`` before the first epoch (``done``: the
            epochs a checkpoint restored, else 0) and after each finished epoch, in this
            process (a progress bar's hook; it must not raise).

    Returns:
        A ``TrainOutcome``; a NaN or infinite loss stops training with status "diverged".
    """
    device = train.device
    epochs = config.epochs if epochs is None else epochs
    schedule = config if epochs == config.epochs else _with_epochs(config, epochs)
    if loss.needs_teacher and teacher is None:
        raise ValueError(f"loss {loss.name!r} needs a teacher source, got None")
    parameters = [p for p in (*model.parameters(), *loss.parameters()) if p.requires_grad]
    optimizer = torch.optim.SGD(
        parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    outcome = TrainOutcome()
    # epoch_plan drops a final batch of one sample (BatchNorm cannot train on it).
    full_batches, remainder = divmod(len(train), config.batch_size)
    steps_per_epoch = full_batches + (remainder >= 2)
    warmup_steps = config.distillation_warmup * epochs * steps_per_epoch
    step = 0
    # Check each step on the CPU (free); on CUDA once per epoch, to avoid a sync per step.
    check_each_step = device.type != "cuda"
    kernel_mode(config.deterministic)
    first_epoch = 0
    earlier_s = 0.0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        loss.load_state_dict(saved["loss"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in saved:
            torch.cuda.set_rng_state(saved["rng_cuda"], device)
        step = int(saved["step"])
        first_epoch = outcome.epochs = outcome.resumed_from_epoch = int(saved["epochs"])
        outcome.final_loss = float(saved["final_loss"])
        outcome.terms = {k: float(v) for k, v in saved["terms"].items()}
        earlier_s = float(saved["train_time_s"])
        logger.info("resuming from the checkpoint of epoch %d (%s)", first_epoch, checkpoint)
    _synchronize(device)
    start = time.perf_counter()
    if on_epoch is not None:
        on_epoch(first_epoch, epochs)
    for epoch in range(first_epoch, epochs):
        for group in optimizer.param_groups:
            group["lr"] = schedule.learning_rate(epoch)
        plan = epoch_plan(
            len(train), config.batch_size, seed, epoch, config.crop_padding, config.horizontal_flip
        )
        model.train()
        loss.train()
        names: list[str] | None = None
        sums: torch.Tensor | None = None
        finite = True
        for batch, (images, labels, positions) in enumerate(train.plan_batches(plan)):
            summary = teacher.summary(epoch, batch, images) if teacher is not None else None
            step += 1
            # The distillation weight ramps linearly over the first ``warmup_steps`` steps
            # (step / warmup_steps, reaching 1 at the last of them); exactly 1 after.
            scale = min(1.0, step / warmup_steps) if step < warmup_steps else 1.0
            with autocast(device, config):
                taps = network_taps(model, images)
                terms = loss(taps, summary, labels, positions, distillation_scale=scale)
            total = terms["total"]
            if check_each_step and not bool(torch.isfinite(total)):
                finite = False
            else:
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                optimizer.step()
            values = torch.stack([t.detach().float() for t in terms.values()])
            if names is None:
                names = list(terms)
            sums = values if sums is None else sums + values
            if not finite:
                break
        means = (sums / (batch + 1)).tolist() if sums is not None else []
        epoch_terms = dict(zip(names or [], means, strict=True))
        total_mean = epoch_terms.get("total", math.nan)
        outcome.terms = epoch_terms
        outcome.final_loss = total_mean
        if not finite or not math.isfinite(total_mean):
            outcome.status = "diverged"
            logger.info("training diverged in epoch %d (loss %s)", epoch, total_mean)
            break
        if teacher is not None:
            teacher.end_epoch(epoch)
        outcome.epochs = epoch + 1
        logger.debug("epoch %d: %s", epoch, epoch_terms)
        if checkpoint is not None and outcome.epochs < epochs:
            _synchronize(device)
            state: dict[str, object] = {
                "model": model.state_dict(),
                "loss": loss.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng_cpu": torch.get_rng_state(),
                "step": step,
                "epochs": outcome.epochs,
                "final_loss": outcome.final_loss,
                "terms": dict(outcome.terms),
                "train_time_s": earlier_s + time.perf_counter() - start,
            }
            if device.type == "cuda":
                state["rng_cuda"] = torch.cuda.get_rng_state(device)
            checkpoint.save(state)
        if on_epoch is not None:  # after the checkpoint: an epoch shown done is kept
            on_epoch(outcome.epochs, epochs)
    if config.precise_bn and outcome.status == "ok":
        recompute_batchnorm_statistics(model, train, config, seed, epoch=epochs)
    _synchronize(device)
    outcome.train_time_s = earlier_s + time.perf_counter() - start
    return outcome


def recompute_batchnorm_statistics(
    model: nn.Module, train: DeviceImages, config: TrainConfig, seed: int, epoch: int
) -> None:
    """Replace every BatchNorm layer's running statistics by their average over one pass of
    ``train`` with the final weights ("precise BN").

    The pass is a training epoch's batches (``epoch_plan(seed, epoch)``, augmented like
    training) in training mode without gradients; each layer's mean and variance are averaged
    over the batches with equal weights (``momentum=None``), then the layers' momenta are
    restored. Nothing but the running means and variances changes.

    Why: evaluation uses the running statistics, an exponential average (momentum 0.1, about
    the last ten batches) of statistics taken while the weights moved. When the weights move
    fast to the end, as in a run of a few dozen steps whose distillation term inflates the
    feature maps, that average lags the final network's statistics and evaluation scores a
    network that does not exist. After a long run annealed to a learning rate near zero, the
    weights hardly move over the last batches and the pass changes little.
    """
    layers = [
        module
        for module in model.modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.track_running_stats
    ]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    counts = [layer.num_batches_tracked.clone() for layer in layers]
    was_training = model.training
    plan = epoch_plan(
        len(train), config.batch_size, seed, epoch, config.crop_padding, config.horizontal_flip
    )
    try:
        for layer in layers:
            layer.reset_running_stats()
            layer.momentum = None  # a cumulative average over the pass
        model.train()
        with torch.no_grad(), autocast(train.device, config):
            for images, _labels, _positions in train.plan_batches(plan):
                model(images)
    finally:
        for layer, momentum, count in zip(layers, momenta, counts, strict=True):
            layer.momentum = momentum
            layer.num_batches_tracked.copy_(count)  # training's count, not the pass's
        model.train(was_training)


def _with_epochs(config: TrainConfig, epochs: int) -> TrainConfig:
    from dataclasses import replace

    return replace(config, epochs=epochs)


@torch.no_grad()
def accuracy(
    model: nn.Module, images: DeviceImages, config: TrainConfig, batch_size: int | None = None
) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on ``images``, a fraction in [0, 1]."""
    if len(images) == 0:
        return math.nan
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    for batch, labels in _eval_batches(images, batch_size or config.eval_batch_size):
        with autocast(images.device, config):
            logits = model(batch)
        correct += (logits.argmax(dim=1) == labels).sum()
    return int(correct) / len(images)


def _eval_batches(
    images: DeviceImages, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    yield from images.eval_batches(batch_size)


class seeded_generators:
    """Run a block with torch's global generators seeded, restoring them afterwards."""

    def __init__(self, device: torch.device, seed: int) -> None:
        devices: list[int] = []
        if device.type == "cuda":
            devices = [device.index if device.index is not None else torch.cuda.current_device()]
        self._fork = torch.random.fork_rng(devices=devices)
        self._seed = seed

    def __enter__(self) -> None:
        self._fork.__enter__()
        torch.manual_seed(self._seed)

    def __exit__(self, *exc: object) -> None:
        self._fork.__exit__(*exc)
