"""``kdnas search`` follows the teacher's training epoch by epoch when it trains in this
process; a teacher loaded from an earlier training shows no epochs; an executor whose
``prepare`` runs in another process is not handed the callback (its line keeps the clock)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kdnas.cli import build_parser, main
from kdnas.cli.search import settings_from_args
from kdnas.experiment import run_search

# A 2-epoch teacher (--hf-epochs 2), one evaluation at 1 epoch, width x0.125: seconds.
SEARCH = [
    "search", "--dataset", "digits", "--algorithm", "alg2", "--method", "kd", "--part", "9",
    "--candidates", "4", "--n-lf", "1", "--budget-evaluations", "1", "--epochs", "1",
    "--hf-epochs", "2", "--width-multiplier", "0.125", "--batch-size", "256", "--threads",
    "1", "--allow-chance-teacher",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_the_teacher_shows_its_epochs_when_it_trains_and_none_when_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    store = str(tmp_path / "s.sqlite")
    assert main([*SEARCH, "--store", store]) == 0
    trained = capsys.readouterr()
    shown = trained.out + trained.err
    assert "teacher trains for 2 epoch(s)" in shown
    assert shown.index("teacher epoch 1/2") < shown.index("teacher epoch 2/2")
    assert shown.index("teacher epoch 2/2") < shown.index("trial   0")
    assert "teacher ready" in shown

    # The same search again: the teacher is loaded from <store>.teachers, not trained.
    assert main([*SEARCH, "--store", store]) == 0
    loaded = capsys.readouterr()
    shown = loaded.out + loaded.err
    assert "teacher epoch" not in shown and "teacher trains" not in shown
    assert "teacher loaded" in shown and "(loaded)" in shown


class _Elsewhere:
    """An executor whose ``prepare`` would run in another process: records what it is given
    and stops the search there."""

    in_process = False

    def __init__(self) -> None:
        self.given: tuple[Any, ...] = ()

    def prepare(self, objective: Any, function: Any, *args: Any) -> Any:
        self.given = args
        raise _Stop


class _Stop(Exception):
    pass


def test_an_executor_running_prepare_elsewhere_gets_no_callback(tmp_path: Path) -> None:
    args = build_parser().parse_args([*SEARCH, "--store", str(tmp_path / "s.sqlite")])
    executor = _Elsewhere()
    with pytest.raises(_Stop):
        run_search(
            settings_from_args(args),
            tmp_path / "s.sqlite",
            executor=executor,  # type: ignore[arg-type]
            teacher_progress=lambda done, epochs: None,
        )
    assert executor.given == (9,)  # the part only: a callback cannot cross a process
