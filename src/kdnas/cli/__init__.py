"""The ``kdnas`` command: a thin layer that parses arguments and wires library parts together.

Each sub-command lives in its own module of this package and exposes
``register(subparsers) -> None``; the parser it adds sets ``func(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Sub-command modules, in the order `kdnas --help` lists them.
_COMMAND_MODULES: tuple[str, ...] = (
    "kdnas.cli.demo",
    "kdnas.cli.search",
    "kdnas.cli.reproduce",
    "kdnas.cli.train",
    "kdnas.cli.bench",
)


class UsageError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


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


def build_parser() -> argparse.ArgumentParser:
    from kdnas import __version__

    parser = argparse.ArgumentParser(
        prog="kdnas",
        description="Neural architecture search with low-fidelity evaluations and "
        "knowledge distillation.",
    )
    parser.add_argument("--version", action="version", version=f"kdnas {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except (UsageError, FileNotFoundError, ValueError) as error:
        print(f"kdnas {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kdnas {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
