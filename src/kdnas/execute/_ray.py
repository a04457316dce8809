"""The Ray executor: each evaluation a Ray task, several running at once.

The driver (this process) runs the evaluation loop (``kdnas.search.loop``) with Ray tasks as
its workers: it asks for a new suggestion whenever a slot is free, while other evaluations are
still running (the optimizer accounts for those pending ones, e.g. by fantasising their
posterior mean), and commits each result the moment its task returns. Workers only evaluate.
Ray is imported when the executor runs, so ``import kdnas`` works without it.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kdnas.core import Architecture, EvalResult, Fidelity, Objective, Optimizer, Suggestion
from kdnas.execute._common import (
    ExecutionLimits,
    ExecutionSummary,
    check_result,
    evaluate_safely,
    failed_result,
    run_stored,
)
from kdnas.search.loop import Finished
from kdnas.store import Store

__all__ = ["RayExecutor", "import_ray"]

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "the Ray executor needs the 'ray' package: pip install 'kdnas[ray]' (or pip install ray)"
)


def import_ray() -> Any:
    """Import Ray, or fail with an install hint."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"{_INSTALL_HINT} ({error})") from None
    return ray


def _evaluate_task(
    objective: Objective, arch: Architecture, fidelity: Fidelity, trial_id: int
) -> tuple[EvalResult, float, float, str]:
    """Body of one Ray task: evaluate and say where and when it ran."""
    suggestion = Suggestion(trial_id=trial_id, arch=arch, fidelity=fidelity)
    result, started, ended = evaluate_safely(objective, suggestion)
    return result, started, ended, f"{socket.gethostname()}:{os.getpid()}"


def _prepare_task(function: Any, objective: Objective, *args: Any) -> Any:
    return function(objective, *args)


