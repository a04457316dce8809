"""The one evaluation loop: ask, evaluate, tell, store, stop, with pluggable workers.

Every search in kdnas runs through ``run_loop``: ``run_optimizer`` on a tabular benchmark, the
simulations behind the paper's tables (``simulate_proxy_prior``), ``kdnas search`` through the
serial and the Ray executors. What differs is only *where* evaluations run, the ``Workers``:

    InProcessWorkers(objective, count)
        evaluates in this process and keeps a simulated clock: each evaluation occupies one of
        ``count`` workers for its ``cost_s`` seconds. With count = 1 this is the serial loop
        (the clock is the running sum of evaluation seconds); with a tabular objective, whose
        ``cost_s`` is the stored training time, and count = N it simulates N asynchronous
        workers: whenever a worker frees, the optimizer is told the results that ended at that
        instant and asked for new work while the other evaluations are still pending.
    Ray workers (``kdnas.execute``)
        one Ray task per evaluation; the clock is the real one.

The loop (one iteration): while a worker is free and no limit is reached, take a suggestion
(first the ``resume`` ones, interrupted evaluations of a stored run, then ``optimizer.ask()``)
and start it; then wait for the next evaluations to end, store each (``recorder``), tell it,
and check ``stop``. ``ask`` returning None while evaluations run means "wait for results"
(Algorithm 2 changes phase only when its low-fidelity results are in): the loop asks again
after the next tell, and ends when it returns None with nothing running.
"""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from kdnas.core import (
    HIGH_FIDELITY,
    Architecture,
    EvalResult,
    Fidelity,
    Objective,
    Optimizer,
    Suggestion,
)
from kdnas.loop.trace import Trace, TraceStep

__all__ = [
    "STOP_REASONS",
    "Finished",
    "InProcessWorkers",
    "LoopLimits",
    "LoopRecorder",
    "Workers",
    "check_result",
    "evaluate_safely",
    "failed_result",
    "run_loop",
    "run_many",
    "run_optimizer",
]

logger = logging.getLogger(__name__)

#: Why a loop ended: the optimizer has nothing more to ask ("exhausted"), a limit of
#: ``LoopLimits``, or the caller's ``stop`` predicate ("stopped").
STOP_REASONS: tuple[str, ...] = (
    "exhausted",
    "max_evaluations",
    "max_cost_s",
    "max_wall_s",
    "stopped",
)


@dataclass(frozen=True)
class LoopLimits:
    """When the loop stops, besides the optimizer running out of suggestions.

    Args:
        max_evaluations: finished evaluations in all (``already_finished`` of ``run_loop``
            included, so a resumed run stops where the uninterrupted one would have), or None.
        max_cost_s: stop asking once the finished evaluations have cost this many seconds
            (the evaluations running then are completed and counted), or None.
        max_wall_s: real seconds of this call, or None; running evaluations are cancelled
            when it passes. Not reproducible: prefer the optimizer's own budget.
    """

    max_evaluations: int | None = None
    max_cost_s: float | None = None
    max_wall_s: float | None = None

    def __post_init__(self) -> None:
        if self.max_evaluations is not None and self.max_evaluations < 0:
            raise ValueError(f"max_evaluations must be >= 0, got {self.max_evaluations!r}")
        if self.max_cost_s is not None and not self.max_cost_s > 0:
            raise ValueError(f"max_cost_s must be positive seconds, got {self.max_cost_s!r}")
        if self.max_wall_s is not None and not self.max_wall_s > 0:
            raise ValueError(f"max_wall_s must be positive, got {self.max_wall_s!r}")


@dataclass(frozen=True)
class Finished:
    """One evaluation that ended, as the workers report it.

    Args:
        suggestion: what was evaluated.
        result: what came back (a "failed" result when the evaluation raised, for workers
            that contain errors).
        started_s, ended_s: on the workers' clock (seconds since the loop began; simulated
            for ``InProcessWorkers``).
        started_at, finished_at: Unix times (seconds) the evaluation really ran.
        worker: where it ran (host:pid), or "" when it ran in this process.
    """

    suggestion: Suggestion
    result: EvalResult
    started_s: float
    ended_s: float
    started_at: float
    finished_at: float
    worker: str = ""


