"""The restricted unpickler refuses every global before anything runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from kdnas.safe_pickle import UnsafePickleError, load_plain_pickle


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_plain_data_loads(tmp_path: Path) -> None:
    data = {"a": [1, 2.5, "x"], "b": {"c": (1, 2)}, "d": None, "e": True}
    path = tmp_path / "plain.pickle"
    path.write_bytes(pickle.dumps(data))
    assert load_plain_pickle(path) == data


def test_pickle_naming_a_callable_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "hostile.pickle"
    path.write_bytes(pickle.dumps({"x": _RunsACommand(marker)}))
    with pytest.raises(UnsafePickleError, match=r"hostile\.pickle.*posix\.system|system"):
        load_plain_pickle(path)
    assert not marker.exists()


def test_truncated_and_garbage_files_give_one_line_errors(tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pickle"
    truncated.write_bytes(pickle.dumps(list(range(1000)))[:50])
    with pytest.raises(UnsafePickleError, match="truncated") as error:
        load_plain_pickle(truncated)
    assert "\n" not in str(error.value)
    garbage = tmp_path / "garbage.pickle"
    garbage.write_bytes(b"this is not a pickle at all")
    with pytest.raises(UnsafePickleError, match=r"garbage\.pickle"):
        load_plain_pickle(garbage)


def test_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_plain_pickle(tmp_path / "absent.pickle")
