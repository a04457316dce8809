"""A tiny synthetic benchmark, built by hand so tests know every value in it."""

from __future__ import annotations

from typing import Any

import pytest

from kdnas.bench import BenchmarkRecord, TabularBenchmark


def make_tiny_records() -> list[BenchmarkRecord]:
    """Two spaces; mobilenet arch 3 has no kd entry (a hole); awkward floats on purpose."""
    awkward = [0.1 + 0.2, 1 / 3, 5e-324, 0.0, 1.0, 0.6721, 2 / 7, 0.5]
    rows: list[BenchmarkRecord] = []
    k = 0
    for space, n in (("mobilenet", 4), ("shufflenet", 3)):
        for method, parts in (("nokd", (1, 27, 3)), ("kd", (27, 3))):
            for part in parts:
                for arch in range(n):
                    if (space, method, arch) == ("mobilenet", "kd", 3):
                        continue
                    test = awkward[k % len(awkward)]
                    valid = awkward[(k + 3) % len(awkward)]
                    rows.append(
                        BenchmarkRecord(
                            "cifar100", space, method, part, arch, test, valid, 10.0 * k + 1 / 3
                        )
                    )
                    k += 1
    return rows


@pytest.fixture
def tiny_records() -> list[BenchmarkRecord]:
    return make_tiny_records()


@pytest.fixture
def tiny_metadata() -> dict[str, Any]:
    return {"description": "tiny test benchmark", "provenance": {"made_by": "tests"}}


@pytest.fixture
def tiny_bench(tiny_metadata: dict[str, Any]) -> TabularBenchmark:
    return TabularBenchmark.from_records(make_tiny_records(), tiny_metadata)
