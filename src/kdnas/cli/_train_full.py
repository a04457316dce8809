"""``kdnas train`` on the full-training path: many processes (``--nproc``, torchrun), streamed
image folders (``--stream``) and per-epoch checkpoints with resume (``--checkpoint-dir``).

Used by ``kdnas.cli.train`` when any of those is asked for; the plain path (one process,
resident data, any loss) stays there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from kdnas.core import Architecture

__all__ = ["relaunch_with_torchrun", "run_full", "wants_full_path"]


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainConfig`` fields the command line sets (those given)."""
    from kdnas.cli._options import training_overrides

    given = (("width_multiplier", args.width_multiplier), ("epochs", args.epochs))
    overrides = {name: value for name, value in given if value is not None}
    overrides.update(training_overrides(args))
    return overrides


def prepared_data(args: argparse.Namespace) -> Any:
    """The dataset of ``--dataset``, held in memory, split and normalised."""
    from kdnas.data import load_dataset, prepare

    return prepare(
        load_dataset(args.dataset, resolution=args.resolution, test_fraction=args.test_fraction),
        valid_fraction=args.valid_fraction,
        resolution=args.resolution,
    )


def wants_full_path(args: argparse.Namespace) -> bool:
    """Whether the command asks for the full-training path."""
    return (
        args.nproc > 1
        or args.stream
        or args.checkpoint_dir is not None
        or int(os.environ.get("WORLD_SIZE", "1")) > 1
    )


def relaunch_with_torchrun(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Run this same ``kdnas train`` command under torchrun with ``args.nproc`` processes on
    this machine; its exit code."""
    argv = ["train"]
    for action in parser._actions:
        if not action.option_strings or action.dest in ("help", "nproc"):
            continue
        value = getattr(args, action.dest, None)
        if value is None or value == action.default:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            argv.append(flag)
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        else:
            argv += [flag, str(value)]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={args.nproc}", "-m", "kdnas", *argv,
    ]  # fmt: skip
    print(f"launching {args.nproc} processes: {' '.join(command)}", file=sys.stderr)
    return subprocess.run(command, check=False).returncode


def run_full(args: argparse.Namespace, space: Any, arch: Architecture) -> int:
    """Train ``arch`` on the full-training path and save the result JSON (rank 0)."""
    import torch

    from kdnas.data import StreamAugment, StreamingFolder, StreamingLoader, stream_seed
    from kdnas.train import (
        DistributedContext,
        FullRun,
        ResidentBatches,
        TrainConfig,
        train_full,
    )
    from kdnas.train._trainer import seeded_generators

    context = DistributedContext.from_environment(args.device)
    if args.threads is None and context.device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // context.world_size))
    overrides = config_overrides(args)
    if args.stream:
        folder = StreamingFolder(
            args.dataset, resolution=args.resolution or 224, valid_fraction=args.valid_fraction
        )
        padding = max(1, round(4 * folder.resolution / 32))
        augment = StreamAugment(crop=args.crop, padding=padding, flip=True)
        config = TrainConfig(crop_padding=augment.plan_padding, **overrides)
        subset = folder.subset(args.part, args.seed)
        batches: Any = StreamingLoader(
            folder,
            subset,
            augment,
            config.batch_size,
            context.device,
            workers=args.workers,
            rank=context.rank,
            world_size=context.world_size,
            channels_last=config.channels_last,
        )
        name, num_classes, channels = folder.name, folder.num_classes, folder.channels
    else:
        data = prepared_data(args)
        config = TrainConfig.for_data(data, **overrides)
        subset = data.subset(args.part, args.seed)
        batches = ResidentBatches(data, subset, config, context)
        name, num_classes, channels = data.name, data.num_classes, data.in_channels
    run = FullRun(
        arch_key=arch.key(),
        dataset=name,
        subset_hash=subset.content_hash,
        protocol=config.protocol_key(),
        seed=args.seed,
        epochs=config.epochs,
    )
    checkpoints = Path(
        args.checkpoint_dir or f"results/checkpoints/{arch.key()}-1of{args.part}-seed{args.seed}"
    )
    # The same initialisation as TrainingObjective's (rank 0's weights go to every rank).
    with seeded_generators(context.device, stream_seed(args.seed, 0, "init")):
        network = space.build_network(
            arch,
            num_classes=num_classes,
            in_channels=channels,
            width_multiplier=config.width_multiplier,
        )
    outcome = train_full(
        network,
        batches,
        config,
        run,
        checkpoint_dir=checkpoints,
        context=context,
        stop_after_epochs=args.stop_after_epochs,
    )
    if not context.is_main:
        return 0 if outcome.result.status == "ok" else 1
    record = {
        "arch": json.loads(arch.to_json()),
        "arch_key": arch.key(),
        "dataset": name,
        "part": args.part,
        "config": config.to_dict(),
        "world_size": outcome.world_size,
        "process_group": outcome.backend,
        "checkpoint_dir": str(checkpoints),
        "resumed_from_epoch": outcome.resumed_from_epoch,
        "step_losses": list(outcome.step_losses),
        **outcome.result.to_dict(),
    }
    text = json.dumps(record, indent=2, sort_keys=True)
    output = Path(
        args.output or f"results/train-{arch.key()}-1of{args.part}-nokd-seed{args.seed}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(text)
    print(f"saved {output} (checkpoints in {checkpoints})", file=sys.stderr)
    return 0 if outcome.result.status == "ok" else 1
