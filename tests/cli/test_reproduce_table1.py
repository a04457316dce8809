"""`kdnas reproduce table1`: printing, the JSON file and the missing-benchmark message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdnas.bench import BenchmarkRecord, TabularBenchmark
from kdnas.bench.correlation import table1
from kdnas.cli import main
from kdnas.cli.reproduce import TARGETS

_METHODS = ("nokd", "kd", "nst")


def _tiny_folder(tmp_path: Path, dataset: str = "cifar100") -> Path:
    records = []
    for arch in range(6):
        high = 0.5 + 0.05 * arch
        records.append(BenchmarkRecord(dataset, "mobilenet", "nokd", 1, arch, high, high, 9.0))
        for k, method in enumerate(_METHODS):
            for part in (27, 3):
                low = 0.2 + 0.03 * ((arch * (k + 2) + part) % 7)
                records.append(
                    BenchmarkRecord(dataset, "mobilenet", method, part, arch, low, low, 1.0)
                )
    return TabularBenchmark.from_records(records).save(tmp_path / "tiny")


def test_table1_writes_json_with_the_documented_structure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _tiny_folder(tmp_path)
    out = tmp_path / "out" / "table1.json"
    assert main(["reproduce", "table1", "--benchmark", str(folder), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert list(data) == ["mobilenet"]
    assert list(data["mobilenet"]) == ["27", "3"]
    for by_method in data["mobilenet"].values():
        assert list(by_method) == list(_METHODS)
        for values in by_method.values():
            assert set(values) == {"pearson", "kendall", "spearman"}
    assert data == table1(TabularBenchmark.load(folder))
    printed = capsys.readouterr().out
    assert "Pearson within 0.03 of the paper" in printed


def test_missing_benchmark_gives_the_helpful_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KDNAS_BENCHMARK", raising=False)
    assert main(["reproduce", "table1"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "KDNAS_BENCHMARK" in error
    assert "github.com/IlyaTrofimov/MF_NAS_KD" in error
    assert "shared/data/mf_nas_kd" in error


def test_benchmark_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KDNAS_BENCHMARK", str(_tiny_folder(tmp_path)))
    assert main(["reproduce", "table1"]) == 0
    assert "MobileNetV2 search space" in capsys.readouterr().out


def test_only_registered_targets_are_accepted(capsys: pytest.CaptureFixture[str]) -> None:
    assert "table1" in TARGETS
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "no-such-table"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_table1_on_the_paper_benchmark(
    tmp_path: Path, paper_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "table1.json"
    benchmark = str(paper_data_dir / "benchmark.pickle")
    assert main(["reproduce", "table1", "--benchmark", benchmark, "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"mobilenet", "shufflenet"}
    assert all(list(by_part) == ["27", "9", "3"] for by_part in data.values())
    assert data["shufflenet"]["9"]["kd"]["pearson"] == pytest.approx(0.81, abs=0.01)
    assert "Pearson within 0.03 of the paper: 58 of 60 cells." in capsys.readouterr().out


def test_malformed_benchmark_gives_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _tiny_folder(tmp_path)
    entries = folder / "entries.csv"
    entries.write_text(entries.read_text().replace(",9.0\n", ",-9.0\n", 1))
    assert main(["reproduce", "table1", "--benchmark", str(folder)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "entries.csv: line 2" in error and "wall_time must be a finite number" in error


def test_a_benchmark_of_another_dataset_is_read_with_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _tiny_folder(tmp_path, dataset="digits")
    out = tmp_path / "digits.json"
    argv = ["reproduce", "table1", "--benchmark", str(folder), "--json", str(out)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "no dataset 'cifar100'" in error and "digits" in error and "--dataset" in error
    assert main([*argv, "--dataset", "digits"]) == 0
    assert json.loads(out.read_text()) == table1(TabularBenchmark.load(folder), dataset="digits")
    # No paper figures exist for the digits: no comparison is claimed.
    assert "of the paper" not in capsys.readouterr().out
