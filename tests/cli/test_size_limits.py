"""A user's size limit: ``--max-params``, ``--max-multiply-adds`` and ``--max-latency-ms``
filter the candidates before training; every evaluated network is within them (checked on the
trained networks' own counts); the report lists the accuracy-versus-cost fronts and the latency
measurements' spread; latencies are cached so a resumed search sees the same candidates."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kdnas.cli import main
from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.experiment import SearchSettings, sample_architectures
from kdnas.experiment._limits import (
    LatencyCache,
    NetworkShape,
    SizeLimits,
    accuracy_cost_fronts,
    network_size,
    non_dominated,
)
from kdnas.models import count_multiply_adds, count_parameters
from kdnas.spaces import get_space
from kdnas.store import SQLiteStore, StoredEvaluation
from user_spaces import user_modules


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def search(store: Path, *extra: str) -> list[str]:
    """Alg2 over 6 MobileNetV2 candidates at width x0.125 on the digits, 4 evaluations."""
    return [
        "search", "--dataset", "digits", "--algorithm", "alg2", "--method", "kd",
        "--part", "3", "--candidates", "6", "--n-lf", "3", "--budget-evaluations", "4",
        "--epochs", "1", "--width-multiplier", "0.125", "--batch-size", "64",
        "--threads", "1", "--store", str(store), "--json", "--allow-chance-teacher", *extra,
    ]  # fmt: skip


def test_closed_form_sizes_match_the_networks_as_the_search_builds_them() -> None:
    for name in ("mobilenetv2", "shufflenetv2"):
        space = get_space(name)
        # The originals at width 1 and 3 channels are tests/spaces' (closed forms); here the
        # search's own shapes: other widths, one channel, other heads and resolutions.
        for arch in sample_architectures(space, 2, 5)[1:]:
            for shape in (NetworkShape(10, 1, 16, 0.125), NetworkShape(100, 3, 20, 0.5)):
                network = space.build_network(
                    arch, shape.num_classes, shape.in_channels, shape.width_multiplier
                )
                side = (shape.in_channels, shape.resolution, shape.resolution)
                assert network_size(space, arch, shape) == (
                    count_parameters(network),
                    count_multiply_adds(network, side),
                )


def test_the_front_keeps_exactly_the_non_dominated_networks() -> None:
    # (cost, accuracy): 1 and 3 are dominated (by 0 and by 2); 4 ties 2's accuracy at more cost
    points = [(10.0, 0.5), (20.0, 0.4), (30.0, 0.7), (40.0, 0.6), (50.0, 0.7), (5.0, 0.1)]
    assert non_dominated(points) == [5, 0, 2]
    assert non_dominated([]) == []


def test_limits_are_checked_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="max_latency_ms must be > 0"):
        SizeLimits(max_latency_ms=-1.0)
    with pytest.raises(ValueError, match="max_params must be a positive integer"):
        SearchSettings(max_params=0)
    assert main([*search(tmp_path / "s.db"), "--max-latency-ms", "nan"]) == 2
    assert "max_latency_ms must be > 0" in capsys.readouterr().err
    # Smaller than every MobileNetV2 at this width (the smallest of 40 draws: 39,650).
    assert main([*search(tmp_path / "s.db"), "--max-params", "20000"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # (--json: the banner on stderr)
    assert last.startswith("kdnas search: error: only 0 of ")
    assert last.endswith(
        "are within the size limits; raise the limits or ask for fewer candidates (--candidates)"
    )
    assert not (tmp_path / "s.db").exists()


def test_a_constrained_search_evaluates_only_networks_within_the_limits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "limited.db"
    # About the median of the sampled networks' sizes at this width (94,606 parameters and
    # 562,808 multiply-adds over 40 draws): the limits leave some out.
    limits = ["--max-params", "95000", "--max-multiply-adds", "560000"]
    more = ["--n-lf", "2", "--budget-evaluations", "5"]  # 3 at high fidelity: a front to rank
    assert main(search(store, *limits, *more)) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    with SQLiteStore(store) as opened:
        rows = opened.results("search")
        config = opened.run("search").config
    assert config["size_limits"] == {"max_params": 95000, "max_multiply_adds": 560000}
    assert len(config["candidates"]) == 6 and summary["size_limits"]["rejected"] > 0
    # The trained networks' own counts (hooks, torch's parameters), not the filter's forms.
    assert rows and all(e.result.ok for e in rows)
    assert all(e.result.metrics["params"] <= 95000 for e in rows)
    assert all(e.result.metrics["multiply_adds"] <= 560000 for e in rows)
    report = json.loads((tmp_path / "limited.db.report" / "report.json").read_text())
    fronts = report["size_limits"]["fronts"]
    assert set(fronts) == {"params", "multiply_adds"}
    high = [e for e in rows if e.result.fidelity.is_high]
    assert len(high) == 3
    for cost, front in fronts.items():
        members = {row["arch_json"] for row in front}
        for e in high:  # a member is beaten by none; a non-member by some evaluated network
            beaten = any(
                o.result.valid_acc >= e.result.valid_acc
                and o.result.metrics[cost] <= e.result.metrics[cost]
                and (o.result.valid_acc, o.result.metrics[cost])
                != (e.result.valid_acc, e.result.metrics[cost])
                for o in high
            )
            assert (e.arch.to_json() in members) != beaten
    assert summary["size_limits"]["fronts"] == fronts


def test_a_latency_limit_is_measured_once_cached_and_reported_with_its_spread(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "latency.db"
    with user_modules(tmp_path / "site"):
        args = [
            *search(store, "--max-latency-ms", "1000", "--latency-batch-size", "4"),
            "--space", "toycnn:ToyCNNSpace", "--width-multiplier", "0.25",
        ]  # fmt: skip
        assert main(args) == 0, capsys.readouterr().err
        first = json.loads(capsys.readouterr().out)
        cache = json.loads((tmp_path / "latency.db.latency.json").read_text())
        # 6 candidates (a generous limit rejects none), each at batch 1 and at batch 4
        assert len(cache) == 12 and first["size_limits"]["rejected"] == 0
        latency = first["latency"]
        assert set(latency) == {"batch_1", "batch_4"}
        for figures in latency.values():
            assert figures["repeats"] == 20 and figures["architectures"] == 6
            assert 0 <= figures["median_spread"] <= figures["largest_spread"]
            assert figures["device"].startswith("cpu (1 threads)")
        assert "latency_ms" in first["size_limits"]["fronts"]
        assert all(
            m["min_ms"] <= m["q1_ms"] <= m["median_ms"] <= m["q3_ms"] <= m["max_ms"]
            for entry in cache.values()
            for m in [entry]
        )
        # Resumed: read from the cache (same candidates, same fingerprint), nothing retrained.
        assert main(args) == 0, capsys.readouterr().err
        again = json.loads(capsys.readouterr().out)
        assert (again["new"], again["replayed"]) == (0, first["evaluations"])
        assert json.loads((tmp_path / "latency.db.latency.json").read_text()) == cache


def test_the_latency_cache_keys_by_architecture_shape_batch_and_device(tmp_path: Path) -> None:
    from kdnas.experiment._limits import LatencyMeasurement

    arch = Architecture("toy", (1,))
    shape = NetworkShape(10, 1, 16, 0.25)
    measured = LatencyMeasurement(1, 2.0, 1.5, 2.5, 1.0, 9.0, 20, 5, "cpu (1 threads)")
    cache = LatencyCache(tmp_path / "lat.json")
    cache.put(cache.key(arch, shape, 1, "cpu (1 threads)"), measured)
    reread = LatencyCache(tmp_path / "lat.json")
    assert reread.get(cache.key(arch, shape, 1, "cpu (1 threads)")) == measured
    assert reread.get(cache.key(arch, shape, 1, "cpu (2 threads)")) is None
    assert reread.get(cache.key(arch, shape, 8, "cpu (1 threads)")) is None
    assert measured.spread == pytest.approx(0.5)  # (2.5 - 1.5) / 2.0


def test_fronts_of_stored_evaluations() -> None:
    high = Fidelity(part=1, method="nokd")

    def evaluation(trial: int, params: float, valid: float) -> StoredEvaluation:
        arch = Architecture("toy", (trial,))
        result = EvalResult(arch.key(), high, valid, valid, 1.0, metrics={"params": params})
        return StoredEvaluation("run", trial, trial, arch, result)

    rows = [evaluation(0, 100, 0.5), evaluation(1, 200, 0.45), evaluation(2, 300, 0.8)]
    fronts = accuracy_cost_fronts(rows, lambda a: f"toy{a.genotype[0]}")
    assert [row["arch"] for row in fronts["params"]] == ["toy0", "toy2"]
    assert fronts["multiply_adds"] == []  # not recorded: no front
    assert np.isclose(fronts["params"][1]["valid_acc"], 0.8)
