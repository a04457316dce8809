"""Executors: the evaluation loop (``kdnas.loop``) with a store as its recorder.

``SerialExecutor`` evaluates in this process (the loop's in-process workers, one at a time);
``RayExecutor`` runs each evaluation as a Ray task (Ray imported lazily, with an install
hint). Both resume a stored run exactly: its
recorded asks and tells are replayed into a fresh optimizer with the same seed before any new
suggestion is asked, and interrupted evaluations are run again.
"""

from __future__ import annotations

from typing import Any

from kdnas.execute._common import (
    ExecutionCallback,
    ExecutionLimits,
    ExecutionSummary,
    ReplayDivergedError,
    evaluate_safely,
    replay_run,
)
from kdnas.execute._ray import RayExecutor, import_ray
from kdnas.execute._serial import SerialExecutor

__all__ = [
    "EXECUTORS",
    "ExecutionCallback",
    "ExecutionLimits",
    "ExecutionSummary",
    "RayExecutor",
    "ReplayDivergedError",
    "SerialExecutor",
    "evaluate_safely",
    "import_ray",
    "make_executor",
    "replay_run",
]

#: Executor names accepted by ``make_executor`` and the CLI's ``--executor``.
EXECUTORS: tuple[str, ...] = ("serial", "ray")


def make_executor(name: str, **options: Any) -> SerialExecutor | RayExecutor:
    """The executor called ``name``; ``options`` go to ``RayExecutor`` (ignored for serial).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name == "serial":
        return SerialExecutor()
    if name == "ray":
        return RayExecutor(**options)
    raise ValueError(f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")