class RayExecutor:
    """Run evaluations as Ray tasks on a local machine or a cluster.

    Args:
        address: a Ray cluster to join ("auto", "ray://host:10001", "host:6379"), or None to
            start a local Ray (or use the one already started in this process).
        num_cpus_per_eval: CPUs each evaluation task requests.
        num_gpus_per_eval: GPUs each evaluation task requests (fractions share a GPU).
        max_concurrent: evaluations running at once; default as many as the cluster's CPUs
            (or GPUs, when each task asks for one) allow.
        local_num_cpus: CPUs of a local Ray started by this executor (default all).
        shutdown: shut Ray down after ``run`` if this executor started it.
        poll_s: how often (seconds) the wall-clock limit is checked while waiting.
    """

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        num_cpus_per_eval: float = 1.0,
        num_gpus_per_eval: float = 0.0,
        max_concurrent: int | None = None,
        local_num_cpus: int | None = None,
        shutdown: bool = True,
        poll_s: float = 1.0,
    ) -> None:
        if num_cpus_per_eval < 0 or num_gpus_per_eval < 0:
            raise ValueError("num_cpus_per_eval and num_gpus_per_eval must be >= 0")
        if num_cpus_per_eval == 0 and num_gpus_per_eval == 0:
            raise ValueError("an evaluation must request some CPUs or GPUs")
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent!r}")
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s!r}")
        self.address = address
        self.num_cpus_per_eval = float(num_cpus_per_eval)
        self.num_gpus_per_eval = float(num_gpus_per_eval)
        self.max_concurrent = max_concurrent
        self.local_num_cpus = local_num_cpus
        self.shutdown = shutdown
        self.poll_s = float(poll_s)
        self._owns_ray = False

    def prepare(self, objective: Objective, function: Any, *args: Any) -> Any:
        """Run ``function(objective, *args)`` once as a Ray task with an evaluation's resources.

        For one-off work every evaluation needs, such as training the teacher into a folder
        all workers read: done once here, rather than by every worker at its first task.
        Ray stays up for the following ``run`` (and is shut down after it, if started here).
        """
        ray = import_ray()
        if self._start(ray):
            self._owns_ray = True
        options: dict[str, Any] = {"num_cpus": self.num_cpus_per_eval, "max_retries": 0}
        if self.num_gpus_per_eval > 0:
            options["num_gpus"] = self.num_gpus_per_eval
        return ray.get(
            ray.remote(_prepare_task).options(**options).remote(function, objective, *args)
        )

    def _start(self, ray: Any) -> bool:
        """Connect to (or start) Ray; True when this call started it."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.address is not None:
            kwargs["address"] = self.address
        elif self.local_num_cpus is not None:
            kwargs["num_cpus"] = self.local_num_cpus
        try:
            ray.init(**kwargs)
        except ConnectionError as error:
            raise ConnectionError(
                f"cannot join the Ray cluster at {self.address!r}: {error}"
            ) from None
        return True

    def _concurrency(self, ray: Any) -> int:
        if self.max_concurrent is not None:
            return self.max_concurrent
        resources = ray.cluster_resources()
        slots = []
        if self.num_cpus_per_eval > 0:
            slots.append(int(resources.get("CPU", 1) // self.num_cpus_per_eval))
        if self.num_gpus_per_eval > 0:
            slots.append(int(resources.get("GPU", 0) // self.num_gpus_per_eval))
        concurrency = min(slots) if slots else 1
        if concurrency < 1:
            raise ValueError(
                f"the Ray cluster ({resources}) cannot fit one evaluation requesting "
                f"{self.num_cpus_per_eval} CPUs and {self.num_gpus_per_eval} GPUs"
            )
        return concurrency

    def run(
        self,
        optimizer: Optimizer,
        objective: Objective,
        store: Store,
        *,
        run_id: str,
        config: Mapping[str, Any] | None = None,
        limits: ExecutionLimits | None = None,
        callbacks: Sequence[object] = (),
    ) -> ExecutionSummary:
        """Run (or resume) the search ``run_id`` with evaluations as Ray tasks.

        Same contract as ``SerialExecutor.run``; on a wall-clock stop, running tasks are
        cancelled and their suggestions stay unfinished (rerun on resume).

        Raises:
            ImportError: Ray is not installed (with an install hint).
            ConnectionError: the cluster at ``address`` cannot be joined.
        """
        ray = import_ray()
        started_ray = False

        def make_workers() -> _RayWorkers:
            # After the store accepted the run and replayed it: a refused run starts no Ray.
            nonlocal started_ray
            started_ray = self._start(ray) or self._owns_ray
            self._owns_ray = False
            options: dict[str, Any] = {"num_cpus": self.num_cpus_per_eval, "max_retries": 0}
            if self.num_gpus_per_eval > 0:
                options["num_gpus"] = self.num_gpus_per_eval
            task = ray.remote(_evaluate_task).options(**options)
            concurrency = self._concurrency(ray)
            logger.info("run %s: up to %d evaluations at once on Ray", run_id, concurrency)
            return _RayWorkers(ray, task, ray.put(objective), concurrency)

        try:
            return run_stored(
                optimizer,
                objective,
                make_workers,
                store,
                run_id=run_id,
                config=config,
                limits=limits,
                callbacks=callbacks,
                poll_s=self.poll_s,
                extras={"executor": "ray", "address": self.address or "local"},
            )
        finally:
            if started_ray and self.shutdown:
                ray.shutdown()


class _RayWorkers:
    """The evaluation loop's workers on Ray: one task per evaluation, ``capacity`` at once.
    The driver owns the optimizer and the store; tasks only evaluate."""

    def __init__(self, ray: Any, task: Any, objective_ref: Any, capacity: int) -> None:
        self.ray, self.task, self.objective_ref = ray, task, objective_ref
        self.capacity = capacity
        self.origin = time.perf_counter()
        self.running: dict[Any, tuple[Suggestion, float]] = {}

    @property
    def busy(self) -> int:
        return len(self.running)

    def submit(self, suggestion: Suggestion) -> None:
        reference = self.task.remote(
            self.objective_ref, suggestion.arch, suggestion.fidelity, suggestion.trial_id
        )
        self.running[reference] = (suggestion, time.perf_counter())

    def wait(self, timeout_s: float | None) -> list[Finished]:
        done, rest = self.ray.wait(list(self.running), num_returns=1, timeout=timeout_s)
        if done and rest:
            # Others that ended meanwhile are told together, as the loop expects.
            more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
            done = done + more
        return [self._collect(reference) for reference in done]

    def _collect(self, reference: Any) -> Finished:
        suggestion, submitted = self.running.pop(reference)
        worker = ""
        try:
            payload = self.ray.get(reference)
            result = check_result(suggestion, payload[0], time.perf_counter() - submitted)
            started, ended, worker = float(payload[1]), float(payload[2]), str(payload[3])
        except Exception as error:
            logger.error("Ray task of trial %d failed: %s", suggestion.trial_id, error)
            elapsed = time.perf_counter() - submitted
            result = failed_result(suggestion, elapsed, f"{type(error).__name__}: {error}")
            ended = time.time()
            started = ended - (elapsed if math.isfinite(elapsed) else 0.0)
        now = time.perf_counter() - self.origin
        return Finished(
            suggestion, result, submitted - self.origin, now, started, ended, worker=worker
        )

    def cancel(self) -> list[Suggestion]:
        for reference in self.running:
            self.ray.cancel(reference, force=True)
        abandoned = [suggestion for suggestion, _ in self.running.values()]
        self.running.clear()
        return abandoned
