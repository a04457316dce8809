"""``kdnas search`` on the embedded digits: bad input, a tiny real search, resume, refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.store import SQLiteStore


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny_search(store: Path, *extra: str) -> list[str]:
    return [
        "search", "--dataset", "digits", "--algorithm", "alg2", "--method", "kd",
        "--part", "9", "--candidates", "4", "--n-lf", "2", "--budget-evaluations", "3",
        "--epochs", "1", "--width-multiplier", "0.125", "--batch-size", "256",
        "--threads", "1", "--store", str(store), "--json", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--space", "resnet", "unknown search space 'resnet'; valid: mobilenetv2, shufflenetv2"),
        ("--method", "distill", "unknown method 'distill'; valid methods: nokd, kd, hint"),
        ("--algorithm", "bohb", "valid algorithms: alg1, alg2, gp-ucb, proxy-gp-ucb, random"),
        ("--executor", "dask", "valid executors: serial, ray"),
    ],
)
def test_unknown_names_list_the_valid_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, expected: str
) -> None:
    code = main([*tiny_search(tmp_path / "s.db"), flag, value])
    assert code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


def test_a_missing_or_corrupt_dataset_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-cifar"
    assert main([*tiny_search(tmp_path / "s.db"), "--dataset", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
    corrupt = tmp_path / "cifar-100-python"
    corrupt.mkdir()
    (corrupt / "train").write_bytes(b"not a pickle")
    (corrupt / "test").write_bytes(b"not a pickle")
    (corrupt / "meta").write_bytes(b"not a pickle")
    assert main([*tiny_search(tmp_path / "s.db"), "--dataset", str(corrupt)]) == 2
    assert str(corrupt) in capsys.readouterr().err


def test_a_real_search_resumes_from_its_store_and_refuses_other_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "search.db"
    assert main(tiny_search(store)) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["evaluations"], first["new"], first["replayed"]) == (3, 3, 0)
    with SQLiteStore(store) as opened:
        rows = opened.results("search")
    fidelities = [(e.result.fidelity.part, e.result.fidelity.method) for e in rows]
    assert fidelities == [(9, "kd"), (9, "kd"), (1, "nokd")]
    assert all(e.result.info.get("subset_hash") for e in rows)
    assert first["best"]["valid_acc"] == rows[2].result.valid_acc
    report = json.loads((store.parent / "search.db.report" / "report.json").read_text())
    assert len(report["evaluations"]) == 3
    assert (store.parent / "search.db.report" / "trajectory.png").stat().st_size > 0

    # The same command again: everything is read back, nothing is trained.
    assert main(tiny_search(store)) == 0
    again = json.loads(capsys.readouterr().out)
    assert (again["evaluations"], again["new"], again["replayed"]) == (3, 0, 3)
    assert again["best"] == first["best"]

    # A larger budget continues the same search.
    assert main([*tiny_search(store), "--budget-evaluations", "4"]) == 0
    extended = json.loads(capsys.readouterr().out)
    assert (extended["evaluations"], extended["new"], extended["replayed"]) == (4, 1, 3)

    # Other settings are refused, naming the difference, and the store is left as it was.
    assert main([*tiny_search(store), "--method", "nst"]) == 2
    error = capsys.readouterr().err
    assert "another configuration" in error and "method: 'kd' (stored) vs 'nst' (now)" in error
    with SQLiteStore(store) as opened:
        assert opened.count("search") == 4


def test_a_diverged_evaluation_is_stored_and_the_search_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "diverging.db"
    args = [*tiny_search(store), "--algorithm", "random", "--budget-evaluations", "2"]
    assert main([*args, "--lr", "1e30"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluations"] == 2 and summary["best"] is None
    with SQLiteStore(store) as opened:
        statuses = [e.result.status for e in opened.results("search")]
    assert statuses == ["diverged", "diverged"]


def test_proxy_gp_ucb_starts_at_the_most_compute_and_runs_only_high_fidelity(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kdnas.experiment import (
        SearchSettings,
        build_candidates,
        build_optimizer,
        sample_architectures,
    )
    from kdnas.spaces import get_space

    space = get_space("mobilenetv2")
    archs = sample_architectures(space, 4, 0)
    settings = SearchSettings(algorithm="proxy-gp-ucb", n_candidates=4, n_lf=2)
    optimizer = build_optimizer(settings, build_candidates(space, archs), resolution=8)
    # The preset's own beta unless the user gives one; the paper's 0.5 for its algorithms.
    assert optimizer.config.beta == 1.0 == settings.ucb_beta
    assert SearchSettings(algorithm="proxy-gp-ucb", beta=0.2).ucb_beta == 0.2
    assert SearchSettings(algorithm="alg2").ucb_beta == 0.5
    first = optimizer.ask()
    assert first is not None and first.fidelity.is_high
    most = max(archs, key=lambda a: space.multiply_adds(a, 8))
    assert first.arch == most

    store = tmp_path / "proxy.db"
    args = [*tiny_search(store), "--algorithm", "proxy-gp-ucb", "--budget-evaluations", "2"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["evaluations"] == 2
    with SQLiteStore(store) as opened:
        results = [e.result for e in opened.results("search")]
    assert all(r.fidelity.is_high for r in results)
    assert results[0].arch_key == most.key()
