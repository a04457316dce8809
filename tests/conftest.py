"""Fixtures shared by the whole suite, and the switch that makes a required test's skip fail.

KDNAS_REQUIRE (comma-separated names, e.g. ``smac,syne-tune,mf_nas_kd``): a test that skips
with a reason naming one of them (as a whole word, case-insensitive: "smac is not installed",
"could not import 'ray'", "../shared/data/mf_nas_kd") fails instead. CI sets it, so an
optional library or the paper's benchmark missing there is an error, not a silent skip.
"""

from __future__ import annotations

import os
import re
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


def required_names() -> tuple[str, ...]:
    """The names in KDNAS_REQUIRE (none when unset)."""
    text = os.environ.get("KDNAS_REQUIRE", "")
    return tuple(name.strip() for name in text.split(",") if name.strip())


def names_required(reason: str, names: tuple[str, ...]) -> list[str]:
    """Those of ``names`` that the skip ``reason`` names, each as a whole word."""
    return [
        name
        for name in names
        if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", reason, re.IGNORECASE)
    ]


def _fail_a_required_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    names = names_required(reason, required_names())
    if names:
        report.outcome = "failed"
        report.longrepr = (
            f"KDNAS_REQUIRE names {', '.join(names)}, but this test skipped: {reason}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    outcome = yield
    _fail_a_required_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> object:
    # A module-level importorskip skips the whole module at collection.
    outcome = yield
    _fail_a_required_skip(outcome.get_result())
