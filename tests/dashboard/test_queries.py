"""The dashboard's JSON views of a store with known contents, checked against hand-worked
values and against scipy directly."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from stores import FULL, LOW_KD, LOW_NOKD, Row, write_run

from kdnas.dashboard import GridQuery, StoreView, rank_correlations
from kdnas.store import IncompatibleStoreError, SQLiteStore

T0 = 1_700_000_000.0


def known_rows() -> list[Row]:
    """Six architectures at 1/9 kd, five of them at full data, interleaved; one failure."""
    low = [0.30, 0.50, 0.40, 0.70, 0.60, 0.20]
    full_valid = [0.60, 0.80, 0.70, 0.90, 0.85]
    rows, t = [], T0
    for arch, value in enumerate(low):
        rows.append(Row(arch, LOW_KD, value, value - 0.05, t, t + 1.0, worker=f"w{arch % 2}"))
        t += 1.0
        if arch < len(full_valid):
            rows.append(Row(arch, FULL, full_valid[arch], full_valid[arch] - 0.1, t, t + 4.0))
            t += 4.0
    rows.append(Row(5, FULL, math.nan, math.nan, t, t + 2.0, status="failed"))
    return rows


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    path = tmp_path / "search.sqlite"
    with SQLiteStore(path) as store:
        write_run(store, "main", known_rows())
        write_run(store, "<img src=x onerror=alert(1)>", [Row(0, LOW_NOKD, 0.4, 0.35, T0, T0 + 1)])
    return path


def test_overview_counts_seconds_and_best(store_path: Path) -> None:
    runs = {run["run_id"]: run for run in StoreView(store_path).runs()}
    main = runs["main"]
    assert (main["evaluations"], main["ok"]) == (12, 11)
    # low: six 1 s evaluations; full: five of 4 s and the failed one of 2 s.
    assert main["seconds"]["low"] == pytest.approx(6.0)
    assert main["seconds"]["full"] == pytest.approx(22.0)
    assert main["best"]["valid_acc"] == pytest.approx(0.90)
    assert main["best"]["test_acc"] == pytest.approx(0.80)
    assert main["status"].startswith("idle")
    assert len(main["fingerprint"]) == 64
    assert runs["<img src=x onerror=alert(1)>"]["best"] is None


def test_an_asked_evaluation_without_result_shows_the_run_running(store_path: Path) -> None:
    from kdnas.core import Suggestion
    from kdnas.spaces import get_space

    arch = get_space("mobilenetv2").sample(np.random.default_rng(5))
    with SQLiteStore(store_path) as store:
        store.record_ask("main", Suggestion(trial_id=99, arch=arch, fidelity=FULL))
    main = next(run for run in StoreView(store_path).runs() if run["run_id"] == "main")
    assert main["status"].startswith("running (1 ")


def test_incumbent_steps_at_each_improvement_and_reaches_the_end(store_path: Path) -> None:
    series = StoreView(store_path).incumbent()["main"]
    # full-data valid accuracies in order 0.60, 0.80, 0.70, 0.90, 0.85: improvements at the
    # 2nd, 4th and 8th evaluation told, then the last (12th) closes the steps.
    assert series["evaluation"] == [2, 4, 8, 12]
    assert series["valid_acc"] == pytest.approx([0.60, 0.80, 0.90, 0.90])
    assert series["test_acc"] == pytest.approx([0.50, 0.70, 0.80, 0.80])
    # the 8th evaluation (arch 3 at full data) ends 1+4+1+4+1+4+1+4 = 20 s after the start.
    assert series["wall_s"][2] == pytest.approx(20.0)
    assert series["tail"] is True and series["count"] == 12


def test_incumbent_up_to_an_id_leaves_newer_rows_out(store_path: Path) -> None:
    series = StoreView(store_path).incumbent(upto=4)["main"]
    assert series["count"] == 4 and series["evaluation"] == [2, 4]


def test_incumbent_of_interleaved_runs_equals_a_count_in_tell_order(tmp_path: Path) -> None:
    """Two runs told in turns (their ids are not contiguous): each evaluation's number and
    each improvement, counted here from the rows in ``seq`` order, match the view's."""
    path = tmp_path / "two.sqlite"
    rng = np.random.default_rng(4)
    with SQLiteStore(path) as store:
        for step in range(40):
            run = "a" if rng.random() < 0.6 else "b"
            fidelity = FULL if rng.random() < 0.5 else LOW_KD
            valid = 0.1 + 0.9 * float(rng.random())
            write_run(
                store, run, [Row(step % 7, fidelity, valid, valid - 0.1, T0 + step, T0 + step + 1)]
            )
    view = StoreView(path)
    series = view.incumbent()
    connection = sqlite3.connect(path)
    for run in ("a", "b"):
        rows = connection.execute(
            "SELECT part, method, valid_acc, finished_at FROM evaluations WHERE run_id = ? "
            "ORDER BY seq",
            (run,),
        ).fetchall()
        numbers, best = [], None
        for number, (part, method, valid, _) in enumerate(rows, start=1):
            if (part, method) == (1, "nokd") and (best is None or valid > best):
                best = valid
                numbers.append(number)
        if numbers[-1] != len(rows):
            numbers.append(len(rows))
        assert series[run]["evaluation"] == numbers
        assert series[run]["count"] == len(rows)
        assert series[run]["best"] == pytest.approx(best)
    assert view.first_view()["incumbent"] == series