class Workers(Protocol):
    """Where evaluations run. The loop starts at most ``capacity`` at once."""

    @property
    def capacity(self) -> int:
        """Evaluations that can run at once."""

    @property
    def busy(self) -> int:
        """Evaluations running now."""

    def submit(self, suggestion: Suggestion) -> None:
        """Start evaluating ``suggestion``."""

    def wait(self, timeout_s: float | None) -> list[Finished]:
        """Block until evaluations end; return every one that has ended by then, in the order
        they ended (an empty list only when ``timeout_s`` passed first)."""

    def cancel(self) -> list[Suggestion]:
        """Abandon every running evaluation; return their suggestions."""


class LoopRecorder(Protocol):
    """What the loop reports as it goes (a store, progress bars). Every hook is optional."""

    def asked(self, suggestion: Suggestion) -> None:
        """``optimizer.ask()`` handed out ``suggestion`` (not called for resumed ones)."""

    def started(self, suggestion: Suggestion) -> None:
        """An evaluation was submitted to the workers."""

    def finished(self, finished: Finished) -> None:
        """An evaluation ended; called before the optimizer is told, so a store commits it
        first and a crash in ``tell`` loses nothing."""


def failed_result(suggestion: Suggestion, cost_s: float, message: str) -> EvalResult:
    """A "failed" result carrying the seconds spent and the error message."""
    return EvalResult(
        arch_key=suggestion.arch.key(),
        fidelity=suggestion.fidelity,
        valid_acc=math.nan,
        test_acc=math.nan,
        cost_s=max(0.0, float(cost_s)) if math.isfinite(cost_s) else 0.0,
        status="failed",
        info={"error": message[:2000]},
    )


def check_result(suggestion: Suggestion, result: object, cost_s: float) -> EvalResult:
    """``result`` if it is a well-formed answer to ``suggestion``, else a failed result."""
    if not isinstance(result, EvalResult):
        return failed_result(
            suggestion, cost_s, f"objective returned {type(result).__name__}, not EvalResult"
        )
    if result.arch_key != suggestion.arch.key() or result.fidelity != suggestion.fidelity:
        return failed_result(
            suggestion,
            cost_s,
            f"objective answered {result.arch_key} at {result.fidelity.label()}, "
            f"asked {suggestion.arch.key()} at {suggestion.fidelity.label()}",
        )
    return result


def evaluate_safely(
    objective: Objective, suggestion: Suggestion
) -> tuple[EvalResult, float, float]:
    """Evaluate one suggestion; an exception becomes a "failed" result instead of a crash.

    Objectives return "failed" or "diverged" results themselves for bad architectures and
    diverged losses; this guard catches the unexpected (a bug, an out-of-memory error) so one
    bad evaluation never ends a long search.

    Returns:
        The result, and the Unix times (seconds) the evaluation started and finished.
    """
    started = time.time()
    clock = time.perf_counter()
    try:
        result: object = objective.evaluate(suggestion.arch, suggestion.fidelity)
    except Exception as error:
        logger.exception(
            "evaluation of %s at %s raised", suggestion.arch.key(), suggestion.fidelity.label()
        )
        result = failed_result(
            suggestion, time.perf_counter() - clock, f"{type(error).__name__}: {error}"
        )
    checked = check_result(suggestion, result, time.perf_counter() - clock)
    return checked, started, time.time()


