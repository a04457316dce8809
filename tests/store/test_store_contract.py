"""The contract every store of evaluations keeps (``kdnas.store.Store``): each test runs on
the SQLite store and on the in-memory store, as Optuna tests every storage with one suite."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_values import ARCH, LOW, result_for

from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion
from kdnas.store import (
    MemoryStore,
    RunMismatchError,
    SQLiteStore,
    Store,
    config_fingerprint,
    export_benchmark,
    versions_compatible,
)


class StoreFactory:
    """Opens "the" store of a test: the same file (SQLite) or the same object (memory) each
    time, so a test can close and reopen it."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind, self.folder = kind, folder
        self.memory = MemoryStore("test-store")

    def __call__(self) -> Store:
        if self.kind == "sqlite":
            return SQLiteStore(self.folder / "s.db")
        return self.memory


@pytest.fixture(params=["sqlite", "memory"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    yield StoreFactory(request.param, tmp_path)


def test_both_stores_declare_the_protocol(make_store: StoreFactory) -> None:
    with make_store() as store:
        assert isinstance(store, Store)


def test_a_finished_evaluation_reads_back_field_for_field(make_store: StoreFactory) -> None:
    result = result_for(
        ARCH,
        LOW,
        0.625,
        metrics={"params": 123456.0, "final_loss": 0.75},
        info={"subset_hash": "ab12cd", "device": "cpu"},
    )
    suggestion = Suggestion(0, ARCH, LOW)
    with make_store() as store:
        store.open_run("r", {"method": "nst"})
        assert store.record_ask("r", suggestion) == 1
        put = store.put(
            "r",
            suggestion,
            result,
            loss_hyperparameters={"beta": 50.0},
            started_at=100.0,
            finished_at=112.5,
        )
    with make_store() as store:
        (stored,) = store.results("r")
        assert list(store) == [stored] and store.count() == store.count("r") == 1
        assert store.run("r").config == {"method": "nst"} and store.run("other") is None
    assert stored == put
    assert stored.result == result
    assert stored.arch == ARCH
    assert stored.loss_hyperparameters == {"beta": 50.0}
    assert (stored.started_at, stored.finished_at) == (100.0, 112.5)
    assert (stored.trial_id, stored.seq) == (0, 2)
    assert stored.package_version != "" and stored.worker != ""


def test_runs_are_listed_oldest_first_and_results_in_commit_order(
    make_store: StoreFactory,
) -> None:
    other = Architecture("mobilenetv2", ((1, 16, 1, 1),))
    with make_store() as store:
        for run_id in ("b", "a"):
            store.open_run(run_id, {"run": run_id})
        store.put("a", Suggestion(0, ARCH, LOW), result_for(ARCH, LOW, 0.5))
        store.put("b", Suggestion(0, other, LOW), result_for(other, LOW, 0.4))
        store.put("a", Suggestion(1, other, LOW), result_for(other, LOW, 0.3))
        assert [run.run_id for run in store.runs()] == ["b", "a"]
        assert [(e.run_id, e.trial_id) for e in store.results()] == [
            ("a", 0),
            ("b", 0),
            ("a", 1),
        ]
        assert [e.seq for e in store.results("a")] == [1, 2]
        assert store.count("b") == 1


def test_diverged_result_with_nan_and_inf_survives(make_store: StoreFactory) -> None:
    result = EvalResult(
        ARCH.key(), LOW, math.nan, math.nan, 3.0, "diverged", metrics={"final_loss": math.inf}
    )
    with make_store() as store:
        store.open_run("r", {})
        store.put("r", Suggestion(0, ARCH, LOW), result)
        (stored,) = store.results("r")
    assert stored.result.status == "diverged"
    assert math.isnan(stored.result.valid_acc) and math.isnan(stored.result.test_acc)
    assert stored.result.metrics["final_loss"] == math.inf


def test_lookup_matches_part_method_epochs_seed_and_run(make_store: StoreFactory) -> None:
    with make_store() as store:
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


def test_events_interleave_asks_and_tells_in_order(make_store: StoreFactory) -> None:
    other = Architecture("mobilenetv2", ((1, 16, 1, 1),))
    first, second = Suggestion(0, ARCH, LOW), Suggestion(1, other, LOW)
    with make_store() as store:
        store.open_run("r", {})
        store.record_ask("r", first)
        store.record_ask("r", second)
        store.put("r", second, result_for(other, LOW, 0.4))
        events = [(e.kind, e.trial_id) for e in store.events("r")]
    assert events == [("ask", 0), ("ask", 1), ("tell", 1)]


def test_a_trial_is_stored_once_and_only_into_an_opened_run(make_store: StoreFactory) -> None:
    suggestion = Suggestion(0, ARCH, LOW)
    with make_store() as store:
        with pytest.raises(KeyError, match="no run 'r'"):
            store.put("r", suggestion, result_for(ARCH, LOW, 0.5))
        store.open_run("r", {})
        store.put("r", suggestion, result_for(ARCH, LOW, 0.5))
        with pytest.raises(ValueError, match="already holds a result for trial 0"):
            store.put("r", suggestion, result_for(ARCH, LOW, 0.5))
        store.record_ask("r", Suggestion(2, ARCH, LOW))
        with pytest.raises(ValueError, match="already holds a suggestion for trial 2"):
            store.record_ask("r", Suggestion(2, ARCH, LOW))
        with pytest.raises(ValueError, match="fidelity"):
            store.put("r", Suggestion(1, ARCH, LOW), result_for(ARCH, Fidelity(9, "nst"), 0.5))
        assert store.count("r") == 1


def test_reopening_a_run_with_its_configuration_resumes_and_another_is_refused(
    make_store: StoreFactory,
) -> None:
    config = {"space": "mobilenetv2", "method": "nst", "part": 27, "trainer": {"epochs": 20}}
    with make_store() as store:
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


def test_a_run_of_an_incompatible_version_is_refused(make_store: StoreFactory) -> None:
    with make_store() as store:
        store.open_run("r", {"a": 1}, package_version="0.1.0")
        store.open_run("r", {"a": 1}, package_version="0.1.7")
        with pytest.raises(RunMismatchError, match=r"made by kdnas 0\.1\.0.*this kdnas 0\.2\.0"):
            store.open_run("r", {"a": 1}, package_version="0.2.0")
    assert versions_compatible("1.4.2", "1.4.0+local")
    assert not versions_compatible("1.4.2", "1.5.0")


def test_export_writes_a_benchmark_that_loads_back(make_store: StoreFactory) -> None:
    from kdnas.bench.tabular import TabularBenchmark

    archs = [Architecture("mobilenetv2", ((1, 16 + 8 * i, 1, 1),)) for i in range(3)]
    high = Fidelity(part=1, method="nokd")
    with make_store() as store:
        store.open_run("r", {"dataset": "digits", "candidates": [a.to_json() for a in archs]})
        rows = [(archs[2], LOW, 0.5), (archs[0], LOW, 0.25), (archs[0], high, 0.75)]
        for trial, (arch, fidelity, acc) in enumerate(rows):
            store.put("r", Suggestion(trial, arch, fidelity), result_for(arch, fidelity, acc))
        # A repeat (another seed) of one cell is averaged; failed results are left out.
        store.put("r", Suggestion(3, archs[2], LOW), result_for(archs[2], LOW, 0.75, seed=4))
        failed = EvalResult(archs[1].key(), LOW, math.nan, math.nan, 1.0, "failed")
        store.put("r", Suggestion(4, archs[1], LOW), failed)
        folder = export_benchmark(store, make_store.folder / "bench")
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


class _Lookup:
    """An objective answering from a formula of the architecture's index, 2 s each."""

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        value = 0.5 + 0.01 * (arch.genotype[0] % 7)
        return EvalResult(arch.key(), fidelity, value, value, 2.0, seed=0)


def test_an_interrupted_search_resumes_exactly_from_the_store(make_store: StoreFactory) -> None:
    import numpy as np

    from kdnas.execute import ExecutionLimits, SerialExecutor
    from kdnas.search import GPUCB, CandidateSet

    archs = [Architecture("toy", (i,)) for i in range(15)]
    candidates = CandidateSet.from_raw(archs, np.arange(15.0)[:, None] ** [1, 2])

    def search(limit: int | None):
        with make_store() as store:
            return SerialExecutor().run(
                GPUCB(candidates, seed=3),
                _Lookup(),
                store,
                run_id="s",
                config={"seed": 3},
                limits=ExecutionLimits(max_evaluations=limit),
            )

    first = search(4)
    assert (first.n_new, first.stop_reason) == (4, "max_evaluations")
    resumed = search(9)
    assert (resumed.n_replayed, resumed.n_new) == (4, 5)
    reference = SerialExecutor().run(
        GPUCB(candidates, seed=3),
        _Lookup(),
        MemoryStore(),
        run_id="s",
        config={"seed": 3},
        limits=ExecutionLimits(max_evaluations=9),
    )
    assert [e.arch for e in resumed.evaluations] == [e.arch for e in reference.evaluations]
