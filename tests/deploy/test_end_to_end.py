"""From a search to a model in use, each step a fresh ``kdnas`` process: search (weights kept)
-> best -> export -> evaluate (the store's accuracies, exactly) -> predict; on the digits and
on an image folder of real images (PNG files of scikit-learn's digits); ``kdnas.load_model``
in a Python process that has neither the store nor the data; the one-line errors."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kdnas.store import SQLiteStore

KDNAS = [sys.executable, "-m", "kdnas"]


def kdnas(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``kdnas ARGS`` in a fresh process (one CPU thread: the suite shares the machine)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.run(
        [*KDNAS, *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )
    if check:
        assert process.returncode == 0, process.stderr[-2000:]
    return process


def tiny_search(store: str, dataset: str, *extra: str, networks: int = 3) -> list[str]:
    """Random search at full data only (no teacher): ``networks`` networks of width x0.125,
    2 epochs."""
    return [
        "search", "--dataset", dataset, "--algorithm", "random", "--candidates", "6",
        "--budget-evaluations", str(networks), "--epochs", "2", "--width-multiplier", "0.125",
        "--batch-size", "64", "--precise-bn", "--threads", "1", "--store", store, "--json",
        *extra,
    ]  # fmt: skip


def stored_best(store: Path) -> tuple[float, float]:
    with SQLiteStore(store, read_only=True) as opened:
        high = [e for e in opened.results("search") if e.result.ok]
    best = max(high, key=lambda e: e.result.valid_acc)
    return best.result.valid_acc, best.result.test_acc


@pytest.fixture(scope="module")
def digits_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("digits")
    kdnas(*tiny_search("s.sqlite", "digits"), cwd=folder)
    return folder


def test_digits_search_export_evaluate_gives_the_stored_accuracy_exactly(
    digits_search: Path,
) -> None:
    folder = digits_search
    kept = sorted((folder / "s.sqlite.weights").glob("weights-*.pt"))
    assert len(kept) == 3  # 3 full-data evaluations, default policy keeps 5
    table = kdnas("best", "s.sqlite", cwd=folder).stdout
    assert "mult-adds" in table and str(kept[0]) in table
    kdnas("export", "s.sqlite", "--to", "model", "--no-program", cwd=folder)
    description = json.loads((folder / "model" / "model.json").read_text())
    assert description["classes"] == [str(d) for d in range(10)]
    assert description["preprocessing"]["channels"] == 1  # the digits stay grayscale
    assert description["preprocessing"]["resolution"] == 16
    valid, test = stored_best(folder / "s.sqlite")
    assert description["provenance"]["test_acc"] == test
    result = json.loads(
        kdnas("evaluate", "model", "--dataset", "digits", "--json", cwd=folder).stdout
    )
    assert result["test_acc"] == test  # exactly: the same images, preprocessing and batches
    assert result["valid_acc"] == valid
    assert result["n_test"] == 359


def test_load_model_needs_neither_the_store_nor_the_data(
    digits_search: Path, tmp_path: Path
) -> None:
    folder = digits_search
    if not (folder / "model").exists():
        kdnas("export", "s.sqlite", "--to", "model", "--no-program", cwd=folder)
    shutil.copytree(folder / "model", tmp_path / "model")
    # A Python session elsewhere, with sklearn's digits blocked: the model must not need them.
    script = (
        "import sys, torch\n"
        "sys.modules['sklearn'] = None\n"
        "import kdnas\n"
        "model = kdnas.load_model('model')\n"
        "p = model.probabilities(torch.zeros(3, 1, 16, 16, dtype=torch.uint8))\n"
        "print(model.classes[0], tuple(p.shape), round(float(p.sum()), 4))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["0", "(3,", "10)", "3.0"]


def test_predict_on_a_folder_of_the_test_images_scores_the_stored_accuracy(
    digits_search: Path, tmp_path: Path
) -> None:
    """PNG files of the test split as training saw it (16x16): the predictions' accuracy is
    the store's test accuracy, so the file path preprocesses as training did."""
    from PIL import Image

    from kdnas.data import load_dataset, prepare

    folder = digits_search
    if not (folder / "model").exists():
        kdnas("export", "s.sqlite", "--to", "model", "--no-program", cwd=folder)
    data = prepare(load_dataset("digits"))
    truth = {}
    for i, (image, label) in enumerate(zip(data.test.images, data.test.labels, strict=True)):
        path = tmp_path / "images" / f"{i:04d}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(image[0].numpy(), mode="L").save(path)
        truth[str(path)] = str(int(label))
    out = kdnas("predict", str(folder / "model"), str(tmp_path / "images"), cwd=folder).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(truth)
    assert all(0.0 <= float(r["probability"]) <= 1.0 for r in rows)
    correct = sum(truth[r["file"]] == r["class"] for r in rows)
    assert correct / len(rows) == stored_best(folder / "s.sqlite")[1]
    as_json = kdnas(
        "predict", str(folder / "model"), str(tmp_path / "images" / "0000.png"), "--format",
        "json", cwd=folder,
    ).stdout  # fmt: skip
    assert json.loads(as_json)[0]["class"] == rows[0]["class"]


