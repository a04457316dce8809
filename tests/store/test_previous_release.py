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


def test_the_previous_release_run_resumes_when_its_optimizer_is_not_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default optimizer changed since (alg2, then proxy-gp-ucb): a run the store holds
    goes on with its own, so the command without ``--algorithm`` resumes it unchanged."""
    store = _copy(tmp_path)
    with SQLiteStore(store) as opened:
        fingerprint = opened.run("search").fingerprint
    command = [arg for arg in COMMAND if arg not in ("--algorithm", "alg2")]
    assert len(command) == len(COMMAND) - 2
    assert main([*command, "--store", str(store), "--budget-evaluations", "3"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["algorithm"], summary["replayed"], summary["new"]) == ("alg2", 3, 0)
    assert summary["teacher"]["key"] == TEACHER_KEY and summary["teacher"]["loaded"]
    with SQLiteStore(store) as opened:
        assert opened.run("search").fingerprint == fingerprint


@pytest.mark.slow  # one 4-epoch training (~20 s on a loaded 2-core machine)
def test_the_previous_release_run_goes_on_with_a_larger_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = _copy(tmp_path)
    summary = _search(store, 4, capsys)
    assert (summary["replayed"], summary["new"]) == (3, 1)
    assert summary["teacher"]["loaded"]


#: The command that wrote gray-folder.sqlite (its README), less the budget.
GRAY_COMMAND = [
    "search", "--dataset", "imgs", "--algorithm", "gp-ucb", "--candidates", "2", "--n-lf", "1",
    "--epochs", "1", "--width-multiplier", "0.125", "--threads", "1", "--json",
]  # fmt: skip


def write_gray_folder(root: Path) -> None:
    """The fixture's image folder: classes 0-2 of the first 160 digits as 8-bit gray PNGs."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for split, rows in (("train", range(0, 120)), ("test", range(120, 160))):
        for i in rows:
            label = int(digits.target[i])
            if label > 2:
                continue
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")


def test_a_gray_folder_run_of_the_previous_release_resumes_on_the_data_it_was_made_with(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """kdnas now loads gray images as one channel (another data hash); a run made when they
    were three equal channels resumes on those, and other settings are still refused."""
    monkeypatch.chdir(tmp_path)
    write_gray_folder(tmp_path / "imgs")
    shutil.copy(RELEASE / "gray-folder.sqlite", tmp_path / "gray.sqlite")
    command = [*GRAY_COMMAND, "--store", "gray.sqlite"]
    assert main([*command, "--budget-evaluations", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["replayed"], summary["new"]) == (1, 0)
    assert main([*command, "--budget-evaluations", "1", "--seed", "5"]) == 2
    assert "seed: 0 (stored) vs 5 (now)" in capsys.readouterr().err
