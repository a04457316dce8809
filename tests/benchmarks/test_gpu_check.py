"""benchmarks/gpu_check.sh stays runnable: valid bash, a clean skip without CUDA, and (slow)
its CPU smoke run end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

_ROOT = Path(__file__).resolve().parents[2]
_SCRIPT = _ROOT / "benchmarks" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*arguments: str, out: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHON": sys.executable, "GPU_CHECK_OUT": str(out)}
    return subprocess.run(
        ["bash", str(_SCRIPT), *arguments],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def test_script_is_valid_bash_and_rejects_unknown_options(tmp_path) -> None:
    assert subprocess.run(["bash", "-n", str(_SCRIPT)], check=False).returncode == 0
    done = _run("--fast", out=tmp_path, timeout=30)
    assert done.returncode == 2 and "usage" in done.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="the skip is for machines without CUDA")
def test_without_cuda_it_skips_with_a_message(tmp_path) -> None:
    done = _run(out=tmp_path, timeout=120)
    assert done.returncode == 0
    assert "skipped: no CUDA device" in done.stdout


@pytest.mark.slow
@pytest.mark.timeout(660)  # about 90 s on 2 busy cores; the script stops itself at 290 s
def test_cpu_smoke_run_passes_every_step(tmp_path) -> None:
    done = _run("--cpu", out=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:]
    for step in (
        "checks",
        "throughput",
        "ddp-nproc1",
        "ddp-resume",
        "stream",
        "stream-throughput",
    ):
        assert f"PASS  {step}" in done.stdout
    assert (tmp_path / "ddp-resume.json").is_file()
