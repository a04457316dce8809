"""The GPU check: every CUDA path of kdnas once, and the measurements that decide the next GPU
work, in under six minutes on one GPU (``benchmarks/gpu_check.sh`` starts it).

Checks (PASS or FAIL on a stated criterion, SKIP with the reason when they cannot run):

* ``amp``: a MobileNetV2 trained with bfloat16 autocast and channels-last, and in float32,
  each beats chance on CIFAR-shaped data whose classes carry a colour template (criterion:
  validation accuracy above chance by three binomial standard deviations of a guessing
  classifier on that many validation images);
* ``losses``: every training loss on the same bfloat16 taps, under autocast as the trainer
  computes it and on float32 copies with autocast off (criterion: relative difference of each
  total at most 1e-4: a loss that computes in float32 gives the same total, one left in
  bfloat16 is off by 1e-3 or more); on a GPU also the whole forward and loss under autocast
  against float32 (at most 5e-3; a correct loss was within 9e-4 on an H100);
* ``cache``: a second KD student is served every epoch from the teacher cache, and each
  served batch is what the live teacher computes for the very images the student trains on
  (criterion: no miss, and the largest served-vs-live difference at most 1 % of the largest
  logit: a batch of other images differs by tens of per cent);
* ``ddp``: ``kdnas train`` under torchrun (2 processes; with one GPU, 1 process, since NCCL
  takes a GPU per rank) trains through a process group (criterion: the backend is NCCL on a
  GPU, gloo on the CPU, and the world size is the number launched);
* ``ddp-resume``: the same command again resumes the finished run (criterion: resumed after
  the last epoch, with the first run's step losses and accuracy: nothing was retrained);
* ``stream``: ``kdnas train --stream`` trains on a generated JPEG folder on the device;
* ``ray``: a Ray task asking for a GPU sees one (SKIP without Ray);
* ``defects``: ``benchmarks/gpu_check_defects.py`` (its own PASS/FAIL/SKIP lines).

Measurements (MEASURED, each against a baseline in the same run; SKIP where the CPU cannot
say anything): ``trainer-vs-loop`` (the trainer against a conventional DataLoader loop with
the same precision, layout and cuDNN settings, several sampled architectures, the first epoch
of a new architecture apart; target 3x), ``packed`` (1, 2, 4, 8 student processes on one GPU:
images/s in total, memory, utilisation), ``launch-bound`` (batch 128 against 512; eager
against a CUDA graph of forward, backward and update), ``bf16-vs-tf32``, ``channels-last``,
``cache-memory-vs-disk``, ``worker-start-up`` and ``stream-throughput``.

Every section runs within the time budget (``--budget`` seconds from ``--started-at``; a
section that would not fit says SKIP). Writes ``gpu_check.json`` (every figure) and
``gpu_check.log`` into ``--out`` after each section, and prints a summary table; the exit code
is the number of FAILs. ``--device cpu --quick`` runs it all at toy sizes (the test suite's
smoke run); ``--break NAME`` feeds a section a deliberately broken input, to show that its
criterion fails (tests/benchmarks/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from kdnas.core import METHODS, Fidelity
from kdnas.data import Dataset, DeviceImages, ImageSet, epoch_plan, prepare
from kdnas.distill import build_loss
from kdnas.distill.logit import CrossEntropyLoss
from kdnas.spaces import get_space
from kdnas.train import (
    CachedTeacher,
    LiveTeacher,
    TeacherCache,
    TrainConfig,
    TrainingObjective,
    autocast,
    describe_device,
    kernel_mode,
    train_network,
)

_ROOT = Path(__file__).resolve().parents[1]

#: The deliberately broken inputs ``--break`` can feed the checks (each makes one criterion
#: fail; the tests show that it does).
BREAKS = {
    "constant-labels": "amp: every training label is class 0, so no class can be learned",
    "loss-bf16": "losses: the autocast column's loss computed on bfloat16 tensors",
    "cache-wrong-batch": "cache: the cache serves each epoch's batches shifted by one",
    "ddp-no-group": "ddp: kdnas train started without torchrun (no process group)",
    "resume-retrains": "ddp-resume: the checkpoint is lost before the rerun, which retrains",
    "stream-corrupt": "stream: one JPEG of the folder truncated",
}

#: Largest relative difference of a loss total computed on bfloat16 taps under autocast
#: against the same taps in float32 with autocast off: a loss that computes in float32 gives
#: the same total; one left in bfloat16 is off by 1e-3 or more (PKT was off by 2.5e-2).
LOSS_PRECISION_TOLERANCE = 1e-4
#: Largest relative difference of forward and loss under autocast against float32 (GPU
#: only): the largest of a correct loss was 9e-4 on an H100, PKT's bfloat16 defect 2.5e-2.
FORWARD_TOLERANCE = 5e-3
#: Largest served-vs-live teacher difference, relative to the largest live value, that
#: passes: the same teacher on the same images differs by kernel choice and bfloat16
#: rounding only (below 4e-3); another batch's images differ by tens of per cent.
CACHE_TOLERANCE = 1e-2


class Skip(Exception):
    """The section cannot run here; the message says why."""


class OutOfTime(Exception):
    """The section ran past the time budget."""


@dataclass(frozen=True)
class Verdict:
    """A section's outcome: "PASS", "FAIL", "SKIP" or "MEASURED" (a measurement, no
    criterion), a one-line detail, and every figure (JSON-ready)."""

    status: str
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sizes:
    """Problem sizes of one run (GPU sizes, or toy sizes for the CPU smoke run).

    ``images`` training images of ``side`` pixels, ``batch`` per step, ``width`` multiplier,
    ``epochs`` of the check's training runs at learning rate ``lr`` (0.1, the protocol's,
    leaves the toy networks at chance after 2 epochs; 0.02 learns: validation accuracy
    0.33-0.45 over 4 data seeds at one CPU thread, 0.54 at two; the floor is 0.20).
    """

    images: int
    side: int
    batch: int
    width: float
    epochs: int
    lr: float = 0.02

    @classmethod
    def for_run(cls, quick: bool) -> Sizes:
        if quick:
            return cls(images=800, side=8, batch=16, width=0.25, epochs=2)
        return cls(images=10240, side=32, batch=128, width=1.0, epochs=2)


@dataclass
class Run:
    """What every section needs: where it runs, how big, what is broken, how long is left.

    ``deadline`` is a ``time.time()`` instant: no section starts unless its estimate ends
    before it, and none runs past it.
    """

    device: torch.device
    quick: bool
    out: Path
    deadline: float
    breaks: frozenset[str] = frozenset()
    python: str = sys.executable
    log_lines: list[str] = field(default_factory=list)

    @property
    def sizes(self) -> Sizes:
        return Sizes.for_run(self.quick)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def left(self) -> float:
        return self.deadline - time.time()

    def say(self, text: str) -> None:
        print(text, flush=True)
        self.log_lines.append(text)


# ---------------------------------------------------------------------------------------------
# Shared pieces


def synthetic_cifar(train: int, test: int, classes: int, side: int, seed: int = 0) -> Dataset:
    """CIFAR-shaped uint8 images whose class sets a colour template under noise."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(40, 215, (classes, 3, 1, 1))

    def images(count: int) -> ImageSet:
        labels = np.arange(count) % classes
        pixels = templates[labels] + rng.normal(0, 40, (count, 3, side, side))
        return ImageSet(
            torch.from_numpy(pixels.clip(0, 255).astype(np.uint8)),
            torch.from_numpy(labels.astype(np.int64)),
        )

    return Dataset("synthetic-cifar", images(train), images(test), classes)


