"""TabularBenchmark: safe loading, strict validation, queries and columns."""

from __future__ import annotations

import copy
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kdnas.bench import (
    BenchmarkEntry,
    BenchmarkFormatError,
    BenchmarkKeyError,
    BenchmarkRecord,
    TabularBenchmark,
    resolve_benchmark_path,
)
from kdnas.safe_pickle import load_plain_pickle


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _nested() -> dict[str, Any]:
    """A valid benchmark in the paper's nested layout."""
    entry = {"test_acc": 0.5, "valid_acc": 0.25, "wall_time": 12.5}
    return {
        "cifar100": {
            "mobilenet": {
                "nokd": {1: {0: dict(entry), 1: dict(entry)}, 27: {0: dict(entry)}},
                "kd": {27: {0: dict(entry), 5: dict(entry)}},
            }
        }
    }


def _write(path: Path, data: Any) -> Path:
    path.write_bytes(pickle.dumps(data))
    return path


def _format_error(path: Path) -> str:
    with pytest.raises(BenchmarkFormatError) as error:
        TabularBenchmark.load(path)
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    return message


# ------------------------------------------------------------------ hostile and broken files


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_pickle_calling_os_system_is_refused_and_nothing_runs(
    tmp_path: Path, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    data = _nested()
    data["cifar100"]["mobilenet"]["kd"][27][0] = _RunsACommand(marker)
    path = tmp_path / "hostile.pickle"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    message = _format_error(path)
    assert "system" in message
    assert not marker.exists()


def test_hand_written_protocol_0_global_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    # GLOBAL os.system, MARK, STRING, TUPLE, REDUCE, STOP: the classic pickle exploit.
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."
    path = tmp_path / "exploit.pickle"
    path.write_bytes(payload)
    message = _format_error(path)
    assert "os.system" in message
    assert not marker.exists()


def test_truncated_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "truncated.pickle"
    path.write_bytes(pickle.dumps(_nested())[:-20])
    assert "truncated" in _format_error(path)


def test_truncated_real_benchmark_is_refused(tmp_path: Path, paper_data_dir: Path) -> None:
    data = (paper_data_dir / "benchmark.pickle").read_bytes()
    path = tmp_path / "benchmark.pickle"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated" in _format_error(path)


def _set(data: dict[str, Any], keys: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node = data
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return data


_ENTRY = ("cifar100", "mobilenet", "kd", 27, 5)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: [d], "top level: expected a dict of datasets, got list"),
        (lambda d: _set(d, ("cifar100", "mobilenet"), [1, 2]), "cifar100/mobilenet: expected"),
        (lambda d: _set(d, ("cifar100", "mobilenet", "kd"), {}), "empty dict"),
        (lambda d: _set(d, ("cifar100", "mobilenet", "kd", "27"), {}), "part key must be"),
        (lambda d: _set(d, ("cifar100", "mobilenet", "kd", 27, -1), {}), "architecture index"),
        (lambda d: _set(d, (3,), {}), "dataset key must be"),
        (lambda d: _set(d, _ENTRY, [0.5, 0.5, 1.0]), "kd/27/arch 5: expected a dict"),
        (lambda d: _set(d, (*_ENTRY, "epochs"), 3), "kd/27/arch 5: expected exactly the keys"),
        (lambda d: _set(d, _ENTRY, {"test_acc": 0.5}), "expected exactly the keys"),
        (lambda d: _set(d, (*_ENTRY, "valid_acc"), "0.5"), "arch 5: valid_acc must be a number"),
        (lambda d: _set(d, (*_ENTRY, "valid_acc"), True), "valid_acc must be a number"),
        (lambda d: _set(d, (*_ENTRY, "test_acc"), 1.5), "arch 5: test_acc must be a fraction"),
        (lambda d: _set(d, (*_ENTRY, "valid_acc"), -0.01), "valid_acc must be a fraction in"),
        (lambda d: _set(d, (*_ENTRY, "test_acc"), math.nan), "test_acc must be a fraction"),
        (lambda d: _set(d, (*_ENTRY, "wall_time"), math.nan), "arch 5: wall_time must be a fin"),
        (lambda d: _set(d, (*_ENTRY, "wall_time"), -1.0), "arch 5: wall_time must be a finite"),
        (lambda d: _set(d, (*_ENTRY, "wall_time"), math.inf), "wall_time must be a finite"),
    ],
)
def test_malformed_structure_gives_one_line_error_with_key_path(
    tmp_path: Path, mutate: Any, expected: str
) -> None:
    path = _write(tmp_path / "bad.pickle", mutate(_nested()))
    assert expected in _format_error(path)


