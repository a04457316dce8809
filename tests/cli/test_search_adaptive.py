"""``kdnas search --algorithm screening-gp-ucb`` and ``optimum-search`` on real training; the
retired ``adaptive-gp-ucb``."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.experiment import (
    SearchSettings,
    build_candidates,
    build_optimizer,
    sample_architectures,
)
from kdnas.search import ProxyPriorGPUCB
from kdnas.search.experimental import OptimumSearch
from kdnas.spaces import get_space
from kdnas.store import SQLiteStore


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_settings_build_it_with_the_low_fidelity_and_a_teacher() -> None:
    settings = SearchSettings(
        algorithm="screening-gp-ucb", method="kd", part=9, n_candidates=4, n_lf=2
    )
    assert settings.needs_teacher and settings.ucb_beta == 1.0
    space = get_space("mobilenetv2")
    archs = sample_architectures(space, 4, 0)
    optimizer = build_optimizer(settings, build_candidates(space, archs), resolution=8)
    assert isinstance(optimizer, ProxyPriorGPUCB)
    assert optimizer.config.screen_fidelity == settings.low_fidelity
    assert not optimizer.config.uses_proxy
    with pytest.raises(ValueError, match="equals the high fidelity"):
        SearchSettings(algorithm="screening-gp-ucb", method="nokd", part=1)


def test_the_retired_adaptive_gp_ucb_is_a_one_line_error_naming_its_successor(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError, match=r"retired.*optimum-search"):
        SearchSettings(algorithm="adaptive-gp-ucb", method="kd", part=9)
    assert main(["search", "--algorithm", "adaptive-gp-ucb", "--store", "/nonexistent/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optimum-search" in err[0]


@pytest.mark.parametrize(
    "algorithm",
    [
        "screening-gp-ucb",
        # 30 s on a loaded 2-core machine: a teacher and four trainings.
        pytest.param("optimum-search", marks=pytest.mark.slow),
    ],
)
def test_a_tiny_real_search_runs_end_to_end_and_resumes(
    algorithm: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / f"{algorithm}.db"
    args = [
        "search", "--dataset", "digits", "--algorithm", algorithm, "--method", "kd",
        "--part", "3", "--candidates", "4", "--n-lf", "2", "--budget-evaluations", "4",
        "--epochs", "1",
        "--width-multiplier", "0.125", "--batch-size", "256", "--threads", "1",
        "--store", str(store), "--json", "--allow-chance-teacher",
    ]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluations"] == 4
    with SQLiteStore(store) as opened:
        results = [e.result for e in opened.results("search")]
    # Screening GP-UCB screens its first pick at 1/3 KD; optimum search starts at HF.
    first = results[0].fidelity
    assert len(results) == 4 and first.is_high == (algorithm == "optimum-search")
    assert any(r.fidelity.is_high for r in results)
    assert len({(r.arch_key, r.fidelity) for r in results}) == 4
    # Rerunning the same command finds the search complete and recomputes nothing.
    assert main(args) == 0
    capsys.readouterr()
    with SQLiteStore(store) as opened:
        assert opened.count() == 4


def test_optimum_search_is_built_with_the_low_fidelity() -> None:
    settings = SearchSettings(
        algorithm="optimum-search", method="kd", part=3, n_candidates=4, n_lf=2
    )
    assert settings.needs_teacher
    space = get_space("mobilenetv2")
    optimizer = build_optimizer(
        settings, build_candidates(space, sample_architectures(space, 4, 0)), resolution=8
    )
    assert isinstance(optimizer, OptimumSearch)
    assert optimizer.config.low_fidelities == (settings.low_fidelity,)
    assert optimizer.config.low_prior_rho == (0.8,) and optimizer.config.beta == 1.0
    explicit = dataclasses.replace(settings, beta=0.25)
    candidates = build_candidates(space, sample_architectures(space, 4, 0))
    assert build_optimizer(explicit, candidates, resolution=8).config.beta == 0.25
