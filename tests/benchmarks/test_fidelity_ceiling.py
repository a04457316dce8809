"""benchmarks/fidelity_ceiling.py measures what it says: its rows keep the relations their
definitions imply, on a few of the paper's sub-spaces (a few seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kdnas.bench import TabularBenchmark
from kdnas.replay.arrays import load_space_arrays


@pytest.fixture(scope="module")
def ceiling(benchmark_script):
    with benchmark_script("fidelity_ceiling") as module:
        yield module


def test_rows_keep_the_relations_their_definitions_imply(ceiling, paper_data_dir: Path) -> None:
    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    arrays = load_space_arrays(bench, "mobilenet", paper_data_dir)
    table = ceiling.measure(arrays, "negative", 3, 0, ["kd/3"], [0.5])
    columns = arrays.low_column("kd", 3, "wall_time")
    for key in ("hf_only", "proxy", "kd/3 free", "kd/3 bought", "kd/3 perfect veto"):
        assert table[key].shape == (3,) and np.all(table[key] > 0), key
    # Bought = free + the fidelity's seconds on every candidate of the sub-space (>= 16 of
    # them, each more than the cheapest run in the space).
    assert np.all(table["kd/3 bought"] - table["kd/3 free"] >= 16 * columns.min())
    assert np.all(table["kd/3 bought 50%"] >= table["kd/3 free 50%"])
    # A perfect veto still pays for the optimum's HF run.
    optimum_hf = arrays.hf_time.min()
    assert np.all(table["kd/3 perfect veto"] > optimum_hf)
    # The hindsight rows are minima over the rows they name.
    policies = ["hf_only", "proxy", "proxy off", "reversed proxy", "kd/3 bought 50%"]
    for key in policies:
        assert np.all(table["best policy per sub-space, hindsight"] <= table[key])
    assert np.all(table["best free source per sub-space"] <= table["kd/3 free"])
    assert np.all(table["best free source per sub-space"] <= table["kd/3 perfect veto"])
    assert set(np.unique(table[f"kd/3 {ceiling.KEEPS}"])) <= {0.0, 1.0}


def test_the_true_accuracy_as_a_free_source_finds_the_optimum_at_once(
    ceiling, paper_data_dir: Path
) -> None:
    # Closed form: with HF accuracy itself as the prior, the first HF run is the optimum.
    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    arrays = load_space_arrays(bench, "mobilenet", paper_data_dir)
    seconds = ceiling._proxy_prior_seconds(arrays, arrays.hf_valid, seed=0)
    assert seconds == pytest.approx(arrays.hf_time[arrays.optimum])


def test_screening_makespan_schedules_longest_first(ceiling) -> None:
    jobs = np.array([2.0, 3.0, 2.0, 3.0, 2.0])
    assert ceiling.screening_makespan(jobs, 1) == pytest.approx(12.0)
    # Longest first on 2 workers: (3, 2, 2) and (3, 2): 7, one more than the optimum's 6.
    assert ceiling.screening_makespan(jobs, 2) == pytest.approx(7.0)
    assert ceiling.screening_makespan(jobs, 10) == pytest.approx(3.0)


def test_with_workers_a_column_is_bought_in_its_makespan(ceiling, paper_data_dir: Path) -> None:
    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    arrays = load_space_arrays(bench, "mobilenet", paper_data_dir)
    table = ceiling.measure(arrays, "negative", 2, 0, workers=4)
    seconds = arrays.low_column("kd", 3, "wall_time")
    assert "kd/3 perfect veto" not in table  # a sequential path: one worker only
    paid = table["kd/3 bought"] - table["kd/3 free"]
    # 16 candidates on 4 workers: at least a quarter of their total, at least the longest.
    assert np.all(paid >= 16 * seconds.min() / 4) and np.all(paid < 16 * seconds.max())
