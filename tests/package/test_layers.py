"""The layers the folders promise: what each package may import, and which load no torch.

Checked two ways: on the import graph of the source (every import, at module level or inside a
function, ``test_import_cycles.import_graph``), and by importing a package in a fresh
interpreter and looking for torch in ``sys.modules`` (what ``python -X importtime`` shows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_import_cycles import import_graph

SRC = Path(__file__).resolve().parents[2] / "src"

#: Package -> the kdnas packages it must never import (inside functions too).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # Policies only: no loop, no benchmark, no tables, no training, no peers.
    "kdnas.search": (
        "kdnas.loop",
        "kdnas.replay",
        "kdnas.reproduction",
        "kdnas.peers",
        "kdnas.bench",
        "kdnas.train",
        "kdnas.models",
        "kdnas.data",
        "kdnas.store",
        "kdnas.execute",
        "kdnas.experiment",
        "kdnas.cli",
    ),
    "kdnas.loop": (
        "kdnas.search",
        "kdnas.replay",
        "kdnas.reproduction",
        "kdnas.peers",
        "kdnas.train",
        "kdnas.store",
    ),
    "kdnas.replay": ("kdnas.reproduction", "kdnas.peers", "kdnas.train", "kdnas.experiment"),
    "kdnas.reproduction": ("kdnas.peers", "kdnas.train", "kdnas.experiment", "kdnas.cli"),
    "kdnas.peers": ("kdnas.reproduction", "kdnas.train", "kdnas.experiment", "kdnas.cli"),
    "kdnas.execute": ("kdnas.replay", "kdnas.reproduction", "kdnas.peers", "kdnas.train"),
    # A model folder is made from a store and the training's records, never by a search.
    "kdnas.deploy": (
        "kdnas.search",
        "kdnas.loop",
        "kdnas.replay",
        "kdnas.reproduction",
        "kdnas.peers",
        "kdnas.execute",
        "kdnas.experiment",
        "kdnas.cli",
    ),
}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_above_its_layer(package: str) -> None:
    graph = import_graph()
    members = [m for m in graph if _inside(m, package)]
    assert members, f"{package} has no modules: the walk is broken"
    wrong = sorted(
        (module, target)
        for module in members
        for target in graph[module]
        if any(_inside(target, banned) for banned in FORBIDDEN[package])
    )
    assert wrong == []


#: Packages that must import without torch (and so stay light in a Ray task or a CLI that
#: only reads a store or replays a benchmark).
TORCH_FREE = (
    "kdnas.search",
    "kdnas.search.experimental",
    "kdnas.search.registry",
    "kdnas.loop",
    "kdnas.execute",
    "kdnas.store",
    "kdnas.bench",
    "kdnas.replay",
    "kdnas.peers.leaderboard",
)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_importing_it_loads_no_torch(module: str) -> None:
    code = (
        f"import json, sys; import {module}; "
        "print(json.dumps(sorted(m for m in sys.modules if m == 'torch' or "
        "m.startswith('torch.'))))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_the_torch_probe_sees_torch_where_it_is_imported() -> None:
    """The probe above is not blind: the batched engine does import torch."""
    code = "import sys; import kdnas.replay.engine; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "True"
