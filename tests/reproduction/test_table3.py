"""Table 3 (Algorithm 1 on the benchmark's imagenet/mobilenet): the simulation on a synthetic
space, and the real benchmark's figures."""

from __future__ import annotations

import numpy as np
import pytest

from kdnas.bench import TabularBenchmark
from kdnas.replay import SpaceArrays
from kdnas.reproduction.table3 import check_table3_arrays, load_table3_arrays, run_table3


def _synthetic(known: np.ndarray, size: int = 40) -> SpaceArrays:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(size, 3))
    quality = features @ np.array([1.0, -0.5, 0.25])
    hf = np.full(size, np.nan)
    hf[known] = 0.6 + 0.01 * quality[known]
    low = {
        (method, 27): {"valid_acc": values, "test_acc": values, "wall_time": np.ones(size)}
        for method, values in (("nokd", 0.4 - 0.01 * quality), ("kd", 0.3 + 0.01 * quality))
    }
    arrays = SpaceArrays(
        "mobilenet", features, hf, hf, hf, low, dataset="imagenet", partial_high_fidelity=True
    )
    check_table3_arrays(arrays)
    return arrays


def test_rows_judge_only_choices_with_a_high_fidelity_result() -> None:
    known = np.arange(0, 40, 4)
    arrays = _synthetic(known)
    rows = run_table3(arrays, runs=12, n_lf=8, seed=1)
    assert list(rows) == ["nokd", "kd"]
    for row in rows.values():
        has_hf = np.isfinite(arrays.hf_test[row.chosen])
        assert row.judged == int(has_hf.sum()) and row.runs == 12
        accuracy = 100 * arrays.hf_test[row.chosen][has_hf]
        if row.judged:
            assert row.test_acc_mean == pytest.approx(accuracy.mean())
            assert row.test_acc_best == pytest.approx(accuracy.max())
        assert row.kendall_archs == len(known)
    # LF kd rises with quality exactly as HF does; LF nokd falls with it.
    assert rows["kd"].kendall_tau == pytest.approx(1.0)
    assert rows["nokd"].kendall_tau == pytest.approx(-1.0)
    assert rows["kd"].kendall_tau_leave_one_out == pytest.approx((1.0, 1.0))
    # A GP over a linear LF score picks high-quality architectures for kd, low ones for nokd.
    quality = arrays.features @ np.array([1.0, -0.5, 0.25])
    assert quality[rows["kd"].chosen].mean() > quality[rows["nokd"].chosen].mean()


def test_runs_are_reproducible_and_seeded() -> None:
    arrays = _synthetic(np.arange(0, 40, 3))
    first = run_table3(arrays, runs=6, n_lf=5, seed=7)["kd"].chosen
    assert np.array_equal(first, run_table3(arrays, runs=6, n_lf=5, seed=7)["kd"].chosen)


def test_too_few_high_fidelity_results_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="fewer than 2 architectures"):
        _synthetic(np.array([5]))
    with pytest.raises(ValueError, match="runs must be >= 1"):
        run_table3(_synthetic(np.arange(4)), runs=0)


def test_paper_benchmark_table3(paper_data_dir) -> None:
    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    arrays = load_table3_arrays(bench, paper_data_dir)
    assert arrays.size == 100
    assert arrays.with_high_fidelity.tolist() == [32, 36, 53, 66, 69, 72, 74, 75, 77, 86, 89]
    rows = run_table3(arrays, runs=200, seed=0)
    # Exact properties of the released data: 25 and 31 concordant-minus-discordant of 55 pairs.
    assert rows["nokd"].kendall_tau == pytest.approx(25 / 55)
    assert rows["kd"].kendall_tau == pytest.approx(31 / 55)
    # Leaving one of the 11 out leaves 45 pairs; with no ties tau is (concordant - discordant)
    # / 45, counted here pair by pair: the least and the most over the 11 are 23 and 29.
    known = arrays.with_high_fidelity
    low = arrays.low_column("kd", 27, "valid_acc")[known]
    high = arrays.hf_test[known]
    assert len(set(low)) == len(set(high)) == len(known)  # no ties: tau-b is tau-a
    net = [
        sum(
            np.sign(low[i] - low[j]) * np.sign(high[i] - high[j])
            for i in range(len(known))
            for j in range(i + 1, len(known))
            if out not in (i, j)
        )
        for out in range(len(known))
    ]
    assert (min(net), max(net)) == (23, 29)
    assert rows["kd"].kendall_tau_leave_one_out == pytest.approx((min(net) / 45, max(net) / 45))
    # On this benchmark no-KD choices score higher at HF than KD's (the paper found the
    # opposite; docs/results.md). Over seeds 0-4 at 200 runs the gap measured 4.68-5.08
    # points and the judged share 0.915-0.95 (no KD), 0.75-0.835 (KD).
    assert rows["nokd"].test_acc_mean - rows["kd"].test_acc_mean > 3.0
    assert rows["nokd"].judged > 0.8 * 200 and rows["kd"].judged > 0.6 * 200


def test_a_space_with_partial_high_fidelity_judges_choices_but_has_no_optimum() -> None:
    arrays = _synthetic(np.arange(0, 40, 4))
    with pytest.raises(ValueError, match="30 of 40 architectures have no high-fidelity"):
        _ = arrays.optimum
    # The same columns are refused where the high fidelity must be complete (a replay).
    with pytest.raises(ValueError, match="high-fidelity entries are missing"):
        SpaceArrays(arrays.space, arrays.features, arrays.hf_valid, arrays.hf_test,
                    arrays.hf_time, arrays.low)  # fmt: skip
