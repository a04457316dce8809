"""``kdnas search``, ``train`` and ``bench build`` on a user's own space: the documented MLP
(no taps) and CNN (taps) named as ``module:attribute`` and as an installed entry point, with
``kd`` and ``nokd`` and a feature method, resumed from the store; bad spaces refused in one
line; a search whose every evaluation failed ends non-zero saying why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.store import SQLiteStore
from user_spaces import install_entry_point, user_modules

#: Trains fine in eval mode (the pre-flight batch) and fails in every training step.
_FAILING = """
from torch import nn

from toyspace import ToyMLPSpace


class Refuses(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        if self.training:
            raise RuntimeError("this network cannot train")
        return self.inner(x)


class FailingSpace(ToyMLPSpace):
    name = "broken"

    def build_network(self, arch, num_classes=100, in_channels=3, width_multiplier=1.0):
        return Refuses(super().build_network(arch, num_classes, in_channels, width_multiplier))
"""


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def modules(tmp_path: Path) -> Iterator[Path]:
    with user_modules(tmp_path / "site", {"failing": _FAILING}) as site:
        yield site


def search(store: Path, space: str, method: str, *extra: str) -> list[str]:
    """Alg2 over 4 candidates, 3 evaluations of one epoch at width x0.25."""
    return [
        "search", "--space", space, "--dataset", "digits", "--algorithm", "alg2",
        "--method", method, "--part", "3", "--candidates", "4", "--n-lf", "2",
        "--budget-evaluations", "3", "--epochs", "1", "--width-multiplier", "0.25",
        "--batch-size", "64", "--threads", "1", "--store", str(store), "--json",
        "--allow-chance-teacher", *extra,
    ]  # fmt: skip


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(args) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def test_the_documented_mlp_searches_with_kd_and_resumes(
    modules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "mlp.db"
    first = _run(search(store, "toyspace:ToyMLPSpace", "kd"), capsys)
    assert (first["evaluations"], first["new"], first["all_failed"]) == (3, 3, None)
    assert first["teacher"]["status"] == "ok"  # a network without taps teaches with kd
    with SQLiteStore(store) as opened:
        rows = opened.results("search")
        config = opened.run("search").config
    assert [e.result.status for e in rows] == ["ok", "ok", "ok"]
    assert [e.result.fidelity.method for e in rows] == ["kd", "kd", "nokd"]
    assert all(e.arch.space == "toy_mlp" for e in rows)
    assert (config["space"], config["space_version"]) == ("toy_mlp", "1")
    again = _run(search(store, "toyspace:ToyMLPSpace", "kd"), capsys)
    assert (again["new"], again["replayed"], again["best"]) == (0, 3, first["best"])


def test_an_installed_mlp_searches_with_nokd_and_the_cnn_with_attention(
    modules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_entry_point(modules, "toy_mlp", "toyspace:ToyMLPSpace")
    nokd = _run(search(tmp_path / "nokd.db", "toy_mlp", "nokd"), capsys)
    assert nokd["teacher"] is None and nokd["all_failed"] is None
    with SQLiteStore(tmp_path / "nokd.db") as opened:
        assert all(e.result.ok for e in opened.results("search"))
    cnn = _run(search(tmp_path / "cnn.db", "toycnn:ToyCNNSpace", "attention"), capsys)
    assert cnn["all_failed"] is None
    with SQLiteStore(tmp_path / "cnn.db") as opened:
        rows = opened.results("search")
    assert [e.result.fidelity.method for e in rows] == ["attention", "attention", "nokd"]
    assert all(e.result.ok and "term.attention" in e.result.metrics for e in rows[:2])


def test_a_search_whose_every_evaluation_failed_ends_non_zero_saying_why(
    modules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = search(tmp_path / "failing.db", "failing:FailingSpace", "nokd")
    assert main([a for a in args if a != "--json"]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert "Every evaluation failed: all 3 evaluations failed (3 alike)" in out
    assert "RuntimeError: this network cannot train" in out


def test_bad_spaces_and_methods_are_refused_in_one_line_before_anything_trains(
    modules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "refused.db"
    cases = {
        "nosuchmodule:Space": "no module named 'nosuchmodule'",
        "toyspace:Nothing": "toyspace has no attribute 'Nothing'",
        "toyspace:np": "does not implement the SearchSpace protocol; missing: name, ",
        "failing:Refuses": "calling Refuses() failed: TypeError: ",
    }
    for spec, expected in cases.items():
        assert main(search(store, spec, "kd")) == 2
        error = capsys.readouterr().err
        assert expected in error and error.count("\n") == 1
    assert main(search(store, "toyspace:ToyMLPSpace", "nst")) == 2
    assert "networks have no forward_taps, which method 'nst' needs" in capsys.readouterr().err
    assert not store.exists()


def test_train_and_bench_build_take_a_user_space(
    modules: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trained = [
        "train", "--space", "toycnn:ToyCNNSpace", "--arch", "[8, 16, 32, 1, 1, 1]",
        "--dataset", "digits", "--part", "3",
        "--loss", "nokd", "--epochs", "1", "--width-multiplier", "0.25", "--threads", "1",
        "--output", str(tmp_path / "train.json"),
    ]  # fmt: skip
    assert main(trained) == 0, capsys.readouterr().err
    result = json.loads((tmp_path / "train.json").read_text())
    assert result["status"] == "ok" and result["arch"] == {
        "space": "toy_cnn",
        "genotype": [8, 16, 32, 1, 1, 1],
    }
    build = [
        "bench", "build", "--space", "toyspace:ToyMLPSpace", "--dataset", "digits",
        "--archs", "2", "--parts", "3", "--methods", "nokd", "--epochs", "1",
        "--width-multiplier", "0.25", "--threads", "1", "--store", str(tmp_path / "b.db"),
    ]  # fmt: skip
    assert main(build) == 0, capsys.readouterr().err
    with SQLiteStore(tmp_path / "b.db") as opened:
        rows = [e for run in opened.runs() for e in opened.results(run.run_id)]
    assert rows and all(e.arch.space == "toy_mlp" and e.result.ok for e in rows)
