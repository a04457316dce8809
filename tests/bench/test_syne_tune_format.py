"""A benchmark written as Syne Tune blackboxes: the files hold exactly the benchmark's values in
the documented layout (checked with pandas and numpy, in CI), Syne Tune itself reads them back
and runs its own ASHA on them unchanged (skipped without syne-tune), and bad output folders
are refused with nothing lost."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from kdnas.bench import BenchmarkRecord, TabularBenchmark
from kdnas.bench.syne_tune_format import OBJECTIVES, write_syne_tune_blackboxes

needs_parquet = pytest.mark.skipif(
    importlib.util.find_spec("pandas") is None or importlib.util.find_spec("fastparquet") is None,
    reason="pandas and fastparquet are not installed (pip install 'kdnas[dev]')",
)
needs_syne_tune = pytest.mark.skipif(
    importlib.util.find_spec("syne_tune") is None,
    reason="syne-tune is not installed (pip install 'kdnas[syne-tune]')",
)

AWKWARD = [0.1 + 0.2, 1 / 3, 2 / 7, 0.6721]  # floats that float32 would round


def value(space: str, method: str, part: int, arch: int, metric: int) -> float:
    """Distinct known values per entry; wall times in seconds grow with the data part."""
    if metric == 2:
        return 1000.0 / part + arch + 0.25
    return AWKWARD[(arch + metric) % 4] / (1 + part) + 0.01 * ("kd" in method) + 0.001 * arch


def records() -> list[BenchmarkRecord]:
    """toy/tiny: 4 archs, nokd at 1, 9, 3 and kd at 9, 3: the ladder 1/9, 1/3, full.
    toy/holey: kd misses arch 2 (kd is left out), attention holds only 1/9 (1/3 is left out).
    other/tiny: no full-data entry for arch 0 (left out)."""
    grid = [
        ("toy", "tiny", {"nokd": (1, 9, 3), "kd": (9, 3)}, 4, set()),
        ("toy", "holey", {"nokd": (1, 9, 3), "kd": (9, 3), "attention": (9,)}, 3, {("kd", 2)}),
        ("other", "tiny", {"nokd": (1, 9)}, 4, {("nokd", 0, 1)}),
    ]
    out = []
    for dataset, space, methods, n, holes in grid:
        for method, parts in methods.items():
            for part in parts:
                for arch in range(n):
                    if (method, arch) in holes or (method, arch, part) in holes:
                        continue
                    out.append(
                        BenchmarkRecord(
                            dataset,
                            space,
                            method,
                            part,
                            arch,
                            *(value(space, method, part, arch, k) for k in range(3)),
                        )
                    )
    return out


@pytest.fixture
def bench() -> TabularBenchmark:
    return TabularBenchmark.from_records(records(), {"description": "syne-tune export test"})


@needs_parquet
def test_layout_and_exact_values(bench: TabularBenchmark, tmp_path: Path) -> None:
    import pandas as pd

    export = write_syne_tune_blackboxes(bench, tmp_path / "out")
    assert [(b.name, b.tasks, b.parts, b.resources) for b in export.blackboxes] == [
        ("tiny", ("toy",), (9, 3, 1), (1, 3, 9)),
        ("holey", ("toy",), (9, 1), (1, 9)),
    ]
    assert export.skipped == (
        "toy/holey: method kd left out, it holds no low part for every architecture",
        "toy/holey: part(s) 1/3 left out, not held by every method for every architecture",
        "other/tiny: left out, the high fidelity (nokd at full data) does not hold every one "
        "of its 4 architectures",
    )
    path = tmp_path / "out" / "tiny"
    assert sorted(os.listdir(path)) == [
        "configspace.json",
        "fidelities_values.npy",
        "fidelityspace.json",
        "hyperparameters.parquet",
        "metadata.json",
        "objectives_evaluations.npy",
    ]
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) & 0o055  # not mkdtemp's private 0700
    space = json.loads((path / "configspace.json").read_text())
    assert space["arch"]["domain_cls"] == "Categorical"
    assert space["arch"]["domain_kwargs"] == {"categories": [0, 1, 2, 3]}
    assert space["method"]["domain_kwargs"] == {"categories": ["nokd", "kd"]}
    fidelity = json.loads((path / "fidelityspace.json").read_text())
    assert fidelity == {
        "resource": {
            "domain_cls": "Integer",
            "domain_kwargs": {"lower": 1, "upper": 9},
            "sampler_cls": "Uniform",
            "sampler_kwargs": {},
        }
    }
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["objectives_names"] == list(OBJECTIVES)
    assert metadata["task_names"] == ["toy"]
    assert metadata["kdnas"]["parts"] == [9, 3, 1]
    rows = pd.read_parquet(path / "hyperparameters.parquet", engine="fastparquet")
    assert list(rows.columns) == ["arch", "method"]
    expected_rows = [(a, m) for a in range(4) for m in ("nokd", "kd")]
    assert list(zip(rows["arch"].tolist(), rows["method"].tolist(), strict=True)) == expected_rows
    assert np.load(path / "fidelities_values.npy").tolist() == [1, 3, 9]
    objectives = np.load(path / "objectives_evaluations.npy")
    assert objectives.shape == (1, 8, 1, 3, 4) and objectives.dtype == np.float64
    for row, (arch, method) in enumerate(expected_rows):
        elapsed = 0.0
        for f, part in enumerate((9, 3, 1)):
            # The top rung is the high fidelity (full data, nokd) whatever the row's method.
            key = ("nokd", 1) if part == 1 else (method, part)
            entry = bench.query("tiny", arch, key[0], key[1], dataset="toy")
            elapsed += entry.wall_time
            got = objectives[0, row, 0, f]
            assert got.tolist() == [entry.valid_acc, entry.test_acc, elapsed, entry.wall_time]


@needs_parquet
def test_bad_output_folders_lose_nothing(bench: TabularBenchmark, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        write_syne_tune_blackboxes(bench, full)
    assert os.listdir(full) == ["keep.txt"] and (full / "keep.txt").read_text() == "mine"
    a_file = tmp_path / "a-file"
    a_file.write_text("mine")
    with pytest.raises(FileExistsError, match="not a folder"):
        write_syne_tune_blackboxes(bench, a_file)
    assert a_file.read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_syne_tune_blackboxes(bench, empty).folder == empty
    assert sorted(os.listdir(empty)) == ["holey", "tiny"]
    assert sorted(os.listdir(tmp_path)) == ["a-file", "empty", "full"]  # no staging left


@needs_parquet
def test_a_benchmark_without_a_ladder_writes_nothing(tmp_path: Path) -> None:
    only_low = [r for r in records() if r.part != 1]
    bench = TabularBenchmark.from_records(only_low)
    with pytest.raises(ValueError, match=r"no dataset/space .* complete fidelity ladder"):
        write_syne_tune_blackboxes(bench, tmp_path / "out")
    assert os.listdir(tmp_path) == []


def test_missing_writer_says_what_to_install(
    bench: TabularBenchmark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fastparquet", None)  # import fastparquet -> ImportError
    with pytest.raises(ImportError, match=r"pip install 'kdnas\[syne-tune\]'"):
        write_syne_tune_blackboxes(bench, tmp_path / "out")
    assert os.listdir(tmp_path) == []


@needs_syne_tune
def test_syne_tune_reads_it_back_and_runs_asha_on_it_unchanged(
    bench: TabularBenchmark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syne_tune import StoppingCriterion, Tuner
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.blackbox_repository import UserBlackboxBackend
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular, deserialize
    from syne_tune.experiments import load_experiment
    from syne_tune.optimizer.baselines import ASHA

    write_syne_tune_blackboxes(bench, tmp_path / "out")
    loaded = deserialize(str(tmp_path / "out" / "tiny"))
    assert list(loaded) == ["toy"]
    blackbox = loaded["toy"]
    assert isinstance(blackbox, BlackboxTabular)
    assert blackbox.fidelity_name() == "resource"
    assert blackbox.fidelity_values.tolist() == [1, 3, 9]

    def table(arch: int, method: str, resource: int) -> dict[str, float]:
        part = {1: 9, 3: 3, 9: 1}[resource]
        key = ("nokd", 1) if part == 1 else (method, part)
        entry = bench.query("tiny", arch, *key, dataset="toy")
        return {"valid_acc": entry.valid_acc, "test_acc": entry.test_acc}

    for arch in range(4):
        for method in ("nokd", "kd"):
            for resource in (1, 3, 9):
                got = blackbox(
                    configuration={"arch": arch, "method": method},
                    fidelity={"resource": resource},
                    seed=0,
                )
                expected = table(arch, method, resource)
                assert {k: float(got[k]) for k in expected} == expected

    # Syne Tune's own simulation: its ASHA, its tuner, its simulated clock, 2 workers.
    monkeypatch.setenv("SYNETUNE_FOLDER", str(tmp_path / "syne-tune"))
    scheduler = ASHA(
        blackbox.configuration_space,
        metric="valid_acc",
        do_minimize=False,
        time_attr="resource",
        max_t=9,
        random_seed=0,
    )
    tuner = Tuner(
        trial_backend=UserBlackboxBackend(blackbox=blackbox, elapsed_time_attr="elapsed_time"),
        scheduler=scheduler,
        stop_criterion=StoppingCriterion(max_num_trials_started=12),
        n_workers=2,
        sleep_time=0,
        callbacks=[SimulatorCallback()],
        print_update_interval=1e9,
        save_tuner=False,
        tuner_name="kdnas-export-test",
    )
    tuner.run()
    results = load_experiment(tuner.name, local_path=str(tmp_path / "syne-tune")).results
    assert len(results) >= 12  # every trial reports at least its first rung
    for _, row in results.iterrows():
        expected = table(int(row["config_arch"]), row["config_method"], int(row["resource"]))
        assert {k: float(row[k]) for k in expected} == expected
    # The incumbent from top-rung rows only: a high-fidelity accuracy of the table.
    top = results[results["resource"] == 9]
    assert len(top) >= 1
    hf = [bench.query("tiny", a, "nokd", 1, dataset="toy").valid_acc for a in range(4)]
    assert float(top["valid_acc"].max()) in hf


@needs_syne_tune
def test_the_papers_benchmark_as_syne_tune_reads_it(paper_data_dir: Path, tmp_path: Path) -> None:
    from syne_tune.blackbox_repository.blackbox_tabular import deserialize

    paper = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    export = write_syne_tune_blackboxes(paper, tmp_path / "out")
    assert [(b.name, b.num_configurations, b.parts) for b in export.blackboxes] == [
        ("mobilenet", 1000, (27, 9, 3, 1)),
        ("shufflenet", 3000, (27, 9, 3, 1)),
    ]
    assert len(export.skipped) == 1 and export.skipped[0].startswith("imagenet/mobilenet")
    for space, n in (("mobilenet", 100), ("shufflenet", 300)):
        blackbox = deserialize(str(tmp_path / "out" / space))["cifar100"]
        for arch in (0, n - 1):
            got = blackbox(configuration={"arch": arch, "method": "nst"}, seed=0)
            columns = [("nst", 27), ("nst", 9), ("nst", 3), ("nokd", 1)]
            valid = [paper.query(space, arch, m, p).valid_acc for m, p in columns]
            walls = np.cumsum([paper.query(space, arch, m, p).wall_time for m, p in columns])
            assert got[:, 0].tolist() == valid and got[:, 2].tolist() == walls.tolist()
