"""Saved teachers: a file carrying a code payload is never run but retrained, a full disk
leaves nothing behind, and files can be shared between users."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from kdnas.data import load_digits, prepare
from kdnas.train import TeacherStore, TrainConfig, TrainingObjective


class _Payload:
    """Unpickling this would create ``marker``: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def plant_payload(store: TeacherStore, key: str, marker: Path) -> None:
    """Replace the saved weights of ``key`` by a payload and edit the record's checksum to
    match, as an attacker with write access to the folder could."""
    weights, record = store.paths(key)
    torch.save({"weight": _Payload(marker)}, weights)
    full = json.loads(record.read_text())
    full["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    record.write_text(json.dumps(full))


def test_a_payload_with_a_matching_checksum_is_never_run_and_reported_corrupt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = TeacherStore(tmp_path / "teachers")
    store.save("teacher-x", nn.Linear(3, 2), {"note": "test"})
    marker = tmp_path / "payload-ran"
    plant_payload(store, "teacher-x", marker)
    caplog.set_level(logging.WARNING, logger="kdnas.train")
    assert store.load("teacher-x", nn.Linear(3, 2)) is None
    assert not marker.exists()
    assert "corrupt and will be retrained" in caplog.text
    assert "weights_only=False" not in caplog.text  # torch's advice must not be relayed


def test_a_teacher_with_a_payload_is_retrained(tmp_path: Path, tiny_space, caplog) -> None:
    digits = prepare(load_digits(), resolution=8)
    config = TrainConfig(epochs=1, batch_size=64, crop_padding=1, horizontal_flip=False)
    first = TrainingObjective(tiny_space, digits, config, tmp_path, seed=0, device="cpu")
    first.teacher(27)
    marker = tmp_path / "payload-ran"
    plant_payload(first.teachers, first.teacher_key(27), marker)
    caplog.set_level(logging.INFO, logger="kdnas.train")
    second = TrainingObjective(tiny_space, digits, config, tmp_path, seed=0, device="cpu")
    second.teacher(27)
    assert "corrupt" in caplog.text and "training the teacher" in caplog.text
    assert not marker.exists()
    network = tiny_space.build_network(tiny_space.original(), 10, 1)
    assert second.teachers.load(second.teacher_key(27), network) is not None  # sound again


def test_a_full_disk_while_saving_leaves_no_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kdnas.train._teacher as teacher_module

    store = TeacherStore(tmp_path)
    store.save("teacher-x", nn.Linear(3, 2), {})
    before = {path.name: path.read_bytes() for path in tmp_path.iterdir()}

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(teacher_module.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.save("teacher-x", nn.Linear(3, 2), {})
    after = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
    assert after == before  # the old teacher intact, no temporary file


def test_teacher_files_follow_the_umask_so_a_folder_can_be_shared(tmp_path: Path) -> None:
    previous = os.umask(0o002)  # a group-shared folder's usual umask
    try:
        store = TeacherStore(tmp_path)
        weights = store.save("teacher-x", nn.Linear(3, 2), {})
    finally:
        os.umask(previous)
    for path in (weights, store.paths("teacher-x")[1]):
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


def test_a_full_disk_under_the_teacher_cache_keeps_the_summaries_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import kdnas.train._teacher as teacher_module
    from kdnas.train import TeacherCache

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    cache = TeacherCache(directory=tmp_path)
    monkeypatch.setattr(teacher_module.os, "fsync", full_disk)
    caplog.set_level(logging.WARNING, logger="kdnas.train")
    summaries = [{"logits": torch.ones(2, 3)}]
    cache.put("key", 0, summaries)  # must not raise: the cache is an optimisation
    assert "not written" in caplog.text
    assert torch.equal(cache.get("key", 0)[0]["logits"], summaries[0]["logits"])
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.pt"))
