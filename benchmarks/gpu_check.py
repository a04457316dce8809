"""The GPU check's in-process parts (run by ``benchmarks/gpu_check.sh``, which adds the
throughput, DDP and streaming steps).

Sections (``--sections``, default all):

* ``amp``: trains a MobileNetV2 with bfloat16 autocast and channels-last on CIFAR-shaped
  synthetic data (classes carry a colour template, so accuracy above chance shows learning),
  and the same network in float32; prints both accuracies, losses and seconds.
* ``losses``: every training loss (cross-entropy and the nine distillation methods) on one
  batch, under autocast and in float32, same weights and state; prints the relative
  difference of each "total" (fails above ``--loss-tolerance``, or on a non-finite value).
* ``cache``: the teacher cache on the device: a first KD student fills it, a second is served
  from it (hits, no misses), and the second matches the same student trained with the live
  teacher (final loss within 5 %: cuDNN may choose other kernels for the live teacher);
  prints the cached student's seconds against the live one's.
* ``ray``: a Ray task asking for one GPU reports the device it sees (skipped without Ray).

Prints every figure and ``PASS``/``FAIL`` per section; the exit code is the number of failed
sections. ``--device cpu --quick`` runs the same code on the CPU at toy sizes (for the test
suite). Writes ``--out``/gpu_check.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdnas.core import METHODS, Fidelity
from kdnas.data import Dataset, ImageSet, prepare
from kdnas.distill import build_loss
from kdnas.spaces import get_space
from kdnas.train import TeacherCache, TrainConfig, TrainingObjective, autocast, describe_device


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


def _config(args: argparse.Namespace, data: Any, **changes: Any) -> TrainConfig:
    return TrainConfig.for_data(
        data, epochs=args.epochs, width_multiplier=args.width, batch_size=args.batch, **changes
    )


def section_amp(args: argparse.Namespace, data: Any, report: dict) -> bool:
    space = get_space("mobilenetv2")
    rows = {}
    for label, amp in (("bf16 autocast", True), ("float32", False)):
        objective = TrainingObjective(
            space, data, _config(args, data, amp=amp, channels_last=True), device=args.device
        )
        result = objective.train(space.original(), Fidelity(part=1, method="nokd"))
        rows[label] = {
            "status": result.status,
            "valid_acc": result.valid_acc,
            "final_loss": result.final_loss,
            "train_time_s": result.train_time_s,
        }
        print(
            f"  {label:>14}: {result.status}, valid_acc {result.valid_acc:.3f}, final loss "
            f"{result.final_loss:.4f}, {result.train_time_s:.2f} s ({args.epochs} epochs)"
        )
    report["amp"] = rows
    chance = 1.0 / data.num_classes
    return all(
        r["status"] == "ok" and math.isfinite(r["final_loss"]) and r["valid_acc"] > chance
        for r in rows.values()
    )


def section_losses(args: argparse.Namespace, data: Any, report: dict) -> bool:
    device = torch.device(args.device)
    space = get_space("mobilenetv2")
    torch.manual_seed(0)
    student = space.build_network(
        space.sample(np.random.default_rng(1)), data.num_classes, 3, args.width
    )
    teacher = space.build_network(space.original(), data.num_classes, 3, args.width)
    memory = torch.channels_last
    student = student.to(device, memory_format=memory).train()
    teacher = teacher.to(device, memory_format=memory).eval()
    count = min(args.batch, len(data.train))
    mean = torch.tensor(data.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(data.std, device=device).view(1, -1, 1, 1)
    images = (data.train.images[:count].to(device).float() / 255 - mean) / std
    images = images.contiguous(memory_format=memory)
    labels = data.train.labels[:count].to(device)
    positions = torch.arange(count, device=device)
    config = TrainConfig(amp=True)
    ok = True
    rows = {}
    with torch.no_grad():
        probe_s, probe_t = student.forward_taps(images[:4]), teacher.forward_taps(images[:4])
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
        for label, amp in (("float32", False), ("bf16", True)):
            copy_of_loss = copy.deepcopy(loss)  # memory banks change as they are used
            with torch.random.fork_rng(
                devices=[device.index or 0] if device.type == "cuda" else []
            ):
                torch.manual_seed(0)
                context = (
                    autocast(device, config) if amp else torch.autocast(device.type, enabled=False)
                )
                with context:
                    summary = None
                    if copy_of_loss.needs_teacher:
                        with torch.no_grad():
                            summary = copy_of_loss.teacher_summary(teacher.forward_taps(images))
                    terms = copy_of_loss(student.forward_taps(images), summary, labels, positions)
            totals[label] = float(terms["total"].float())
        difference = abs(totals["bf16"] - totals["float32"]) / max(abs(totals["float32"]), 1e-8)
        finite = all(math.isfinite(v) for v in totals.values())
        good = finite and difference <= args.loss_tolerance
        ok &= good
        rows[method] = totals | {"relative_difference": difference}
        print(
            f"  {method:>12}: float32 {totals['float32']:12.5f}  bf16 {totals['bf16']:12.5f}  "
            f"rel. diff {difference:.2e} {'' if good else '  <- FAIL'}"
        )
    report["losses"] = rows
    if torch.device(args.device).type != "cuda":
        print("  (on the CPU autocast is off: both columns are float32)")
    return ok


def section_cache(args: argparse.Namespace, data: Any, report: dict) -> bool:
    space = get_space("mobilenetv2")
    config = _config(args, data)
    cache = TeacherCache()
    teachers = tempfile.mkdtemp()  # the live student below loads the same teacher
    objective = TrainingObjective(
        space, data, config, teachers, device=args.device, cache=cache, seed=0
    )
    rng = np.random.default_rng(5)
    first, second = space.sample(rng), space.sample(rng)
    fidelity = Fidelity(part=2, method="kd")
    objective.train(first, fidelity)  # trains the teacher, fills the cache
    hits, misses = cache.hits, cache.misses
    cached = objective.train(second, fidelity)
    served = cache.hits - hits
    new_misses = cache.misses - misses
    live_objective = TrainingObjective(
        space, data, config, teachers, device=args.device, seed=0, use_cache=False
    )
    live = live_objective.train(second, fidelity)
    difference = abs(cached.final_loss - live.final_loss) / max(abs(live.final_loss), 1e-8)
    print(
        f"  cache: {served} hits, {new_misses} misses for the second student; final loss "
        f"cached {cached.final_loss:.5f} vs live {live.final_loss:.5f} (rel. {difference:.1e}); "
        f"valid_acc {cached.valid_acc:.3f} vs {live.valid_acc:.3f}; student seconds cached "
        f"{cached.train_time_s:.2f} vs live {live.train_time_s:.2f} "
        f"({cached.train_time_s / max(live.train_time_s, 1e-9):.2f}x)"
    )
    report["cache"] = {
        "hits": served,
        "misses": new_misses,
        "final_loss_cached": cached.final_loss,
        "final_loss_live": live.final_loss,
        "train_time_cached_s": cached.train_time_s,
        "train_time_live_s": live.train_time_s,
    }
    # Bit-for-bit equal on the CPU (tests/train); cuDNN may pick other kernels for the live
    # teacher, so on a GPU the two students may drift apart a little over the epochs.
    return (
        cached.status == live.status == "ok"
        and served > 0
        and new_misses == 0
        and difference <= 0.05
    )


def section_ray(args: argparse.Namespace, data: Any, report: dict) -> bool:
    try:
        import ray
    except ImportError:
        print("  skipped: Ray is not installed (pip install 'kdnas[ray]')")
        report["ray"] = "skipped"
        return True
    gpus = 1 if torch.device(args.device).type == "cuda" else 0
    ray.init(num_cpus=2, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    try:

        @ray.remote(num_gpus=gpus)
        def where() -> str:
            import torch

            return describe_device(torch.device("cuda" if torch.cuda.is_available() else "cpu"))

        seen = ray.get(where.remote(), timeout=120)
    finally:
        ray.shutdown()
    print(f"  a Ray task with num_gpus={gpus} ran on: {seen}")
    report["ray"] = seen
    return ("cuda" in seen) == bool(gpus)


SECTIONS = {
    "amp": section_amp,
    "losses": section_losses,
    "cache": section_cache,
    "ray": section_ray,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="toy sizes (CPU smoke run)")
    parser.add_argument("--loss-tolerance", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    args = parser.parse_args()
    if args.quick:
        args.images, args.side, args.epochs, args.width, args.batch = 96, 8, 2, 0.25, 16
    else:
        args.images, args.side, args.epochs, args.width, args.batch = 4096, 32, 4, 1.0, 128
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check.py: no CUDA device; use --device cpu for the CPU smoke run")
        return 0
    print(f"device: {describe_device(torch.device(args.device))}, torch {torch.__version__}")
    data = prepare(synthetic_cifar(args.images, args.images // 4, 10, args.side))
    report: dict[str, Any] = {"device": args.device, "torch": torch.__version__}
    failed = 0
    for name in args.sections:
        print(f"[{name}]")
        start = time.perf_counter()
        try:
            passed = SECTIONS[name](args, data, report)
        except Exception as error:  # a GPU check reports every failure and goes on
            print(f"  error: {type(error).__name__}: {error}")
            passed = False
        failed += not passed
        print(f"  {'PASS' if passed else 'FAIL'} ({time.perf_counter() - start:.1f} s)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
