"""Executors: serial loop, exact resume after kill -9, failures, and Ray against in-process."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from fake_search import (
    HIGH,
    HistoryOptimizer,
    ShuffledOptimizer,
    ToyObjective,
    toy_accuracy,
    toy_candidates,
)

from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.execute import (
    ExecutionLimits,
    ReplayDivergedError,
    SerialExecutor,
    make_executor,
)
from kdnas.store import RunMismatchError, SQLiteStore

SCRIPT = Path(__file__).with_name("fake_search.py")
CONFIG = {"search": "toy", "n_low": 12, "n_high": 6, "seed": 7}


def history(store: SQLiteStore, run_id: str = "toy") -> list[tuple[int, str, Fidelity, str]]:
    return [
        (e.trial_id, e.arch.key(), e.result.fidelity, e.result.status)
        for e in store.results(run_id)
    ]


def reference_run(tmp_path: Path) -> list[tuple[int, str, Fidelity, str]]:
    optimizer = HistoryOptimizer(toy_candidates(30), 12, 6, seed=7)
    with SQLiteStore(tmp_path / "reference.db") as store:
        SerialExecutor().run(optimizer, ToyObjective(), store, run_id="toy", config=CONFIG)
        return history(store)


def test_serial_run_stores_every_result_and_keeps_going_after_divergence(tmp_path: Path) -> None:
    optimizer = HistoryOptimizer(toy_candidates(30), 12, 6, seed=7)
    with SQLiteStore(tmp_path / "s.db") as store:
        summary = SerialExecutor().run(
            optimizer, ToyObjective(), store, run_id="toy", config=CONFIG
        )
        stored = store.results("toy")
    assert summary.n_new == 18 and summary.n_replayed == 0
    assert summary.stop_reason == "exhausted"
    assert [e.trial_id for e in stored] == list(range(18))
    # Every stored accuracy is the objective's closed form; the toy's architecture 3 diverges.
    for evaluation in stored:
        result = evaluation.result
        if evaluation.arch.genotype[0] == 3:
            assert result.status == "diverged" and math.isnan(result.valid_acc)
        else:
            assert result.valid_acc == toy_accuracy(evaluation.arch, result.fidelity)
        expected = {"tau": 4.0, "lambda": 0.9} if result.fidelity.method == "kd" else {}
        assert evaluation.loss_hyperparameters == expected
    assert any(e.result.status == "diverged" for e in stored)
    assert [e.result.fidelity for e in stored].count(HIGH) == 6


def test_objective_exception_is_stored_as_failed_and_search_goes_on(tmp_path: Path) -> None:
    class Flaky(ToyObjective):
        def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
            if arch.genotype[0] % 4 == 1:
                raise RuntimeError("CUDA out of memory (simulated)")
            return super().evaluate(arch, fidelity)

    optimizer = HistoryOptimizer(toy_candidates(30), 10, 0, seed=1)
    with SQLiteStore(tmp_path / "s.db") as store:
        summary = SerialExecutor().run(optimizer, Flaky(), store, run_id="r")
    failed = [e for e in summary.evaluations if e.result.status == "failed"]
    assert summary.n_new == 10 and failed
    assert all("out of memory" in e.result.info["error"] for e in failed)
    assert all(e.arch.genotype[0] % 4 == 1 for e in failed)


def test_max_evaluations_counts_replayed_results(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        first = SerialExecutor().run(
            HistoryOptimizer(toy_candidates(30), 12, 6, seed=7),
            ToyObjective(),
            store,
            run_id="toy",
            config=CONFIG,
            limits=ExecutionLimits(max_evaluations=5),
        )
        assert (first.n_new, first.stop_reason) == (5, "max_evaluations")
        second = SerialExecutor().run(
            HistoryOptimizer(toy_candidates(30), 12, 6, seed=7),
            ToyObjective(),
            store,
            run_id="toy",
            config=CONFIG,
        )
        assert (second.n_replayed, second.n_new) == (5, 13)
        assert history(store) == reference_run(tmp_path)


def test_resume_after_kill_loses_nothing_reruns_nothing_and_continues_exactly(
    tmp_path: Path,
) -> None:
    store_path, log_path = tmp_path / "search.db", tmp_path / "started.log"
    command = [sys.executable, str(SCRIPT), "--store", str(store_path), "--log", str(log_path)]
    command += ["--sleep", "0.15"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    finished_before_kill: list[tuple[str, Fidelity]] = []
    while time.monotonic() < deadline:
        time.sleep(0.05)
        if store_path.exists():
            with SQLiteStore(store_path) as probe:
                if probe.run("toy") is not None and probe.count("toy") >= 7:
                    break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    with SQLiteStore(store_path) as store:
        finished_before_kill = [(e.arch.key(), e.result.fidelity) for e in store.results("toy")]
    assert 7 <= len(finished_before_kill) < 18, "the kill must land mid-search"

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    n_replayed = int(resumed.stdout.split()[1])
    assert n_replayed == len(finished_before_kill)

    with SQLiteStore(store_path) as store:
        final = history(store)
    # Nothing lost: every evaluation finished before the kill is still there, unchanged order.
    assert [(key, fidelity) for _, key, fidelity, _ in final[: len(finished_before_kill)]] == (
        finished_before_kill
    )
    # Nothing rerun: each evaluation was started once, except the one the kill interrupted.
    starts = Counter(tuple(line.split()) for line in log_path.read_text().splitlines())
    for key, fidelity in finished_before_kill:
        assert starts[(key, str(fidelity.part), fidelity.method)] == 1
    assert sum(starts.values()) - len(final) in (0, 1)
    # And the resumed search is exactly the search that was never interrupted.
    assert final == reference_run(tmp_path)


def test_resume_with_another_configuration_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SQLiteStore(path) as store:
        SerialExecutor().run(
            HistoryOptimizer(toy_candidates(30), 3, 0, seed=7),
            ToyObjective(),
            store,
            run_id="toy",
            config={**CONFIG, "n_low": 3},
        )
        with pytest.raises(RunMismatchError, match=r"n_low: 3 \(stored\) vs 4 \(now\)"):
            SerialExecutor().run(
                HistoryOptimizer(toy_candidates(30), 4, 0, seed=7),
                ToyObjective(),
                store,
                run_id="toy",
                config={**CONFIG, "n_low": 4},
            )
        assert store.count("toy") == 3


def test_replay_detects_an_optimizer_that_asks_something_else(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "s.db") as store:
        SerialExecutor().run(
            HistoryOptimizer(toy_candidates(30), 4, 0, seed=7), ToyObjective(), store, run_id="r"
        )
        with pytest.raises(ReplayDivergedError, match="not deterministic"):
            SerialExecutor().run(
                HistoryOptimizer(toy_candidates(30), 4, 0, seed=8),
                ToyObjective(),
                store,
                run_id="r",
            )


def test_unknown_executor_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid executors: serial, ray"):
        make_executor("dask")


def test_ray_executor_yields_the_same_results_as_in_process(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from kdnas.execute import RayExecutor

    candidates = toy_candidates(30)
    with SQLiteStore(tmp_path / "serial.db") as store:
        serial = SerialExecutor().run(
            ShuffledOptimizer(candidates, 8, seed=5), ToyObjective(), store, run_id="r"
        )
    import fake_search
    from ray import cloudpickle

    # Ray workers cannot import this test folder: ship the toy objective by value.
    cloudpickle.register_pickle_by_value(fake_search)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        optimizer = ShuffledOptimizer(candidates, 8, seed=5)
        executor = RayExecutor(max_concurrent=2)
        # One-off work (the teacher, in real searches) runs in a worker, not in the driver.
        assert executor.prepare(ToyObjective(), lambda objective: os.getpid()) != os.getpid()
        with SQLiteStore(tmp_path / "ray.db") as store:
            parallel = executor.run(optimizer, ToyObjective(sleep_s=0.2), store, run_id="r")
            stored = store.results("r")
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(fake_search)

    def as_set(evaluations: object) -> set[tuple[str, Fidelity, str, float]]:
        return {
            (e.arch.key(), e.result.fidelity, e.result.status, round(e.result.valid_acc, 12))
            for e in evaluations  # type: ignore[attr-defined]
        }

    assert parallel.n_new == 8 and len(stored) == 8
    assert as_set(parallel.evaluations) == as_set(serial.evaluations) == as_set(stored)
    assert sorted(optimizer.told) == list(range(8))
    # The tasks ran in Ray worker processes, not in this one.
    assert all(not e.worker.endswith(f":{os.getpid()}") for e in stored)


def test_replay_restores_an_out_of_order_parallel_history_exactly(tmp_path: Path) -> None:
    from kdnas.execute import replay_run

    objective = ToyObjective()
    original = HistoryOptimizer(toy_candidates(30), 8, 2, seed=11)
    with SQLiteStore(tmp_path / "s.db") as store:
        store.open_run("r", {})
        # Three workers: ask three, results come back 2, 0; ask one more; then 3, 1; then a
        # fifth is asked and the run is killed before it finishes.
        pending = {}
        for step in ["ask", "ask", "ask", 2, 0, "ask", 3, 1, "ask"]:
            if step == "ask":
                suggestion = original.ask()
                store.record_ask("r", suggestion)
                pending[suggestion.trial_id] = suggestion
            else:
                suggestion = pending.pop(step)
                result = objective.evaluate(suggestion.arch, suggestion.fidelity)
                store.put("r", suggestion, result)
                original.tell(suggestion, result)

        resumed = HistoryOptimizer(toy_candidates(30), 8, 2, seed=11)
        state = replay_run(resumed, store, "r")
    assert resumed.told == original.told
    assert [t for t, _ in resumed.told] == [2, 0, 3, 1]
    assert [s.trial_id for s in state.unfinished] == [4]
    assert state.unfinished[0] == pending[4]
    # From here both optimizers make the same suggestions.
    assert [resumed.ask() for _ in range(3)] == [original.ask() for _ in range(3)]