def test_valid_nested_pickle_loads(tmp_path: Path) -> None:
    bench = TabularBenchmark.load(_write(tmp_path / "ok.pickle", _nested()))
    assert bench.num_entries == 5
    assert bench.num_architectures("mobilenet") == 6
    assert bench.query("mobilenet", 5, "kd", 27) == BenchmarkEntry(0.5, 0.25, 12.5)
    assert bench.metadata["provenance"]["file"] == "ok.pickle"


def test_missing_path_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such benchmark"):
        TabularBenchmark.load(tmp_path / "absent.pickle")
    with pytest.raises(FileNotFoundError, match=r"neither metadata\.json"):
        TabularBenchmark.load(tmp_path)


# ------------------------------------------------------------------ API on the tiny table


def test_listing(tiny_bench: TabularBenchmark, tiny_records: list[BenchmarkRecord]) -> None:
    assert tiny_bench.datasets() == ["cifar100"]
    assert tiny_bench.spaces() == ["mobilenet", "shufflenet"]
    assert tiny_bench.methods("mobilenet") == ["nokd", "kd"]
    assert tiny_bench.parts("mobilenet", "nokd") == [1, 3, 27]
    assert tiny_bench.parts("shufflenet", "kd") == [3, 27]
    assert tiny_bench.num_architectures("mobilenet") == 4
    assert tiny_bench.num_architectures("shufflenet") == 3
    assert tiny_bench.num_entries == len(tiny_records)
    cells = {(c.dataset, c.space, c.method, c.part) for c in tiny_bench.cells()}
    assert cells == {
        ("cifar100", space, method, part)
        for space in ("mobilenet", "shufflenet")
        for method, parts in (("nokd", (1, 27, 3)), ("kd", (27, 3)))
        for part in parts
    }


def test_query_and_column_return_the_records_values(
    tiny_bench: TabularBenchmark, tiny_records: list[BenchmarkRecord]
) -> None:
    for record in tiny_records:
        entry = tiny_bench.query(record.space, record.arch_index, record.method, record.part)
        assert entry == BenchmarkEntry(record.test_acc, record.valid_acc, record.wall_time)
        for metric in ("test_acc", "valid_acc", "wall_time"):
            column = tiny_bench.column(record.space, record.method, record.part, metric)
            assert column[record.arch_index] == getattr(record, metric)


def test_column_is_a_read_only_float64_array_with_nan_holes(tiny_bench: TabularBenchmark) -> None:
    column = tiny_bench.column("mobilenet", "kd", 27, "valid_acc")
    assert column.dtype == np.float64
    assert column.shape == (4,)
    assert np.isnan(column[3]) and not np.isnan(column[:3]).any()
    with pytest.raises(ValueError, match="read-only"):
        column[0] = 0.9
    assert tiny_bench.column("mobilenet", "kd", "27", "valid_acc")[0] == column[0]


def test_high_fidelity_is_nokd_part_1(tiny_bench: TabularBenchmark) -> None:
    high = tiny_bench.high_fidelity("shufflenet")
    assert set(high) == {"test_acc", "valid_acc", "wall_time"}
    np.testing.assert_array_equal(
        high["test_acc"], tiny_bench.column("shufflenet", "nokd", 1, "test_acc")
    )


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda b: b.query("mobilenet", 3, "kd", 27), "has no entry for architecture 3"),
        (lambda b: b.query("mobilenet", 4, "nokd", 1), "valid indices are 0..3"),
        (lambda b: b.query("resnet", 0, "nokd", 1), "it holds mobilenet, shufflenet"),
        (lambda b: b.query("mobilenet", 0, "vid", 27), "it holds nokd, kd"),
        (lambda b: b.query("mobilenet", 0, "kd", 1), "it holds 3, 27"),
        (lambda b: b.query("mobilenet", 0, "kd", 27, dataset="imagenet"), "holds cifar100"),
        (lambda b: b.column("mobilenet", "kd", 27, "loss"), "valid: test_acc, valid_acc"),
        (lambda b: b.parts("mobilenet", "crd"), "it holds nokd, kd"),
    ],
)
def test_unknown_keys_list_what_exists(
    tiny_bench: TabularBenchmark, call: Any, expected: str
) -> None:
    with pytest.raises(BenchmarkKeyError) as error:
        call(tiny_bench)
    assert expected in str(error.value)
    assert isinstance(error.value, KeyError) and isinstance(error.value, ValueError)


