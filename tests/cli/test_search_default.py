"""``kdnas search`` without ``--algorithm``: proxy-prior GP-UCB on a new run (full data only,
no teacher, said once), the run's own optimizer on a run the store holds (a store the previous
default, the paper's Algorithm 2, made resumes with the same command), and options that shape
only a low fidelity refused for an optimizer that has none."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.experiment import (
    SearchSettings,
    stored_algorithm,
    teacher_cache_dir_for,
    teacher_dir_for,
)
from kdnas.search.registry import DEFAULT_OPTIMIZER, registered_optimizers
from kdnas.spaces import get_space
from kdnas.store import SQLiteStore

#: Said once by a new default search (its beginning; the console may wrap the rest).
NO_TEACHER = "proxy-gp-ucb evaluates at full data only: no teacher is trained"


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tiny(store: Path, *extra: str) -> list[str]:
    """One epoch at width x0.125 on the digits, two evaluations, no optimizer named."""
    return [
        "search", "--dataset", "digits", "--candidates", "4", "--budget-evaluations", "2",
        "--epochs", "1", "--width-multiplier", "0.125", "--batch-size", "256",
        "--threads", "1", "--store", str(store), "--json", *extra,
    ]  # fmt: skip


#: What the previous default needed to distill on this tiny protocol (its teacher is at chance).
KD = ["--method", "kd", "--part", "9", "--n-lf", "2", "--allow-chance-teacher"]


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else {}, " ".join(captured.err.split())


def test_the_default_is_proxy_gp_ucb_and_needs_no_teacher(tmp_path: Path) -> None:
    assert DEFAULT_OPTIMIZER == "proxy-gp-ucb"
    assert SearchSettings().algorithm == DEFAULT_OPTIMIZER
    assert not registered_optimizers()[DEFAULT_OPTIMIZER].uses_low_fidelity
    assert not SearchSettings().needs_teacher
    assert SearchSettings(algorithm="alg2").needs_teacher  # the previous default distilled
    teacher = tmp_path / "net.pt2"
    teacher.write_bytes(b"")
    with pytest.raises(ValueError, match=r"use --algorithm alg2 --method kd$"):
        SearchSettings(teacher_file=str(teacher))


def test_a_new_default_search_runs_proxy_gp_ucb_at_full_data_and_trains_no_teacher(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "s.sqlite"
    code, summary, err = _run(tiny(store), capsys)
    assert code == 0
    assert summary["algorithm"] == "proxy-gp-ucb" and summary["new"] == 2
    assert summary["teacher"] is None and summary["cost"]["teacher_s"] == 0.0
    assert err.count(NO_TEACHER) == 1
    with SQLiteStore(store) as opened:
        assert opened.run("search").config["algorithm"] == "proxy-gp-ucb"
        assert {e.result.fidelity.label() for e in opened.results("search")} == {"full nokd"}
        evaluated = {e.arch.key() for e in opened.results("search")}
    # Nothing but the candidates is trained: the teacher folder holds only the original
    # network's own full-data evaluation, kept as the teacher when the search evaluated it.
    # Folders appear only with something in them (no empty teacher or teacher-cache folder).
    teachers = teacher_dir_for(store)
    kept = teachers.exists()
    assert kept == (get_space("mobilenetv2").original().key() in evaluated)
    assert not kept or any(teachers.iterdir())
    assert not teacher_cache_dir_for(store).exists()


def test_a_store_the_previous_default_made_resumes_with_the_same_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Made with alg2 (what ``kdnas search`` ran before it named no optimizer), then the same
    command without ``--algorithm``: the run is read back whole, the teacher loaded, the
    fingerprint unchanged, and it goes on as alg2 with a larger budget."""
    store = tmp_path / "old.sqlite"
    code, made, _ = _run([*tiny(store, *KD), "--algorithm", "alg2"], capsys)
    assert code == 0 and made["algorithm"] == "alg2" and not made["teacher"]["loaded"]
    with SQLiteStore(store) as opened:
        fingerprint = opened.run("search").fingerprint
        before = [(e.arch.key(), e.result) for e in opened.results("search")]
    assert [e[1].fidelity.label() for e in before] == ["1/9 kd", "1/9 kd"]

    code, again, err = _run(tiny(store, *KD), capsys)
    assert code == 0
    assert (again["algorithm"], again["replayed"], again["new"]) == ("alg2", 2, 0)
    assert again["teacher"]["loaded"] and again["teacher"]["key"] == made["teacher"]["key"]
    assert "was made with alg2: it goes on with alg2" in err and NO_TEACHER not in err

    code, extended, _ = _run([*tiny(store, *KD), "--budget-evaluations", "3"], capsys)
    assert code == 0
    assert (extended["algorithm"], extended["replayed"], extended["new"]) == ("alg2", 2, 1)
    assert extended["teacher"]["loaded"]
    with SQLiteStore(store) as opened:
        assert [run.run_id for run in opened.runs()] == ["search"]
        assert opened.run("search").fingerprint == fingerprint
        after = [(e.arch.key(), e.result) for e in opened.results("search")]
    assert after[:2] == before and after[2][1].fidelity.label() == "full nokd"

    # Naming another optimizer for that run is refused as before, naming the difference.
    code, _, err = _run([*tiny(store), "--algorithm", "proxy-gp-ucb"], capsys)
    assert code == 2
    assert "algorithm: 'alg2' (stored) vs 'proxy-gp-ucb' (now)" in err
    with SQLiteStore(store) as opened:
        assert opened.count("search") == 3


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--method", "kd"], "--method applies"),
        (["--part", "3", "--n-lf", "2"], "--part, --n-lf apply"),
        (["--algorithm", "gp-ucb", "--lf-epochs", "2"], "--lf-epochs applies"),
        (["--hp", "tau=4"], "--hp applies"),
        (["--teacher-data", "subset"], "--teacher-data subset applies"),
        (["--allow-chance-teacher"], "--allow-chance-teacher applies"),
        (["--algorithm", "random", "--teacher", "TEACHER"], "--teacher applies"),
    ],
)
def test_low_fidelity_options_for_a_full_data_optimizer_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], named: str
) -> None:
    teacher = tmp_path / "net.pt2"
    teacher.write_bytes(b"never read: refused before")
    extra = [str(teacher) if value == "TEACHER" else value for value in extra]
    store = tmp_path / "s.sqlite"
    code, _, err = _run(tiny(store, *extra), capsys)
    assert code == 2
    assert err.startswith("kdnas search: error: ") and err.count("error") == 1
    assert named in err
    users = [n for n, e in registered_optimizers().items() if e.uses_low_fidelity]
    assert f"low fidelity ({', '.join(users)})" in err and "alg2" in users
    assert "--algorithm alg2" in err
    assert not store.exists() and not teacher_dir_for(store).exists()


