"""Mutation fuzzing of every file kdnas reads: start from a valid file of each format, break it
(truncated, bit-flipped, oversized, emptied, replaced by a value of the wrong type, nested too
deeply) and hold the contract of the CLI: the reader succeeds or raises an error that the
``kdnas`` command reports in one line (``describe_failure``), within a time limit; never an
unexpected exception (a traceback), never a hang.

Deterministic: the mutations are seeded. ``KDNAS_FUZZ_SEEDS`` (default 3) sets how many
bit-flip seeds each reader gets; the nightly profile (docs/threat_model.md) raises it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kdnas.cli._errors import describe_failure

#: Bit-flip seeds per reader (the CI profile; the nightly profile sets more).
SEEDS = int(os.environ.get("KDNAS_FUZZ_SEEDS", "3"))
#: Seconds a reader may take on one broken file before it counts as a hang (measured: the
#: slowest reader here, the image folder, takes about 0.3 s on a loaded 2-core machine).
TIME_LIMIT_S = 20.0
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "release_0_1_0"


# ---------------------------------------------------------------------------- mutations


def _truncations(data: bytes) -> Iterator[tuple[str, bytes]]:
    for cut in sorted({0, 1, len(data) // 3, len(data) // 2, max(len(data) - 1, 0)}):
        yield f"truncated at {cut}", data[:cut]


def _bit_flips(data: bytes, seeds: int) -> Iterator[tuple[str, bytes]]:
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        flipped = bytearray(data)
        for position in rng.integers(0, len(data), size=max(1, len(data) // 200)):
            flipped[position] ^= 1 << int(rng.integers(0, 8))
        yield f"bit flips (seed {seed})", bytes(flipped)


def _oversized(data: bytes) -> Iterator[tuple[str, bytes]]:
    yield "junk appended", data + b"\x00\xff" * 50_000
    yield "doubled", data + data


def mutations(data: bytes, wrong: list[bytes]) -> list[tuple[str, bytes]]:
    """Every mutation of ``data``; ``wrong`` holds whole files of the wrong type or shape."""
    out = [*_truncations(data), *_bit_flips(data, SEEDS), *_oversized(data)]
    out += [(f"wrong type {i}", value) for i, value in enumerate(wrong)]
    return out


WRONG_JSON = [
    b"[]",
    b'"text"',
    b"1e999",
    b"null",
    b"[" * 100_000 + b"]" * 100_000,
    json.dumps({"format": ["not", "a", "string"]}).encode(),
]
WRONG_PICKLE = [
    pickle.dumps([1, 2, 3]),
    pickle.dumps("text"),
    pickle.dumps({"cifar100": "not a dict"}),
    pickle.dumps({"data": "x", "fine_labels": None}),
    pickle.dumps(np.zeros(3)),
]


def _holds_the_contract(read: Callable[[], Any], what: str) -> None:
    start = time.perf_counter()
    try:
        read()
    except Exception as error:  # the contract: only what the CLI reports in one line
        assert describe_failure(error) is not None, f"{what}: {type(error).__name__}: {error}"
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"{what}: {elapsed:.1f} s"


# ---------------------------------------------------------------------------- the formats


def _benchmark_pickle(tmp_path: Path) -> tuple[Path, Callable[[Path], Any]]:
    from kdnas.bench import TabularBenchmark

    entry = {"test_acc": 0.5, "valid_acc": 0.25, "wall_time": 12.5}
    nested = {"cifar100": {"mobilenet": {"nokd": {1: {0: entry, 1: entry}, 27: {0: entry}}}}}
    path = tmp_path / "benchmark.pickle"
    path.write_bytes(pickle.dumps(nested))
    return path, TabularBenchmark.load


def _open_format(tmp_path: Path, member: str) -> tuple[Path, Callable[[Path], Any]]:
    from kdnas.bench import BenchmarkRecord, TabularBenchmark

    records = [
        BenchmarkRecord("cifar100", "mobilenet", method, part, arch, 0.5, 0.25, 12.5)
        for method, part in (("nokd", 1), ("nokd", 27), ("kd", 27))
        for arch in range(3)
    ]
    folder = tmp_path / "open"
    TabularBenchmark.from_records(records, {"description": "fuzz"}).save(folder)
    return folder / member, lambda _: TabularBenchmark.load(folder)


def _cifar(tmp_path: Path) -> tuple[Path, Callable[[Path], Any]]:
    from kdnas.data import load_dataset

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 20), ("test", 10)):
        batch = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "fine_labels": [i % 100 for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return folder / "train", lambda _: load_dataset(str(folder))


def _image_folder(tmp_path: Path) -> tuple[Path, Callable[[Path], Any]]:
    from PIL import Image

    from kdnas.data import load_dataset

    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label in ("cat", "dog"):
            (folder / split / label).mkdir(parents=True)
            for i in range(3):
                pixels = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / label / f"{i}.png")
    return folder / "train" / "cat" / "0.png", lambda _: load_dataset(str(folder))


def _store(tmp_path: Path) -> tuple[Path, Callable[[Path], Any]]:
    from kdnas.store import SQLiteStore

    path = tmp_path / "store.sqlite"
    shutil.copy(FIXTURES / "search.sqlite", path)

    def read(path: Path) -> Any:
        # Each broken copy stands alone: the write-ahead log of the previous one is not its
        # own (a stale log makes SQLite wait for a lock, the designed answer to a writer).
        for sidecar in ("-wal", "-shm"):
            Path(f"{path}{sidecar}").unlink(missing_ok=True)
        with SQLiteStore(path, busy_timeout_s=1.0) as store:
            return [store.results(run.run_id) for run in store.runs()]

    return path, read


def _teacher(tmp_path: Path, member: str) -> tuple[Path, Callable[[Path], Any]]:
    from torch import nn

    from kdnas.train import TeacherStore

    store = TeacherStore(tmp_path / "teachers")
    network = nn.Linear(3, 2)
    store.save("teacher-x", network, {"valid_acc": 0.5})
    weights, record = store.paths("teacher-x")

    def read(_: Path) -> Any:
        # A broken teacher is reported and retrained (None), never raised.
        return store.load("teacher-x", nn.Linear(3, 2))

    return (weights if member == "weights" else record), read


READERS: dict[str, tuple[Callable[[Path], tuple[Path, Callable[[Path], Any]]], list[bytes]]] = {
    "benchmark pickle": (_benchmark_pickle, WRONG_PICKLE),
    "open format metadata.json": (lambda t: _open_format(t, "metadata.json"), WRONG_JSON),
    "open format entries.csv": (lambda t: _open_format(t, "entries.csv"), WRONG_JSON),
    "CIFAR batch": (_cifar, WRONG_PICKLE),
    "image file of an image folder": (_image_folder, [b"", b"GIF89a", *WRONG_JSON[:2]]),
    "SQLite store": (_store, [b"", b"SQLite format 3\x00" + b"\x00" * 100, *WRONG_JSON[:1]]),
    "teacher weights": (lambda t: _teacher(t, "weights"), WRONG_PICKLE),
    "teacher record": (lambda t: _teacher(t, "record"), WRONG_JSON),
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_broken_file_is_read_or_refused_in_one_line(reader: str, tmp_path: Path) -> None:
    build, wrong = READERS[reader]
    target, read = build(tmp_path)
    original = target.read_bytes()
    _holds_the_contract(lambda: read(target), f"{reader}, intact")
    cases = mutations(original, wrong)
    for name, data in cases:
        target.write_bytes(data)
        _holds_the_contract(lambda: read(target), f"{reader}, {name}")
    # A folder where the file should be, and the file missing.
    target.unlink()
    target.mkdir()
    _holds_the_contract(lambda: read(target), f"{reader}, a folder in its place")
    target.rmdir()
    _holds_the_contract(lambda: read(target), f"{reader}, missing")


def test_the_contract_bites_on_an_unexpected_exception() -> None:
    """The check above is not blind: a reader that raises a KeyError breaks the contract."""

    def broken() -> None:
        raise KeyError("a defect")

    with pytest.raises(AssertionError, match="KeyError"):
        _holds_the_contract(broken, "a reader with a defect")
