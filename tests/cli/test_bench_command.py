"""``kdnas bench build`` then ``kdnas bench export``: a user's own tabular benchmark."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.store import SQLiteStore


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_build_a_grid_resume_it_and_export_a_loadable_benchmark(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kdnas.bench.tabular import TabularBenchmark

    store = tmp_path / "bench.sqlite"
    build = [
        "bench", "build", "--dataset", "digits", "--parts", "9", "--methods", "nokd",
        "--archs", "2", "--epochs", "1", "--width-multiplier", "0.125",
        "--batch-size", "256", "--store", str(store),
    ]  # fmt: skip
    assert main(build) == 0
    capsys.readouterr()
    assert main(build) == 0  # resumed: nothing left to train
    assert "4 read back, 0 new" in " ".join(capsys.readouterr().out.split())
    with SQLiteStore(store) as opened:
        rows = opened.results("bench")
    # 2 architectures x (1/9 nokd + full nokd), each trained once.
    assert sorted((e.result.fidelity.part, e.arch.key()) for e in rows) == sorted(
        (part, key) for part in (1, 9) for key in {e.arch.key() for e in rows}
    )
    assert len(rows) == 4

    folder = tmp_path / "my-benchmark"
    assert main(["bench", "export", str(store), str(folder)]) == 0
    benchmark = TabularBenchmark.load(folder)
    assert benchmark.num_entries == 4
    assert benchmark.parts("mobilenet", "nokd", dataset="digits") == [1, 9]
    listing = json.loads((folder / "architectures.json").read_text())["mobilenetv2"]
    for e in rows:
        index = [json.dumps(a, separators=(",", ":")) for a in listing].index(e.arch.to_json())
        entry = benchmark.query("mobilenet", index, "nokd", e.result.fidelity.part, "digits")
        assert entry.valid_acc == pytest.approx(e.result.valid_acc)
        assert entry.wall_time == pytest.approx(e.result.cost_s)
