"""Kept weights (``WeightsFolder``): checksummed, atomic, the keep policy, and a process
killed with SIGKILL in the middle of a write leaves nothing that loads torn."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from kdnas.train import DEFAULT_KEEP, KeepPolicy, WeightsError, WeightsFolder, weights_key


def _network(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_saved_weights_load_back_bit_for_bit_with_their_record(tmp_path: Path) -> None:
    folder = WeightsFolder(tmp_path / "w", KeepPolicy(None))
    network = _network(0)
    folder.save("weights-a", network, {"valid_acc": 0.5, "space": "x"})
    state, record = folder.load("weights-a")
    assert _same(state, network.state_dict())
    assert record["space"] == "x" and record["key"] == "weights-a"
    assert record["bytes"] == (tmp_path / "w" / "weights-a.pt").stat().st_size
    assert folder.status("weights-a") == "kept"


def test_a_corrupted_or_replaced_file_is_reported_and_never_loaded(tmp_path: Path) -> None:
    folder = WeightsFolder(tmp_path, KeepPolicy(None))
    folder.save("weights-a", _network(0), {"valid_acc": 0.5})
    folder.save("weights-b", _network(1), {"valid_acc": 0.4})
    path = tmp_path / "weights-a.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        folder.load("weights-a")
    assert folder.status("weights-a") == "corrupt"
    # Another evaluation's (intact) file in its place: its checksum is not this record's.
    path.write_bytes((tmp_path / "weights-b.pt").read_bytes())
    assert folder.status("weights-a") == "corrupt"
    # A file that would run code is refused by weights_only even with a matching checksum.
    import hashlib
    import pickle

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("ran",))

    payload = pickle.dumps({"w": Evil()})
    path.write_bytes(payload)
    record = json.loads((tmp_path / "weights-a.json").read_text())
    record["sha256"] = hashlib.sha256(payload).hexdigest()
    (tmp_path / "weights-a.json").write_text(json.dumps(record))
    with pytest.raises(WeightsError, match="not a PyTorch state dict"):
        folder.load("weights-a")
    assert folder.status("weights-missing") == "missing"


def test_the_default_policy_keeps_the_best_by_validation_accuracy(tmp_path: Path) -> None:
    assert KeepPolicy().best == DEFAULT_KEEP == 5
    folder = WeightsFolder(tmp_path)
    accuracies = [0.30, 0.90, 0.50, 0.70, 0.10, 0.95, 0.60, 0.20]
    for i, accuracy in enumerate(accuracies):
        folder.save(f"weights-{i}", _network(i), {"valid_acc": accuracy})
    kept = sorted(p.stem for p in tmp_path.glob("weights-*.pt"))
    best = sorted(f"weights-{i}" for i in sorted(range(8), key=lambda i: -accuracies[i])[:5])
    assert kept == best
    assert sorted(p.stem for p in tmp_path.glob("weights-*.json")) == best
    # A worse evaluation is not even written; a better one replaces the worst.
    assert folder.save("weights-low", _network(9), {"valid_acc": 0.05}) is None
    assert folder.save("weights-top", _network(9), {"valid_acc": 0.99}) is not None
    assert "weights-2" not in {p.stem for p in tmp_path.glob("*.pt")}  # 0.50 was the 5th


@pytest.mark.parametrize(
    ("text", "best"), [("all", None), ("none", 0), ("3", 3), (" ALL ", None), ("0", 0)]
)
def test_keep_policy_parses_the_option(text: str, best: int | None) -> None:
    assert KeepPolicy.parse(text).best == best


@pytest.mark.parametrize("text", ["-1", "best", "2.5", ""])
def test_keep_policy_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="all, none or a count"):
        KeepPolicy.parse(text)


def test_none_keeps_nothing_and_all_keeps_everything(tmp_path: Path) -> None:
    nothing = WeightsFolder(tmp_path / "none", KeepPolicy(0))
    assert nothing.save("weights-a", _network(0), {"valid_acc": 1.0}) is None
    assert not (tmp_path / "none").exists()
    everything = WeightsFolder(tmp_path / "all", KeepPolicy(None))
    for i in range(7):
        everything.save(f"weights-{i}", _network(i), {"valid_acc": 0.1})
    assert len(list((tmp_path / "all").glob("*.pt"))) == 7


def test_the_key_depends_on_what_decides_the_weights_and_on_nothing_else() -> None:
    protocol = {"epochs": 100, "lr": 0.1, "batch_size": 128}
    key = weights_key("arch", 4, 0, protocol, "data")
    assert key == weights_key("arch", 4, 0, {**protocol, "epochs": 4}, "data")  # run epochs
    others = {
        weights_key("other", 4, 0, protocol, "data"),
        weights_key("arch", 5, 0, protocol, "data"),
        weights_key("arch", 4, 1, protocol, "data"),
        weights_key("arch", 4, 0, {**protocol, "lr": 0.05}, "data"),
        weights_key("arch", 4, 0, protocol, "other data"),
    }
    assert key not in others and len(others) == 5


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    from torch import nn
    import kdnas.train._teacher as teacher_module
    from kdnas.train import KeepPolicy, WeightsFolder

    folder = WeightsFolder(sys.argv[1], KeepPolicy(None))
    kill_in = sys.argv[2]  # "weights" or "record": the file whose write is killed halfway
    real_fsync = os.fsync

    def fsync_then_die(fd):
        name = os.readlink(f"/proc/self/fd/{fd}")
        if name.endswith(".tmp") and (".pt." in name) == (kill_in == "weights"):
            os.kill(os.getpid(), signal.SIGKILL)  # the data is written, not yet renamed
        real_fsync(fd)

    teacher_module.os.fsync = fsync_then_die
    torch.manual_seed(int(sys.argv[3]))
    network = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    folder.save("weights-a", network, {"valid_acc": 0.5})
    """
)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("kill_in", ["weights", "record"])
def test_sigkill_during_a_write_leaves_nothing_torn_and_a_rerun_keeps_it(
    tmp_path: Path, kill_in: str
) -> None:
    folder = WeightsFolder(tmp_path, KeepPolicy(None))
    # An earlier, complete pair of another training under the same key (seed 7).
    folder.save("weights-a", _network(7), {"valid_acc": 0.5})
    before = folder.load("weights-a")[0]
    process = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(tmp_path), kill_in, "3"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert list(tmp_path.glob("*.tmp")), "the write was not interrupted halfway"
    if kill_in == "weights":
        # The old pair is untouched and still loads.
        assert _same(folder.load("weights-a")[0], before)
    else:
        # New weights, old record: the checksum fails, so nothing is loaded.
        assert folder.status("weights-a") == "corrupt"
        with pytest.raises(WeightsError):
            folder.load("weights-a")
    # The rerun (resume) writes the pair whole; it loads and equals an uninterrupted save.
    rerun = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER.replace("teacher_module.os.fsync =", "_ ="),
         str(tmp_path), kill_in, "3"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    clean = WeightsFolder(tmp_path / "clean", KeepPolicy(None))
    torch.manual_seed(3)
    clean.save("weights-a", nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)), {})
    assert _same(folder.load("weights-a")[0], clean.load("weights-a")[0])
    assert not _same(folder.load("weights-a")[0], before)
