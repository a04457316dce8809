"""The store under hostile conditions: foreign files, read-only media, races, corrupt rows,
and exports that would mix runs trained differently."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion
from kdnas.store import IncompatibleStoreError, SQLiteStore, store_to_benchmark

ARCH = Architecture("mobilenetv2", ((1, 16, 1, 1), (6, 24, 2, 2)))
OTHER = Architecture("mobilenetv2", ((1, 16, 1, 1), (6, 32, 2, 2)))
LOW = Fidelity(part=27, method="kd")


def result_for(arch: Architecture, acc: float) -> EvalResult:
    return EvalResult(arch.key(), LOW, acc, acc - 0.02, cost_s=3.0, status="ok", seed=0)


def fill(store: SQLiteStore, run_id: str, config: dict, hyperparameters: dict) -> None:
    store.open_run(run_id, config)
    for trial, (arch, acc) in enumerate(((ARCH, 0.5), (OTHER, 0.7))):
        suggestion = Suggestion(trial, arch, LOW)
        store.record_ask(run_id, suggestion)
        store.put(run_id, suggestion, result_for(arch, acc), loss_hyperparameters=hyperparameters)


def test_a_foreign_sqlite_file_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "photos.sqlite"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE photos (name TEXT)")
    connection.commit()
    connection.close()
    before = path.read_bytes()
    with pytest.raises(IncompatibleStoreError, match="not a kdnas store"):
        SQLiteStore(path)
    assert path.read_bytes() == before  # the journal mode (in the header) included
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos.sqlite"]


def test_a_read_only_open_writes_nothing_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as store:
        fill(store, "r", {"dataset": "digits"}, {"tau": 32.0})
    before = path.read_bytes()
    with SQLiteStore(path, read_only=True) as store:
        assert len(store.results("r")) == 2
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store.open_run("new", {})
    assert path.read_bytes() == before
    with pytest.raises(FileNotFoundError):
        SQLiteStore(tmp_path / "absent.sqlite", read_only=True)
    assert not (tmp_path / "absent.sqlite").exists()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to its owner)."""
    folder = Path(tempfile.mkdtemp(prefix="kdnas-readonly-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):
            path.chmod(0o777 if path.is_dir() else 0o666)
        shutil.rmtree(folder)


def test_a_store_on_read_only_media_exports(shared_tmp: Path) -> None:
    """A store whose folder and file nobody may write (genuinely, for the exporting user:
    as root, the export runs as the unprivileged user 'nobody', for whom the bits hold)."""
    import pwd

    if os.name != "posix":
        pytest.skip("POSIX permissions are needed to make a read-only folder")
    media = shared_tmp / "media"
    media.mkdir()
    with SQLiteStore(media / "s.sqlite") as store:
        fill(store, "r", {"dataset": "digits"}, {"tau": 32.0})
    out = shared_tmp / "out"
    out.mkdir()
    out.chmod(0o777)
    (media / "s.sqlite").chmod(0o444)
    media.chmod(0o555)
    drop_to = ""
    if os.geteuid() == 0:
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip(
                "running as root with no 'nobody' user to drop to: cannot make the store's "
                "folder read-only for the exporting process"
            )
        # The interpreter may live where 'nobody' cannot read it: every module the export
        # needs is imported first, then the process drops to 'nobody'.
        drop_to = f"os.setgid({nobody.pw_gid}); os.setuid({nobody.pw_uid})"
    script = textwrap.dedent(
        f"""
        import os, sqlite3, sys
        import kdnas.bench.open_format, kdnas.bench.tabular, kdnas.store
        from kdnas.cli import build_parser, main
        build_parser()
        {drop_to}
        try:
            sqlite3.connect({str(media / "probe.sqlite")!r}).execute("CREATE TABLE t (a)")
        except sqlite3.OperationalError:
            pass
        else:
            sys.exit("the folder is writable: the test would prove nothing")
        sys.exit(main(["bench", "export", {str(media / "s.sqlite")!r}, {str(out / "b")!r}]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=shared_tmp,
    )
    if "the folder is writable" in done.stderr:
        pytest.skip("cannot make a folder read-only here (permissions are not enforced)")
    assert done.returncode == 0, done.stderr
    assert (out / "b" / "entries.csv").is_file()
    assert sorted(p.name for p in media.iterdir()) == ["s.sqlite"]
    assert stat.S_IMODE((media / "s.sqlite").stat().st_mode) == 0o444


def test_two_processes_asking_for_one_trial_of_one_run_get_a_clear_error(
    tmp_path: Path,
) -> None:
    with SQLiteStore(tmp_path / "s.sqlite") as first, SQLiteStore(tmp_path / "s.sqlite") as second:
        first.open_run("r", {})
        second.open_run("r", {})
        first.record_ask("r", Suggestion(0, ARCH, LOW))
        with pytest.raises(ValueError, match="another process running the same run"):
            second.record_ask("r", Suggestion(0, OTHER, LOW))


def test_a_corrupt_row_names_the_store_and_the_row(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as store:
        fill(store, "r", {}, {})
    connection = sqlite3.connect(path)
    connection.execute("UPDATE evaluations SET info_json = '{not json' WHERE trial_id = 1")
    row_id = connection.execute("SELECT id FROM evaluations WHERE trial_id = 1").fetchone()[0]
    connection.commit()
    connection.close()
    with SQLiteStore(path) as store, pytest.raises(IncompatibleStoreError) as caught:
        store.results("r")
    assert str(path) in str(caught.value) and f"row id {row_id}" in str(caught.value)


def test_a_corrupt_run_configuration_names_the_store_and_the_run(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with SQLiteStore(path) as store:
        fill(store, "r", {}, {})
    connection = sqlite3.connect(path)
    connection.execute("UPDATE runs SET config_json = '{not json' WHERE run_id = 'r'")
    connection.commit()
    connection.close()
    with SQLiteStore(path) as store:
        for read in (lambda: store.run("r"), store.runs, lambda: store.open_run("r", {})):
            with pytest.raises(IncompatibleStoreError, match="configuration of run 'r'") as caught:
                read()
            assert str(path) in str(caught.value)
        # The evaluations themselves are intact and still readable.
        assert store.count("r") > 0


def test_export_refuses_to_average_runs_trained_differently(tmp_path: Path) -> None:
    base = {"dataset": "digits", "dataset_hash": "h", "valid_fraction": 0.1}
    narrow = {**base, "train_config": {"lr": 0.1, "width_multiplier": 0.125}}
    wide = {**base, "train_config": {"lr": 0.05, "width_multiplier": 0.5}}
    with SQLiteStore(tmp_path / "s.sqlite") as store:
        fill(store, "narrow", narrow, {"tau": 32.0})
        fill(store, "wide", wide, {"tau": 32.0})
        with pytest.raises(ValueError, match="trained differently") as caught:
            store_to_benchmark(store)
        assert "train_config.lr" in str(caught.value)
        assert "train_config.width_multiplier" in str(caught.value)
        # One run at a time exports; so do two seeds of identical training (averaged).
        store_to_benchmark(store, run_ids=["wide"])
        fill(store, "narrow-seed-1", {**narrow, "seed": 1}, {"tau": 32.0})
        benchmark, _ = store_to_benchmark(store, run_ids=["narrow", "narrow-seed-1"])
        assert benchmark.num_entries == 2
        fill(store, "narrow-tau-4", narrow, {"tau": 4.0})
        with pytest.raises(ValueError, match=r"loss_hyperparameters\.tau"):
            store_to_benchmark(store, run_ids=["narrow", "narrow-tau-4"])
