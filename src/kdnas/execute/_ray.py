"""The Ray executor: each evaluation a Ray task, several running at once.

The driver (this process) runs the evaluation loop (``kdnas.loop``) with Ray tasks as
its workers: it asks for a new suggestion whenever a slot is free, while other evaluations are
still running (the optimizer accounts for those pending ones, e.g. by fantasising their
posterior mean), and commits each result the moment its task returns. Workers only evaluate.
Ray is imported when the executor runs, so ``import kdnas`` works without it.
"""

from __future__ import annotations

import dataclasses
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
from kdnas.execute._reaper import ProcessReaper
from kdnas.loop import Finished
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


#: Ray's errors for a task lost to the infrastructure, not failed by its own code: its worker
#: process or node died (preemption, the OOM killer) or its result was lost. The training's
#: own failures never reach here: ``evaluate_safely`` turns them into "failed" results.
_INFRASTRUCTURE_ERRORS = (
    "WorkerCrashedError",
    "NodeDiedError",
    "LocalRayletDiedError",
    "ObjectLostError",
    "OutOfMemoryError",
    "RaySystemError",
)


def _is_infrastructure_failure(ray: Any, error: BaseException) -> bool:
    kinds = tuple(
        getattr(ray.exceptions, name)
        for name in _INFRASTRUCTURE_ERRORS
        if hasattr(ray.exceptions, name)
    )
    return isinstance(error, kinds)


