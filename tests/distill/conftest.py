"""Fixtures of the distillation tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Small tensors and short runs: a second OpenMP thread only adds spin-waiting on a busy
    2-core machine (and one thread is the setting the measured spreads quote)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
