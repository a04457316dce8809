"""``kdnas reproduce field`` end to end on the paper's benchmark (a small setting: one run per
cell of three cheap rows; the 10-minute default is measured in docs/results.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kdnas.bench import TabularBenchmark
from kdnas.cli import main
from kdnas.peers import leaderboard as field_leaderboard
from kdnas.replay.arrays import load_space_arrays


def test_field_prints_versions_table_and_skips_an_absent_peer(
    paper_data_dir, tmp_path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = field_leaderboard._version
    # DEHB absent whatever this environment holds (it needs numpy < 2, so usually it is).
    monkeypatch.setattr(
        field_leaderboard, "_version", lambda name: None if name == "dehb" else real(name)
    )
    out = tmp_path / "field.json"
    bench = str(paper_data_dir / "benchmark.pickle")
    argv = ["reproduce", "field", "--benchmark", bench, "--trials", "1", "--json", str(out)]
    argv += ["--rows", "random", "proxy_gp_ucb", "zero_cost_sh", "dehb_best"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "libraries: kdnas " in printed
    assert "skipped: DEHB, best method (dehb is not installed: pip install 'kdnas[dehb]')" in (
        printed
    )
    assert "runs per cell: kdnas 1 (fewer than the issue's 100" in printed
    data = json.loads(out.read_text())
    assert data["skipped"] == {"dehb_best": "pip install 'kdnas[dehb]'"}
    # 3 rows x 2 spaces x 2 worker counts x 2 kinds of space, one run each.
    assert len(data["summary"]) == 24
    assert {cell["runs"] for cell in data["summary"].values()} == {1}
    # Proxy-prior GP-UCB's first high-fidelity run on the whole MobileNetV2 space is the
    # proxy's top architecture (deterministic), which is also the space's optimum: its time to
    # the optimum is that one training's stored wall time (2,841 s).
    arrays = load_space_arrays(TabularBenchmark.load(Path(bench)), "mobilenet", paper_data_dir)
    top = int(np.argmax(arrays.multiply_adds))
    assert top == int(np.argmax(arrays.hf_valid))
    assert data["summary"]["proxy_gp_ucb/mobilenet/1/whole"]["time_to_optimum_s"] == (
        pytest.approx(arrays.hf_time[top])
    )


def test_field_unknown_row_is_one_line_error(paper_data_dir, capsys) -> None:
    bench = str(paper_data_dir / "benchmark.pickle")
    assert main(["reproduce", "field", "--benchmark", bench, "--rows", "nope"]) == 2
    assert "unknown row 'nope'" in capsys.readouterr().err


def test_field_refuses_a_dataset_it_would_ignore(tmp_path, capsys) -> None:
    # Checked before the benchmark is read: the path need not exist.
    argv = ["reproduce", "field", "--benchmark", str(tmp_path / "none"), "--dataset", "digits"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "CIFAR-100 spaces only" in error and "'digits'" in error
