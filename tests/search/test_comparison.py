"""A new optimizer written in one file and registered in one place shows up in ``kdnas search
--algorithm``, Table 4 and the field leaderboard (the example of docs/search.md, executed)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kdnas.peers.leaderboard import leaderboard_rows, one_run
from kdnas.replay.arrays import SpaceArrays
from kdnas.replay.runs import run_on_arrays, time_to_optimum
from kdnas.reproduction.table4 import (
    PAPER_ROWS,
    Table4Settings,
    comparison_seeds,
    run_table4,
    table4_rows,
    table4_steps,
)
from kdnas.search import GPUCB, register_optimizer, registered_optimizers
from kdnas.search.registry import BUILTIN_OPTIMIZERS, unregister_optimizer
from search_toys import make_candidates

DOCS = Path(__file__).resolve().parents[2] / "docs" / "search.md"
SRC = Path(__file__).resolve().parents[2] / "src"


def _toy() -> SpaceArrays:
    candidates = make_candidates(12, d=2, seed=8)
    rng = np.random.default_rng(8)
    valid = 0.6 + 0.03 * np.sin(2 * candidates.features[:, 0]) + 0.002 * rng.normal(size=12)
    return SpaceArrays("toy", candidates.features, valid, valid, rng.uniform(50, 150, 12), {})


def _documented(language: str, marker: str) -> str:
    (block,) = [
        block
        for block in re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)
        if marker in block
    ]
    return block


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    """The documented module and its entry point, installed as a package would be: a module
    and a ``.dist-info`` folder on the path."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "explorative.py").write_text(_documented("python", "OptimizerEntry("))
    toml = _documented("toml", "kdnas.optimizers")
    info = site / "explorative-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: explorative\nVersion: 0.1\n")
    # entry_points.txt is the INI form of the pyproject table the docs show.
    name, value = re.search(r'^(\w+) = "([^"]+)"', toml, flags=re.M).groups()  # type: ignore[union-attr]
    (info / "entry_points.txt").write_text(f"[kdnas.optimizers]\n{name} = {value}\n")
    sys.path.insert(0, str(site))
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("explorative", None)


def test_the_documented_optimizer_joins_table4_and_the_leaderboard(plugin: Path) -> None:
    assert "explorative" in registered_optimizers()
    arrays, settings = _toy(), Table4Settings(runs=3)
    result = run_table4({"toy": arrays}, settings, rows=["explorative"])
    stats = result["toy"]["GP-UCB beta=2 (HF only)"]
    # The same runs by hand through the loop: seeds from comparison_seeds, beta 2.
    candidates = arrays.placeholder_candidates()
    by_hand = [
        time_to_optimum(arrays, run_on_arrays(arrays, GPUCB(candidates, seed=seed, beta=2.0)))
        for seed in comparison_seeds(settings)
    ]
    assert stats.runs == 3 and stats.mean == np.mean(by_hand)
    # hf_only, random_search, this row and proxy-free builtins that apply: Algorithm 2,
    # screening and the proxy rows need a low fidelity or multiply-adds the toy lacks.
    assert table4_steps({"toy": arrays}, settings) == 3
    row = leaderboard_rows()["explorative"]
    assert row.label == "kdnas GP-UCB beta=2 (HF only)" and row.library == "kdnas"
    seconds, _, _ = one_run(arrays, row.factory, comparison_seeds(settings)[0], 1, 1e9)
    assert seconds == by_hand[0]


def test_the_documented_optimizer_is_an_algorithm_of_kdnas_search(plugin: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(SRC)])}
    run = [sys.executable, "-c", "import sys; from kdnas.cli import main; sys.exit(main())"]
    shown = subprocess.run(
        [*run, "search", "--help"], env=env, capture_output=True, text=True, check=True
    )
    assert "explorative" in " ".join(shown.stdout.split())
    searched = subprocess.run(
        [
            *run, "search", "--algorithm", "explorative", "--candidates", "3", "--epochs", "1",
            "--width-multiplier", "0.25", "--budget-evaluations", "2", "--threads", "1",
            "--store", str(plugin / "s.sqlite"), "--json",
        ],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert searched.returncode == 0, searched.stderr[-2000:]
    assert '"evaluations": 2' in searched.stdout


def test_register_optimizer_in_a_process_and_names_are_checked() -> None:
    entry = BUILTIN_OPTIMIZERS[1]  # gp-ucb
    with pytest.raises(ValueError, match="kdnas's own"):
        register_optimizer(entry)
    from dataclasses import replace

    mine = replace(entry, name="my-gp-ucb", leaderboard_key=None, table4=True)
    register_optimizer(mine)
    try:
        assert "my-gp-ucb" in table4_rows() and "my-gp-ucb" in registered_optimizers()
        with pytest.raises(ValueError, match="registered already"):
            register_optimizer(mine)
    finally:
        unregister_optimizer("my-gp-ucb")
    assert "my-gp-ucb" not in table4_rows()
    with pytest.raises(ValueError, match="CLI name"):
        replace(entry, name="bad name")


def test_table4_rows_are_an_explicit_list_whatever_the_import_order() -> None:
    """No row is added by importing a module: a fresh interpreter that imports every module
    in two different orders lists the same rows."""
    modules = [
        "kdnas.search.experimental.optimum_search",
        "kdnas.peers.leaderboard",
        "kdnas.search.proxy_prior",
        "kdnas.replay.runs",
    ]
    code = (
        "import importlib, sys\n"
        "for m in sys.argv[1:]: importlib.import_module(m)\n"
        "from kdnas.reproduction.table4 import table4_rows\n"
        "print(list(table4_rows()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, *order], env=env, capture_output=True, text=True
        ).stdout
        for order in (modules, modules[::-1], [])
    }
    assert len(outputs) == 1
    (listed,) = outputs
    assert listed.strip() == str(
        [*PAPER_ROWS, "screening-gp-ucb", "proxy-gp-ucb", "optimum-search"]
    )
