"""``--teacher PATH``: distilling from a network the user trained (a ``torch.export`` program)
instead of training the original: its accuracy measured and reported, its file hash in the
fingerprint, the chance guard, a one-line refusal of files that cannot teach this data, and a
plain warning when the students beat their teacher."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from kdnas.cli import main
from kdnas.core import Architecture, EvalResult, Fidelity
from kdnas.experiment._health import weaker_teacher_warning
from kdnas.store import SQLiteStore, StoredEvaluation
from user_spaces import user_modules

_BATCH = ({0: torch.export.Dim("batch")},)  # the first input's first dimension


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _export(network: torch.nn.Module, path: Path, dynamic: bool = True) -> Path:
    example = (torch.zeros(4, 1, 16, 16),)
    program = torch.export.export(
        network.eval(), example, dynamic_shapes=_BATCH if dynamic else None
    )
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float, float]:
    """The docs' MLP (128, 64) trained 3 epochs on the digits by kdnas itself (so it sees the
    images as the students do), exported; its validation and test accuracy from that run."""
    from kdnas.data import load_dataset, prepare
    from kdnas.train import TrainConfig, TrainingObjective

    folder = tmp_path_factory.mktemp("teacher")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with user_modules(folder / "site"):
            from toyspace import ToyMLPSpace

            data = prepare(load_dataset("digits"))
            config = TrainConfig.for_data(data, epochs=3, batch_size=32)
            objective = TrainingObjective(ToyMLPSpace(), data, config, seed=0)
            arch = Architecture("toy_mlp", (128, 64))
            network, result = objective._fit(arch, Fidelity(part=1, method="nokd", epochs=3))
            assert network is not None
            path = _export(network.cpu(), folder / "mlp.pt2")
    finally:
        torch.set_num_threads(threads)
    return path, result.valid_acc, result.test_acc


def search(store: Path, *extra: str) -> list[str]:
    return [
        "search", "--dataset", "digits", "--algorithm", "alg2", "--method", "kd",
        "--part", "3", "--candidates", "4", "--n-lf", "2", "--budget-evaluations", "3",
        "--epochs", "1", "--width-multiplier", "0.125", "--batch-size", "64",
        "--threads", "1", "--store", str(store), "--json", *extra,
    ]  # fmt: skip


def test_a_user_teacher_is_measured_reported_fingerprinted_and_not_retrained(
    teacher: tuple[Path, float, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, valid, test = teacher
    # 3 epochs of the MLP: 0.895 validation accuracy on this machine, far above chance (0.105)
    assert valid > 0.5
    store = tmp_path / "taught.db"
    assert main(search(store, "--teacher", str(path))) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    reported = summary["teacher"]
    assert reported["data"] == "file" and reported["file"] == str(path.resolve())
    # Measured from the file on the same splits: what the network scored when it was trained.
    assert (reported["valid_acc"], reported["test_acc"]) == (valid, test)
    assert reported["above_chance"] and reported["train_time_s"] == 0.0
    assert summary["cost"]["teacher_s"] == 0.0
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert reported["sha256"] == sha
    with SQLiteStore(store) as opened:
        config = opened.run("search").config
        rows = opened.results("search")
    assert config["teacher"] == {"file_sha256": sha}
    assert [e.result.fidelity.method for e in rows] == ["kd", "kd", "nokd"]
    assert all(e.result.ok for e in rows)
    assert not list((tmp_path / "taught.db.teachers").glob("*"))  # nothing trained or saved
    report = json.loads((tmp_path / "taught.db.report" / "report.json").read_text())
    assert report["teacher"]["valid_acc"] == valid

    # The same file resumes; another file (other weights) is another run.
    assert main(search(store, "--teacher", str(path))) == 0
    assert json.loads(capsys.readouterr().out)["replayed"] == 3
    other = tmp_path / "other.pt2"
    program = torch.export.load(str(path)).module()
    with torch.no_grad():
        for parameter in program.parameters():
            parameter.mul_(0.5)
    torch.export.save(
        torch.export.export(program, (torch.zeros(4, 1, 16, 16),), dynamic_shapes=_BATCH),
        str(other),
    )
    assert main(search(store, "--teacher", str(other), "--allow-chance-teacher")) == 2
    error = capsys.readouterr().err
    assert "teacher.file_sha256" in error and "--teacher-data subset" not in error


def test_files_that_cannot_teach_this_data_are_refused_in_one_line(
    teacher: tuple[Path, float, float], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, _, _ = teacher
    ten = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))
    fixed = _export(ten, tmp_path / "fixed.pt2", dynamic=False)  # for batches of 4 only
    twelve = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 12))
    cases = {
        str(tmp_path / "absent.pt2"): "no such file",
        __file__: "not a torch.export program (not a .pt2 archive)",
        str(fixed): "fails on a 3 x 1 x 16 x 16 batch of this data",
        str(_export(twelve, tmp_path / "twelve.pt2")): "shape (batch, 10) for this data's 10 "
        "classes, got (3, 12)",
    }
    for file, expected in cases.items():
        assert main(search(tmp_path / "s.db", "--teacher", file)) == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert last.startswith("kdnas search: error: ") and expected in last
    assert main(search(tmp_path / "s.db", "--teacher", str(path), "--method", "nst")) == 2
    assert "use --method kd" in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


def test_a_teacher_at_chance_is_refused_then_warned_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    constant = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(256, 10))
    with torch.no_grad():
        constant[1].weight.zero_()  # always the same scores: class 0, a constant guess
    path = _export(constant, tmp_path / "constant.pt2")
    assert main(search(tmp_path / "c.db", "--teacher", str(path))) == 2
    error = capsys.readouterr().err
    assert "given with --teacher) reached" in error and "no better than chance" in error
    assert main(search(tmp_path / "c.db", "--teacher", str(path), "--allow-chance-teacher")) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert any("no better than chance" in w and "as told" in w for w in warnings)


def _evaluation(trial: int, method: str, valid: float, reused: str = "") -> StoredEvaluation:
    arch = Architecture("tiny", (trial,))
    fidelity = Fidelity(part=1 if method == "nokd" else 3, method=method)
    info = {"reused_from": reused} if reused else {}
    result = EvalResult(arch.key(), fidelity, valid, valid, 1.0, info=info)
    return StoredEvaluation("run", trial, trial, arch, result)


def test_a_teacher_weaker_than_its_students_is_warned_about_in_plain_words() -> None:
    teacher = {"data": "full", "valid_acc": 0.34}
    weaker = [_evaluation(0, "kd", 0.30), _evaluation(1, "kd", 0.85), _evaluation(2, "nokd", 0.6)]
    message = weaker_teacher_warning(teacher, weaker)
    assert message is not None and message.startswith(
        "the teacher reached 0.340 validation accuracy, but 2 of the 3 networks this search "
        "trained did better (best 0.850, at 1/3 kd)"
    )
    assert "train it longer" in message
    stronger = [_evaluation(0, "kd", 0.30), _evaluation(1, "nokd", 0.34)]  # a tie is not beaten
    assert weaker_teacher_warning(teacher, stronger) is None
    # The teacher's own result read back as the original's evaluation is not a student.
    own = [_evaluation(0, "nokd", 0.9, reused="teacher teacher-abc")]
    assert weaker_teacher_warning({"data": "full", "valid_acc": 0.9}, own) is None
    assert weaker_teacher_warning(None, weaker) is None
    file = weaker_teacher_warning({"data": "file", "valid_acc": 0.34}, weaker)
    assert file is not None and file.startswith("your --teacher network reached 0.340")
