"""``kdnas reproduce table2|table4|figures`` end to end on the paper's benchmark (few runs)."""

from __future__ import annotations

import json

from kdnas.cli import main


def test_table4_json_layout(paper_data_dir, tmp_path, capsys) -> None:
    out = tmp_path / "t4.json"
    bench = str(paper_data_dir / "benchmark.pickle")
    assert (
        main(["reproduce", "table4", "--benchmark", bench, "--trials", "4", "--json", str(out)])
        == 0
    )
    data = json.loads(out.read_text())
    assert set(data) == {"mobilenet", "shufflenet"}
    for space in data.values():
        assert {"hf_only", "random_search", "27", "9"} <= set(space)
        assert set(space["27"]) == {"nokd", "kd", "attention", "nst"}
        assert all(v > 0 for v in space["9"].values())
    printed = capsys.readouterr().out
    assert "13,437" in printed and "paper" in printed  # the paper's HF-only time, side by side


def test_table2_json_layout(paper_data_dir, tmp_path) -> None:
    out = tmp_path / "t2.json"
    bench = str(paper_data_dir / "benchmark.pickle")
    assert (
        main(["reproduce", "table2", "--benchmark", bench, "--trials", "10", "--json", str(out)])
        == 0
    )
    data = json.loads(out.read_text())
    cell = data["shufflenet"]["27"]["nst"]
    assert set(cell) == {"percentile", "test_acc", "p_value_vs_nokd"}
    # 10 simulated searches: seeds 0-4 give test accuracy 69.2-70.5 and percentile 5.5-20.5.
    assert 0 < cell["percentile"] <= 100 and 60 < cell["test_acc"] < 75
    assert data["mobilenet"]["9"]["nokd"]["p_value_vs_nokd"] is None  # NaN -> null


def test_bad_benchmark_path_is_one_line_error(tmp_path, capsys) -> None:
    missing = str(tmp_path / "nope.pickle")
    assert main(["reproduce", "table4", "--benchmark", missing]) == 2
    assert "does not exist" in capsys.readouterr().err
