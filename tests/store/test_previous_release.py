"""A store and a teacher folder written by the previous release resume under this one: the
run's fingerprint and the teacher's key are unchanged, nothing is recomputed, and the run goes
on from where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.store import SQLiteStore

RELEASE = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0"
#: The command that wrote the store (its README), less the budget.
COMMAND = [
    "search", "--space", "mobilenetv2", "--dataset", "digits", "--algorithm", "alg2",
    "--method", "kd", "--part", "3", "--n-lf", "2", "--candidates", "6", "--epochs", "4",
    "--batch-size", "32", "--width-multiplier", "0.25", "--threads", "1", "--json",
]  # fmt: skip
#: What the previous release recorded (its JSON summary).
TEACHER_KEY = "teacher-b3b2e50413b42fd70cb6"


def _copy(tmp_path: Path) -> Path:
    store = tmp_path / "search.sqlite"
    shutil.copy(RELEASE / "search.sqlite", store)
    shutil.copytree(RELEASE / "search.sqlite.teachers", tmp_path / "search.sqlite.teachers")
    return store


def _search(store: Path, budget: int, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main([*COMMAND, "--store", str(store), "--budget-evaluations", str(budget)]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_previous_release_store_and_teacher_resume_without_recomputing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _copy(tmp_path)
    with SQLiteStore(store) as opened:
        before = [(e.arch.key(), e.result) for e in opened.results("search")]
    summary = _search(store, 3, capsys)
    assert (summary["replayed"], summary["new"]) == (3, 0)
    assert summary["teacher"]["key"] == TEACHER_KEY and summary["teacher"]["loaded"]
    assert summary["teacher"]["valid_acc"] == pytest.approx(0.5594405594405595)
    with SQLiteStore(store) as opened:
        after = [(e.arch.key(), e.result) for e in opened.results("search")]
    assert after == before and len(after) == 3


@pytest.mark.slow  # one 4-epoch training (~20 s on a loaded 2-core machine)
def test_the_previous_release_run_goes_on_with_a_larger_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _copy(tmp_path)
    summary = _search(store, 4, capsys)
    assert (summary["replayed"], summary["new"]) == (3, 1)
    assert summary["teacher"]["loaded"]
