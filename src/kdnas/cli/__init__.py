"""The ``kdnas`` command: a thin layer that parses arguments and wires library parts together.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

# Sub-command modules, in the order `kdnas --help` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "kdnas.cli.demo",
    "kdnas.cli.search",
    "kdnas.cli.reproduce",
    "kdnas.cli.train",
    "kdnas.cli.bench",
    "kdnas.cli.dashboard",
    "kdnas.cli.models",
)

#: Commands whose module needs no other to build its parser. Building every command's
#: options imports torch (dataset forms, optimizers): about 2 s that ``kdnas dashboard``
#: skips, so the page listens a fraction of a second after it is started.
_STANDALONE_COMMANDS: dict[str, str] = {
    "dashboard": "kdnas.cli.dashboard",
    "report": "kdnas.cli.dashboard",
}


#: What the interrupt message of a command that trains says about resuming it.
_RESUME_HINTS: dict[str, str] = {
    command: "; rerun the same command to resume (finished evaluations are kept, and a "
    "teacher or full-data training goes on from its last finished epoch)"
    for command in ("search", "train", "bench", "demo")
}


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (a bad value is a one-line usage error)."""
    return _bounded_int(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0, for seeds (numpy's generators refuse negatives)."""
    return _bounded_int(text, 0, "an integer >= 0")


def _bounded_int(text: str, lowest: int, expected: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def hyperparameter_overrides(items: list[str], method: str, space: str) -> dict[str, float]:
    """Parse ``--hp NAME=NUMBER`` options and check them against ``method``'s hyperparameters
    before anything trains.

    Raises:
        UsageError: a malformed item, an unknown method, or a name the method does not have
            (the message lists the valid ones).
    """
    from kdnas.distill import loss_hyperparameters

    overrides: dict[str, float] = {}
    for item in items:
        name, separator, value = item.partition("=")
        try:
            number = float(value)
        except ValueError:
            separator = ""
        if not separator or not name.strip():
            raise UsageError(f"--hp expects NAME=NUMBER, got {item!r}")
        overrides[name.strip()] = number
    try:
        loss_hyperparameters(method, space, overrides)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return overrides


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """--device, --deterministic and --threads: where and how a command trains."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")
    parser.add_argument(
        "--deterministic",
        action="store_true",
        help="deterministic GPU kernels (same bits on a rerun, slower); default: autotuned",
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="CPU threads (default: all)"
    )


def add_short_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--precise-bn and --distillation-warmup: what short runs need (docs/distillation.md)."""
    parser.add_argument(
        "--precise-bn",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after training, recompute BatchNorm statistics over one pass of training "
        "batches (for short runs; default: off, the paper's protocol)",
    )
    parser.add_argument(
        "--distillation-warmup",
        type=float,
        default=None,
        metavar="FRACTION",
        help="ramp the distillation weight linearly over this fraction of the run's steps "
        "(default: 0, the paper's protocol)",
    )


def short_run_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``TrainConfig`` fields of ``add_short_run_arguments`` that were given.

    Raises:
        UsageError: a warm-up fraction outside [0, 1].
    """
    overrides: dict[str, Any] = {}
    if getattr(args, "precise_bn", None) is not None:
        overrides["precise_bn"] = args.precise_bn
    warmup = getattr(args, "distillation_warmup", None)
    if warmup is not None:
        if not 0.0 <= warmup <= 1.0:
            raise UsageError(
                f"--distillation-warmup must lie in [0, 1] (a fraction of the run), got {warmup:g}"
            )
        overrides["distillation_warmup"] = warmup
    return overrides


def check_device_option(name: str | None, *, here: bool) -> None:
    """Check a ``--device`` value before anything loads or trains.

    Args:
        name: the option's value (None: chosen automatically, nothing to check).
        here: the evaluations run on this machine, so the device must exist here; for Ray,
            only the name is checked (the workers may have GPUs the driver lacks).

    Raises:
        ValueError: an unknown device, or one this machine lacks.
    """
    from kdnas.train import check_device_available, pick_device

    if name is None:
        return
    if here:
        check_device_available(name)
    else:
        pick_device(name)


def check_store_option(path: str) -> None:
    """Check a ``--store`` value before anything loads or trains: a name the file system
    accepts, and an existing file that is a kdnas store (opened read-only: not modified).

    Raises:
        OSError: the name is too long, or the file cannot be read.
        kdnas.store.IncompatibleStoreError: an existing file that is not a kdnas store.
    """
    import os

    from kdnas.store import SQLiteStore

    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return  # a new store: made when the search starts
    if size:  # an empty file becomes a new store
        SQLiteStore(path, read_only=True).close()


def build_parser(modules: tuple[str, ...] = _COMMAND_MODULES) -> argparse.ArgumentParser:
    """The ``kdnas`` parser with the sub-commands of ``modules`` (default: all)."""
    from kdnas import __version__
    from kdnas.cli._errors import OneLineParser

    parser = OneLineParser(
        prog="kdnas",
        description="Neural architecture search with low-fidelity evaluations and "
        "knowledge distillation.",
    )
    parser.add_argument("--version", action="version", version=f"kdnas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in modules:
        importlib.import_module(name).register(subparsers)
    return parser


def _modules_for(argv: list[str]) -> tuple[str, ...]:
    """The command modules needed to parse ``argv``: one for a standalone command named
    first (after ``-v``), else all (``kdnas --help`` lists every command)."""
    words = [word for word in argv if word not in ("-v", "--verbose")]
    if words and words[0] in _STANDALONE_COMMANDS:
        return (_STANDALONE_COMMANDS[words[0]],)
    return _COMMAND_MODULES


class _PlainTextFormatter(logging.Formatter):
    """Log lines as plain text: a control character in a record (a path or a name read from
    a file, a traceback quoting one) is written as its escape, so it cannot drive the
    terminal; line breaks stay (tracebacks, multi-line messages)."""

    def format(self, record: logging.LogRecord) -> str:
        from kdnas.cli._console import printable

        return "\n".join(printable(line) for line in super().format(record).split("\n"))


def configure_logging(verbose: bool) -> None:
    """The CLI's logging: WARNING and up (DEBUG with ``verbose``) to stderr as plain text
    (``_PlainTextFormatter``); nothing changes when the root logger already has handlers."""
    handler = logging.StreamHandler()
    handler.setFormatter(_PlainTextFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(_modules_for(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from kdnas.cli._errors import describe_failure

    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(
            f"kdnas {args.command}: interrupted{_RESUME_HINTS.get(args.command, '')}",
            file=sys.stderr,
        )
        return 130
    except Exception as error:
        failure = describe_failure(error)
        if failure is None:  # a defect of kdnas: keep the traceback so it can be reported
            raise
        status, message = failure
        print(f"kdnas {args.command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
