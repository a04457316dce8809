"""Property-based fuzzing of the command line: Hypothesis generates arguments for every
sub-command and option (hostile text, markup, control characters, very long and deeply nested
values, numbers out of range, paths that are missing, folders, empty or garbage files) and the
``kdnas`` command must hold its contract on each:

- bad input: exit status 2 and exactly one line on stderr;
- an environment failure: exit status 1 and one line;
- input that is accepted reaches the command's work (stubbed here: nothing trains);
- never a traceback, and a refused command writes nothing into its working folder and leaves
  every other file as it was.

Profiles: CI runs a fixed, derandomised sample (``KDNAS_FUZZ_EXAMPLES``, default 40 per
sub-command); the nightly profile raises it (docs/threat_model.md).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdnas.cli import build_parser, main

EXAMPLES = int(os.environ.get("KDNAS_FUZZ_EXAMPLES", "40"))

#: Values that broke printers, parsers or file systems somewhere; each stays a plain string.
HOSTILE = [
    "[/]",
    "[bold red]styled[/bold red]",
    "<img src=x onerror=alert(1)>",
    "\x1b[31mred\x1b[0m",
    "bell\x07",
    "tab\there",
    "new\nline",
    "é日本語🙂",
    ":smile:",
    "",
    " ",
    "-",
    "--",
    "../../../etc/passwd",
    "$HOME",
    "%s%n%x",
    "'; DROP TABLE runs; --",
    "[" * 3000 + "]" * 3000,
    '{"space": "mobilenetv2", "genotype": ' + "[" * 2000 + "]" * 2000 + "}",
    "x" * 5000,
    "nan",
    "inf",
    "-inf",
    "-1",
    "0",
    "1e308",
    "3.5",
    "{}",
    "[]",
    "null",
    "original",
]


class _Reached(Exception):
    """Raised by the stubbed work of a command: the arguments were accepted."""


def _stub(*args: object, **kwargs: object) -> None:
    raise _Reached


@pytest.fixture
def stubbed_work(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every command's work replaced by ``_Reached``: only argument checking runs for real."""
    import kdnas.cli._train_full as train_full
    import kdnas.experiment as experiment
    import kdnas.experiment._bench as bench
    from kdnas.train import TrainingObjective

    monkeypatch.setattr(experiment, "run_search", _stub)
    monkeypatch.setattr(experiment, "run_demo", _stub)
    monkeypatch.setattr(bench, "run_bench_build", _stub)
    monkeypatch.setattr(TrainingObjective, "train", _stub)
    monkeypatch.setattr(train_full, "run_full", _stub)
    monkeypatch.setattr(train_full, "relaunch_with_torchrun", _stub)
    # A dashboard that would serve (its store opened and checked) stops there.
    from kdnas.dashboard import DashboardServer

    monkeypatch.setattr(DashboardServer, "serve_forever", _stub)
    monkeypatch.delenv("KDNAS_BENCHMARK", raising=False)
    monkeypatch.delenv("KDNAS_DATA", raising=False)
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands() -> dict[str, tuple[list[str], argparse.ArgumentParser]]:
    """Every leaf command: its argv prefix and its parser (``bench build``, ...)."""
    out = {}
    for name, sub in _subparsers(build_parser()).items():
        nested = _subparsers(sub)
        if nested:
            for inner, leaf in nested.items():
                out[f"{name} {inner}"] = ([name, inner], leaf)
        else:
            out[name] = ([name], sub)
    return out


COMMANDS = _commands()
REPRODUCE_TARGETS = ["table1", "table2", "table3", "table4", "figures", "field", "all", "bogus"]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if action.option_strings and not isinstance(action, argparse._HelpAction)
    ]


@contextlib.contextmanager
def _sandbox() -> Iterator[Path]:
    """A fresh working folder holding a few existing paths the generator may name."""
    previous = Path.cwd()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "a-folder").mkdir()
        (root / "empty-file").write_bytes(b"")
        (root / "garbage-file").write_bytes(bytes(range(256)) * 4)
        os.chdir(root)
        try:
            yield root
        finally:
            os.chdir(previous)


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): (
            "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
        )
        for path in sorted(root.rglob("*"))
    }


