"""``kdnas bench export --format syne-tune``: from a benchmark (--benchmark, $KDNAS_BENCHMARK)
or a store, into a new or empty folder; bad input is one line, exit 2, nothing lost."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

from kdnas.bench import TabularBenchmark
from kdnas.cli import main
from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion
from kdnas.store import SQLiteStore

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("pandas") is None or importlib.util.find_spec("fastparquet") is None,
    reason="pandas and fastparquet are not installed (pip install 'kdnas[dev]')",
)


def toy_benchmark(folder: Path) -> Path:
    """3 architectures, nokd at 1/9 and full data, kd at 1/9: the ladder 1/9 -> full."""
    rows = [
        {
            "dataset": "toy",
            "space": "tiny",
            "method": method,
            "part": part,
            "arch_index": arch,
            "test_acc": 0.5 + 0.1 * arch,
            "valid_acc": 0.4 + 0.1 * arch + 0.01 * part,
            "wall_time": 100.0 / part,
        }
        for method, parts in (("nokd", (1, 9)), ("kd", (9,)))
        for part in parts
        for arch in range(3)
    ]
    return TabularBenchmark.from_records(rows).save(folder)


def test_export_from_benchmark_or_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    source = toy_benchmark(tmp_path / "bench")
    out = tmp_path / "blackboxes"
    argv = ["bench", "export", "--format", "syne-tune", "--benchmark", str(source), str(out)]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"wrote {out / 'tiny'}: Syne Tune blackbox, task(s) toy; 6 configurations" in printed
    assert "resource 1, 9 (1/9, full data)" in printed
    assert json.loads((out / "tiny" / "metadata.json").read_text())["task_names"] == ["toy"]
    objectives = np.load(out / "tiny" / "objectives_evaluations.npy")
    assert objectives.shape == (1, 6, 1, 2, 4)
    # The same from $KDNAS_BENCHMARK, and from SOURCE DIR.
    monkeypatch.setenv("KDNAS_BENCHMARK", str(source))
    assert main(["bench", "export", "--format", "syne-tune", str(tmp_path / "env")]) == 0
    argv = ["bench", "export", "--format", "syne-tune", str(source), str(tmp_path / "pos")]
    assert main(argv) == 0
    for other in ("env", "pos"):
        again = np.load(tmp_path / other / "tiny" / "objectives_evaluations.npy")
        assert np.array_equal(again, objectives)


def test_export_from_a_store_lists_its_architectures(tmp_path: Path) -> None:
    archs = [Architecture("mobilenetv2", ((1, 16 + 8 * i, 1, 1),)) for i in range(2)]
    store_path = tmp_path / "s.sqlite"
    with SQLiteStore(store_path) as store:
        store.open_run("r", {"dataset": "digits", "candidates": [a.to_json() for a in archs]})
        trial = 0
        for fidelity in (Fidelity(part=3, method="kd"), Fidelity(part=1, method="nokd")):
            for i, arch in enumerate(archs):
                result = EvalResult(arch.key(), fidelity, 0.3 + 0.1 * i, 0.2 + 0.1 * i, 5.0)
                store.put("r", Suggestion(trial, arch, fidelity), result)
                trial += 1
    out = tmp_path / "out"
    assert main(["bench", "export", "--format", "syne-tune", str(store_path), str(out)]) == 0
    listing = json.loads((out / "mobilenet" / "architectures.json").read_text())
    assert [json.dumps(a, separators=(",", ":")) for a in listing] == [a.to_json() for a in archs]
    assert json.loads((out / "mobilenet" / "metadata.json").read_text())["kdnas"]["parts"] == [
        3,
        1,
    ]


def test_bad_input_is_one_line_and_loses_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = toy_benchmark(tmp_path / "bench")
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")

    def error_of(*argv: str) -> str:
        assert main(["bench", "export", *argv]) == 2
        return capsys.readouterr().err

    # The output folder is checked before the source is even looked for.
    missing = str(tmp_path / "no-such-benchmark")
    assert "not empty" in error_of("--format", "syne-tune", "--benchmark", missing, str(full))
    assert os.listdir(full) == ["keep.txt"] and (full / "keep.txt").read_text() == "mine"
    assert "no-such-benchmark" in error_of("--format", "syne-tune", missing, str(tmp_path / "a"))
    assert "give the source once" in error_of(
        "--format", "syne-tune", "--benchmark", str(source), str(source), str(tmp_path / "b")
    )
    assert "STORE FOLDER" in error_of(str(tmp_path / "c"))  # --format open needs a store
    assert "not of a benchmark" in error_of(
        "--format", "syne-tune", "--dataset", "x", str(source), str(tmp_path / "d")
    )
    with pytest.raises(SystemExit) as caught:
        main(["bench", "export", "--format", "parquet", str(source), str(tmp_path / "e")])
    assert caught.value.code == 2
    assert "invalid choice: 'parquet'" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["bench", "full"]
