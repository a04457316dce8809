"""Options the training commands share, declared once: how a network trains, where it runs,
and how evaluations fan out (``kdnas search``, ``kdnas bench build``, ``kdnas train``)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = [
    "add_data_arguments",
    "add_executor_arguments",
    "add_limit_arguments",
    "add_protocol_arguments",
    "add_space_argument",
    "add_teacher_and_flip_arguments",
    "check_run_arguments",
    "dataset_help",
    "executor_from_args",
    "protocol_settings",
    "training_overrides",
]


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The training protocol of a search or a benchmark build: epochs (protocol, low and high
    fidelity), width, batch size, learning rate, validation share, flips, the teacher, the
    short-run options, and where and how it trains (--device, --deterministic, --threads)."""
    from kdnas.cli import add_compute_arguments, add_short_run_arguments, positive_int

    parser.add_argument("--epochs", type=positive_int, default=100, help="protocol epochs (100)")
    parser.add_argument("--lf-epochs", type=positive_int, default=None, help="low-fidelity epochs")
    parser.add_argument(
        "--hf-epochs", type=positive_int, default=None, help="high-fidelity epochs"
    )
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--batch-size", type=positive_int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    add_data_arguments(parser)
    add_limit_arguments(parser)
    add_teacher_and_flip_arguments(parser)
    add_short_run_arguments(parser)
    add_compute_arguments(parser)


def dataset_help() -> str:
    """--dataset's help: every form a dataset may take."""
    from kdnas.data import DATASET_FORMS

    return "; ".join(DATASET_FORMS) + " (default digits)"


def add_data_arguments(parser: argparse.ArgumentParser, resolution: bool = True) -> None:
    """--resolution (unless the command has its own) and --test-fraction."""
    from kdnas.cli import positive_int

    if resolution:
        parser.add_argument(
            "--resolution",
            type=positive_int,
            default=None,
            help="image side in pixels (default: digits 16, image folders 32, CIFAR 32)",
        )
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        help="share of every class a flat <class>/ image folder gives its test part "
        "(default 0.2; a fixed stratified draw, recorded with the run)",
    )


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    """--max-params, --max-multiply-adds, --max-latency-ms and --latency-batch-size: limits
    known before training, which filter the candidates."""
    from kdnas.cli import positive_int

    parser.add_argument(
        "--max-params",
        type=positive_int,
        default=None,
        help="largest trainable parameter count of a candidate, as built for this data and "
        "width (the paper's spaces keep P/3 < params < 3P of their original network)",
    )
    parser.add_argument(
        "--max-multiply-adds",
        type=positive_int,
        default=None,
        help="largest multiply-adds of one image's forward pass",
    )
    parser.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        help="largest median milliseconds of one forward pass of a --latency-batch-size "
        "batch, measured on the search's device (warm-up, repeats; cached beside the store)",
    )
    parser.add_argument(
        "--latency-batch-size",
        type=positive_int,
        default=1,
        help="batch the latency limit applies to (1; batch 1 is measured too)",
    )


def add_space_argument(parser: argparse.ArgumentParser) -> None:
    """--space: a built-in space, an installed package's (entry-point group ``kdnas.spaces``)
    or a user's module's ``package.module:attribute``; the help lists every one."""
    from kdnas.spaces import space_names

    parser.add_argument(
        "--space",
        default="mobilenetv2",
        help=f"search space: {', '.join(space_names())} (a class or instance implementing "
        "kdnas.spaces.SearchSpace; ./module.py is found from the current directory); "
        "default mobilenetv2",
    )


def add_teacher_and_flip_arguments(parser: argparse.ArgumentParser) -> None:
    """--flip/--no-flip, --teacher-data, --teacher and --allow-chance-teacher."""
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (default: on for colour images, off for the digits "
        "and for grayscale image folders, where a mirrored symbol is another symbol)",
    )
    parser.add_argument(
        "--teacher-data",
        default="full",
        choices=("full", "subset"),
        help="where the teacher learns: 'full' (default, as in the paper): the whole "
        "training split minus validation, with the high-fidelity protocol; 'subset': the "
        "low-fidelity 1/PART with --epochs (earlier kdnas; resumes their stores)",
    )
    parser.add_argument(
        "--teacher",
        default=None,
        metavar="PATH",
        help="distill from your own trained network, a torch.export program (.pt2) that "
        "takes the images as kdnas prepares them and returns class scores (its logits "
        "only: --method kd); the original network is then not trained as the teacher",
    )
    parser.add_argument(
        "--allow-chance-teacher",
        action="store_true",
        help="distill even from a teacher no better than chance (default: refuse)",
    )