def _write_image_folder(root: Path, per_class_train: int, per_class_test: int) -> None:
    """PNG files of scikit-learn's digits (8x8 grayscale) as class folders named by word."""
    from PIL import Image
    from sklearn.datasets import load_digits

    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    bunch = load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    for label, name in enumerate(names):
        members = np.flatnonzero(bunch.target == label)
        for part, chosen in (
            ("train", members[:per_class_train]),
            ("test", members[per_class_train : per_class_train + per_class_test]),
        ):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(images[i], mode="L").save(root / part / name / f"{i}.png")


def test_an_image_folder_search_to_predictions_named_by_its_classes(tmp_path: Path) -> None:
    _write_image_folder(tmp_path / "letters", per_class_train=30, per_class_test=8)
    kdnas(*tiny_search("f.sqlite", "letters", networks=1), cwd=tmp_path)
    kdnas("export", "f.sqlite", "--to", "model", "--no-program", cwd=tmp_path)
    description = json.loads((tmp_path / "model" / "model.json").read_text())
    assert description["classes"][:3] == ["eight", "five", "four"]  # sorted folder names
    assert description["preprocessing"]["resolution"] == 32
    _, test = stored_best(tmp_path / "f.sqlite")
    result = json.loads(
        kdnas("evaluate", "model", "--dataset", "letters", "--json", cwd=tmp_path).stdout
    )
    assert result["test_acc"] == test
    out = kdnas("predict", "model", "letters/test", cwd=tmp_path).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 80
    correct = sum(Path(r["file"]).parent.name == r["class"] for r in rows)
    assert correct / len(rows) == test  # the file path decodes as the folder loader does


def test_an_evaluation_without_kept_weights_names_the_command_that_keeps_them(
    tmp_path: Path,
) -> None:
    kdnas(*tiny_search("n.sqlite", "digits", "--keep-weights", "none", networks=1), cwd=tmp_path)
    assert not (tmp_path / "n.sqlite.weights").exists()
    failed = kdnas("export", "n.sqlite", "--to", "model", cwd=tmp_path, check=False)
    assert failed.returncode == 2
    message = failed.stderr.strip()
    assert "\n" not in message and "were not kept" in message
    command = message.split("retrain and keep them with: ")[1]
    assert command.startswith("kdnas train ")
    import shlex

    kdnas(*shlex.split(command)[1:], "--threads", "1", cwd=tmp_path)
    # The retrained network is the searched one: same key, same accuracy, exactly.
    kdnas("export", "n.sqlite", "--to", "model", "--no-program", cwd=tmp_path)
    _, test = stored_best(tmp_path / "n.sqlite")
    result = json.loads(
        kdnas("evaluate", "model", "--dataset", "digits", "--json", cwd=tmp_path).stdout
    )
    assert result["test_acc"] == test