def _values(action: argparse.Action) -> st.SearchStrategy[str]:
    texts = st.sampled_from(HOSTILE) | st.text(
        alphabet=st.characters(blacklist_characters="\x00"), max_size=40
    )
    paths = st.sampled_from(
        ["a-folder", "empty-file", "garbage-file", "missing/x", "/dev/null", "a-folder/new"]
    )
    numbers = st.integers(-5, 10**7).map(str) | st.floats(allow_nan=True).map(repr)
    choices = st.sampled_from([str(c) for c in action.choices]) if action.choices else texts
    return st.one_of(texts, paths, numbers, choices)


@st.composite
def _argv(draw: st.DrawFn, command: str) -> list[str]:
    prefix, parser = COMMANDS[command]
    argv = list(prefix)
    if command == "reproduce":
        argv.append(draw(st.sampled_from(REPRODUCE_TARGETS)))
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    options = _options(parser)
    for action in draw(st.lists(st.sampled_from(options), max_size=4, unique_by=id)):
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
        else:
            argv += [flag, draw(_values(action))]
    if command != "reproduce":
        for action in positionals:
            count = 2 if action.nargs in ("+", 2) else 1
            argv += [draw(_values(action)) for _ in range(count)]
    return argv


def _run(argv: list[str]) -> tuple[int | str, str]:
    """(exit status, or "reached" when the arguments were accepted; stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status: int | str = main(argv)
        except _Reached:
            status = "reached"
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 2
    return status, err.getvalue()


def _holds_the_contract(argv: list[str], run=_run) -> None:  # type: ignore[no-untyped-def]
    with _sandbox() as root:
        before = _snapshot(root)
        status, err = run(argv)
        lines = [line for line in err.splitlines() if line.strip()]
        shown = f"kdnas {' '.join(a[:40] for a in argv)[:300]}"
        assert "Traceback" not in err, f"{shown}: {err[-2000:]}"
        assert status in (0, 1, 2, "reached"), f"{shown}: exit {status}"
        if status in (1, 2):
            error_lines = [line for line in lines if ": error: " in line]
            assert len(error_lines) == 1, f"{shown}: {lines[:5]}"
            # Refused or failed: the working folder and its files are as they were.
            assert _snapshot(root) == before, shown


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_generated_command_line_holds_the_contract(command: str, stubbed_work: None) -> None:
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_argv(command))
    def check(argv: list[str]) -> None:
        _holds_the_contract(argv)

    check()


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--run-id", "[/]", "--store", "missing-folder/s.sqlite"],
        ["search", "--run-id", "[/]", "--candidates", "0"],
        # The store is read to find the run's own optimizer when --algorithm is left out.
        ["search", "--store", "garbage-file"],
        ["search", "--store", "a-folder"],
        ["search", "--store", "empty-file", "--method", "kd"],
        ["train", "--arch", "[" * 60000 + "]" * 60000],
        ["train", "--arch", '{"space": "mobilenetv2", "genotype": ' + "[" * 900 + "]" * 900 + "}"],
    ],
)
def test_the_reported_cases_end_in_one_line(argv: list[str], stubbed_work: None) -> None:
    _holds_the_contract(argv)


def test_a_markup_run_id_prints_as_text(stubbed_work: None) -> None:
    """The header of ``kdnas search`` shows a run id in markup as the characters given."""
    import kdnas.experiment as experiment

    seen = []

    def record(*args: object, **kwargs: object) -> None:
        seen.append(kwargs.get("run_id"))
        raise _Reached

    experiment.run_search = record  # the fixture restores it
    out = io.StringIO()
    quiet = contextlib.redirect_stderr(io.StringIO())
    with _sandbox(), contextlib.redirect_stdout(out), quiet, pytest.raises(_Reached):
        main(["search", "--run-id", "[bold]x[/bold] [/]", "--store", "s.sqlite"])
    assert seen == ["[bold]x[/bold] [/]"]
    assert "(run '[bold]x[/bold] [/]')" in " ".join(out.getvalue().split())


def test_the_contract_check_bites() -> None:
    """The check is not blind: a command that leaves a file behind when it refuses, or that
    prints two error lines, or a traceback, breaks the contract."""

    def writes_then_fails(argv: list[str]) -> tuple[int, str]:
        Path("left-behind").write_text("x")
        return 2, "kdnas x: error: refused\n"

    def two_lines(argv: list[str]) -> tuple[int, str]:
        return 2, "kdnas x: error: one\nkdnas x: error: two\n"

    def traceback(argv: list[str]) -> tuple[int, str]:
        return 1, "Traceback (most recent call last):\nkdnas x: error: boom\n"

    for broken in (writes_then_fails, two_lines, traceback):
        with pytest.raises(AssertionError):
            _holds_the_contract(["x"], run=broken)
