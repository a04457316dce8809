"""Ctrl-C during a command that trains says how to resume it (exit status 130)."""

from __future__ import annotations

import argparse

import pytest

import kdnas.cli.models
import kdnas.cli.train
from kdnas.cli import main


def _interrupt(args: argparse.Namespace) -> int:
    raise KeyboardInterrupt


def test_an_interrupted_training_says_how_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kdnas.cli.train, "run", _interrupt)
    assert main(["train", "--arch", "original"]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err


def test_an_interrupted_command_that_trains_nothing_just_stops(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kdnas.cli.models, "run_best", _interrupt)
    assert main(["best", "s.sqlite"]) == 130
    assert capsys.readouterr().err.strip() == "kdnas best: interrupted"
