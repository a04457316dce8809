"""``kdnas search`` checks everything cheap before it trains: the store, the run, the run id;
and a run resumes whatever spelling of its dataset's path is given."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest

from kdnas.experiment import SearchSettings, run_search
from kdnas.experiment._search import teacher_dir_for
from kdnas.experiment._settings import (
    load_data,
    open_search_run,
    run_config,
    sample_architectures,
)
from kdnas.spaces import get_space
from kdnas.store import RunMismatchError, SQLiteStore, config_fingerprint
from kdnas.train import TrainingObjective

#: A distilling search: the checks must come before its teacher trains.
SETTINGS = SearchSettings(
    algorithm="alg2", method="kd", part=3, n_lf=2, n_candidates=4, epochs=1, width_multiplier=0.125
)


def _config(settings: SearchSettings) -> dict:
    archs = sample_architectures(get_space(settings.space), settings.n_candidates, 0)
    return run_config(settings, load_data(settings), archs)


@pytest.fixture
def no_teacher_training(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: TrainingObjective, part: int) -> None:
        raise AssertionError("a teacher was trained before the checks")

    monkeypatch.setattr(TrainingObjective, "teacher", refuse)


@pytest.mark.usefixtures("no_teacher_training")
def test_a_mismatched_run_is_refused_before_the_teacher_trains(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    with SQLiteStore(store) as opened:
        opened.open_run("search", _config(SETTINGS))
    with pytest.raises(RunMismatchError, match=r"part: 3 \(stored\) vs 9 \(now\)"):
        run_search(dataclasses.replace(SETTINGS, part=9), store)
    assert not teacher_dir_for(store).exists()


@pytest.mark.usefixtures("no_teacher_training")
def test_an_empty_run_id_or_a_foreign_store_is_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run id"):
        run_search(SETTINGS, tmp_path / "s.sqlite", run_id="")
    assert not (tmp_path / "s.sqlite").exists()
    foreign = tmp_path / "notes.sqlite"
    foreign.write_bytes(b"these are not the bytes of an SQLite database" * 100)
    with pytest.raises(ValueError, match="not a kdnas SQLite store"):
        run_search(SETTINGS, foreign)
    assert not teacher_dir_for(foreign).exists()


def test_a_run_resumes_with_its_dataset_path_spelled_differently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for label, colour in (("cat", (255, 0, 0)), ("dog", (0, 0, 255))):
            for index in range(6):
                buffer = io.BytesIO()
                Image.new("RGB", (8, 8), (colour[0], index * 40, colour[2])).save(buffer, "PNG")
                folder = tmp_path / "imgs" / split / label
                folder.mkdir(parents=True, exist_ok=True)
                (folder / f"{index}.png").write_bytes(buffer.getvalue())
    monkeypatch.chdir(tmp_path)
    spellings = ["imgs", "./imgs/", str(tmp_path / "imgs")]
    settings = [dataclasses.replace(SETTINGS, dataset=text, part=2) for text in spellings]
    fingerprints = {config_fingerprint(_config(each)) for each in settings}
    assert len(fingerprints) == 1
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        for each in settings:
            store.open_run("search", _config(each))  # resumable: no RunMismatchError


def test_settings_refuse_bad_values_at_once() -> None:
    with pytest.raises(ValueError, match="'tau' must be > 0"):
        dataclasses.replace(SETTINGS, hyperparameters={"kd": {"tau": 0.0}})
    with pytest.raises(ValueError, match="at most 10,000"):
        dataclasses.replace(SETTINGS, n_candidates=10_000_000)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        dataclasses.replace(SETTINGS, seed=-1)


def test_a_run_made_when_the_literal_path_was_fingerprinted_still_resumes(tmp_path: Path) -> None:
    config = _config(SETTINGS)
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        store.open_run("old", {**config, "dataset_source": "./digits"})
        resumed = open_search_run(store, "old", config)
        assert resumed["dataset_source"] == "./digits"
        other = _config(dataclasses.replace(SETTINGS, part=9))
        with pytest.raises(RunMismatchError, match="part"):
            open_search_run(store, "old", other)