class InProcessWorkers:
    """``count`` workers in this process on a simulated clock.

    ``submit`` evaluates at once (evaluations are done one after the other in this process),
    and the result becomes visible when its worker's clock reaches start + ``cost_s``: an
    evaluation submitted at clock t ends at t + cost_s, and ``wait`` advances the clock to the
    earliest end. Evaluations ending at the same instant are reported together, in submission
    order. With count = 1 the clock is the running sum of evaluation seconds, the serial loop.

    Args:
        objective: evaluates (arch, fidelity) -> ``EvalResult``.
        count: simulated workers (>= 1).
        contain_errors: an exception of the objective becomes a "failed" result (the
            executors' choice, so a long search survives a bug in one evaluation); False lets
            it propagate (simulations, where it means a misconfigured caller).
    """

    def __init__(self, objective: Objective, count: int = 1, contain_errors: bool = False):
        if count < 1:
            raise ValueError(f"InProcessWorkers needs count >= 1, got {count}")
        self.objective = objective
        self.count = int(count)
        self.contain_errors = contain_errors
        self.clock_s = 0.0
        self._running: list[tuple[float, int, Finished]] = []
        self._submitted = 0

    @property
    def capacity(self) -> int:
        return self.count

    @property
    def busy(self) -> int:
        return len(self._running)

    def submit(self, suggestion: Suggestion) -> None:
        if len(self._running) >= self.count:
            raise RuntimeError("InProcessWorkers: every worker is busy")
        if self.contain_errors:
            result, started_at, finished_at = evaluate_safely(self.objective, suggestion)
        else:
            started_at = time.time()
            result = self.objective.evaluate(suggestion.arch, suggestion.fidelity)
            finished_at = time.time()
        end = self.clock_s + float(result.cost_s)
        finished = Finished(suggestion, result, self.clock_s, end, started_at, finished_at)
        heapq.heappush(self._running, (end, self._submitted, finished))
        self._submitted += 1

    def wait(self, timeout_s: float | None = None) -> list[Finished]:
        if not self._running:
            return []
        end = self._running[0][0]
        self.clock_s = max(self.clock_s, end)
        done = []
        while self._running and self._running[0][0] == end:
            done.append(heapq.heappop(self._running)[2])
        return done

    def cancel(self) -> list[Suggestion]:
        abandoned = [entry[2].suggestion for entry in sorted(self._running)]
        self._running.clear()
        return abandoned


def _hook(recorder: object | None, name: str) -> Callable[..., None] | None:
    return None if recorder is None else getattr(recorder, name, None)


