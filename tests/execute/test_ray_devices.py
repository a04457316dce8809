"""Ray tasks and devices: task options (fresh worker per GPU task, no GPU for CPU tasks), the
device chosen in the task, and the teacher cache shared by the workers of one machine."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from fake_search import ShuffledOptimizer, ToyObjective, toy_candidates

from kdnas.execute import RayExecutor
from kdnas.store import SQLiteStore

ray = pytest.importorskip("ray")


class _Ref:
    def __init__(self, value: Any) -> None:
        self.value = value


class InlineRay:
    """The Ray calls the executor makes, each task run at once in this process.

    ``remote`` builds Ray's real ``RemoteFunction`` (no cluster needed), so Ray's own rules
    apply: ``.options()`` refuses ``max_calls``, and the ``max_calls`` a worker obeys is the
    function's (``ray.remote(num_gpus=...)`` implies 1; ``.options(num_gpus=...)`` does not).
    """

    def __init__(self) -> None:
        self.launched: list[dict[str, Any]] = []

    def is_initialized(self) -> bool:
        return True

    def cluster_resources(self) -> dict[str, float]:
        return {"CPU": 4.0, "GPU": 2.0}

    def put(self, value: Any) -> _Ref:
        return _Ref(value)

    def remote(self, *args: Any, **options: Any) -> Any:
        if args:
            return _InlineFunction(self, ray.remote(args[0]), {})
        decorator = ray.remote(**options)
        return lambda function: _InlineFunction(self, decorator(function), {})

    def get(self, ref: _Ref) -> Any:
        return ref.value

    def wait(self, refs: list[_Ref], num_returns: int = 1, timeout: Any = None) -> Any:
        return refs[:num_returns], refs[num_returns:]

    def cancel(self, ref: _Ref, force: bool = False) -> None:
        pass


class _InlineFunction:
    def __init__(self, fake: InlineRay, function: Any, options: dict[str, Any]) -> None:
        self.fake = fake
        self.function = function
        self.call_options = options

    def options(self, **options: Any) -> _InlineFunction:
        self.function.options(**options)  # Ray's validation
        return _InlineFunction(self.fake, self.function, {**self.call_options, **options})

    def remote(self, *args: Any) -> _Ref:
        effective = {**self.function._default_options, **self.call_options}
        effective["max_calls"] = self.function._max_calls  # what Ray ships to the worker
        self.fake.launched.append(effective)
        values = [a.value if isinstance(a, _Ref) else a for a in args]
        return _Ref(self.function._function(*values))


@pytest.mark.parametrize("gpus", [0.0, 0.5])
def test_gpu_tasks_get_a_fresh_worker_and_cpu_tasks_see_no_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpus: float
) -> None:
    import kdnas.execute._ray as ray_executor

    fake = InlineRay()
    monkeypatch.setattr(ray_executor, "import_ray", lambda: fake)
    executor = RayExecutor(num_gpus_per_eval=gpus, max_concurrent=2)
    assert executor.prepare(ToyObjective(), lambda objective: 7) == 7
    with SQLiteStore(tmp_path / "s.db") as store:
        summary = executor.run(
            ShuffledOptimizer(toy_candidates(6), 4, seed=0), ToyObjective(), store, run_id="r"
        )
    assert summary.n_new == 4 and len(fake.launched) == 1 + 4  # prepare, then evaluations
    for options in fake.launched:
        if gpus:
            assert options["num_gpus"] == gpus and options["max_calls"] == 1
        else:
            assert not options.get("num_gpus") and options["max_calls"] == 0
            assert options["runtime_env"]["env_vars"]["CUDA_VISIBLE_DEVICES"] == ""


def test_two_ray_workers_share_the_teacher_cache_and_pick_their_own_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from kdnas.experiment import SearchSettings, run_search

    # The driver has a GPU (as far as its torch can tell); the tasks ask Ray for none.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    epochs = 2
    settings = SearchSettings(
        dataset="digits",
        algorithm="alg2",
        method="kd",
        part=27,
        n_lf=3,
        n_candidates=4,
        epochs=epochs,
        width_multiplier=0.125,
        budget_evaluations=3,
        train={"batch_size": 64},
        allow_chance_teacher=True,  # 2 epochs teach little; this test is about the cache
    )
    store = tmp_path / "search.db"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # Two worker processes up before the search: otherwise, on a loaded machine, the
        # first student can end before Ray has started a second process, and one process
        # runs all three (seen under a load average of 10).
        @ray.remote(num_cpus=1)
        def occupy() -> int:
            time.sleep(1.0)
            return os.getpid()

        assert len(set(ray.get([occupy.remote(), occupy.remote()]))) == 2
        executor = RayExecutor(max_concurrent=2)
        visible = executor.prepare(None, lambda _: os.environ.get("CUDA_VISIBLE_DEVICES"))
        outcome = run_search(settings, store, executor=executor)
    finally:
        ray.shutdown()
    evaluations = sorted(outcome.summary.evaluations, key=lambda e: e.started_at or 0.0)
    with capsys.disabled():
        print("\ntrial  worker  device  teacher-cache hits/misses (epochs)  status")
        for e in evaluations:
            hits, misses = (e.result.metrics.get(f"teacher_cache_{n}") for n in ("hits", "misses"))
            device = e.result.info.get("device")
            print(f"{e.trial_id:>5}  {e.worker}  {device}  {hits}/{misses}  {e.result.status}")
    assert visible == "" and len(evaluations) == 3
    assert all(e.result.ok and e.result.fidelity.method == "kd" for e in evaluations)
    first_done = min(e.finished_at or 0.0 for e in evaluations)
    for e in evaluations:
        hits = int(e.result.metrics["teacher_cache_hits"])
        misses = int(e.result.metrics["teacher_cache_misses"])
        assert hits + misses == epochs
        if (e.started_at or 0.0) > first_done:  # a student after the first one finished
            assert (hits, misses) == (epochs, 0)
        assert e.result.info["device"].startswith("cpu")
    later = [e for e in evaluations if (e.started_at or 0.0) > first_done]
    assert later, "every student started before the first one finished"
    assert len({e.worker for e in evaluations}) == 2
    from kdnas.experiment import teacher_cache_dir_for

    assert len(list(teacher_cache_dir_for(store).rglob("epoch_*.pt"))) == epochs
