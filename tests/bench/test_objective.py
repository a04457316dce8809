"""TabularObjective: table lookups behind the Objective protocol."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest

from kdnas.bench import BenchmarkRecord, TabularBenchmark, TabularObjective
from kdnas.core import Architecture, Fidelity, Objective


def _arch(i: int) -> Architecture:
    """A hand-made MobileNetV2-style genotype; only its identity matters here."""
    return Architecture("mobilenetv2", ((1, 16 + 8 * i, 1, 1), (6, 24, 2, 2), (0, 1280, 1, 0)))


@pytest.fixture
def objective(tiny_bench: TabularBenchmark) -> TabularObjective:
    return TabularObjective(tiny_bench, "mobilenet", [_arch(i) for i in range(4)])


def test_satisfies_the_objective_protocol(objective: TabularObjective) -> None:
    assert isinstance(objective, Objective)


def test_evaluate_returns_the_stored_entry(
    objective: TabularObjective, tiny_records: list[BenchmarkRecord]
) -> None:
    checked = 0
    for record in tiny_records:
        if record.space != "mobilenet":
            continue
        arch = _arch(record.arch_index)
        fidelity = Fidelity(part=record.part, method=record.method)
        result = objective.evaluate(arch, fidelity)
        assert result.ok
        assert result.arch_key == arch.key()
        assert result.fidelity == fidelity
        assert result.valid_acc == record.valid_acc
        assert result.test_acc == record.test_acc
        assert result.cost_s == record.wall_time
        checked += 1
    assert checked == 4 * 3 + 3 * 2


def test_candidates_and_index_of(objective: TabularObjective) -> None:
    assert objective.candidates == tuple(_arch(i) for i in range(4))
    assert [objective.index_of(_arch(i)) for i in range(4)] == [0, 1, 2, 3]
    with pytest.raises(KeyError, match="not among the 4 candidates"):
        objective.index_of(_arch(9))


def test_fidelities_lists_what_the_table_holds(objective: TabularObjective) -> None:
    assert objective.fidelities() == (
        Fidelity(1, "nokd"),
        Fidelity(3, "nokd"),
        Fidelity(27, "nokd"),
        Fidelity(3, "kd"),
        Fidelity(27, "kd"),
    )


def test_fidelity_not_in_the_table_raises_listing_the_held_ones(
    objective: TabularObjective,
) -> None:
    with pytest.raises(ValueError, match=r"'1/9 nokd'; it holds full nokd, 1/3 nokd, 1/27"):
        objective.evaluate(_arch(0), Fidelity(part=9))
    with pytest.raises(ValueError, match="'full kd'"):
        objective.evaluate(_arch(0), Fidelity(part=1, method="kd"))
    with pytest.raises(ValueError, match="no epochs axis"):
        objective.evaluate(_arch(0), Fidelity(part=27, epochs=5))


def test_unknown_architecture_fails_without_cost(
    objective: TabularObjective, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        result = objective.evaluate(_arch(7), Fidelity(part=27, method="kd"))
    assert result.status == "failed"
    assert result.cost_s == 0.0
    assert math.isnan(result.valid_acc) and math.isnan(result.test_acc)
    assert "not among the candidates" in result.info["error"]
    assert "tabular lookup failed" in caplog.text


def test_hole_in_the_table_fails_without_cost(objective: TabularObjective) -> None:
    result = objective.evaluate(_arch(3), Fidelity(part=27, method="kd"))
    assert result.status == "failed" and result.cost_s == 0.0
    assert "no entry for architecture 3" in result.info["error"]


def test_column_matches_evaluate(objective: TabularObjective) -> None:
    fidelity = Fidelity(part=3, method="kd")
    column = objective.column(fidelity, "valid_acc")
    for i in range(3):
        assert column[i] == objective.evaluate(_arch(i), fidelity).valid_acc
    assert np.isnan(column[3])


def test_bad_candidate_lists_are_refused(tiny_bench: TabularBenchmark) -> None:
    with pytest.raises(ValueError, match="holds 4 architectures, got 3"):
        TabularObjective(tiny_bench, "mobilenet", [_arch(i) for i in range(3)])
    with pytest.raises(ValueError, match="candidates 0 and 2 are the same"):
        TabularObjective(tiny_bench, "mobilenet", [_arch(0), _arch(1), _arch(0), _arch(3)])
    mixed = [_arch(0), _arch(1), Architecture("shufflenetv2", (1,)), _arch(3)]
    with pytest.raises(ValueError, match="share one search space"):
        TabularObjective(tiny_bench, "mobilenet", mixed)


def test_paper_listed_architectures_against_the_raw_pickle(paper_data_dir: Path) -> None:
    from kdnas.bench import PAPER_SPACE_KEYS
    from kdnas.safe_pickle import load_plain_pickle
    from kdnas.spaces.listed import load_listed_architectures

    bench = TabularBenchmark.load(paper_data_dir / "benchmark.pickle")
    raw = load_plain_pickle(paper_data_dir / "benchmark.pickle")["cifar100"]
    for space_name in ("mobilenetv2", "shufflenetv2"):
        archs = load_listed_architectures(space_name, paper_data_dir)
        key = PAPER_SPACE_KEYS[space_name]
        objective = TabularObjective(bench, key, archs)
        for index in (0, 7, len(archs) - 1):
            result = objective.evaluate(archs[index], Fidelity(part=9, method="nst"))
            stored = raw[key]["nst"][9][index]
            assert (result.valid_acc, result.test_acc, result.cost_s) == (
                stored["valid_acc"],
                stored["test_acc"],
                stored["wall_time"],
            )
            assert objective.index_of(archs[index]) == index
