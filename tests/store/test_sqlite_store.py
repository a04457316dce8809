"""The SQLite store: round trips, run fingerprints, refusals, concurrent writers, export."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion
from kdnas.store import (
    IncompatibleStoreError,
    RunMismatchError,
    SQLiteStore,
    config_fingerprint,
    export_benchmark,
    versions_compatible,
)

ARCH = Architecture("mobilenetv2", ((1, 16, 1, 1), (6, 24, 2, 2)))
LOW = Fidelity(part=27, method="nst")


def result_for(arch: Architecture, fidelity: Fidelity, acc: float, **kw: object) -> EvalResult:
    fields: dict[str, object] = {"cost_s": 12.5, "status": "ok", "seed": 3}
    fields.update(kw)
    return EvalResult(arch.key(), fidelity, acc, acc - 0.02, **fields)  # type: ignore[arg-type]


def test_a_finished_evaluation_reads_back_field_for_field(tmp_path: Path) -> None:
    result = result_for(
        ARCH,
        LOW,
        0.625,
        metrics={"params": 123456.0, "final_loss": 0.75},
        info={"subset_hash": "ab12cd", "device": "cpu"},
    )
    suggestion = Suggestion(0, ARCH, LOW)
    with SQLiteStore(tmp_path / "s.db") as store:
        store.open_run("r", {"method": "nst"})
        store.record_ask("r", suggestion)
        store.put(
            "r",
            suggestion,
            result,
            loss_hyperparameters={"beta": 50.0},
            started_at=100.0,
            finished_at=112.5,
        )
    with SQLiteStore(tmp_path / "s.db") as store:
        (stored,) = store.results("r")
        raw = (
            sqlite3.connect(tmp_path / "s.db")
            .execute("SELECT subset_hash, package_version FROM evaluations")
            .fetchone()
        )
    assert stored.result == result
    assert stored.arch == ARCH
    assert stored.loss_hyperparameters == {"beta": 50.0}
    assert (stored.started_at, stored.finished_at) == (100.0, 112.5)
    assert (stored.trial_id, stored.seq) == (0, 2)
    assert raw[0] == "ab12cd" and raw[1] == stored.package_version != ""


def test_diverged_result_with_nan_and_inf_survives(tmp_path: Path) -> None:
    result = EvalResult(
        ARCH.key(), LOW, math.nan, math.nan, 3.0, "diverged", metrics={"final_loss": math.inf}
    )
    with SQLiteStore(tmp_path / "s.db") as store:
        store.open_run("r", {})
        store.put("r", Suggestion(0, ARCH, LOW), result)
        (stored,) = store.results("r")
    assert stored.result.status == "diverged"
    assert math.isnan(stored.result.valid_acc) and math.isnan(stored.result.test_acc)
    assert stored.result.metrics["final_loss"] == math.inf


def test_lookup_matches_part_method_epochs_seed_and_run(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        for run_id in ("a", "b"):
            store.open_run(run_id, {})
        store.put("a", Suggestion(0, ARCH, LOW), result_for(ARCH, LOW, 0.5))
        with_epochs = Fidelity(part=27, method="nst", epochs=5)
        store.put("b", Suggestion(0, ARCH, with_epochs), result_for(ARCH, with_epochs, 0.6))
        assert store.lookup(ARCH.key(), LOW).result.valid_acc == 0.5
        assert store.lookup(ARCH.key(), with_epochs).result.valid_acc == 0.6
        assert store.lookup(ARCH.key(), LOW, run_id="b") is None
        assert store.lookup(ARCH.key(), LOW, seed=4) is None
        assert store.lookup(ARCH.key(), Fidelity(part=9, method="nst")) is None
        assert store.lookup("0" * 16, LOW) is None


def test_events_interleave_asks_and_tells_in_order(tmp_path: Path) -> None:
    other = Architecture("mobilenetv2", ((1, 16, 1, 1),))
    first, second = Suggestion(0, ARCH, LOW), Suggestion(1, other, LOW)
    with SQLiteStore(tmp_path / "s.db") as store:
        store.open_run("r", {})
        store.record_ask("r", first)
        store.record_ask("r", second)
        store.put("r", second, result_for(other, LOW, 0.4))
        events = [(e.kind, e.trial_id) for e in store.events("r")]
    assert events == [("ask", 0), ("ask", 1), ("tell", 1)]


def test_a_trial_is_stored_once_and_only_into_an_opened_run(tmp_path: Path) -> None:
    suggestion = Suggestion(0, ARCH, LOW)
    with SQLiteStore(tmp_path / "s.db") as store:
        with pytest.raises(KeyError, match="no run 'r'"):
            store.put("r", suggestion, result_for(ARCH, LOW, 0.5))
        store.open_run("r", {})
        store.put("r", suggestion, result_for(ARCH, LOW, 0.5))
        with pytest.raises(ValueError, match="already holds a result for trial 0"):
            store.put("r", suggestion, result_for(ARCH, LOW, 0.5))
        with pytest.raises(ValueError, match="fidelity"):
            store.put("r", Suggestion(1, ARCH, LOW), result_for(ARCH, Fidelity(9, "nst"), 0.5))
        assert store.count("r") == 1


def test_reopening_a_run_with_its_configuration_resumes_and_another_is_refused(
    tmp_path: Path,
) -> None:
    config = {"space": "mobilenetv2", "method": "nst", "part": 27, "trainer": {"epochs": 20}}
    with SQLiteStore(tmp_path / "s.db") as store:
        created = store.open_run("r", config)
        assert created.fingerprint == config_fingerprint(config)
        # Key order is irrelevant to the fingerprint.
        assert store.open_run("r", dict(reversed(config.items()))) == created
        changed = {**config, "method": "kd", "trainer": {"epochs": 10}}
        with pytest.raises(RunMismatchError) as caught:
            store.open_run("r", changed)
    message = str(caught.value)
    assert "method: 'nst' (stored) vs 'kd' (now)" in message
    assert "trainer.epochs: 20 (stored) vs 10 (now)" in message
    assert "part" not in message.split("configuration (")[1].split(")")[0].replace("(", "")


def test_a_run_of_an_incompatible_version_is_refused(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        store.open_run("r", {"a": 1}, package_version="0.1.0")
        store.open_run("r", {"a": 1}, package_version="0.1.7")
        with pytest.raises(RunMismatchError, match=r"made by kdnas 0\.1\.0.*this kdnas 0\.2\.0"):
            store.open_run("r", {"a": 1}, package_version="0.2.0")
    assert versions_compatible("1.4.2", "1.4.0+local")
    assert not versions_compatible("1.4.2", "1.5.0")


def test_files_that_are_not_kdnas_stores_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(IncompatibleStoreError, match=r"garbage\.db: not a kdnas SQLite store"):
        SQLiteStore(garbage)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE photos (id INTEGER)").connection.commit()
    with pytest.raises(IncompatibleStoreError, match=r"not a kdnas store.*photos"):
        SQLiteStore(foreign)
    newer = tmp_path / "newer.db"
    SQLiteStore(newer).close()
    connection = sqlite3.connect(newer)
    connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    with pytest.raises(IncompatibleStoreError, match="schema 99 by a newer kdnas"):
        SQLiteStore(newer)


def test_the_store_uses_a_write_ahead_log(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    mode = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


_WRITER = textwrap.dedent(
    """
    import sys
    from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion
    from kdnas.store import SQLiteStore

    path, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fidelity = Fidelity(part=9, method="kd")
    with SQLiteStore(path, busy_timeout_s=0.05, retries=200) as store:
        store.open_run(run_id, {"writer": "test"})
        for i in range(n):
            arch = Architecture("toy", (i,))
            suggestion = Suggestion(i, arch, fidelity)
            store.record_ask(run_id, suggestion)
            result = EvalResult(arch.key(), fidelity, 0.5, 0.5, 1.0)
            store.put(run_id, suggestion, result)
            store.count()  # readers interleave with the other process's writes
    """
)


def test_two_processes_writing_one_store_lose_no_row(tmp_path: Path) -> None:
    path, n = tmp_path / "shared.db", 150
    SQLiteStore(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), run_id, str(n)])
        for run_id in ("a", "b")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    with SQLiteStore(path) as store:
        for run_id in ("a", "b"):
            evaluations = store.results(run_id)
            assert sorted(e.trial_id for e in evaluations) == list(range(n))
            # Asks and tells of one run got distinct, gap-free sequence numbers.
            assert [e.seq for e in store.events(run_id)] == list(range(1, 2 * n + 1))
        assert store.count() == 2 * n


def test_export_writes_a_benchmark_that_loads_back(tmp_path: Path) -> None:
    pytest.importorskip("kdnas.bench.open_format")
    from kdnas.bench.tabular import TabularBenchmark

    archs = [Architecture("mobilenetv2", ((1, 16 + 8 * i, 1, 1),)) for i in range(3)]
    high = Fidelity(part=1, method="nokd")
    with SQLiteStore(tmp_path / "s.db") as store:
        store.open_run("r", {"dataset": "digits", "candidates": [a.to_json() for a in archs]})
        rows = [(archs[2], LOW, 0.5), (archs[0], LOW, 0.25), (archs[0], high, 0.75)]
        for trial, (arch, fidelity, acc) in enumerate(rows):
            store.put("r", Suggestion(trial, arch, fidelity), result_for(arch, fidelity, acc))
        # A repeat (another seed) of one cell is averaged; failed results are left out.
        store.put("r", Suggestion(3, archs[2], LOW), result_for(archs[2], LOW, 0.75, seed=4))
        failed = EvalResult(archs[1].key(), LOW, math.nan, math.nan, 1.0, "failed")
        store.put("r", Suggestion(4, archs[1], LOW), failed)
        folder = export_benchmark(store, tmp_path / "bench")
    benchmark = TabularBenchmark.load(folder)
    assert benchmark.num_entries == 3
    assert benchmark.num_architectures("mobilenet", dataset="digits") == 3
    assert benchmark.query("mobilenet", 2, "nst", 27, dataset="digits").valid_acc == 0.625
    assert benchmark.query("mobilenet", 0, "nokd", 1, dataset="digits").test_acc == 0.73
    assert benchmark.query("mobilenet", 0, "nst", 27, dataset="digits").wall_time == 12.5
    listing = json.loads((folder / "architectures.json").read_text())
    assert [json.dumps(entry, separators=(",", ":")) for entry in listing["mobilenetv2"]] == [
        a.to_json() for a in archs
    ]
