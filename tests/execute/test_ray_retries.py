"""Ray: an evaluation lost to the infrastructure is run again (a bounded number of times,
recorded); a training's own failure is stored at once."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from fake_search import ShuffledOptimizer, ToyObjective, toy_candidates

from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.store import SQLiteStore


class CrashingObjective:
    """Kills its worker process (as a preempted node or the OOM killer would) the first
    ``crashes[index]`` times architecture ``index`` is evaluated, then evaluates it."""

    def __init__(self, folder: Path, crashes: dict[int, int]) -> None:
        self.folder = folder
        self.crashes = crashes
        self.toy = ToyObjective()

    def evaluate(self, arch: Architecture, fidelity: Fidelity) -> EvalResult:
        index = arch.genotype[0]
        attempts = len(list(self.folder.glob(f"{index}-*")))
        (self.folder / f"{index}-{attempts}").touch()
        if attempts < self.crashes.get(index, 0):
            os._exit(1)
        return self.toy.evaluate(arch, fidelity)


@pytest.mark.slow  # about 15 s: Ray's start and four worker restarts
def test_infrastructure_failures_are_retried_and_recorded_training_failures_are_not(
    tmp_path: Path,
) -> None:
    ray = pytest.importorskip("ray")
    import fake_search
    from ray import cloudpickle

    from kdnas.execute import RayExecutor

    here = sys.modules[__name__]
    for module in (fake_search, here):  # Ray workers cannot import this test folder
        cloudpickle.register_pickle_by_value(module)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # 0 crashes once, 1 always, 2 never; 3 diverges (the toy's own training failure)
        objective = CrashingObjective(tmp_path, {0: 1, 1: 99})
        executor = RayExecutor(max_concurrent=2, infrastructure_retries=2)
        with SQLiteStore(tmp_path / "s.sqlite") as store:
            optimizer = ShuffledOptimizer(toy_candidates(4), 4, seed=0)
            executor.run(optimizer, objective, store, run_id="r")
            stored = {e.arch.genotype[0]: e.result for e in store.results("r")}
    finally:
        ray.shutdown()
        for module in (fake_search, here):
            cloudpickle.unregister_pickle_by_value(module)
    attempts = {index: len(list(tmp_path.glob(f"{index}-*"))) for index in range(4)}
    assert attempts == {0: 2, 1: 3, 2: 1, 3: 1}
    assert stored[0].status == "ok" and stored[0].info["infrastructure_retries"] == "1"
    assert "WorkerCrashedError" in stored[0].info["infrastructure_errors"]
    assert stored[1].status == "failed" and stored[1].info["infrastructure_retries"] == "2"
    assert "WorkerCrashedError" in stored[1].info["error"]
    assert stored[2].status == "ok" and "infrastructure_retries" not in stored[2].info
    assert stored[3].status == "diverged" and "infrastructure_retries" not in stored[3].info
