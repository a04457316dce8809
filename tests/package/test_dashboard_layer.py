"""The dashboard sits on top: only the command line imports it, and it loads no torch (a page
over a store must start fast on a login node)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_import_cycles import import_graph

SRC = Path(__file__).resolve().parents[2] / "src"


def test_only_the_command_line_imports_the_dashboard() -> None:
    graph = import_graph()
    assert any(module.startswith("kdnas.dashboard") for module in graph), "walk is broken"
    importers = sorted(
        module
        for module, targets in graph.items()
        if not module.startswith(("kdnas.dashboard", "kdnas.cli"))
        and any(target.startswith("kdnas.dashboard") for target in targets)
    )
    assert importers == []
    assert any(target.startswith("kdnas.dashboard") for target in graph["kdnas.cli.dashboard"]), (
        "the probe must see the command's own import"
    )


def test_the_dashboard_loads_no_torch() -> None:
    code = (
        "import json, sys; import kdnas.dashboard, kdnas.cli.dashboard; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_the_dashboard_command_parses_without_loading_torch() -> None:
    """``kdnas dashboard`` and ``kdnas report`` build their parser alone: the other commands'
    options import torch (about 2 s before the page could listen)."""
    code = (
        "import json, sys; from kdnas.cli import main\n"
        "for command in ('dashboard', 'report'):\n"
        "    try: main(['-v', command, '--help'])\n"
        "    except SystemExit: pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert "kdnas report [-h] --html FILE STORE" in out.stdout  # the help was printed
    assert json.loads(out.stdout.splitlines()[-1]) == []
    # `kdnas --help` still lists every command (which does load them all)
    code = "from kdnas.cli import main\ntry: main(['--help'])\nexcept SystemExit: pass"
    listing = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert all(name in listing.stdout for name in ("search", "dashboard", "report", "train"))
