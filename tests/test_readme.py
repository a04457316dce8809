"""The README's library example runs as written (from the repository root)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(
    paper_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if paper_data_dir.resolve() != (_ROOT.parent / "shared/data/mf_nas_kd").resolve():
        pytest.skip("the README example reads ../shared/data/mf_nas_kd beside the checkout")
    text = (_ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "README.md has no python example"
    cwd = os.getcwd()
    os.chdir(_ROOT)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    printed = capsys.readouterr().out
    assert "BenchmarkEntry(test_acc=" in printed
    assert re.search(r"c\d+n\d+-.* 0\.\d+ \d+ s", printed)
