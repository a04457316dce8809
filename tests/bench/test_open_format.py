"""The open format (metadata.json + entries.csv): exact round trips and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kdnas.bench import BenchmarkFormatError, BenchmarkRecord, TabularBenchmark
from kdnas.bench.open_format import COLUMNS, FORMAT_NAME, FORMAT_VERSION


def _assert_identical(a: TabularBenchmark, b: TabularBenchmark) -> None:
    """Same names, counts and bit-identical values (floats compared by repr too)."""
    assert a.name_orders() == b.name_orders()
    assert a.architecture_counts() == b.architecture_counts()
    records_a, records_b = list(a.records()), list(b.records())
    assert records_a == records_b
    assert [repr(r) for r in records_a] == [repr(r) for r in records_b]
    for cell in a.cells():
        for metric in ("test_acc", "valid_acc", "wall_time"):
            column_a = a.column(cell.space, cell.method, cell.part, metric, cell.dataset)
            column_b = b.column(cell.space, cell.method, cell.part, metric, cell.dataset)
            assert column_a.tobytes() == column_b.tobytes()


def test_tiny_round_trip_is_exact(tmp_path: Path, tiny_bench: TabularBenchmark) -> None:
    folder = tiny_bench.save(tmp_path / "tiny")
    again = TabularBenchmark.load(folder)
    _assert_identical(tiny_bench, again)
    assert again.metadata["description"] == "tiny test benchmark"
    assert again.metadata["provenance"] == {"made_by": "tests"}
    # Saving the reloaded table writes the very same bytes.
    again.save(tmp_path / "again")
    for name in ("metadata.json", "entries.csv"):
        assert (folder / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_written_files_follow_the_spec(tmp_path: Path, tiny_bench: TabularBenchmark) -> None:
    folder = tiny_bench.save(tmp_path / "tiny")
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["format"] == FORMAT_NAME and metadata["version"] == FORMAT_VERSION
    assert metadata["datasets"] == ["cifar100"]
    assert metadata["methods"] == ["nokd", "kd"]
    assert metadata["parts"] == [1, 3, 27]
    assert metadata["num_architectures"] == {"cifar100": {"mobilenet": 4, "shufflenet": 3}}
    assert metadata["units"]["wall_time"] == "seconds"
    lines = (folder / "entries.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS)
    assert len(lines) - 1 == metadata["num_entries"] == tiny_bench.num_entries
    # 0.1 + 0.2 is written as its shortest exact repr, not rounded.
    assert any("0.30000000000000004" in line for line in lines)
    assert any("5e-324" in line for line in lines)


def test_trailing_architectures_without_entries_survive(tmp_path: Path) -> None:
    records = [BenchmarkRecord("d", "s", "nokd", 1, 0, 0.5, 0.5, 1.0)]
    bench = TabularBenchmark.from_records(records, {"num_architectures": {"d": {"s": 7}}})
    assert bench.num_architectures("s", dataset="d") == 7
    again = TabularBenchmark.load(bench.save(tmp_path / "b"))
    assert again.num_architectures("s", dataset="d") == 7
    assert np.isnan(again.column("s", "nokd", 1, "test_acc", dataset="d")[1:]).all()


def test_from_records_accepts_dicts(tiny_records: list[BenchmarkRecord]) -> None:
    as_dicts = [dict(r.__dict__) for r in tiny_records]
    _assert_identical(
        TabularBenchmark.from_records(tiny_records), TabularBenchmark.from_records(as_dicts)
    )


def test_real_benchmark_round_trip_is_exact(tmp_path: Path, paper_data_dir: Path) -> None:
    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    again = TabularBenchmark.load(bench.save(tmp_path / "paper"))
    _assert_identical(bench, again)
    assert again.metadata["provenance"]["source"].endswith("IlyaTrofimov/MF_NAS_KD")
    assert len(again.metadata["provenance"]["sha256"]) == 64


# ------------------------------------------------------------------ malformed folders


@pytest.fixture
def saved(tmp_path: Path, tiny_bench: TabularBenchmark) -> Path:
    return tiny_bench.save(tmp_path / "bench")


def _replace_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def _error(folder: Path) -> str:
    with pytest.raises(BenchmarkFormatError) as error:
        TabularBenchmark.load(folder)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_invalid_json_names_file_and_line(saved: Path) -> None:
    path = saved / "metadata.json"
    path.write_text(path.read_text().replace('"version": 1,', '"version": 1', 1))
    message = _error(saved)
    assert str(path) in message and "line 4" in message and "invalid JSON" in message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"format": "other"}, '"format" must be'),
        ({"version": 99}, 'unsupported "version" 99'),
        ({"methods": ["nokd"]}, "method(s) kd that the metadata does not list"),
        ({"num_entries": 3}, "num_entries=3 (truncated or edited file?)"),
        ({"parts": ["1", "3", "27"]}, "metadata parts: part key must be an integer >= 1"),
        ({"spaces": "mobilenet"}, "metadata spaces: must be a list of distinct names"),
        ({"provenance": "me"}, '"provenance" must be a JSON object'),
    ],
)
def test_bad_metadata_is_refused(saved: Path, change: dict[str, Any], expected: str) -> None:
    path = saved / "metadata.json"
    metadata = json.loads(path.read_text())
    metadata.update(change)
    path.write_text(json.dumps(metadata))
    message = _error(saved)
    assert expected in message
    assert str(saved) in message


@pytest.mark.parametrize(
    ("line", "text", "expected"),
    [
        (1, "dataset,space,method,part,arch,test_acc,valid_acc,wall_time", "line 1: header"),
        (3, "cifar100,mobilenet,nokd,1,1,0.5,0.5", "line 3: expected 8 fields, got 7"),
        (4, "cifar100,mobilenet,nokd,1,2,high,0.5,1.0", "line 4 (cifar100/mobilenet/nokd/1/"),
        (4, "cifar100,mobilenet,nokd,1,2,1.5,0.5,1.0", "test_acc must be a fraction in [0, 1]"),
        (4, "cifar100,mobilenet,nokd,1,2,0.5,0.5,nan", "arch 2): wall_time must be a finite"),
        (4, "cifar100,mobilenet,nokd,1,2,0.5,0.5,-2", "wall_time must be a finite number"),
        (4, "cifar100,mobilenet,nokd,one,2,0.5,0.5,1", "part key must be an integer"),
        (4, "cifar100,mobilenet,nokd,1,1,0.5,0.5,1", "line 4 (cifar100/mobilenet/nokd/1/arch 1"),
        (5, 'cifar100,"mobile,net",nokd,1,3,0.5,0.5,1', "space key must be a name"),
    ],
)
def test_bad_csv_line_is_named(saved: Path, line: int, text: str, expected: str) -> None:
    path = saved / "entries.csv"
    _replace_line(path, line, text)
    message = _error(saved)
    assert expected in message
    assert str(path) in message


def test_duplicate_csv_row_is_refused(saved: Path) -> None:
    path = saved / "entries.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines, lines[1]]) + "\n")
    assert f"line {len(lines) + 1} " in _error(saved)


def test_truncated_csv_is_refused(saved: Path) -> None:
    path = saved / "entries.csv"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "entries.csv" in _error(saved)


def test_missing_entries_file(saved: Path) -> None:
    (saved / "entries.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"entries\.csv: missing"):
        TabularBenchmark.load(saved)
