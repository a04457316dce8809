"""The one evaluation loop (ask, evaluate, tell, store, stop) and the record of a run.

Torch-free by design: ``kdnas.execute`` and every Ray task import it without loading torch.

- ``kdnas.loop.evaluation_loop``: ``run_loop`` with pluggable ``Workers``;
  ``InProcessWorkers`` simulates N asynchronous workers on a clock.
- ``kdnas.loop.trace``: ``Trace``, one run's evaluations and its time to a target.
"""

from __future__ import annotations

from kdnas.loop.evaluation_loop import (
    STOP_REASONS,
    Finished,
    InProcessWorkers,
    LoopLimits,
    LoopRecorder,
    Workers,
    check_result,
    evaluate_safely,
    failed_result,
    run_loop,
    run_many,
    run_optimizer,
)
from kdnas.loop.trace import Trace, TraceStep

__all__ = [
    "STOP_REASONS",
    "Finished",
    "InProcessWorkers",
    "LoopLimits",
    "LoopRecorder",
    "Trace",
    "TraceStep",
    "Workers",
    "check_result",
    "evaluate_safely",
    "failed_result",
    "run_loop",
    "run_many",
    "run_optimizer",
]