def test_low_fidelity_options_reach_the_search_with_an_optimizer_that_uses_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kdnas.experiment as experiment

    seen = []

    class Reached(Exception):
        pass

    def record(settings: SearchSettings, *args: object, **kwargs: object) -> None:
        seen.append(settings)
        raise Reached

    monkeypatch.setattr(experiment, "run_search", record)
    with pytest.raises(Reached):
        main([*tiny(tmp_path / "s.sqlite", *KD), "--algorithm", "alg2", "--hp", "tau=4"])
    (settings,) = seen
    assert (settings.algorithm, settings.method, settings.part, settings.n_lf) == (
        "alg2", "kd", 9, 2
    )  # fmt: skip
    assert settings.hyperparameters == {"kd": {"tau": 4.0}}


def test_stored_algorithm_reads_a_run_without_touching_the_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.sqlite"
    assert stored_algorithm(missing, "search") is None and not missing.exists()
    empty = tmp_path / "empty.sqlite"
    empty.write_bytes(b"")
    assert stored_algorithm(empty, "search") is None and empty.read_bytes() == b""
    store = tmp_path / "s.sqlite"
    with SQLiteStore(store) as opened:
        opened.open_run("made", {"algorithm": "alg2", "seed": 0})
        opened.open_run("other", {"no": "algorithm"})
    assert stored_algorithm(store, "made") == "alg2"
    assert stored_algorithm(store, "other") is None
    assert stored_algorithm(store, "absent") is None
