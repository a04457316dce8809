"""KDNAS_REQUIRE turns the skip of a test needing a named library or data into a failure."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

_ROOT_CONFTEST = Path(__file__).parent / "conftest.py"

_SKIPS = """
import pytest

def test_needs_smac():
    pytest.skip("smac is not installed (pip install 'kdnas[field]')")

def test_needs_cuda():
    pytest.skip("needs CUDA")

@pytest.mark.skipif(True, reason="syne-tune is not installed")
def test_needs_syne_tune():
    pass

def test_passes():
    pass
"""

_MODULE_SKIP = """
import pytest

pytest.importorskip("kdnas_no_such_module")

def test_never_collected():
    pass
"""


def _run(folder: Path, require: str | None, *files: str) -> str:
    """The closing line of pytest run on ``files`` in ``folder`` with this KDNAS_REQUIRE."""
    env = {k: v for k, v in os.environ.items() if k != "KDNAS_REQUIRE"}
    if require is not None:
        env["KDNAS_REQUIRE"] = require
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *files],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "conftest.py").write_text(_ROOT_CONFTEST.read_text())
    (tmp_path / "test_skips.py").write_text(_SKIPS)
    (tmp_path / "test_module_skip.py").write_text(_MODULE_SKIP)
    return tmp_path


def test_without_the_switch_skips_stay_skips(suite: Path) -> None:
    assert _run(suite, None, ".").startswith("1 passed, 4 skipped")
    assert _run(suite, "smac", "test_module_skip.py").startswith("1 skipped")


def test_a_required_name_turns_its_skips_into_failures(suite: Path) -> None:
    # smac skips in the test's call, syne-tune at its setup (the mark); CUDA stays a skip.
    last = _run(suite, "smac, syne-tune", "test_skips.py")
    assert last.startswith("1 failed, 1 passed, 1 skipped, 1 error"), last
    # A module skipped at collection (a module-level importorskip) is an error too.
    last = _run(suite, "kdnas_no_such_module", "test_module_skip.py")
    assert last.startswith("1 error"), last


def test_names_are_whole_words() -> None:
    # Loaded by path: "conftest" on sys.path may be another folder's conftest.
    spec = importlib.util.spec_from_file_location("root_conftest", _ROOT_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names_required = module.names_required

    names = ("ray", "syne-tune", "mf_nas_kd")
    assert names_required("could not import 'ray': No module named 'ray'", names) == ["ray"]
    assert names_required("an array of rays", names) == []
    assert names_required("reads ../shared/data/mf_nas_kd beside", names) == ["mf_nas_kd"]
    assert names_required("syne-tune-extra is absent", names) == []
