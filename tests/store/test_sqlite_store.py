"""The SQLite store: round trips, run fingerprints, refusals, concurrent writers, export."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from store_values import ARCH, LOW, result_for

from kdnas.core import Suggestion
from kdnas.store import IncompatibleStoreError, SQLiteStore


def test_subset_hash_and_version_land_in_their_own_columns(tmp_path: Path) -> None:
    # The rest of a round trip is the contract of every store (test_store_contract.py).
    result = result_for(ARCH, LOW, 0.625, info={"subset_hash": "ab12cd", "device": "cpu"})
    with SQLiteStore(tmp_path / "s.db") as store:
        store.open_run("r", {"method": "nst"})
        stored = store.put("r", Suggestion(0, ARCH, LOW), result)
    raw = (
        sqlite3.connect(tmp_path / "s.db")
        .execute("SELECT subset_hash, package_version FROM evaluations")
        .fetchone()
    )
    assert raw[0] == "ab12cd" and raw[1] == stored.package_version != ""


def test_files_that_are_not_kdnas_stores_are_named(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(IncompatibleStoreError, match=r"garbage\.db: not a kdnas SQLite store"):
        SQLiteStore(garbage)
    foreign = tmp_path / "foreign.db"
    sqlite3.connect(foreign).execute("CREATE TABLE photos (id INTEGER)").connection.commit()
    with pytest.raises(IncompatibleStoreError, match=r"not a kdnas store.*photos"):
        SQLiteStore(foreign)
    newer = tmp_path / "newer.db"
    SQLiteStore(newer).close()
    connection = sqlite3.connect(newer)
    connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    connection.commit()
    connection.close()
    with pytest.raises(IncompatibleStoreError, match="schema 99 by a newer kdnas"):
        SQLiteStore(newer)


def test_the_store_uses_a_write_ahead_log(tmp_path: Path) -> None:
    SQLiteStore(tmp_path / "s.db").close()
    mode = sqlite3.connect(tmp_path / "s.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


_WRITER = textwrap.dedent(
    """
    import sys
    from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion
    from kdnas.store import SQLiteStore

    path, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fidelity = Fidelity(part=9, method="kd")
    with SQLiteStore(path, busy_timeout_s=0.05, retries=200) as store:
        store.open_run(run_id, {"writer": "test"})
        for i in range(n):
            arch = Architecture("toy", (i,))
            suggestion = Suggestion(i, arch, fidelity)
            store.record_ask(run_id, suggestion)
            result = EvalResult(arch.key(), fidelity, 0.5, 0.5, 1.0)
            store.put(run_id, suggestion, result)
            store.count()  # readers interleave with the other process's writes
    """
)


def test_two_processes_writing_one_store_lose_no_row(tmp_path: Path) -> None:
    path, n = tmp_path / "shared.db", 150
    SQLiteStore(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), run_id, str(n)])
        for run_id in ("a", "b")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    with SQLiteStore(path) as store:
        for run_id in ("a", "b"):
            evaluations = store.results(run_id)
            assert sorted(e.trial_id for e in evaluations) == list(range(n))
            # Asks and tells of one run got distinct, gap-free sequence numbers.
            assert [e.seq for e in store.events(run_id)] == list(range(1, 2 * n + 1))
        assert store.count() == 2 * n
