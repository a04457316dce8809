"""Tabular benchmarks: stored training results looked up instead of trained (no torch here).

``TabularBenchmark`` reads the paper's benchmark.pickle (safely) or kdnas's open format
(metadata.json + entries.csv), and hands out entries and whole columns as numpy arrays.
``TabularObjective`` answers ``Objective.evaluate`` from such a table, and
``kdnas.bench.correlation`` computes the paper's Table 1.
"""

from __future__ import annotations

from kdnas.bench.objective import TabularObjective
from kdnas.bench.tabular import (
    BENCHMARK_ENV_VAR,
    METRICS,
    PAPER_SPACE_KEYS,
    BenchmarkCell,
    BenchmarkEntry,
    BenchmarkFormatError,
    BenchmarkKeyError,
    BenchmarkRecord,
    TabularBenchmark,
    resolve_benchmark_path,
)

__all__ = [
    "BENCHMARK_ENV_VAR",
    "METRICS",
    "PAPER_SPACE_KEYS",
    "BenchmarkCell",
    "BenchmarkEntry",
    "BenchmarkFormatError",
    "BenchmarkKeyError",
    "BenchmarkRecord",
    "TabularBenchmark",
    "TabularObjective",
    "resolve_benchmark_path",
]