def test_records_with_bad_values_are_refused(tiny_records: list[BenchmarkRecord]) -> None:
    rows = [r.__dict__.copy() for r in tiny_records]
    rows[4]["wall_time"] = -3.0
    with pytest.raises(BenchmarkFormatError, match=r"record 4: .*wall_time must be a finite"):
        TabularBenchmark.from_records(rows)
    duplicate = tiny_records
    with pytest.raises(BenchmarkFormatError, match=r"record 1 .*duplicate entry"):
        TabularBenchmark.from_records([duplicate[0], duplicate[0]])
    with pytest.raises(BenchmarkFormatError, match="unknown field"):
        TabularBenchmark.from_records([{**rows[0], "seed": 1}])


# ------------------------------------------------------------------ the paper's benchmark


def test_real_benchmark_shape_and_values(paper_data_dir: Path) -> None:
    path = paper_data_dir / "benchmark.pickle"
    bench = TabularBenchmark.load(path)
    raw = load_plain_pickle(path)
    assert bench.datasets() == ["cifar100", "imagenet"]
    assert bench.spaces() == ["mobilenet", "shufflenet"]
    assert bench.num_architectures("mobilenet") == 100
    assert bench.num_architectures("shufflenet") == 300
    assert len(bench.methods("shufflenet")) == 10
    assert bench.parts("mobilenet", "nokd") == [1, 3, 9, 27]
    assert bench.parts("mobilenet", "kd") == [3, 9, 27]
    assert bench.methods("mobilenet", dataset="imagenet") == ["nokd", "kd"]
    assert bench.num_entries == sum(
        len(by_arch)
        for by_space in raw.values()
        for by_method in by_space.values()
        for by_part in by_method.values()
        for by_arch in by_part.values()
    )
    for cell in bench.cells():
        stored = raw[cell.dataset][cell.space][cell.method][cell.part]
        for metric in ("test_acc", "valid_acc", "wall_time"):
            column = bench.column(cell.space, cell.method, cell.part, metric, cell.dataset)
            expected = np.full(column.shape, np.nan)
            for arch, entry in stored.items():
                expected[arch] = entry[metric]
            np.testing.assert_array_equal(column, expected)


def test_loading_the_folder_finds_the_pickle(paper_data_dir: Path) -> None:
    bench = TabularBenchmark.load(paper_data_dir)
    assert bench.query("mobilenet", 0, "nokd", 1).test_acc == pytest.approx(0.6721)


# ------------------------------------------------------------------ path resolution


def test_resolve_benchmark_path_explains_where_the_file_comes_from() -> None:
    with pytest.raises(FileNotFoundError) as error:
        resolve_benchmark_path(None, environ={})
    message = str(error.value)
    assert "KDNAS_BENCHMARK" in message and "--benchmark" in message
    assert "github.com/IlyaTrofimov/MF_NAS_KD" in message
    assert "shared/data/mf_nas_kd" in message and "benchmark.pickle" in message


def test_resolve_benchmark_path_prefers_the_cli_value(tmp_path: Path) -> None:
    given = tmp_path / "given.pickle"
    from_env = tmp_path / "env.pickle"
    given.touch()
    from_env.touch()
    env = {"KDNAS_BENCHMARK": str(from_env)}
    assert resolve_benchmark_path(str(given), environ=env) == given
    assert resolve_benchmark_path(None, environ=env) == from_env
    with pytest.raises(FileNotFoundError, match=r"from \$KDNAS_BENCHMARK\) does not exist"):
        resolve_benchmark_path(None, environ={"KDNAS_BENCHMARK": str(tmp_path / "gone")})


def test_benchmark_is_not_mutated_through_records(tiny_bench: TabularBenchmark) -> None:
    before = copy.deepcopy(list(tiny_bench.records()))
    with pytest.raises(ValueError, match="read-only"):
        tiny_bench.high_fidelity("mobilenet")["test_acc"][:] = 0.0
    assert list(tiny_bench.records()) == before
