"""``kdnas demo --tiny``: the README's command at smoke-test size, and its resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.store import SQLiteStore


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_tiny_demo_runs_end_to_end_and_resumes_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kdnas.experiment import DemoSettings

    tiny = DemoSettings.tiny()
    out = tmp_path / "demo"
    assert main(["demo", "--tiny", "--out", str(out), "--threads", "1"]) == 0
    shown = capsys.readouterr().out
    assert "reduced width" in shown and "chosen" in shown and "original" in shown
    report = json.loads((out / "report.json").read_text())
    for name in ("trajectory.png", "lf_vs_hf.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")

    search = report["search"]["evaluations"]
    assert len(search) == tiny.n_lf + tiny.n_hf
    assert [row["method"] for row in search] == ["kd"] * tiny.n_lf + ["nokd"] * tiny.n_hf
    assert all(row["part"] == tiny.part for row in search[: tiny.n_lf])
    # The chosen architecture is the search's best high-fidelity one.
    high = [row for row in search if row["part"] == 1]
    best = max(high, key=lambda row: row["valid_acc"])
    assert report["chosen"]["valid_acc"] == best["valid_acc"]
    assert report["original"]["test_acc"] is not None
    for method in ("kd", "nokd"):
        assert report["correlations_lf_valid_vs_hf_test"][method]["n"] == tiny.n_correlation
    study = report["correlation_study"]["evaluations"]
    assert len(study) == 3 * tiny.n_correlation + 1
    # Evaluations the search already made are reused by the study, not retrained.
    assert any(row["reused_from"] for row in study)
    # The teacher learned from all training images at high fidelity; the study's
    # high-fidelity result of the original network is the teacher's, not a second training.
    from kdnas.spaces import get_space

    teacher = report["teacher"]
    assert teacher["part"] == 1 and teacher["epochs"] == tiny.hf_epochs
    original = get_space("mobilenetv2").original().key()
    first, *later = [r for r in search + study if r["arch_key"] == original and r["part"] == 1]
    assert first["reused_from"] == f"teacher {teacher['key']}"
    assert all(row["reused_from"] for row in later)  # the study reuses the search's
    assert first["valid_acc"] == teacher["valid_acc"] == report["original"]["valid_acc"]
    assert report["cost"]["teacher_s"] == teacher["train_time_s"]

    with SQLiteStore(out / "store.sqlite") as store:
        assert {run.run_id for run in store.runs()} == {"search", "correlation"}
        stored = store.count()
    assert stored == len(search) + len(study)

    # Running it again reads every evaluation back from the store and trains nothing.
    assert main(["demo", "--tiny", "--out", str(out), "--threads", "1"]) == 0
    again = json.loads((out / "report.json").read_text())
    assert again["search"]["n_replayed"] == len(search)
    assert again["chosen"] == report["chosen"]
    with SQLiteStore(out / "store.sqlite") as store:
        assert store.count() == stored