def _data(run: Run) -> Any:
    sizes = run.sizes
    return prepare(synthetic_cifar(sizes.images, sizes.images // 4, 10, sizes.side))


def _config(run: Run, data: Any, **changes: Any) -> TrainConfig:
    sizes = run.sizes
    values: dict[str, Any] = {
        "epochs": sizes.epochs,
        "width_multiplier": sizes.width,
        "batch_size": sizes.batch,
        "lr": sizes.lr,
    }
    return TrainConfig.for_data(data, **(values | changes))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _subprocess_env(run: Run) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    if not run.cuda:
        env["OMP_NUM_THREADS"] = "1"
    return env


def _run_command(
    run: Run, command: list[str], limit: float, log_stdout: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with at most ``limit`` seconds (and never past the deadline); the last
    lines of its stderr (and of its stdout with ``log_stdout``) go to the log."""
    limit = min(limit, run.left())
    if limit < 5:
        raise OutOfTime(f"{limit:.0f} s left for {command[0]}")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=_subprocess_env(run),
            timeout=limit,
            check=False,
            cwd=_ROOT,
        )
    except subprocess.TimeoutExpired as error:
        raise OutOfTime(f"{' '.join(command[:6])} ... ran past {limit:.0f} s") from error
    text = (done.stdout if log_stdout else "") + done.stderr
    tail = text.strip().splitlines()[-12:]
    run.log_lines.extend("    | " + line for line in tail)
    return done


def _network(width: float, seed: int = 0, arch_seed: int | None = None) -> torch.nn.Module:
    """MobileNetV2's original network (or the architecture sampled with ``arch_seed``) with
    100 classes, initialised from ``seed``."""
    space = get_space("mobilenetv2")
    arch = (
        space.original() if arch_seed is None else space.sample(np.random.default_rng(arch_seed))
    )
    torch.manual_seed(seed)
    return space.build_network(arch, 100, 3, width)


def _random_images(count: int, side: int, seed: int = 0) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, side, side), dtype=torch.uint8, generator=generator)
    return ImageSet(images, torch.randint(0, 100, (count,), generator=generator))


def _step_seconds(
    model: torch.nn.Module,
    batch: int,
    side: int,
    device: torch.device,
    *,
    bf16: bool,
    channels_last: bool,
    steps: int,
) -> float:
    """Seconds of one SGD step (forward, backward, update) on a fixed random batch, after
    warm-up steps (cuDNN autotuning, allocator)."""
    memory = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, side, side, device=device).contiguous(memory_format=memory)
    labels = torch.randint(0, 100, (batch,), device=device)
    context = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )

    def step() -> None:
        with context:
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / steps


# ---------------------------------------------------------------------------------------------
# Checks


def _chance_floor(classes: int, valid: int) -> float:
    """Accuracy a guessing classifier exceeds with probability below about 0.2 %: chance
    plus three binomial standard deviations over ``valid`` images."""
    chance = 1.0 / classes
    return chance + 3.0 * math.sqrt(chance * (1 - chance) / valid)


def section_amp(run: Run) -> Verdict:
    data = _data(run)
    if "constant-labels" in run.breaks:
        # (Shuffled labels are no test: the network learns some mapping from the colour
        # templates to labels, and 2 or 3 of 10 classes land on their own label by chance.)
        labels = torch.zeros_like(data.train.labels)
        data = dataclasses.replace(data, train=ImageSet(data.train.images, labels))
    space = get_space("mobilenetv2")
    floor = _chance_floor(data.num_classes, len(data.valid.labels))
    rows = {}
    for label, amp in (("bf16", True), ("float32", False)):
        config = _config(run, data, amp=amp, channels_last=True, precise_bn=True)
        objective = TrainingObjective(space, data, config, device=run.device, seed=0)
        result = objective.train(space.original(), Fidelity(part=1, method="nokd"))
        rows[label] = {
            "status": result.status,
            "valid_acc": result.valid_acc,
            "final_loss": result.final_loss,
            "train_time_s": result.train_time_s,
        }
    good = all(r["status"] == "ok" and r["valid_acc"] > floor for r in rows.values())
    detail = (
        f"valid_acc bf16 {rows['bf16']['valid_acc']:.3f}, float32 "
        f"{rows['float32']['valid_acc']:.3f} (needs > {floor:.3f}); seconds bf16 "
        f"{rows['bf16']['train_time_s']:.2f}, float32 {rows['float32']['train_time_s']:.2f}"
    )
    if not run.cuda:
        detail += " (on the CPU both train in float32)"
    return Verdict("PASS" if good else "FAIL", detail, rows | {"floor": floor})


def _bf16_context(device: torch.device) -> contextlib.AbstractContextManager:
    """The trainer's autocast on a GPU; on the CPU, CPU autocast to bfloat16 (the trainer
    keeps float32 there, but this gives the losses bfloat16 taps and an active autocast all
    the same, which is what their precision handling is for)."""
    if device.type == "cuda":
        return autocast(device, TrainConfig(amp=True))
    return torch.autocast("cpu", dtype=torch.bfloat16)


def _in_float32(value: Any) -> Any:
    """``value`` (taps, a summary, a tensor) with every floating tensor in float32."""
    if isinstance(value, torch.Tensor):
        return value.float() if value.is_floating_point() else value
    if isinstance(value, dict):
        return {k: _in_float32(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_in_float32(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value,
            **{f.name: _in_float32(getattr(value, f.name)) for f in dataclasses.fields(value)},
        )
    return value


@contextlib.contextmanager
def _losses_left_in_autocast() -> Iterator[None]:
    """The broken input of ``losses``: the losses no longer switch autocast off, so their
    matrix products run in bfloat16 (the defect PKT had)."""
    import kdnas.distill._combined as combined

    kept = combined.autocast_off
    combined.autocast_off = lambda device: contextlib.nullcontext()  # type: ignore[assignment]
    try:
        yield
    finally:
        combined.autocast_off = kept  # type: ignore[assignment]


def section_losses(run: Run) -> Verdict:
    """Each loss on the same bfloat16 taps, once as the trainer computes it (under autocast)
    and once on float32 copies with autocast off: a loss that computes in float32, as every
    kdnas loss should, gives the same total. Also the whole forward and loss under autocast
    against float32 (a criterion on the GPU; on the CPU, whose autocast is not the trainer's
    path, a figure only)."""
    device = run.device
    data = _data(run)
    space = get_space("mobilenetv2")
    width = run.sizes.width
    torch.manual_seed(0)
    student = space.build_network(space.sample(np.random.default_rng(1)), 10, 3, width)
    teacher = space.build_network(space.original(), 10, 3, width)
    memory = torch.channels_last
    student = student.to(device, memory_format=memory).train()
    teacher = teacher.to(device, memory_format=memory).eval()
    count = min(run.sizes.batch * 4, len(data.train))
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    images = (data.train.images[:count].to(device).float() / 255 - mean) / std
    images = images.contiguous(memory_format=memory)
    labels = data.train.labels[:count].to(device)
    positions = torch.arange(count, device=device)
    with torch.no_grad():
        probe_s, probe_t = student.forward_taps(images[:4]), teacher.forward_taps(images[:4])
        with _bf16_context(device):
            taps_t16 = teacher.forward_taps(images)
        taps_t32 = teacher.forward_taps(images)
    cuda = [device.index or 0] if device.type == "cuda" else []
    # The student's taps once per precision, shared by the columns: two forward passes on a
    # GPU may differ in the last bit (kernel choice), which is not the loss's doing.
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        torch.manual_seed(0)  # the same dropout draws in both
        with _bf16_context(device):
            taps_s16 = student.forward_taps(images)
        torch.manual_seed(0)
        taps_s32 = student.forward_taps(images)
    broken = "loss-bf16" in run.breaks
    rows: dict[str, dict[str, float]] = {}
    failed = []
    for method in METHODS:
        loss = build_loss(
            method,
            student_probe=probe_s,
            teacher_probe=probe_t if method != "nokd" else None,
            num_classes=data.num_classes,
            n_train=count,
            space=space.name,
            labels=data.train.labels[:count],
        ).to(device)
        totals = {}
        for label in ("trainer", "float32 loss", "float32 forward"):
            this_loss = copy.deepcopy(loss)  # memory banks change as they are used
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                torch.manual_seed(0)  # the same draws (CRD's negatives) in every column
                if label == "float32 forward":
                    summary = this_loss.teacher_summary(taps_t32) if loss.needs_teacher else None
                    terms = this_loss(taps_s32, summary, labels, positions)
                else:
                    taps = taps_s16
                    if label == "trainer":
                        with (
                            _bf16_context(device),
                            _losses_left_in_autocast() if broken else contextlib.nullcontext(),
                        ):
                            summary = (
                                this_loss.teacher_summary(taps_t16) if loss.needs_teacher else None
                            )
                            terms = this_loss(taps, summary, labels, positions)
                    else:
                        with torch.autocast(device.type, enabled=False):
                            summary = (
                                this_loss.teacher_summary(_in_float32(taps_t16))
                                if loss.needs_teacher
                                else None
                            )
                            terms = this_loss(_in_float32(taps), summary, labels, positions)
            totals[label] = float(terms["total"].float())
        reference = max(abs(totals["float32 loss"]), 1e-8)
        own = abs(totals["trainer"] - totals["float32 loss"]) / reference
        whole = abs(totals["trainer"] - totals["float32 forward"]) / max(
            abs(totals["float32 forward"]), 1e-8
        )
        rows[method] = totals | {"loss_precision_difference": own, "forward_difference": whole}
        if not all(math.isfinite(v) for v in totals.values()):
            failed.append(f"{method} not finite")
        elif own > LOSS_PRECISION_TOLERANCE:
            failed.append(f"{method} loss {own:.1e}")
        elif run.cuda and whole > FORWARD_TOLERANCE:
            failed.append(f"{method} forward {whole:.1e}")
    worst_own = max(rows, key=lambda m: rows[m]["loss_precision_difference"])
    worst_whole = max(rows, key=lambda m: rows[m]["forward_difference"])
    figures: dict[str, Any] = dict(rows)
    figures["tolerances"] = {"loss": LOSS_PRECISION_TOLERANCE, "forward": FORWARD_TOLERANCE}
    detail = (
        f"{len(METHODS)} losses on bf16 taps: largest difference from float32 loss "
        f"{rows[worst_own]['loss_precision_difference']:.1e} ({worst_own}; tolerance "
        f"{LOSS_PRECISION_TOLERANCE:.0e}); whole forward+loss "
        f"{rows[worst_whole]['forward_difference']:.1e} ({worst_whole}; "
        + (f"tolerance {FORWARD_TOLERANCE:.0e})" if run.cuda else "CPU autocast: a figure only)")
    )
    if failed:
        return Verdict("FAIL", detail + "; over: " + ", ".join(failed), figures)
    return Verdict("PASS", detail, figures)


class _WrongBatchCache(TeacherCache):
    """A broken teacher cache: it serves each epoch's summaries shifted by one batch."""

    def get(
        self, key: str, epoch: int, device: torch.device | None = None
    ) -> list[dict[str, torch.Tensor]] | None:
        entry = super().get(key, epoch, device)
        return None if entry is None else entry[1:] + entry[:1]


class _AuditedTeacher:
    """Wraps the student's teacher source: for every batch, compares what it serves with what
    the live teacher computes for the images the student is given."""

    def __init__(self, source: Any) -> None:
        self.source = source
        self.largest = 0.0  # largest |served - live| / largest |live|, over served batches
        self.batches = 0

    def summary(self, epoch: int, batch: int, images: torch.Tensor) -> Any:
        served = self.source.summary(epoch, batch, images)
        live = self.source.live.summary(epoch, batch, images)
        for name, value in live.items():
            scale = float(value.float().abs().max().clamp_min(1e-12))
            gap = float((served[name].float() - value.float()).abs().max()) / scale
            self.largest = max(self.largest, gap)
        self.batches += 1
        return served

    def end_epoch(self, epoch: int) -> None:
        self.source.end_epoch(epoch)


def section_cache(run: Run) -> Verdict:
    data = _data(run)
    space = get_space("mobilenetv2")
    config = _config(run, data, precise_bn=True)
    cache_type = _WrongBatchCache if "cache-wrong-batch" in run.breaks else TeacherCache
    cache = cache_type()
    with tempfile.TemporaryDirectory() as teachers:
        objective = TrainingObjective(
            space, data, config, teachers, device=run.device, cache=cache, seed=0
        )
        rng = np.random.default_rng(5)
        first, second = space.sample(rng), space.sample(rng)
        fidelity = Fidelity(part=2, method="kd")
        filled = objective.train(first, fidelity)  # trains the teacher, fills the cache
        if filled.status != "ok":
            return Verdict("FAIL", f"the filling student: {filled.status} {filled.error}")
        audits: list[_AuditedTeacher] = []
        make_source = objective.teacher_life.source

        def audited(*arguments: Any) -> Any:
            audits.append(_AuditedTeacher(make_source(*arguments)))
            return audits[-1]

        objective.teacher_life.source = audited  # type: ignore[method-assign]
        hits, misses = cache.hits, cache.misses
        cached = objective.train(second, fidelity)
        objective.teacher_life.source = make_source  # type: ignore[method-assign]
        live = None
        if not run.quick:  # a figure (cached against live seconds), not part of the criterion
            live = TrainingObjective(
                space, data, config, teachers, device=run.device, seed=0, use_cache=False
            ).train(second, fidelity)
    audit = audits[0]
    served, new_misses = cache.hits - hits, cache.misses - misses
    figures = {
        "epochs_served": served,
        "epochs_missed": new_misses,
        "batches_audited": audit.batches,
        "largest_served_vs_live": audit.largest,
        "tolerance": CACHE_TOLERANCE,
        "final_loss_cached": cached.final_loss,
        "train_time_cached_s": cached.train_time_s,
    }
    detail = (
        f"second student: {served} epochs served, {new_misses} missed; {audit.batches} "
        f"batches audited, largest served-vs-live {audit.largest:.1e} (tolerance "
        f"{CACHE_TOLERANCE:.0e})"
    )
    if live is not None:
        figures |= {"final_loss_live": live.final_loss, "train_time_live_s": live.train_time_s}
        detail += (
            f"; student seconds cached {cached.train_time_s:.2f} vs live {live.train_time_s:.2f}"
        )
    good = (
        cached.status == "ok"
        and served == config.epochs
        and new_misses == 0
        and audit.largest <= CACHE_TOLERANCE
    )
    return Verdict("PASS" if good else "FAIL", detail, figures)


def _ddp_plan(run: Run) -> tuple[int, str, str]:
    """(processes, expected backend, why that many)."""
    if not run.cuda:
        return 2, "gloo", "2 processes on the CPU (gloo)"
    gpus = torch.cuda.device_count()
    if gpus >= 2:
        return 2, "nccl", "2 processes on 2 GPUs (NCCL)"
    return 1, "nccl", "1 process: NCCL takes one GPU per rank and this machine has one"


def _train_command(run: Run, processes: int, folder: Path, output: Path) -> list[str]:
    if run.quick:
        sizes = ["--resolution", "8", "--part", "9", "--epochs", "2", "--batch-size", "32"]
        sizes += ["--width-multiplier", "0.25", "--threads", "1"]
    else:
        sizes = ["--resolution", "32", "--part", "1", "--epochs", "2", "--batch-size", "128"]
    train = ["-m", "kdnas", "train", "--arch", "original", "--dataset", "digits", *sizes]
    # On CUDA no --device: each rank then takes cuda:LOCAL_RANK (DDP needs the index).
    train += [] if run.cuda else ["--device", "cpu"]
    train += ["--checkpoint-dir", str(folder)]
    train += ["--output", str(output)]
    if "ddp-no-group" in run.breaks:
        return [run.python, *train]
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [run.python, *launcher, *train]


def lose_checkpoint(folder: Path) -> None:
    """The broken input of ``ddp-resume``: the run's checkpoint is gone before the rerun."""
    (folder / "checkpoint.pt").unlink()


def ddp_train(run: Run, folder: Path, output: Path) -> tuple[dict[str, Any] | None, Verdict]:
    """``kdnas train`` under torchrun, checkpointing into ``folder``: its result record (None
    when it failed) and the ``ddp`` verdict."""
    processes, backend, why = _ddp_plan(run)
    output.unlink(missing_ok=True)
    start = time.time()
    done = _run_command(run, _train_command(run, processes, folder, output), 90)
    seconds = time.time() - start
    if done.returncode != 0 or not output.is_file():
        return None, Verdict("FAIL", f"kdnas train exited {done.returncode} ({why})")
    first = json.loads(output.read_text())
    group, world = first.get("process_group"), first.get("world_size")
    figures = {
        "process_group": group,
        "world_size": world,
        "valid_acc": first["valid_acc"],
        "train_time_s": first["train_time_s"],
        "wall_s": seconds,
    }
    detail = (
        f"{why}: process group {group}, world size {world}, valid_acc "
        f"{first['valid_acc']:.3f}, {first['train_time_s']:.1f} s training, {seconds:.0f} s "
        "with start-up"
    )
    good = first["status"] == "ok" and group == backend and world == processes
    return first, Verdict("PASS" if good else "FAIL", detail, figures)


def ddp_resume(run: Run, folder: Path, first: dict[str, Any], output: Path) -> Verdict:
    """The same command again on the finished run's checkpoint folder: the ``ddp-resume``
    verdict (it must resume after the last epoch and train nothing)."""
    processes, _, _ = _ddp_plan(run)
    output.unlink(missing_ok=True)
    start = time.time()
    done = _run_command(run, _train_command(run, processes, folder, output), 90)
    seconds = time.time() - start
    if done.returncode != 0 or not output.is_file():
        return Verdict("FAIL", f"the rerun exited {done.returncode}")
    second = json.loads(output.read_text())
    epochs, resumed = first["epochs"], second["resumed_from_epoch"]
    # The step losses come back from the checkpoint bit for bit; the accuracy is computed
    # again, by kernels cuDNN may choose anew in the new process: one or two images may flip.
    slack = 0.02 if run.cuda else 0.0
    same = (
        second["step_losses"] == first["step_losses"]
        and abs(second["valid_acc"] - first["valid_acc"]) <= slack
    )
    figures = {
        "resumed_from_epoch": resumed,
        "epochs": epochs,
        "same_result": same,
        "wall_s": seconds,
    }
    if resumed != epochs:
        return Verdict(
            "FAIL", f"resumed after epoch {resumed} of {epochs}: the rerun trained again", figures
        )
    if not same:
        return Verdict(
            "FAIL",
            "resumed after the last epoch, but its step losses or accuracy changed",
            figures,
        )
    detail = (
        f"resumed after epoch {resumed} of {epochs}, same step losses and accuracy "
        f"({seconds:.0f} s with start-up)"
    )
    return Verdict("PASS", detail, figures)


def _ddp_runs(run: Run) -> Iterator[tuple[str, Verdict]]:
    """The ``ddp`` and ``ddp-resume`` verdicts (one training run, then its rerun)."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name) / "checkpoints"
        first, verdict = ddp_train(run, folder, run.out / "ddp.json")
        yield "ddp", verdict
        if first is None:
            yield "ddp-resume", Verdict("SKIP", "the ddp run failed")
            return
        if "resume-retrains" in run.breaks:
            lose_checkpoint(folder)
        yield "ddp-resume", ddp_resume(run, folder, first, run.out / "ddp-resume.json")


def section_stream(run: Run) -> Verdict:
    """``kdnas train --stream`` on a generated JPEG folder: decoding workers, pinned memory,
    the batch normalised on the device."""
    sys.path.insert(0, str(_ROOT / "benchmarks"))
    from stream_throughput import make_folder

    with tempfile.TemporaryDirectory() as name:
        folder = make_folder(Path(name) / "jpegs", 256, 96, classes=4)
        if "stream-corrupt" in run.breaks:
            victim = sorted((folder / "train").rglob("*.jpg"))[0]
            victim.write_bytes(victim.read_bytes()[:100])  # a truncated JPEG
        output = run.out / "stream.json"
        output.unlink(missing_ok=True)
        command = [run.python, "-m", "kdnas", "train", "--arch", "original", "--dataset"]
        command += [str(folder), "--stream", "--resolution", "32", "--epochs", "1"]
        command += ["--batch-size", "32", "--width-multiplier", "0.25"]
        command += [] if run.cuda else ["--device", "cpu"]  # CUDA is the default there
        command += ["--checkpoint-dir", str(Path(name) / "checkpoints")]
        command += ["--output", str(output)]
        command += ["--threads", "1", "--workers", "1"] if run.quick else ["--workers", "4"]
        start = time.time()
        done = _run_command(run, command, 90)
        seconds = time.time() - start
    if done.returncode != 0 or not output.is_file():
        return Verdict("FAIL", f"kdnas train --stream exited {done.returncode}")
    result = json.loads(output.read_text())
    figures = {k: result[k] for k in ("status", "device", "valid_acc", "train_time_s")}
    figures["wall_s"] = seconds
    good = result["status"] == "ok" and result["device"].startswith(run.device.type)
    detail = (
        f"256 JPEGs streamed on {result['device']}: {result['status']}, "
        f"{result['train_time_s']:.1f} s training, {seconds:.0f} s with start-up"
    )
    return Verdict("PASS" if good else "FAIL", detail, figures)


def section_ray(run: Run) -> Verdict:
    try:
        import ray
    except ImportError:
        raise Skip("Ray is not installed (pip install 'kdnas[ray]')") from None
    gpus = 1 if run.cuda else 0
    ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote(num_gpus=gpus)
        def where() -> str:
            import torch

            return describe_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))

        seen = ray.get(where.remote(), timeout=min(120, run.left()))
    finally:
        ray.shutdown()
    good = ("cuda" in seen) == bool(gpus)
    return Verdict("PASS" if good else "FAIL", f"a task with num_gpus={gpus} ran on {seen}")


def section_defects(run: Run) -> Verdict:
    command = [run.python, str(_ROOT / "benchmarks" / "gpu_check_defects.py")]
    if not run.cuda:
        command.append("--allow-cpu")
    done = _run_command(run, command, 150, log_stdout=True)
    lines = [line for line in done.stdout.splitlines() if line.split(" ")[0] in _STATUSES]
    counts = {s: sum(line.startswith(s + " ") for line in lines) for s in ("PASS", "FAIL", "SKIP")}
    figures = {"lines": lines, "exit": done.returncode}
    detail = ", ".join(f"{n} {s}" for s, n in counts.items())
    failed = [line for line in lines if line.startswith("FAIL")]
    if done.returncode != 0 or failed:
        return Verdict("FAIL", f"{detail}: " + "; ".join(failed)[:200], figures)
    if counts["PASS"] == 0:
        return Verdict("SKIP", f"nothing ran ({detail})", figures)
    return Verdict("PASS", detail, figures)


# ---------------------------------------------------------------------------------------------
# Measurements


def _conventional_epochs(
    model: torch.nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig,
    device: torch.device,
    workers: int,
    epochs: int,
) -> list[float]:
    """Seconds of each epoch of a conventional loop: a per-sample ``Dataset`` (pad, crop,
    flip, normalise), a shuffling ``DataLoader`` with persistent workers, and the trainer's
    precision and memory layout."""
    sys.path.insert(0, str(_ROOT / "benchmarks"))
    from train_throughput import PerSampleDataset

    dataset = PerSampleDataset(images, labels, (0.5,) * 3, (0.25,) * 3, config.crop_padding)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
    )
    memory = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=memory).train()
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=5e-4
    )
    seconds = []
    for _ in range(epochs):
        _synchronize(device)
        start = time.perf_counter()
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=memory)
            y = y.to(device, non_blocking=True)
            with autocast(device, config):
                loss = F.cross_entropy(model(x).float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def section_trainer_vs_loop(run: Run) -> Verdict:
    sizes = run.sizes
    device = run.device
    archs = 2 if run.quick else 3
    steady_epochs = 1 if run.quick else 2
    workers = 0 if run.quick else min(8, os.cpu_count() or 1)
    rng = np.random.default_rng(0)
    images_per_epoch = sizes.images // 2 if run.quick else sizes.images
    count = images_per_epoch // sizes.batch * sizes.batch
    images = rng.integers(0, 256, (count, sizes.side, sizes.side, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, count).astype(np.int64)
    resident = ImageSet(
        torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)
    )
    train = DeviceImages(resident, (0.5,) * 3, (0.25,) * 3, 4, device)
    config = TrainConfig(batch_size=sizes.batch, crop_padding=4, lr=0.01, epochs=1)
    # Both rows under the same kernel settings, chosen once before either runs (the trainer
    # sets them too, to the same values).
    kernel_mode(config.deterministic)
    rows = []
    for index in range(archs):
        # The row that runs first pays the architecture's autotuning in its first epoch.
        order = ("trainer", "loop") if index % 2 == 0 else ("loop", "trainer")
        row: dict[str, Any] = {"arch_seed": index + 1, "first": order[0]}
        for which in order:
            model = _network(sizes.width, seed=index, arch_seed=index + 1)
            if which == "trainer":
                model = model.to(device, memory_format=torch.channels_last)
                first = train_network(model, CrossEntropyLoss(), train, config, seed=0)
                steady = train_network(
                    model,
                    CrossEntropyLoss(),
                    train,
                    dataclasses.replace(config, epochs=steady_epochs),
                    seed=1,
                )
                epochs = [first.train_time_s, steady.train_time_s / steady_epochs]
            else:
                seconds = _conventional_epochs(
                    model, images, labels, config, device, workers, 1 + steady_epochs
                )
                epochs = [seconds[0], sum(seconds[1:]) / steady_epochs]
            row[f"{which}_first_epoch_s"] = epochs[0]
            row[f"{which}_images_per_s"] = count / epochs[1]
        row["ratio"] = row["trainer_images_per_s"] / row["loop_images_per_s"]
        first = order[0]
        row["new_arch_first_epoch_extra_s"] = (
            row[f"{first}_first_epoch_s"] - count / row[f"{first}_images_per_s"]
        )
        rows.append(row)
    ratios = [r["ratio"] for r in rows]
    geometric = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
    figures = {
        "rows": rows,
        "geometric_mean_ratio": geometric,
        "target_ratio": 3.0,
        "images_per_epoch": count,
        "loop_workers": workers,
        "precision": "bfloat16" if run.cuda else "float32",
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }
    detail = (
        f"trainer/loop {geometric:.2f}x (target 3x: {'met' if geometric >= 3 else 'not met'}) "
        f"over {archs} sampled archs, per arch "
        + ", ".join(f"{r:.2f}x" for r in ratios)
        + "; a new arch's first epoch costs +"
        + ", ".join(f"{r['new_arch_first_epoch_extra_s']:.2f}" for r in rows)
        + " s"
    )
    return Verdict("MEASURED", detail, figures)


def _utilisation_sampler(stop: threading.Event, samples: list[tuple[float, float]]) -> None:
    """Appends (GPU utilisation %, memory used MiB) from nvidia-smi until ``stop`` is set."""
    while not stop.is_set():
        try:
            text = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu,memory.used",
                    "--format=csv,noheader,nounits",
                    "--id=0",
                ],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
            utilisation, memory = (float(v) for v in text.strip().split(","))
            samples.append((utilisation, memory))
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return
        stop.wait(0.25)


def _launch_workers(run: Run, count: int, seconds: float) -> list[dict[str, Any]]:
    """Start ``count`` fresh worker processes, let them train together for ``seconds`` once
    every one is ready, and return their reports."""
    with tempfile.TemporaryDirectory() as name:
        go = Path(name) / "go"
        processes = []
        for rank in range(count):
            command = [
                run.python, str(Path(__file__).resolve()), "--worker", "--device",
                run.device.type, "--go", str(go), "--seconds", str(seconds), "--rank", str(rank),
                "--spawned-at", repr(time.time()),
            ]  # fmt: skip
            if run.quick:
                command.append("--quick")
            processes.append(
                subprocess.Popen(
                    command,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=_subprocess_env(run),
                    cwd=_ROOT,
                )
            )
        try:
            while not all((Path(str(go) + f"-ready-{r}")).exists() for r in range(count)):
                if any(p.poll() is not None for p in processes):
                    break
                if run.left() < seconds + 10:
                    raise OutOfTime(f"{count} workers not ready in time")
                time.sleep(0.05)
            go.touch()
            samples: list[tuple[float, float]] = []
            stop = threading.Event()
            sampler = threading.Thread(target=_utilisation_sampler, args=(stop, samples))
            if run.cuda:
                sampler.start()
            reports = []
            for process in processes:
                out, err = process.communicate(timeout=max(5.0, run.left()))
                if process.returncode != 0:
                    raise RuntimeError(f"worker exited {process.returncode}: {err[-400:]}")
                reports.append(json.loads(out.strip().splitlines()[-1]))
            stop.set()
            if sampler.is_alive():
                sampler.join()
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    for report in reports:
        report["utilisation_samples"] = samples
    return reports


def section_packed(run: Run) -> Verdict:
    counts = (1, 2) if run.quick else (1, 2, 4, 8)
    seconds = 1.0 if run.quick else 5.0
    rows = []
    for count in counts:
        reports = _launch_workers(run, count, seconds)
        samples = reports[0]["utilisation_samples"]
        rows.append(
            {
                "processes": count,
                "images_per_s_total": sum(r["images_per_s"] for r in reports),
                "images_per_s_each": [r["images_per_s"] for r in reports],
                "max_memory_mib_each": [r["max_memory_mib"] for r in reports],
                "gpu_utilisation_mean": (
                    sum(u for u, _ in samples) / len(samples) if samples else None
                ),
                "gpu_memory_used_mib_max": max((m for _, m in samples), default=None),
            }
        )
    base = rows[0]["images_per_s_total"]
    for row in rows:
        row["ratio_to_one"] = row["images_per_s_total"] / base
    detail = "images/s in total " + ", ".join(
        f"{r['processes']} proc {r['images_per_s_total']:.0f} ({r['ratio_to_one']:.2f}x)"
        for r in rows
    )
    if run.cuda:
        detail += "; utilisation " + ", ".join(
            f"{r['gpu_utilisation_mean']:.0f}%" if r["gpu_utilisation_mean"] is not None else "?"
            for r in rows
        )
    else:
        detail += " (CPU toy size: 4 and 8 processes not run on the CPU)"
    return Verdict("MEASURED", detail, {"rows": rows, "seconds_each": seconds})


def section_worker_start_up(run: Run) -> Verdict:
    report = _launch_workers(run, 1, 0.5 if run.quick else 2.0)[0]
    figures = {k: v for k, v in report.items() if k != "utilisation_samples"}
    detail = (
        f"fresh worker: imports {report['imported_s']:.1f} s, device ready "
        f"{report['device_ready_s']:.1f} s, first step done {report['first_step_s']:.1f} s after "
        f"spawn; a warm step {1000 * report['step_s']:.1f} ms"
    )
    return Verdict("MEASURED", detail, figures)


def section_launch_bound(run: Run) -> Verdict:
    sizes = run.sizes
    small, large = (16, 64) if run.quick else (128, 512)
    steps = 5 if run.quick else 30
    width = 0.25
    figures: dict[str, Any] = {}
    for batch in (small, large):
        figures[f"eager_step_s_batch{batch}"] = _step_seconds(
            _network(width), batch, sizes.side, run.device, bf16=run.cuda,
            channels_last=True, steps=steps,
        )  # fmt: skip
    per_image = [figures[f"eager_step_s_batch{b}"] / b for b in (small, large)]
    figures["per_image_ratio_small_to_large"] = per_image[0] / per_image[1]
    detail = (
        f"MobileNetV2 x{width} step: batch {small} "
        f"{1000 * figures[f'eager_step_s_batch{small}']:.2f} ms, batch {large} "
        f"{1000 * figures[f'eager_step_s_batch{large}']:.2f} ms (per image "
        f"{figures['per_image_ratio_small_to_large']:.2f}x cheaper at {large})"
    )
    if run.cuda:
        graph_s = _graph_step_seconds(_network(width), small, sizes.side, run.device, steps)
        figures[f"graph_step_s_batch{small}"] = graph_s
        speedup = figures[f"eager_step_s_batch{small}"] / graph_s
        figures["graph_speedup"] = speedup
        detail += f"; CUDA graph {1000 * graph_s:.2f} ms at {small} ({speedup:.2f}x eager)"
    else:
        detail += "; CUDA graph: SKIP (needs CUDA)"
        figures["graph"] = "skipped: needs CUDA"
    return Verdict("MEASURED", detail, figures)


def _graph_step_seconds(
    model: torch.nn.Module, batch: int, side: int, device: torch.device, steps: int
) -> float:
    """Seconds of one SGD step replayed from a CUDA graph that captured forward, backward and
    update (bfloat16 autocast, channels-last, fixed input buffers)."""
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images = torch.randn(batch, 3, side, side, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 100, (batch,), device=device)

    def step() -> None:
        # The autocast weight cache would hold tensors made during capture: off.
        with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
            loss = F.cross_entropy(model(images).float(), labels)
        loss.backward()
        optimizer.step()

    side_stream = torch.cuda.Stream(device)
    side_stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side_stream):
        for _ in range(3):  # warm-up on a side stream, as capture requires
            optimizer.zero_grad(set_to_none=True)
            step()
    torch.cuda.current_stream(device).wait_stream(side_stream)
    graph = torch.cuda.CUDAGraph()
    optimizer.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        step()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        graph.replay()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def section_bf16_vs_tf32(run: Run) -> Verdict:
    if not run.cuda:
        raise Skip("bfloat16 tensor cores and TF32 are GPU features; the CPU says nothing")
    sizes = run.sizes
    figures: dict[str, Any] = {}
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        for label, bf16, tf32 in (
            ("float32", False, False),
            ("tf32", False, True),
            ("bf16", True, False),
        ):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            torch.backends.cudnn.allow_tf32 = tf32
            figures[f"{label}_step_s"] = _step_seconds(
                _network(1.0), sizes.batch, sizes.side, run.device, bf16=bf16,
                channels_last=True, steps=30,
            )  # fmt: skip
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    figures["bf16_speedup_over_tf32"] = figures["tf32_step_s"] / figures["bf16_step_s"]
    detail = (
        f"MobileNetV2 x1 batch {sizes.batch} step: float32 {1000 * figures['float32_step_s']:.2f}"
        f" ms, TF32 {1000 * figures['tf32_step_s']:.2f} ms, bf16 "
        f"{1000 * figures['bf16_step_s']:.2f} ms (bf16 {figures['bf16_speedup_over_tf32']:.2f}x "
        "TF32)"
    )
    return Verdict("MEASURED", detail, figures)


def section_channels_last(run: Run) -> Verdict:
    sizes = run.sizes
    steps = 5 if run.quick else 30
    figures = {
        f"{label}_step_s": _step_seconds(
            _network(sizes.width),
            sizes.batch,
            sizes.side,
            run.device,
            bf16=run.cuda,
            channels_last=layout,
            steps=steps,
        )
        for label, layout in (("nchw", False), ("channels_last", True))
    }
    figures["channels_last_speedup"] = figures["nchw_step_s"] / figures["channels_last_step_s"]
    detail = (
        f"MobileNetV2 x{sizes.width} batch {sizes.batch} step: NCHW "
        f"{1000 * figures['nchw_step_s']:.2f} ms, channels-last "
        f"{1000 * figures['channels_last_step_s']:.2f} ms "
        f"({figures['channels_last_speedup']:.2f}x)"
    )
    return Verdict("MEASURED", detail, figures)


def _serve_epoch(source: CachedTeacher, train: DeviceImages, config: TrainConfig) -> float:
    """Seconds to get every batch summary of epoch 0 from ``source``."""
    plan = epoch_plan(
        len(train), config.batch_size, 0, 0, config.crop_padding, config.horizontal_flip
    )
    _synchronize(train.device)
    start = time.perf_counter()
    for batch, (images, _, _) in enumerate(train.plan_batches(plan)):
        source.summary(0, batch, images)
    source.end_epoch(0)
    _synchronize(train.device)
    return time.perf_counter() - start


def section_cache_memory_vs_disk(run: Run) -> Verdict:
    sizes = run.sizes
    device = run.device
    train = DeviceImages(
        _random_images(sizes.images, sizes.side), (0.5,) * 3, (0.25,) * 3, 4, device
    )
    config = TrainConfig(batch_size=sizes.batch, width_multiplier=sizes.width)
    teacher = _network(sizes.width).to(device, memory_format=torch.channels_last).eval()
    figures: dict[str, Any] = {}
    with torch.no_grad():
        probe = teacher.forward_taps(train.batch(torch.arange(4)))
    for method in ("kd", "hint"):
        loss = build_loss(
            method, student_probe=probe, teacher_probe=probe, num_classes=100,
            n_train=len(train), space="mobilenetv2",
        ).to(device)  # fmt: skip
        live = LiveTeacher(teacher, loss, config)
        with tempfile.TemporaryDirectory() as name:
            memory_cache = TeacherCache()
            live_s = _serve_epoch(CachedTeacher(memory_cache, "k", live), train, config)
            memory_s = _serve_epoch(CachedTeacher(memory_cache, "k", live), train, config)
            # No memory budget: the epoch lives on disk only and is read from there.
            disk_cache = TeacherCache(max_bytes=0, directory=name)
            _serve_epoch(CachedTeacher(disk_cache, "k", live), train, config)
            disk_s = _serve_epoch(CachedTeacher(disk_cache, "k", live), train, config)
            epoch_bytes = sum(
                t.numel() * t.element_size()
                for batch in memory_cache.get("k", 0) or []
                for t in batch.values()
            )
        figures[method] = {
            "live_teacher_s": live_s,
            "memory_s": memory_s,
            "disk_s": disk_s,
            "epoch_mib": epoch_bytes / 2**20,
        }
    detail = "; ".join(
        f"{method} ({f['epoch_mib']:.1f} MiB/epoch): live {f['live_teacher_s']:.3f} s, memory "
        f"{f['memory_s']:.4f} s, disk {f['disk_s']:.3f} s"
        for method, f in figures.items()
    )
    return Verdict("MEASURED", detail + f" per epoch of {sizes.images} images", figures)


def section_stream_throughput(run: Run) -> Verdict:
    """Decoding images/s of ``StreamingLoader`` with worker processes against none."""
    sys.path.insert(0, str(_ROOT / "benchmarks"))
    from stream_throughput import make_folder, stream_epoch

    count, side, resolution = (100, 64, 32) if run.quick else (2000, 256, 224)
    workers = 2 if run.quick else min(8, os.cpu_count() or 1)
    threads = torch.get_num_threads()
    try:
        with tempfile.TemporaryDirectory() as name:
            folder = make_folder(Path(name), count, side)
            rows = {
                n: stream_epoch(folder, resolution, n, 32 if run.quick else 128)
                for n in (0, workers)
            }
    finally:
        torch.set_num_threads(threads)  # stream_epoch sets one thread
    ratio = rows[workers]["images_per_s"] / rows[0]["images_per_s"]
    figures = {
        "images": count,
        "jpeg_side": side,
        "resolution": resolution,
        "images_per_s_no_workers": rows[0]["images_per_s"],
        f"images_per_s_{workers}_workers": rows[workers]["images_per_s"],
        "ratio": ratio,
    }
    detail = (
        f"{count} JPEGs of {side} px to {resolution} px: {workers} workers "
        f"{rows[workers]['images_per_s']:.0f} images/s, none {rows[0]['images_per_s']:.0f} "
        f"({ratio:.2f}x)"
    )
    return Verdict("MEASURED", detail, figures)


# ---------------------------------------------------------------------------------------------
# The worker process of ``packed`` and ``worker-start-up``


def worker(args: argparse.Namespace) -> int:
    """Train a low-fidelity student on random data: report start-up times, then train for
    ``args.seconds`` once ``args.go`` exists; prints one JSON line."""
    imported = time.time() - args.spawned_at
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.init()
        torch.empty(1, device=device)
    else:
        torch.set_num_threads(1)
    ready = time.time() - args.spawned_at
    sizes = Sizes.for_run(args.quick)
    width = 0.25 if args.quick else 0.5
    train = DeviceImages(
        _random_images(sizes.images, sizes.side, args.rank), (0.5,) * 3, (0.25,) * 3, 4, device
    )
    config = TrainConfig(batch_size=sizes.batch)
    # One architecture for every process: the totals then measure the packing, not the mix.
    model = _network(width, args.rank, arch_seed=1)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    kernel_mode(False)

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = 0
        while True:
            plan = epoch_plan(len(train), sizes.batch, 0, epoch, 4, True)
            for images, labels, _ in train.plan_batches(plan):
                yield images, labels
            epoch += 1

    stream = batches()

    def steps(count: int) -> None:
        for _ in range(count):
            images, labels = next(stream)
            with autocast(device, config):
                loss = F.cross_entropy(model(images).float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _synchronize(device)

    steps(1)
    first_step = time.time() - args.spawned_at
    steps(4)
    start = time.perf_counter()
    steps(5)
    step_s = (time.perf_counter() - start) / 5
    Path(str(args.go) + f"-ready-{args.rank}").touch()
    while not Path(args.go).exists():
        time.sleep(0.02)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        steps(5)
        done += 5
    elapsed = time.perf_counter() - start
    memory = torch.cuda.max_memory_reserved(device) / 2**20 if device.type == "cuda" else None
    report = {
        "imported_s": imported,
        "device_ready_s": ready,
        "first_step_s": first_step,
        "step_s": step_s,
        "images_per_s": done * sizes.batch / elapsed,
        "max_memory_mib": memory,
    }
    print(json.dumps(report))
    return 0


# ---------------------------------------------------------------------------------------------
# The run


_STATUSES = ("PASS", "FAIL", "SKIP", "MEASURED")

#: Every section: name, function, estimated seconds on a GPU, on the CPU (toy sizes).
Section = tuple[str, Callable[[Run], Verdict], float, float]
CHECKS: list[Section] = [
    ("amp", section_amp, 20, 10),
    ("losses", section_losses, 5, 5),
    ("cache", section_cache, 15, 10),
    ("stream", section_stream, 25, 25),
    ("ray", section_ray, 20, 20),
]
MEASUREMENTS: list[Section] = [
    # Most telling first: what the budget cuts is the end of the list.
    ("trainer-vs-loop", section_trainer_vs_loop, 45, 10),
    ("packed", section_packed, 75, 30),
    ("launch-bound", section_launch_bound, 10, 5),
    ("bf16-vs-tf32", section_bf16_vs_tf32, 10, 1),
    ("channels-last", section_channels_last, 10, 5),
    ("cache-memory-vs-disk", section_cache_memory_vs_disk, 10, 5),
    ("worker-start-up", section_worker_start_up, 15, 15),
    ("stream-throughput", section_stream_throughput, 30, 15),
]
#: Sections that run as subprocesses, with their estimates (GPU, CPU).
DDP_ESTIMATE = (60, 45)
DEFECTS_ESTIMATE = (70, 60)
ORDER = [
    "amp",
    "losses",
    "cache",
    "ddp",
    "ddp-resume",
    "stream",
    "ray",
    "defects",
    *(name for name, *_ in MEASUREMENTS),
]


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    """Raise ``OutOfTime`` in this (main) thread after ``seconds``."""

    def ring(signum: int, frame: Any) -> None:
        raise OutOfTime("ran past the time budget")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, ring)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.1))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_section(run: Run, function: Callable[[Run], Verdict], estimate: float) -> Verdict:
    """One section within the budget: SKIP if its estimate does not fit, FAIL on an error or
    past the deadline."""
    left = run.left()
    if estimate > left:
        return Verdict("SKIP", f"out of the time budget (needs about {estimate:.0f} s, "
                       f"{max(left, 0):.0f} s left)")  # fmt: skip
    try:
        # A section past three times its estimate (and a minute) is stuck: stop it there, so
        # that the sections after it still run.
        with _alarm(min(left, max(3 * estimate, 60))):
            return function(run)
    except Skip as reason:
        return Verdict("SKIP", str(reason))
    except OutOfTime as error:
        return Verdict("FAIL", f"timeout: {error}")
    except Exception as error:  # a GPU check reports every failure and goes on
        return Verdict("FAIL", f"{type(error).__name__}: {error}"[:300])


def versions(device: torch.device) -> dict[str, Any]:
    """Python, torch, CUDA, cuDNN, driver and device: printed first, kept in the JSON."""
    driver = None
    query = ["nvidia-smi", "--query-gpu=driver_version,name,memory.total", "--format=csv,noheader"]
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run(query, capture_output=True, text=True, timeout=10, check=False)
        driver = done.stdout.strip() or None
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn,
        "driver (nvidia-smi)": driver,
        "device": describe_device(device),
        "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0,
    }
    if device.type == "cuda":
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    return info


def _write(run: Run, report: dict[str, Any]) -> None:
    run.out.mkdir(parents=True, exist_ok=True)
    (run.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (run.out / "gpu_check.log").write_text("\n".join(run.log_lines) + "\n")


def summary_table(sections: dict[str, dict[str, Any]]) -> str:
    """The summary: one line per section (verdict, seconds, detail)."""
    lines = [f"{'section':<22} {'verdict':<9} {'s':>6}  detail", "-" * 100]
    for name, row in sections.items():
        lines.append(f"{name:<22} {row['status']:<9} {row['seconds']:6.1f}  {row['detail'][:200]}")
    return "\n".join(lines)


def check(run: Run, only: list[str] | None = None) -> dict[str, Any]:
    """Every section (or those in ``only``) in order; the report (also written to disk)."""
    report: dict[str, Any] = {
        "versions": versions(run.device),
        "settings": {
            "quick": run.quick,
            "breaks": sorted(run.breaks),
            "sizes": dataclasses.asdict(run.sizes),
            "deadline_left_s": run.left(),
        },
        "sections": {},
    }
    for key, value in report["versions"].items():
        run.say(f"{key}: {value}")
    started = time.time()
    estimates = {name: (gpu, cpu) for name, _, gpu, cpu in CHECKS + MEASUREMENTS}
    functions = {name: function for name, function, *_ in CHECKS + MEASUREMENTS}
    ddp_results: dict[str, Verdict] = {}

    def record(name: str, verdict: Verdict, seconds: float) -> None:
        report["sections"][name] = {
            "status": verdict.status,
            "detail": verdict.detail,
            "seconds": seconds,
            "figures": verdict.figures,
        }
        run.say(f"{verdict.status} {name} ({seconds:.1f} s): {verdict.detail}")
        _write(run, report)

    for name in ORDER:
        if only is not None and name not in only:
            continue
        clock = time.time()
        if name in ("ddp", "ddp-resume"):
            if name == "ddp":
                estimate = DDP_ESTIMATE[0 if run.cuda else 1]

                def both(run: Run) -> Verdict:
                    ddp_results.update(_ddp_runs(run))
                    return ddp_results["ddp"]

                verdict = run_section(run, both, estimate)
                if "ddp-resume" not in ddp_results:
                    ddp_results["ddp-resume"] = Verdict("SKIP", "the ddp run did not get there")
                record("ddp", verdict, verdict.figures.get("wall_s", time.time() - clock))
            else:
                verdict = ddp_results.get("ddp-resume", Verdict("SKIP", "ddp did not run"))
                record("ddp-resume", verdict, verdict.figures.get("wall_s", 0.0))
            continue
        if name == "defects":
            estimate = DEFECTS_ESTIMATE[0 if run.cuda else 1]
            verdict = run_section(run, section_defects, estimate)
        else:
            estimate = estimates[name][0 if run.cuda else 1]
            verdict = run_section(run, functions[name], estimate)
        record(name, verdict, time.time() - clock)
    report["total_s"] = time.time() - started
    run.say(summary_table(report["sections"]))
    counts = {s: sum(r["status"] == s for r in report["sections"].values()) for s in _STATUSES}
    run.say("gpu_check: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    _write(run, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="toy sizes (CPU smoke run)")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="output folder")
    parser.add_argument(
        "--budget", type=float, default=320.0, help="seconds from --started-at for every section"
    )
    parser.add_argument(
        "--started-at", type=float, default=None, help="time.time() of the start (default: now)"
    )
    parser.add_argument("--only", nargs="+", choices=ORDER, default=None)
    parser.add_argument("--break", dest="breaks", action="append", choices=sorted(BREAKS))
    # The worker process (packed, worker-start-up).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--go", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"SKIP gpu_check: torch {torch.__version__} at {sys.executable} sees no CUDA device; "
            "nothing checked (--device cpu --quick is the CPU smoke run)"
        )
        return 3
    if args.device == "cpu":
        torch.set_num_threads(1)
    started = args.started_at if args.started_at is not None else time.time()
    run = Run(
        device=torch.device("cuda:0" if args.device == "cuda" else "cpu"),
        quick=args.quick,
        out=args.out,
        deadline=started + args.budget,
        breaks=frozenset(args.breaks or ()),
    )
    report = check(run, args.only)
    return sum(r["status"] == "FAIL" for r in report["sections"].values())


if __name__ == "__main__":
    raise SystemExit(main())
