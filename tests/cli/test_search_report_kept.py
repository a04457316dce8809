"""A running search keeps its report folder current: report.json is rewritten after each
evaluation (the plots at the end), so a user or the dashboard reads it mid-search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import build_parser
from kdnas.cli.search import settings_from_args
from kdnas.experiment import run_search


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Probe:
    """Reads report.json as each evaluation ends (before the report keeper, which runs after
    the caller's callbacks, has written that evaluation)."""

    def __init__(self, report: Path) -> None:
        self.report = report
        self.seen: list[int | None] = []

    def on_start(self, suggestion: object) -> None:
        pass

    def on_result(self, evaluation: object, replayed: bool) -> None:
        file = self.report / "report.json"
        self.seen.append(json.loads(file.read_text())["n_evaluations"] if file.exists() else None)


def test_report_json_is_rewritten_after_each_evaluation(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "search", "--dataset", "digits", "--algorithm", "alg2", "--method", "kd",
            "--part", "9", "--candidates", "4", "--n-lf", "2", "--budget-evaluations", "3",
            "--epochs", "1", "--width-multiplier", "0.125", "--batch-size", "256",
            "--allow-chance-teacher",
        ]
    )  # fmt: skip
    report = tmp_path / "report"
    probe = _Probe(report)
    outcome = run_search(
        settings_from_args(args), tmp_path / "s.sqlite", callbacks=[probe], report_dir=report
    )
    assert probe.seen == [None, 1, 2]
    final = json.loads((report / "report.json").read_text())
    assert final["n_evaluations"] == 3 and final["stop_reason"] == outcome.summary.stop_reason
    assert (report / "trajectory.png").exists()  # drawn once, at the end
    # the warnings found on the way are in the report
    assert final["warnings"] and final["warnings"][0].startswith("the teacher")
