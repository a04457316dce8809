"""Optimizer presets are versioned: a run records the preset of its optimizer's settings when
it is above 1 and resumes with the one it was made with. A proxy-gp-ucb run made before its
preset changed (beta 1.0, prior probability 0.5, no contrast pick: preset 1) resumes with the
same command and goes on exactly as an uninterrupted preset-1 run with the larger budget."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kdnas.cli import build_parser, main
from kdnas.cli.search import settings_from_args
from kdnas.experiment import (
    SearchSettings,
    StoredOptimizer,
    build_candidates,
    build_optimizer,
    load_data,
    run_config,
    run_search,
    sample_architectures,
    stored_optimizer,
)
from kdnas.search.proxy_prior import ProxyPriorConfig
from kdnas.search.registry import BUILTIN_OPTIMIZERS, OptimizerRequest, get_optimizer
from kdnas.spaces import get_space
from kdnas.store import RunMismatchError, SQLiteStore, config_fingerprint

#: proxy-gp-ucb's settings before the contrast pick, as the previous release built them.
PRESET_1 = ProxyPriorConfig(beta=1.0, proxy_prior_probability=0.5, contrast_after=0)


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny(store: Path, budget: int, *extra: str) -> list[str]:
    """One epoch at width x0.125 on the digits over 6 candidates, no optimizer named."""
    return [
        "search", "--dataset", "digits", "--candidates", "6", "--budget-evaluations",
        str(budget), "--epochs", "1", "--width-multiplier", "0.125", "--batch-size", "256",
        "--threads", "1", "--store", str(store), "--json", *extra,
    ]  # fmt: skip


def _library_search(store: Path, budget: int, preset: int | None) -> None:
    """The search ``kdnas search`` would run for ``tiny(store, budget)``, at ``preset``: how
    the previous release made a store (preset 1 was all there was)."""
    import torch

    torch.set_num_threads(1)
    settings = settings_from_args(build_parser().parse_args(tiny(store, budget)))
    run_search(dataclasses.replace(settings, optimizer_preset=preset), store, run_id="search")


def _evaluated(store: Path) -> list[tuple[str, float]]:
    with SQLiteStore(store) as opened:
        return [(e.arch.key(), e.result.valid_acc) for e in opened.results("search")]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else {}, " ".join(captured.err.split())


def test_a_preset_1_run_resumes_with_the_same_command_as_if_never_interrupted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = tmp_path / "old.sqlite"
    _library_search(old, 2, preset=1)
    with SQLiteStore(old) as opened:
        made = opened.run("search")
    assert "optimizer_preset" not in made.config and made.config["beta"] == 1.0
    before = _evaluated(old)
    assert len(before) == 2

    code, resumed, err = _run(tiny(old, 4), capsys)
    assert code == 0
    assert (resumed["algorithm"], resumed["replayed"], resumed["new"]) == ("proxy-gp-ucb", 2, 2)
    assert "Resuming 'search' with proxy-gp-ucb's settings as of that run (preset 1;" in err
    with SQLiteStore(old) as opened:
        assert opened.run("search").fingerprint == made.fingerprint
    after = _evaluated(old)
    assert after[:2] == before

    # The same architectures in the same order (and so the same results) as a preset-1 run
    # given the larger budget from the start; the current preset goes elsewhere on this
    # sample, so the comparison tells the presets apart.
    uninterrupted, current = tmp_path / "preset1.sqlite", tmp_path / "preset2.sqlite"
    _library_search(uninterrupted, 4, preset=1)
    _library_search(current, 4, preset=None)
    assert after == _evaluated(uninterrupted)
    assert [key for key, _ in after] != [key for key, _ in _evaluated(current)]

    # Naming the optimizer resumes it too; the current preset is refused by the fingerprint.
    code, again, _ = _run([*tiny(old, 4), "--algorithm", "proxy-gp-ucb"], capsys)
    assert code == 0 and (again["replayed"], again["new"]) == (4, 0)
    settings = settings_from_args(build_parser().parse_args(tiny(old, 4, "--beta", "1.0")))
    assert (settings.optimizer_preset, settings.beta) == (1, 1.0)  # the given beta, preset 1
    with pytest.raises(RunMismatchError, match="optimizer_preset"):
        run_search(dataclasses.replace(settings, optimizer_preset=None), old, run_id="search")
    assert _evaluated(old) == after


def test_a_new_run_records_the_current_preset_and_is_another_fingerprint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "new.sqlite"
    code, summary, err = _run(tiny(store, 1), capsys)
    assert code == 0 and summary["new"] == 1 and "Resuming" not in err
    with SQLiteStore(store) as opened:
        made = opened.run("search")
    assert made.config["optimizer_preset"] == 3 and made.config["beta"] == 0.5
    assert stored_optimizer(store, "search") == StoredOptimizer("proxy-gp-ucb", 3, 0.5)
    # The same search at preset 1 differs exactly by the preset and its beta.
    settings = settings_from_args(build_parser().parse_args(tiny(store, 1)))
    archs = sample_architectures(get_space("mobilenetv2"), 6, 0)
    data = load_data(settings)
    old = run_config(dataclasses.replace(settings, optimizer_preset=1), data, archs)
    new = run_config(settings, data, archs)
    assert {k for k in new if new[k] != old.get(k)} == {"optimizer_preset", "beta"}
    assert config_fingerprint(old) != config_fingerprint(new)


def test_preset_1_of_every_builtin_optimizer_keeps_the_fingerprint_of_earlier_stores() -> None:
    data = load_data(SearchSettings(n_candidates=2))
    for entry in BUILTIN_OPTIMIZERS:
        settings = SearchSettings(algorithm=entry.name, n_candidates=2, n_lf=1)
        first = dataclasses.replace(settings, optimizer_preset=1)
        assert "optimizer_preset" not in run_config(first, data, [])
        current = run_config(settings, data, [])
        assert ("optimizer_preset" in current) == (entry.preset > 1), entry.name
    proxy = get_optimizer("proxy-gp-ucb")
    assert (proxy.preset, proxy.beta_of(1), proxy.beta_of(2), proxy.beta_of()) == (
        3,
        1.0,
        0.5,
        0.5,
    )
    assert SearchSettings(optimizer_preset=1).ucb_beta == 1.0  # the previous release's default
    assert SearchSettings(optimizer_preset=1, beta=0.3).ucb_beta == 0.3


def test_each_preset_builds_its_own_settings() -> None:
    space = get_space("mobilenetv2")
    candidates = build_candidates(space, sample_architectures(space, 4, 0))
    built = {
        preset: build_optimizer(SearchSettings(optimizer_preset=preset), candidates, 8).config
        for preset in (1, 2, 3, None)
    }
    assert built[1] == PRESET_1
    # Preset 2: the contrast pick, but parallel picks that ignore the pending evaluations.
    assert built[2] == ProxyPriorConfig(pending_believer=False)
    assert built[3] == built[None] == ProxyPriorConfig()
    given = SearchSettings(optimizer_preset=1, beta=0.25)
    assert build_optimizer(given, candidates, 8).config == dataclasses.replace(PRESET_1, beta=0.25)


def test_the_benchmark_replay_builds_the_current_preset() -> None:
    from kdnas.replay.arrays import SpaceArrays
    from kdnas.replay.benchmark_requests import optimizer_on_arrays

    valid = np.array([0.60, 0.70, 0.65, 0.68])
    arrays = SpaceArrays(
        "toy",
        np.random.default_rng(0).normal(size=(4, 2)),
        valid,
        valid,
        np.full(4, 10.0),
        {},
        multiply_adds=np.array([1.0, 2.0, 3.0, 4.0]),
    )
    entry = get_optimizer("proxy-gp-ucb")
    optimizer = optimizer_on_arrays(entry, arrays.placeholder_candidates(), arrays, seed=0)
    assert optimizer.config == ProxyPriorConfig()


def test_an_unknown_preset_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=r"'proxy-gp-ucb' has no preset 4; its presets: 1, 2, 3 "):
        SearchSettings(optimizer_preset=4)
    with pytest.raises(ValueError, match=r"'alg2' has no preset 2; its presets: 1 "):
        SearchSettings(algorithm="alg2", optimizer_preset=2)
    space = get_space("mobilenetv2")
    request = OptimizerRequest(
        build_candidates(space, sample_architectures(space, 4, 0)),
        proxy=np.zeros(4),
        preset=0,
    )
    with pytest.raises(ValueError, match="no preset 0; its presets: 1, 2, 3"):
        get_optimizer("proxy-gp-ucb").make(request)

    # A run made by a later kdnas with a preset this one does not know: one line, no work.
    store = tmp_path / "later.sqlite"
    with SQLiteStore(store) as opened:
        opened.open_run("search", {"algorithm": "proxy-gp-ucb", "optimizer_preset": 7})
    code, _, err = _run(tiny(store, 1), capsys)
    assert code == 2
    assert (
        err.startswith("kdnas search: error: ") and "has no preset 7; its presets: 1, 2, 3" in err
    )
    with SQLiteStore(store) as opened:
        assert opened.count("search") == 0


def test_a_preset_2_run_resumes_with_preset_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A store made before the pending believer (preset 2) resumes with the same command,
    # keeps its fingerprint and goes on as an uninterrupted preset-2 run would.
    old = tmp_path / "old.sqlite"
    _library_search(old, 2, preset=2)
    with SQLiteStore(old) as opened:
        made = opened.run("search")
    assert made.config["optimizer_preset"] == 2
    assert stored_optimizer(old, "search") == StoredOptimizer("proxy-gp-ucb", 2, 0.5)
    code, resumed, err = _run(tiny(old, 4), capsys)
    assert code == 0 and (resumed["replayed"], resumed["new"]) == (2, 2)
    assert "Resuming 'search' with proxy-gp-ucb's settings as of that run (preset 2;" in err
    with SQLiteStore(old) as opened:
        assert opened.run("search").fingerprint == made.fingerprint
    uninterrupted = tmp_path / "preset2.sqlite"
    _library_search(uninterrupted, 4, preset=2)
    assert _evaluated(old) == _evaluated(uninterrupted)
