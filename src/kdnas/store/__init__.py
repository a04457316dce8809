"""Stores of finished evaluations: resume, several writers, export to a benchmark.

Every store follows the ``Store`` protocol (runs, asks, finished evaluations, one sequence
per run); ``MemoryStore`` keeps them in this process, ``SQLiteStore`` in a file.
``SQLiteStore`` keeps one row per finished evaluation (architecture, fidelity, loss
hyperparameters, seed, subset hash, metrics, timings, status, package version, run id) and
every suggestion handed out, in one SQLite file in WAL mode. A run carries the fingerprint of
its configuration; resuming it with another configuration raises ``RunMismatchError``.
``export_benchmark`` writes a store as a tabular benchmark in the open format.
"""

from __future__ import annotations

from kdnas.store._export import ARCHITECTURES_FILE, export_benchmark, store_to_benchmark
from kdnas.store._memory import MemoryStore
from kdnas.store._protocol import Store, describe_config_difference
from kdnas.store._records import (
    SCHEMA_VERSION,
    IncompatibleStoreError,
    RunInfo,
    RunMismatchError,
    StoredEvaluation,
    StoreEvent,
    config_fingerprint,
    versions_compatible,
)
from kdnas.store._sqlite import SQLiteStore

__all__ = [
    "ARCHITECTURES_FILE",
    "SCHEMA_VERSION",
    "IncompatibleStoreError",
    "MemoryStore",
    "RunInfo",
    "RunMismatchError",
    "SQLiteStore",
    "Store",
    "StoreEvent",
    "StoredEvaluation",
    "config_fingerprint",
    "describe_config_difference",
    "export_benchmark",
    "store_to_benchmark",
    "versions_compatible",
]