def run_loop(
    optimizer: Optimizer,
    workers: Workers,
    *,
    limits: LoopLimits | None = None,
    stop: Callable[[TraceStep], bool] | None = None,
    recorder: object | None = None,
    resume: Sequence[Suggestion] = (),
    already_finished: int = 0,
    poll_s: float = 1.0,
) -> Trace:
    """Drive ``optimizer`` with ``workers`` until it has nothing to ask or a limit stops it.

    Args:
        optimizer: a ``kdnas.core.Optimizer``.
        workers: where evaluations run (``InProcessWorkers``, the Ray executor's workers).
        limits: evaluations, summed evaluation seconds, real seconds.
        stop: called after each tell; True ends the loop and abandons running evaluations
            (e.g. "the optimum was found").
        recorder: a ``LoopRecorder`` (any subset of its hooks), e.g. a store.
        resume: suggestions already handed out but never finished (a resumed run): evaluated
            first, not asked again.
        already_finished: finished evaluations before this call (count toward
            ``limits.max_evaluations``).
        poll_s: how often (seconds) the wall-clock limit is checked while waiting.

    Returns:
        The ``Trace`` of the evaluations finished by this call, in tell order, each with its
        start and end on the workers' clock, and the ``stop_reason`` (``STOP_REASONS``).
    """
    limits = limits or LoopLimits()
    asked, started, finished_hook = (
        _hook(recorder, name) for name in ("asked", "started", "finished")
    )
    clock = time.perf_counter()
    queue = deque(resume)
    steps: list[TraceStep] = []
    spent_s = 0.0
    optimizer_waiting = False

    def out_of_time() -> bool:
        return limits.max_wall_s is not None and time.perf_counter() - clock >= limits.max_wall_s

    def evaluations_spent() -> bool:
        return (
            limits.max_evaluations is not None
            and already_finished + len(steps) + workers.busy >= limits.max_evaluations
        )

    def cost_spent() -> bool:
        return limits.max_cost_s is not None and spent_s >= limits.max_cost_s

    while True:
        while workers.busy < workers.capacity:
            if evaluations_spent() or out_of_time() or cost_spent():
                break
            if queue:
                suggestion = queue.popleft()
            elif optimizer_waiting:
                break
            else:
                suggestion = optimizer.ask()
                if suggestion is None:
                    optimizer_waiting = True
                    break
                if asked is not None:
                    asked(suggestion)
            if started is not None:
                started(suggestion)
            workers.submit(suggestion)
        if workers.busy == 0:
            reason = "exhausted"
            if evaluations_spent():
                reason = "max_evaluations"
            elif out_of_time():
                reason = "max_wall_s"
            elif cost_spent():
                reason = "max_cost_s"
            break
        done = workers.wait(None if limits.max_wall_s is None else poll_s)
        if not done:
            if out_of_time():
                abandoned = workers.cancel()
                logger.info("wall-clock limit; %d running evaluations cancelled", len(abandoned))
                reason = "max_wall_s"
                break
            continue
        stopped = False
        for item in done:
            if finished_hook is not None:
                finished_hook(item)
            optimizer.tell(item.suggestion, item.result)
            spent_s += item.result.cost_s
            step = TraceStep(item.suggestion, item.result, item.ended_s, item.started_s)
            steps.append(step)
            stopped = stopped or (stop is not None and bool(stop(step)))
        optimizer_waiting = False
        if stopped:
            workers.cancel()
            reason = "stopped"
            break
    return Trace(tuple(steps), getattr(optimizer, "seed", None), reason)


def run_optimizer(
    optimizer: Optimizer,
    objective: Objective,
    max_evaluations: int | None = None,
    max_cost_s: float | None = None,
    stop: Callable[[TraceStep], bool] | None = None,
    workers: int = 1,
) -> Trace:
    """``run_loop`` in this process: ask, evaluate, tell, until the optimizer has nothing to
    ask, a budget is spent, or ``stop(step)`` returns True.

    Args:
        optimizer: a ``kdnas.core.Optimizer``.
        objective: evaluates (arch, fidelity) -> ``EvalResult`` with ``cost_s`` in seconds.
        max_evaluations: at most this many evaluations.
        max_cost_s: stop asking once this many evaluation seconds have been spent (the
            evaluations that cross the limit are completed and counted).
        stop: called after each tell; True ends the run (e.g. "the optimum was found").
        workers: simulated asynchronous workers (``InProcessWorkers``); 1 is the serial loop.
    """
    limits = LoopLimits(max_evaluations=max_evaluations, max_cost_s=max_cost_s)
    return run_loop(optimizer, InProcessWorkers(objective, workers), limits=limits, stop=stop)


def run_many(
    make_optimizer: Callable[[int], Optimizer],
    objective: Objective,
    seeds: Sequence[int],
    stop_at: Architecture | None = None,
    stop_fidelity: Fidelity = HIGH_FIDELITY,
    max_evaluations: int | None = None,
    max_cost_s: float | None = None,
    workers: int = 1,
) -> list[Trace]:
    """One ``run_optimizer`` per seed; with ``stop_at``, each run ends once that architecture
    has been evaluated at ``stop_fidelity`` (time-to-optimum experiments)."""

    def found(step: TraceStep) -> bool:
        return step.suggestion.arch == stop_at and step.result.fidelity == stop_fidelity

    return [
        run_optimizer(
            make_optimizer(seed),
            objective,
            max_evaluations=max_evaluations,
            max_cost_s=max_cost_s,
            stop=found if stop_at is not None else None,
            workers=workers,
        )
        for seed in seeds
    ]