def _break(model: Path, how: str) -> None:
    description = json.loads((model / "model.json").read_text())
    if how == "corrupt weights":
        data = bytearray((model / "weights.pt").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (model / "weights.pt").write_bytes(bytes(data))
        return
    if how == "foreign weights":
        import hashlib

        import torch

        torch.save({"conv.weight": torch.zeros(3)}, model / "weights.pt")
        description["files"]["weights.pt"] = hashlib.sha256(
            (model / "weights.pt").read_bytes()
        ).hexdigest()
    elif how == "another space":
        description["space"] = "shufflenetv2"
    elif how == "no class list":
        del description["classes"]
    elif how == "not a model":
        (model / "model.json").unlink()
        return
    (model / "model.json").write_text(json.dumps(description))


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("corrupt weights", "checksum mismatch"),
        ("foreign weights", "do not fit the architecture"),
        ("another space", "but the model says 'shufflenetv2'"),
        ("no class list", "no class list"),
        ("not a model", "not a kdnas model folder"),
    ],
)
def test_a_broken_model_folder_is_a_one_line_error(
    digits_search: Path, tmp_path: Path, how: str, expected: str
) -> None:
    folder = digits_search
    if not (folder / "model").exists():
        kdnas("export", "s.sqlite", "--to", "model", "--no-program", cwd=folder)
    shutil.copytree(folder / "model", tmp_path / "model")
    _break(tmp_path / "model", how)
    for command in (("evaluate", "model", "--dataset", "digits"), ("predict", "model", ".")):
        failed = kdnas(*command, cwd=tmp_path, check=False)
        assert failed.returncode == 2, failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], failed.stderr


def test_a_corrupted_kept_file_is_reported_missing_and_never_exported(
    digits_search: Path, tmp_path: Path
) -> None:
    shutil.copy(digits_search / "s.sqlite", tmp_path / "s.sqlite")
    shutil.copytree(digits_search / "s.sqlite.weights", tmp_path / "s.sqlite.weights")
    best = kdnas("best", "s.sqlite", "--json", cwd=tmp_path).stdout
    path = Path(json.loads(best)[0]["weights"])
    kept = tmp_path / "s.sqlite.weights" / path.name
    data = bytearray(kept.read_bytes())
    data[100] ^= 0xFF
    kept.write_bytes(bytes(data))
    rows = json.loads(kdnas("best", "s.sqlite", "--json", cwd=tmp_path).stdout)
    assert rows[0]["weights"] == "corrupt"
    failed = kdnas("export", "s.sqlite", "--to", "model", cwd=tmp_path, check=False)
    assert failed.returncode == 2
    assert "checksum mismatch" in failed.stderr and "kdnas train" in failed.stderr
    assert not (tmp_path / "model").exists()


def test_the_exported_program_and_onnx_give_the_network_s_outputs(
    digits_search: Path, tmp_path: Path
) -> None:
    """model.pt2 always; model.onnx checked against onnxruntime where the extra is installed."""
    import torch

    from kdnas.deploy import load_model

    try:
        import onnx  # noqa: F401
        import onnxruntime
        import onnxscript  # noqa: F401
    except ImportError:
        onnxruntime = None
    extra = ("--onnx",) if onnxruntime is not None else ()
    kdnas("export", "s.sqlite", "--to", str(tmp_path / "m"), *extra, cwd=digits_search)
    model = load_model(tmp_path / "m")
    images = torch.randint(0, 256, (5, 1, 16, 16), dtype=torch.uint8)
    inputs = model.preprocessing.normalise(images)
    with torch.no_grad():
        expected = model.network(inputs)
    program = torch.export.load(str(tmp_path / "m" / "model.pt2")).module()
    assert torch.allclose(program(inputs), expected, atol=1e-5)
    if onnxruntime is None:
        pytest.skip("onnxruntime is not installed (pip install 'kdnas[onnx]'): ONNX unchecked")
    session = onnxruntime.InferenceSession(str(tmp_path / "m" / "model.onnx"))
    (out,) = session.run(None, {session.get_inputs()[0].name: inputs.numpy()})
    assert np.abs(out - expected.numpy()).max() < 1e-4
