"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_SHARED_BENCHMARK = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mf_nas_kd"


def shared_data_dir() -> Path | None:
    """The paper's released benchmark folder (../shared beside the checkout, or $KDNAS_DATA)."""
    env = os.environ.get("KDNAS_DATA")
    for candidate in ([Path(env)] if env else []) + [_SHARED_BENCHMARK]:
        if (candidate / "benchmark.pickle").is_file():
            return candidate
    return None


@pytest.fixture(scope="session")
def paper_data_dir() -> Path:
    """Folder holding benchmark.pickle and random_arcs_*.pickle; skips the test when absent."""
    found = shared_data_dir()
    if found is None:
        pytest.skip(
            "the paper's benchmark is absent: expected ../shared/data/mf_nas_kd/ beside the "
            "checkout (or set KDNAS_DATA to the folder holding benchmark.pickle)"
        )
    return found
