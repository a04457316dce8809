"""Every failure of the ``kdnas`` command is one line on stderr, never a traceback.

Bad input exits 2 before anything is read or trained; the environment failing (a full disk,
a read-only folder) exits 1. Commands run in-process (``kdnas.cli.main``) to stay fast.
"""

from __future__ import annotations

import errno
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdnas.cli import main
from kdnas.store import SQLiteStore


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of ``kdnas ARGV`` (argparse's own errors exit via SystemExit)."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = int(exit_.code or 0)
    return status, capsys.readouterr().err


def assert_one_line(err: str) -> None:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"


def foreign_sqlite(path: Path) -> Path:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE photos (name TEXT)")
    connection.commit()
    connection.close()
    return path


def tiny_search(store: Path) -> list[str]:
    """A distilling search (its teacher's failures are tested with it)."""
    return [
        "search", "--algorithm", "alg2", "--method", "kd", "--part", "9", "--candidates", "4",
        "--n-lf", "2",
        "--budget-evaluations", "3", "--epochs", "1", "--width-multiplier", "0.125",
        "--threads", "1", "--store", str(store),
    ]  # fmt: skip


def hostile_commands(tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, a fragment the one-line message must hold) for every sub-command."""
    store = tmp / "s.sqlite"
    foreign = tmp / "photos.sqlite"
    search = tiny_search(store)
    train = ["train", "--arch", "original", "--epochs", "1", "--teacher-dir", str(tmp / "t")]
    build = ["bench", "build", "--store", str(store), "--archs", "2", "--epochs", "1"]
    import torch

    no_cuda = [] if torch.cuda.is_available() else [([*train, "--device", "cuda"], "has no CUDA")]
    return [
        *no_cuda,
        (["frobnicate"], "invalid choice"),
        (["--no-such-flag"], "unrecognized arguments"),
        # demo
        (["demo", "--threads", "0"], "--threads"),
        (["demo", "--seed", "-1"], "--seed"),
        (["demo", "--method", "distill"], "unknown method"),
        (["demo", "--device", "tpu"], "unknown device 'tpu'"),
        (["demo", "--tiny", "--out", str(foreign)], "File exists"),
        # search
        ([*search, "--threads", "-2"], "--threads"),
        ([*search, "--threads", "0"], "--threads"),
        ([*search, "--seed", "-1"], "--seed"),
        ([*search, "--candidate-seed", "-1"], "--candidate-seed"),
        ([*search, "--part", "0"], "--part"),
        ([*search, "--epochs", "two"], "--epochs"),
        ([*search, "--candidates", "10000000"], "at most 10,000"),
        ([*search, "--hp", "tau=0"], "'tau' must be > 0"),
        ([*search, "--hp", "tau=-4"], "'tau' must be > 0"),
        ([*search, "--hp", "lambda=2"], "'lambda' must be in [0, 1]"),
        ([*search, "--hp", "bogus=1"], "unknown hyperparameter 'bogus'"),
        ([*search, "--hp", "tau"], "NAME=NUMBER"),
        ([*search, "--device", "tpu"], "unknown device 'tpu'"),
        ([*search, "--device", "cuda:99"], "cuda:99"),
        ([*search, "--run-id", ""], "--run-id"),
        ([*search, "--store", str(tmp / ("a" * 300))], "choose a shorter name"),
        ([*search, "--store", str(foreign)], "not a kdnas store"),
        ([*search, "--store", str(tmp)], "is a folder"),
        ([*search, "--valid-fraction", "2"], "valid_fraction"),
        ([*search, "--width-multiplier", "0"], "width_multiplier"),
        ([*search, "--budget-seconds", "-1"], "budget_seconds"),
        ([*search, "--beta", "-1"], "beta"),
        ([*search, "--n-lf", "5"], "n_lf (5) cannot exceed"),
        ([*search, "--executor", "dask"], "valid executors"),
        ([*search, "--executor", "ray", "--cpus-per-eval", "nan"], "finite numbers >= 0"),
        ([*search, "--executor", "ray", "--gpus-per-eval", "-1"], "finite numbers >= 0"),
        ([*search, "--address", "auto"], "--address needs --executor ray"),
        ([*search, "--dataset", str(tmp / "no-such-data")], "does not exist"),
        # reproduce
        (["reproduce", "table9"], "invalid choice"),
        (["reproduce", "table1", "--trials", "0"], "--trials"),
        (["reproduce", "table1", "--seed", "-1"], "--seed"),
        (["reproduce", "table1", "--benchmark", str(tmp / "nothing.pickle")], "nothing"),
        # train
        (["train"], "--arch"),
        ([*train, "--threads", "-2"], "--threads"),
        ([*train, "--seed", "-1"], "--seed"),
        ([*train, "--part", "0"], "--part"),
        ([*train, "--loss", "distill"], "unknown loss"),
        ([*train, "--loss", "kd", "--hp", "tau=0"], "'tau' must be > 0"),
        ([*train, "--device", "tpu"], "unknown device"),
        (["train", "--arch", "{not json"], "--arch"),
        ([*train, "--dataset", str(tmp / "no-such-data")], "does not exist"),
        # bench
        (["bench", "build"], "--store"),
        ([*build, "--parts", "0"], "--parts"),
        ([*build, "--parts", "x"], "--parts"),
        ([*build, "--methods", "bogus"], "unknown method"),
        ([*build, "--archs", "0"], "--archs"),
        ([*build, "--seed", "-1"], "--seed"),
        ([*build, "--device", "tpu"], "unknown device"),
        ([*build, "--run-id", ""], "--run-id"),
        (["bench", "build", "--store", str(foreign)], "not a kdnas store"),
        (["bench", "export", str(tmp / "none.sqlite"), str(tmp / "out")], "no such file"),
        (["bench", "export", str(foreign), str(tmp / "out")], "not a kdnas store"),
        (["bench", "export", str(tmp / "kdnas.sqlite"), str(tmp / "out")], "no finished ok"),
        (
            ["bench", "export", str(tmp / "kdnas.sqlite"), str(tmp / "o"), "--run-id", "x"],
            "has no run(s) x",
        ),
    ]


def tree(*folders: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder under ``folders``: {path: (size in bytes, mtime in ns, sha256 of
    the content)}, folders as (-1, 0, "") (their entries are listed themselves).

    Left out: the empty write-ahead log and the shared-memory index that SQLite itself makes
    beside a WAL store opened for reading, and cannot remove on closing a read-only
    connection (`kdnas bench export` reads the store that way); the log being empty, nothing
    was written to the store."""
    listing = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            info = path.stat()
            beside_a_store = Path(str(path)[:-4]).is_file()
            if beside_a_store and (
                path.name.endswith("-shm") or (path.name.endswith("-wal") and not info.st_size)
            ):
                continue
            if path.is_dir():
                listing[str(path)] = (-1, 0, "")
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                listing[str(path)] = (info.st_size, info.st_mtime_ns, digest)
    return listing


def test_every_command_refuses_hostile_values_in_one_line_before_any_work(
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    foreign_sqlite(tmp_path / "photos.sqlite")
    with SQLiteStore(tmp_path / "kdnas.sqlite") as store:
        store.open_run("r", {"dataset": "digits"})
    # Defaults (a demo's output, a report or teacher folder beside a store) land in the
    # working folder or beside the files named: both trees are compared whole.
    working = tmp_path_factory.mktemp("working-folder")
    monkeypatch.chdir(working)
    for argv, fragment in hostile_commands(tmp_path):
        before = tree(working, tmp_path)
        status, err = run_cli(argv, capsys)
        assert status == 2, f"kdnas {' '.join(argv)[:120]}: exit {status}, stderr {err!r}"
        assert_one_line(err)
        assert fragment in err, f"kdnas {' '.join(argv)[:120]}: {err!r}"
        # Nothing was made, touched or left behind, anywhere under either folder.
        assert tree(working, tmp_path) == before, f"kdnas {' '.join(argv)[:120]} wrote"


def test_a_full_disk_while_saving_the_teacher_is_one_line_and_leaves_no_partial_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import kdnas.train._teacher as teacher_module

    def full_disk(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(teacher_module.os, "fsync", full_disk)
    teachers = tmp_path / "teachers"
    argv = [
        "train", "--arch", "original", "--loss", "kd", "--part", "9", "--epochs", "1",
        "--width-multiplier", "0.125", "--threads", "1", "--teacher-dir", str(teachers),
        "--output", str(tmp_path / "r.json"),
    ]  # fmt: skip
    status, err = run_cli(argv, capsys)
    assert status == 1
    assert_one_line(err)
    assert "No space left on device" in err and "free some space" in err
    assert not list(teachers.glob("*.tmp")), "a partial temporary file was left behind"
    assert not list(teachers.glob("*.pt"))


def test_a_full_disk_at_a_store_commit_is_one_line_naming_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    store_path = tmp_path / "full.sqlite"
    original_put = SQLiteStore.put

    class FullDisk:
        """The store's connection on a disk that fills up: inserting a result fails with
        SQLite's own error (sqlite3.Connection cannot be patched, so it is wrapped)."""

        def __init__(self, connection: sqlite3.Connection) -> None:
            self.connection = connection

        def execute(self, sql: str, *parameters: object) -> sqlite3.Cursor:
            if sql.startswith("INSERT INTO evaluations"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.connection.execute(sql, *parameters)

        def __getattr__(self, name: str) -> object:
            return getattr(self.connection, name)

    def put_on_a_full_disk(self: SQLiteStore, *args: object, **kwargs: object) -> object:
        self._connection = FullDisk(self._connection)  # type: ignore[assignment]
        return original_put(self, *args, **kwargs)

    monkeypatch.setattr(SQLiteStore, "put", put_on_a_full_disk)
    # The default optimizer (full data, no teacher): straight to the first commit.
    argv = [
        "search", "--candidates", "4", "--budget-evaluations", "3", "--epochs", "1",
        "--width-multiplier", "0.125", "--threads", "1", "--store", str(store_path),
    ]  # fmt: skip
    status, err = run_cli(argv, capsys)
    assert status == 1
    assert_one_line(err)
    assert "database or disk is full" in err and str(store_path) in err


def test_a_read_only_teacher_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from contextlib import contextmanager

    from kdnas.train import TeacherStore

    @contextmanager
    def read_only_lock(self: TeacherStore, key: str) -> Iterator[None]:
        # What flock's lock file gets on a read-only mount (root ignores permission bits,
        # so the error is injected rather than made with chmod).
        raise OSError(errno.EROFS, "Read-only file system", str(self.directory / f"{key}.lock"))
        yield

    monkeypatch.setattr(TeacherStore, "lock", read_only_lock)
    status, err = run_cli(tiny_search(tmp_path / "s.sqlite"), capsys)
    assert status == 1
    assert_one_line(err)
    assert "Read-only file system" in err and ".lock" in err


def test_a_defect_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import kdnas.cli.search as search_command

    def broken(args: object) -> int:
        raise KeyError("a bug")

    monkeypatch.setattr(search_command, "run", broken)
    with pytest.raises(KeyError):
        main(["search"])


def test_a_diverged_teacher_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A real teacher at tiny size (width 1/8, one epoch of the digits) whose loss turns
    # non-finite: SGD with a learning rate of 1e12 overflows in its first steps.
    store = tmp_path / "s.sqlite"
    status, err = run_cli([*tiny_search(store), "--lr", "1e12"], capsys)
    assert status == 1
    assert_one_line(err)
    assert "the teacher's training diverged" in err
    assert "learning rate too high" in err