def test_fidelities_pair_architectures_and_agree_with_scipy(store_path: Path) -> None:
    views = StoreView(store_path).fidelities()
    (kd,) = [v for v in views if v["run_id"] == "main"]
    assert kd["fidelity"] == "1/9 kd" and kd["n"] == 5  # arch 5 has no ok full-data result
    low = np.array([0.30, 0.50, 0.40, 0.70, 0.60])
    full_test = np.array([0.50, 0.70, 0.60, 0.80, 0.75])
    assert kd["low_valid_acc"] == pytest.approx(low.tolist())
    assert kd["full_test_acc"] == pytest.approx(full_test.tolist())
    assert kd["spearman"] == pytest.approx(stats.spearmanr(low, full_test)[0])
    assert kd["kendall"] == pytest.approx(stats.kendalltau(low, full_test)[0])
    lower, upper = kd["spearman_ci"]
    assert lower - 1e-12 <= kd["spearman"] <= upper + 1e-12
    (hostile,) = [v for v in views if v["run_id"] != "main"]
    assert hostile["n"] == 0 and hostile["spearman"] is None


def test_bootstrap_intervals_cover_and_narrow_with_more_pairs() -> None:
    rng = np.random.default_rng(1)
    x = rng.random(200)
    y = x + rng.normal(0, 0.3, 200)
    wide = rank_correlations(x[:20], y[:20])
    narrow = rank_correlations(x, y)
    width = lambda r, k: r[f"{k}_ci"][1] - r[f"{k}_ci"][0]  # noqa: E731
    for name in ("spearman", "kendall"):
        assert width(narrow, name) < width(wide, name)
        assert narrow[f"{name}_ci"][0] <= narrow[name] <= narrow[f"{name}_ci"][1]
    assert wide["resamples"] == narrow["resamples"] == 400
    assert rank_correlations(x[:2], y[:2])["spearman"] is None
    assert rank_correlations(x, y) == rank_correlations(x, y)  # seeded


def test_grid_sorts_filters_and_pages_in_sqlite(store_path: Path) -> None:
    view = StoreView(store_path)
    page = view.evaluations(GridQuery(page=0, page_size=4, sort="valid_acc", descending=True))
    assert page["total"] == 13
    assert [row["valid_acc"] for row in page["rows"]] == pytest.approx([0.90, 0.85, 0.80, 0.70])
    second = view.evaluations(GridQuery(page=1, page_size=4, sort="valid_acc", descending=True))
    assert second["rows"][0]["valid_acc"] == pytest.approx(0.70)  # ties: newer id first
    filtered = view.evaluations(GridQuery(filters={"method": "kd", "worker": "w1"}))
    assert filtered["total"] == 3  # archs 1, 3 and 5 at 1/9 kd ran on w1
    assert {row["trial"] for row in filtered["rows"]} == {2, 6, 10}
    # the user's % and _ are plain characters, not LIKE's wildcards
    assert view.evaluations(GridQuery(filters={"run": "%"}))["total"] == 0
    with pytest.raises(ValueError, match="unknown sort column 'cost_s; DROP'"):
        GridQuery(sort="cost_s; DROP")
    with pytest.raises(ValueError, match="expected an integer"):
        view.evaluations(GridQuery(filters={"part": "x"}))


