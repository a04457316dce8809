"""The scripts under benchmarks/ are not a package: tests import each by its path."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@contextmanager
def _imported(name: str) -> Iterator[ModuleType]:
    """benchmarks/<name>.py imported as module ``name`` (registered in ``sys.modules`` while in
    use, as a process pool's workers find their functions there)."""
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


@pytest.fixture(scope="session")
def benchmark_script():
    """``benchmark_script(name)``: a context manager importing benchmarks/<name>.py."""
    return _imported
