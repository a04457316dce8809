"""`kdnas reproduce table3`: the side-by-side print, the JSON file, a benchmark without
ImageNet."""

from __future__ import annotations

import json

from kdnas.bench import BenchmarkRecord, TabularBenchmark
from kdnas.cli import main


def test_table3_prints_beside_the_paper_and_writes_json(paper_data_dir, tmp_path, capsys):
    out = tmp_path / "t3.json"
    bench = str(paper_data_dir / "benchmark.pickle")
    argv = ["reproduce", "table3", "--benchmark", bench, "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for figure in ("74.02", "74.50", "0.42", "0.73", "0.45", "0.56", "Kendall tau (11 archs)"):
        assert figure in printed
    data = json.loads(out.read_text())
    assert data["runs"] == 10 and len(data["high_fidelity_architectures"]) == 11
    assert set(data["rows"]) == {"nokd", "kd"}
    row = data["rows"]["kd"]
    assert len(row["chosen"]) == 10 and 0 <= row["judged"] <= 10
    assert set(data["rows_1000_runs"]["nokd"]) >= {"test_acc_mean", "judged", "kendall_tau"}


def test_table3_without_imagenet_is_a_one_line_error(tmp_path, capsys):
    records = [
        BenchmarkRecord("cifar100", "mobilenet", "nokd", part, arch, 0.5, 0.5, 1.0)
        for arch in range(4)
        for part in (1, 27)
    ]
    folder = TabularBenchmark.from_records(records).save(tmp_path / "tiny")
    assert main(["reproduce", "table3", "--benchmark", str(folder)]) == 2
    assert "no 'imagenet' dataset" in capsys.readouterr().err