def training_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainConfig`` fields the command line sets (only those given): batch size,
    learning rate, deterministic kernels, flips and the short-run options.

    Raises:
        UsageError: a short-run option out of range.
    """
    from kdnas.cli import short_run_overrides

    given = (("batch_size", "batch_size"), ("lr", "lr"), ("horizontal_flip", "flip"))
    overrides = {
        field: getattr(args, name)
        for field, name in given
        if getattr(args, name, None) is not None
    }
    if getattr(args, "deterministic", False):
        overrides["deterministic"] = True
    overrides.update(short_run_overrides(args))
    return overrides


def protocol_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``SearchSettings`` fields that ``add_protocol_arguments`` and the data, limit and
    teacher options declare, as the command line gives them (search and bench build)."""
    return {
        "lf_epochs": args.lf_epochs,
        "hf_epochs": args.hf_epochs,
        "epochs": args.epochs,
        "width_multiplier": args.width_multiplier,
        "valid_fraction": args.valid_fraction,
        "train": training_overrides(args),
        "teacher_data": args.teacher_data,
        "allow_chance_teacher": args.allow_chance_teacher,
        "resolution": args.resolution,
        "test_fraction": args.test_fraction,
        "max_params": args.max_params,
        "max_multiply_adds": args.max_multiply_adds,
        "max_latency_ms": args.max_latency_ms,
        "latency_batch_size": args.latency_batch_size,
        "teacher_file": args.teacher,
    }


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--executor and the Ray options."""
    from kdnas.cli import positive_int

    parser.add_argument("--executor", default="serial", help="serial (default) or ray")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: local)")
    parser.add_argument("--cpus-per-eval", type=float, default=1.0, help="Ray CPUs per task")
    parser.add_argument("--gpus-per-eval", type=float, default=0.0, help="Ray GPUs per task")
    parser.add_argument(
        "--max-concurrent", type=positive_int, default=None, help="Ray tasks at once"
    )


def check_run_arguments(args: argparse.Namespace) -> None:
    """--run-id and --store, checked before anything loads or trains.

    Raises:
        UsageError: an empty run id or a store path that cannot be a store.
    """
    from kdnas.cli import UsageError, check_store_option

    if not args.run_id:
        raise UsageError("--run-id must not be empty")
    check_store_option(args.store)


def executor_from_args(args: argparse.Namespace, device: str | None) -> tuple[Any, str | None]:
    """The executor of ``--executor`` and the device the objective is built for.

    Under Ray the objective is built on the driver, which may have no GPU, and its tasks run
    where Ray puts them: with ``--gpus-per-eval`` > 0 and no ``--device`` it is built for
    "cuda"; a CUDA ``--device`` without GPUs per task is refused (such tasks see none).

    Raises:
        UsageError: an unknown executor, a device that is not there, Ray missing, or Ray
            options without ``--executor ray``.
    """
    from kdnas.cli import UsageError, check_device_option
    from kdnas.execute import EXECUTORS, import_ray, make_executor

    if args.executor not in EXECUTORS:
        raise UsageError(
            f"unknown executor {args.executor!r}; valid executors: {', '.join(EXECUTORS)}"
        )
    check_device_option(device, here=args.executor == "serial")
    if args.executor != "ray":
        if args.address is not None:
            raise UsageError("--address needs --executor ray")
        return make_executor(args.executor), device
    try:
        import_ray()
    except ImportError as error:
        raise UsageError(str(error)) from None
    if args.gpus_per_eval == 0 and (device or "").startswith("cuda"):
        raise UsageError(
            f"--device {device} needs --gpus-per-eval > 0 under Ray: tasks that ask Ray for "
            "no GPU see none"
        )
    if args.gpus_per_eval > 0 and device is None:
        device = "cuda"
    options = {
        "address": args.address,
        "num_cpus_per_eval": args.cpus_per_eval,
        "num_gpus_per_eval": args.gpus_per_eval,
        "max_concurrent": args.max_concurrent,
    }
    return make_executor("ray", **options), device
