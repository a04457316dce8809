"""``kdnas train``: train one architecture at one fidelity and print and save its result."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from kdnas.core import METHODS, Architecture, Fidelity

__all__ = ["register"]

_DEFAULT_TEACHERS = Path("kdnas-teachers")


def register(subparsers: Any) -> None:
    from kdnas.cli import (
        add_compute_arguments,
        add_short_run_arguments,
        non_negative_int,
        positive_int,
    )
    from kdnas.cli._options import (
        add_data_arguments,
        add_space_argument,
        add_teacher_and_flip_arguments,
        dataset_help,
    )

    parser = subparsers.add_parser(
        "train",
        help="train one architecture at one fidelity",
        description="Train one architecture of a search space on a dataset part with a loss "
        "(plain cross-entropy or distillation from the space's original network), then print "
        "and save the result as JSON.",
    )
    add_space_argument(parser)
    parser.add_argument(
        "--arch",
        required=True,
        help="'original', an index into the paper's listed architectures, or JSON "
        '(\'{"space": ..., "genotype": ...}\' or the paper\'s list form)',
    )
    parser.add_argument(
        "--archs",
        default=None,
        help="random_arcs_<space>.pickle or its folder, for --arch INDEX "
        "(default: $KDNAS_DATA, else ../shared/data/mf_nas_kd beside the checkout)",
    )
    parser.add_argument(
        "--dataset",
        default="digits",
        help=dataset_help(),
    )
    add_data_arguments(parser, resolution=False)  # --test-fraction; --resolution is below
    parser.add_argument(
        "--resolution", type=positive_int, default=None, help="image side in pixels (digits: 16)"
    )
    parser.add_argument("--valid-fraction", type=float, default=0.1, help="default 0.1")
    parser.add_argument("--part", type=positive_int, default=1, help="train on 1/PART of the data")
    parser.add_argument("--loss", default="nokd", help=f"one of {', '.join(METHODS)}")
    parser.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="loss hyperparameter override, e.g. --hp tau=4 --hp lambda=0.9",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="default: the protocol's 100"
    )
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--width-multiplier", type=float, default=None)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    add_compute_arguments(parser)
    parser.add_argument(
        "--teacher-dir",
        default=str(_DEFAULT_TEACHERS),
        help=f"where teachers are saved and reused (default ./{_DEFAULT_TEACHERS})",
    )
    parser.add_argument("--output", default=None, help="result JSON path (default: results/)")
    parser.add_argument(
        "--keep-weights-dir",
        default=None,
        help="where a full-data run (--part 1, --loss nokd) keeps its trained weights for "
        "kdnas export (default: a weights folder beside the result JSON)",
    )
    add_teacher_and_flip_arguments(parser)
    add_short_run_arguments(parser)
    full = parser.add_argument_group(
        "high fidelity at scale (plain cross-entropy; see docs/training.md)"
    )
    full.add_argument(
        "--nproc",
        type=positive_int,
        default=1,
        help="train with DistributedDataParallel on N processes of this machine, launched by "
        "torchrun (one per GPU on CUDA, gloo on the CPU)",
    )
    full.add_argument(
        "--stream",
        action="store_true",
        help="stream an image folder from disk (decoded in DataLoader workers) instead of "
        "holding it in memory",
    )
    full.add_argument(
        "--workers", type=non_negative_int, default=2, help="decoding workers for --stream"
    )
    full.add_argument(
        "--crop",
        choices=("resized", "pad", "none"),
        default="resized",
        help="--stream training crop: random-resized (ImageNet protocol, default) or random "
        "crop of the padded image (CIFAR protocol)",
    )
    full.add_argument(
        "--checkpoint-dir",
        default=None,
        help="checkpoint every epoch here and resume from it (default with --nproc/--stream: "
        "results/checkpoints/<arch>-1of<part>-seed<seed>)",
    )
    full.add_argument(
        "--stop-after-epochs",
        type=positive_int,
        default=None,
        help="end after N epochs of this call, keeping the checkpoint to resume later",
    )
    parser.set_defaults(func=run, train_parser=parser)


#: Longest ``--arch`` accepted: the paper's genotypes are a few hundred characters.
_MAX_ARCH_CHARACTERS = 100_000


def _parse_arch(text: str, space: Any, archs: str | None) -> Architecture:
    from kdnas.cli import UsageError

    if text == "original":
        return space.original()
    if text.lstrip("-").isdigit():
        from kdnas.spaces import load_listed_architectures

        location = archs or os.environ.get("KDNAS_DATA")
        listed = load_listed_architectures(space.name, location, count=None)
        index = int(text)
        if not 0 <= index < len(listed):
            raise UsageError(f"--arch index {index} out of range 0..{len(listed) - 1}")
        return listed[index]
    if len(text) > _MAX_ARCH_CHARACTERS:
        raise UsageError(
            f"--arch is {len(text):,} characters long; an architecture is at most "
            f"{_MAX_ARCH_CHARACTERS:,}"
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise UsageError(
            f"--arch must be 'original', an index or JSON, got {text[:60]!r}"
        ) from None
    except RecursionError:
        raise UsageError("--arch: JSON nested too deeply for an architecture") from None
    if isinstance(value, dict):
        arch = Architecture.from_json(text)
    elif hasattr(space, "from_paper"):
        arch = space.from_paper(value)
    else:
        arch = Architecture(space.name, value)
    space.validate(arch)
    return arch


def run(args: argparse.Namespace) -> int:
    from kdnas.cli import UsageError, check_device_option, hyperparameter_overrides

    if args.loss not in METHODS:
        raise UsageError(f"unknown loss {args.loss!r}; valid losses: {', '.join(METHODS)}")
    import torch

    from kdnas.spaces import get_space
    from kdnas.train import KeepPolicy, TrainConfig, TrainingObjective, WeightsFolder

    check_device_option(args.device, here=True)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    space = get_space(args.space)
    # Checked before any data is read or anything trains.
    hyperparameters = hyperparameter_overrides(args.hp, args.loss, space.name)
    arch = _parse_arch(args.arch, space, args.archs)
    from kdnas.cli._train_full import (
        config_overrides,
        prepared_data,
        relaunch_with_torchrun,
        run_full,
        wants_full_path,
    )

    if wants_full_path(args):
        if args.loss != "nokd":
            raise UsageError(
                "--nproc, --stream and --checkpoint-dir train high fidelity with plain "
                f"cross-entropy: use --loss nokd (got {args.loss!r})"
            )
        if args.precise_bn:
            raise UsageError(
                "--precise-bn is not implemented with --nproc, --stream or --checkpoint-dir"
            )
        if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
            return relaunch_with_torchrun(args, args.train_parser)
        return run_full(args, space, arch)
    fidelity = Fidelity(part=args.part, method=args.loss, epochs=args.epochs)
    output = Path(
        args.output
        or f"results/train-{arch.key()}-1of{args.part}-{args.loss}-seed{args.seed}.json"
    )
    kept_weights = WeightsFolder(
        Path(args.keep_weights_dir or output.parent / "weights"), KeepPolicy(None)
    )
    data = prepared_data(args)
    if args.teacher is not None:  # refused in one line before anything trains
        from kdnas.distill import LOGIT_METHODS
        from kdnas.train import load_exported_teacher

        if args.loss not in LOGIT_METHODS:
            raise UsageError(
                f"--teacher gives logits only, which {args.loss} cannot use: --loss kd"
            )
        load_exported_teacher(args.teacher, data.in_channels, data.resolution, data.num_classes)
    # The teacher follows the same protocol, so with --epochs it trains as long.
    config = TrainConfig.for_data(data, **config_overrides(args))
    objective = TrainingObjective(
        space,
        data,
        config,
        teacher_dir=args.teacher_dir,
        seed=args.seed,
        device=args.device,
        hyperparameters={args.loss: hyperparameters} if hyperparameters else None,
        teacher_data=args.teacher_data,
        allow_chance_teacher=args.allow_chance_teacher,
        teacher_file=args.teacher,
        weights=kept_weights,
    )
    result = objective.train(arch, fidelity)
    record = {
        "arch": json.loads(arch.to_json()),
        "arch_key": arch.key(),
        "dataset": data.name,
        "part": args.part,
        "config": config.to_dict(),
        **result.to_dict(),
    }
    kept = None
    if result.status == "ok" and objective.keeps(fidelity):
        kept = kept_weights.paths(objective.weights_key(arch, fidelity))[0]
        record["weights"] = str(kept)
    text = json.dumps(record, indent=2, sort_keys=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text + "\n")
    print(text)
    print(f"saved {output}", file=sys.stderr)
    if kept is not None:
        print(
            f"kept the weights in {kept}; use them: kdnas export {kept} --to MODEL",
            file=sys.stderr,
        )
    return 0 if result.status == "ok" else 1