def test_an_evaluation_opens_with_its_description_and_sizes(store_path: Path) -> None:
    view = StoreView(store_path)
    entry = view.evaluation(2)
    assert entry["part"] == 1 and entry["params"] == 1000 and entry["multiply_adds"] == 5000
    assert entry["description"]
    assert view.evaluation(10_000) is None


def test_updates_hold_only_newer_rows(store_path: Path) -> None:
    view = StoreView(store_path)
    assert view.latest_id() == 13
    update = view.updates(10)
    assert [row["id"] for row in update["rows"]] == [11, 12, 13]
    assert update["latest"] == 13
    assert view.updates(13)["rows"] == []


def test_workers_timeline_is_start_to_end_per_worker(store_path: Path) -> None:
    bars = StoreView(store_path).workers()
    assert len(bars) == 13
    assert all(bar["finished_at"] >= bar["started_at"] for bar in bars)
    assert {bar["worker"] for bar in bars} == {"w0", "w1"}
    assert [bar["id"] for bar in StoreView(store_path).workers(limit=2)] == [12, 13]


def test_the_view_writes_nothing_and_never_holds_the_writer(store_path: Path) -> None:
    before = store_path.read_bytes()
    view = StoreView(store_path)
    view.runs()
    connection = view._connection()
    connection.execute("BEGIN")  # a reader mid-transaction, as during a long query
    connection.execute("SELECT COUNT(*) FROM evaluations").fetchall()
    with SQLiteStore(store_path, busy_timeout_s=0.5, retries=0) as writer:
        write_run(writer, "later", [Row(1, FULL, 0.5, 0.5, T0, T0 + 1)])  # not blocked
    connection.execute("COMMIT")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        connection.execute("DELETE FROM evaluations")
    assert view.latest_id() == 14
    assert before[:100] == store_path.read_bytes()[:100]  # header unchanged by the reader


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    with pytest.raises(IncompatibleStoreError, match="not a kdnas store"):
        StoreView(other)


def test_the_batched_resamples_agree_with_scipy_one_by_one() -> None:
    from kdnas.dashboard._queries import _kendall_rows, _spearman_rows

    rng = np.random.default_rng(3)
    a = rng.integers(0, 6, (20, 15)).astype(float)  # ties, as accuracies of small sets have
    b = a + rng.integers(0, 4, (20, 15))
    expected_rho = [stats.spearmanr(x, y)[0] for x, y in zip(a, b, strict=True)]
    expected_tau = [stats.kendalltau(x, y)[0] for x, y in zip(a, b, strict=True)]
    assert _spearman_rows(a, b) == pytest.approx(expected_rho)
    assert _kendall_rows(a, b, chunk_elements=200) == pytest.approx(expected_tau)


def test_overview_reads_budget_warnings_and_teacher_from_the_search_report(
    store_path: Path,
) -> None:
    import json

    teachers = store_path.with_name(store_path.name + ".teachers")
    teachers.mkdir()
    for name, seconds in (("a", 3.0), ("b", 4.5)):
        (teachers / f"{name}.json").write_text(json.dumps({"train_time_s": seconds}))
    (teachers / "broken.json").write_text("[1]")
    main = next(run for run in StoreView(store_path).runs() if run["run_id"] == "main")
    assert main["seconds"]["teacher"] == pytest.approx(7.5)
    assert main["seconds"]["teacher_shared"] is True
    assert main["budget_evaluations"] is None and main["warnings"] == []

    report = store_path.with_name(store_path.name + ".report")
    report.mkdir()
    (report / "report.json").write_text(
        json.dumps(
            {
                "run_id": "main",
                "settings": {"budget_evaluations": 20},
                "warnings": ["fidelity 1/9 kd: all results at chance"],
                "cost": {"teacher_s": 12.5},
                "stop_reason": "budget",
            }
        )
    )
    runs = {run["run_id"]: run for run in StoreView(store_path).runs()}
    main = runs["main"]
    assert main["budget_evaluations"] == 20 and main["status"] == "stopped: budget"
    assert main["warnings"] == ["fidelity 1/9 kd: all results at chance"]
    assert main["seconds"]["teacher"] == 12.5 and main["seconds"]["teacher_shared"] is False
    assert runs["<img src=x onerror=alert(1)>"]["warnings"] == []  # another run's report