def _with_retries(result: EvalResult, errors: Sequence[str]) -> EvalResult:
    """``result`` recording the infrastructure failures its evaluation survived."""
    info = {
        **result.info,
        "infrastructure_retries": str(len(errors)),
        "infrastructure_errors": " | ".join(errors)[:2000],
    }
    return dataclasses.replace(result, info=info)


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
        num_gpus_per_eval: GPUs each evaluation task requests (fractions share a GPU); with 0
            the tasks see no GPU (see ``task_options``).
        max_concurrent: evaluations running at once; default as many as the cluster's CPUs
            (or GPUs, when each task asks for one) allow.
        local_num_cpus: CPUs of a local Ray started by this executor (default all).
        shutdown: shut Ray down after ``run`` if this executor started it.
        infrastructure_retries: how many times an evaluation lost to the infrastructure (its
            worker or node died, its result was lost) is run again before it is stored
            "failed"; retries are recorded in the result's info. A training's own failure
            is stored at once ("failed" or "diverged"), never retried. The one-off
            ``prepare`` task is retried as often, by Ray itself.
        poll_s: how often (seconds) the wall-clock limit is checked while waiting.
    """

    name = "ray"
    #: ``prepare`` runs as a Ray task in another process (often another machine): a callback
    #: of this process cannot follow it there.
    in_process = False

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
        infrastructure_retries: int = 2,
    ) -> None:
        if not all(math.isfinite(n) and n >= 0 for n in (num_cpus_per_eval, num_gpus_per_eval)):
            raise ValueError(
                f"num_cpus_per_eval and num_gpus_per_eval must be finite numbers >= 0, got "
                f"{num_cpus_per_eval!r} and {num_gpus_per_eval!r}"
            )
        if num_cpus_per_eval == 0 and num_gpus_per_eval == 0:
            raise ValueError("an evaluation must request some CPUs or GPUs")
        if max_concurrent is not None and max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent!r}")
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s!r}")
        if infrastructure_retries < 0:
            raise ValueError(f"infrastructure_retries must be >= 0, got {infrastructure_retries}")
        self.address = address
        self.num_cpus_per_eval = float(num_cpus_per_eval)
        self.num_gpus_per_eval = float(num_gpus_per_eval)
        self.max_concurrent = max_concurrent
        self.local_num_cpus = local_num_cpus
        self.shutdown = shutdown
        self.poll_s = float(poll_s)
        self.infrastructure_retries = int(infrastructure_retries)
        self._owns_ray = False
        self._reaper: ProcessReaper | None = None

    def prepare(self, objective: Objective, function: Any, *args: Any) -> Any:
        """Run ``function(objective, *args)`` once as a Ray task with an evaluation's resources.

        For one-off work every evaluation needs, such as training the teacher into a folder
        all workers read: done once here, rather than by every worker at its first task.
        Ray stays up for the following ``run`` (and is shut down after it, if started here).
        """
        ray = import_ray()
        if self._start(ray):
            self._owns_ray = True
        # Ray itself retries the one-off task if its worker died (never one whose code raised).
        options = self.task_options() | {"max_retries": self.infrastructure_retries}
        task = ray.remote(**options)(_prepare_task)
        return ray.get(task.remote(function, objective, *args))

    def task_options(self) -> dict[str, Any]:
        """The options of every task, given to ``ray.remote`` itself.

        A GPU task runs in a fresh worker process (``max_calls=1``): a reused worker would
        keep its CUDA context and cached memory on the GPU of its first task after Ray
        points ``CUDA_VISIBLE_DEVICES`` at another one. Ray sets that only for ``num_gpus``
        given to ``ray.remote``, not to ``.options()``, which refuses ``max_calls``. A task
        without GPUs gets ``CUDA_VISIBLE_DEVICES=""``: Ray no longer hides GPUs from
        ``num_gpus=0`` tasks, so an objective choosing its device in the task would pick
        GPU 0 in every one of them.
        """
        # Evaluations are retried by the loop, which records each infrastructure failure.
        options: dict[str, Any] = {"num_cpus": self.num_cpus_per_eval, "max_retries": 0}
        if self.num_gpus_per_eval > 0:
            options.update(num_gpus=self.num_gpus_per_eval, max_calls=1)
        else:
            options["runtime_env"] = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}
        return options

    def _start(self, ray: Any) -> bool:
        """Connect to (or start) Ray; True when this call started it."""
        if ray.is_initialized():
            return False
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True}
        if self.address is not None:
            kwargs["address"] = self.address
        else:
            # A local Ray is this process's: a watchdog ends it if the process dies.
            self._reaper = ProcessReaper.start()
            if self.local_num_cpus is not None:
                kwargs["num_cpus"] = self.local_num_cpus
        try:
            ray.init(**kwargs)
        except ConnectionError as error:
            self._release_reaper()
            raise ConnectionError(
                f"cannot join the Ray cluster at {self.address!r}: {error}"
            ) from None
        return True

    def _release_reaper(self) -> None:
        if self._reaper is not None:
            self._reaper.release()
            self._reaper = None

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
            task = ray.remote(**self.task_options())(_evaluate_task)
            concurrency = self._concurrency(ray)
            logger.info("run %s: up to %d evaluations at once on Ray", run_id, concurrency)
            return _RayWorkers(
                ray, task, ray.put(objective), concurrency, self.infrastructure_retries
            )

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
                self._release_reaper()


class _RayWorkers:
    """The evaluation loop's workers on Ray: one task per evaluation, ``capacity`` at once.

    The driver owns the optimizer and the store; tasks only evaluate. A task lost to the
    infrastructure (its worker or node died) is submitted again, up to ``retries`` times,
    and the failures are recorded in the result's info; a task whose code raised is not.
    """

    def __init__(
        self, ray: Any, task: Any, objective_ref: Any, capacity: int, retries: int
    ) -> None:
        self.ray, self.task, self.objective_ref = ray, task, objective_ref
        self.capacity = capacity
        self.retries = retries
        self.origin = time.perf_counter()
        self.running: dict[Any, tuple[Suggestion, float]] = {}
        self.lost: dict[int, list[str]] = {}  # trial id -> infrastructure failures so far

    @property
    def busy(self) -> int:
        return len(self.running)

    def submit(self, suggestion: Suggestion) -> None:
        reference = self.task.remote(
            self.objective_ref, suggestion.arch, suggestion.fidelity, suggestion.trial_id
        )
        self.running[reference] = (suggestion, time.perf_counter())

    def wait(self, timeout_s: float | None) -> list[Finished]:
        deadline = None if timeout_s is None else time.perf_counter() + timeout_s
        while self.running:
            remaining = None if deadline is None else max(0.0, deadline - time.perf_counter())
            done, rest = self.ray.wait(list(self.running), num_returns=1, timeout=remaining)
            if not done:
                return []
            if rest:
                # Others that ended meanwhile are told together, as the loop expects.
                more, _ = self.ray.wait(rest, num_returns=len(rest), timeout=0)
                done = done + more
            collected = [self._collect(reference) for reference in done]
            finished = [item for item in collected if item is not None]
            if finished:
                return finished
            # Every task that ended was lost and submitted again: wait on.
        return []

    def _collect(self, reference: Any) -> Finished | None:
        """The finished evaluation, or None when its task was lost and submitted again."""
        suggestion, submitted = self.running.pop(reference)
        worker = ""
        try:
            payload = self.ray.get(reference)
            result = check_result(suggestion, payload[0], time.perf_counter() - submitted)
            started, ended, worker = float(payload[1]), float(payload[2]), str(payload[3])
        except Exception as error:
            failures = self.lost.setdefault(suggestion.trial_id, [])
            if _is_infrastructure_failure(self.ray, error) and len(failures) < self.retries:
                failures.append(f"{type(error).__name__}: {str(error).strip()[:300]}")
                logger.warning(
                    "Ray task of trial %d lost to the infrastructure (%s); running it again "
                    "(retry %d of %d)",
                    suggestion.trial_id,
                    type(error).__name__,
                    len(failures),
                    self.retries,
                )
                self.submit(suggestion)
                return None
            logger.error("Ray task of trial %d failed: %s", suggestion.trial_id, error)
            elapsed = time.perf_counter() - submitted
            result = failed_result(suggestion, elapsed, f"{type(error).__name__}: {error}")
            ended = time.time()
            started = ended - (elapsed if math.isfinite(elapsed) else 0.0)
        if self.lost.get(suggestion.trial_id):
            result = _with_retries(result, self.lost.pop(suggestion.trial_id))
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
