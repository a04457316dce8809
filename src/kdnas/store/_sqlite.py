"""The SQLite store of finished evaluations.

Design:
    * One row per finished evaluation, committed in its own transaction the moment the
      evaluation ends, so a search killed at any instant (kill -9) loses at most the
      evaluations that were still running.
    * Every suggestion handed out is recorded too (an "ask"), and asks and tells share one
      per-run sequence number. The history is enough to put a fresh optimizer with the same
      seed back in the exact state it had, even when several evaluations ran in parallel and
      finished out of order (see ``kdnas.execute``).
    * WAL journal, a busy timeout and retries with backoff: several processes (parallel
      searches, several ``kdnas bench build`` workers) can write one file at once. Every write
      is a short ``BEGIN IMMEDIATE`` transaction, so writers queue instead of failing.
    * A run carries the fingerprint of its configuration and the kdnas version that made it;
      resuming it under another configuration or an incompatible version is refused.
    * A file that is not a kdnas store is refused before anything is written to it, and
      ``read_only=True`` opens a store without writing anything (read-only media included).

Only the standard library's ``sqlite3`` is used. ``SQLiteStore(":memory:")`` is an ephemeral
store for a single process.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import socket
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from kdnas.core import Architecture, EvalResult, Fidelity, Suggestion
from kdnas.store._protocol import check_answer, check_resumable, describe_config_difference
from kdnas.store._records import (
    SCHEMA_VERSION,
    IncompatibleStoreError,
    RunInfo,
    StoredEvaluation,
    StoreEvent,
    canonical_json,
    config_fingerprint,
)

__all__ = ["SQLiteStore", "describe_config_difference"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    config_json TEXT NOT NULL,
    package_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS asks (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    trial_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    arch_key TEXT NOT NULL,
    arch_json TEXT NOT NULL,
    part INTEGER NOT NULL,
    method TEXT NOT NULL,
    epochs INTEGER,
    asked_at REAL NOT NULL,
    PRIMARY KEY (run_id, trial_id)
);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    trial_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    arch_key TEXT NOT NULL,
    arch_json TEXT NOT NULL,
    space TEXT NOT NULL,
    part INTEGER NOT NULL,
    method TEXT NOT NULL,
    epochs INTEGER,
    seed INTEGER,
    loss_json TEXT NOT NULL,
    subset_hash TEXT,
    valid_acc REAL,
    test_acc REAL,
    cost_s REAL NOT NULL,
    status TEXT NOT NULL,
    metrics_json TEXT NOT NULL,
    info_json TEXT NOT NULL,
    started_at REAL,
    finished_at REAL,
    package_version TEXT NOT NULL,
    worker TEXT NOT NULL,
    UNIQUE (run_id, trial_id)
);
CREATE INDEX IF NOT EXISTS evaluations_by_fidelity
    ON evaluations (run_id, arch_key, part, method);
"""

_EVAL_COLUMNS = (
    "run_id, trial_id, seq, arch_key, arch_json, space, part, method, epochs, seed, loss_json, "
    "subset_hash, valid_acc, test_acc, cost_s, status, metrics_json, info_json, started_at, "
    "finished_at, package_version, worker"
)


def _current_version() -> str:
    from kdnas import __version__

    return __version__


def _to_sql_float(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def _from_sql_float(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _json_dumps(value: Mapping[str, Any]) -> str:
    # NaN and infinities are legal in metrics (a diverged loss); Python's json reads them back.
    return json.dumps(dict(value), sort_keys=True, allow_nan=True, default=str)


class SQLiteStore:
    """A persistent store of evaluations in one SQLite file (WAL mode).

    Usable as a context manager; every method is safe to call from several threads of one
    process, and several processes may open the same file.

    Args:
        path: the database file (created with its folder if absent), or ":memory:".
        busy_timeout_s: how long a write waits for another process's lock, in seconds.
        retries: how many times a write is retried after the busy timeout expired.
        worker: a name for this writer, recorded with every evaluation (default host:pid).
        read_only: open an existing store for reading only: nothing is created or written
            (not even the journal mode), so a store on read-only media can be read.

    Raises:
        IncompatibleStoreError: the file is not a kdnas store, or one of a newer schema.
        OSError: the file cannot be opened (a folder that cannot be written, a name too
            long; FileNotFoundError for a missing store opened ``read_only``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 60.0,
        retries: int = 8,
        worker: str | None = None,
        read_only: bool = False,
    ) -> None:
        if busy_timeout_s <= 0:
            raise ValueError(f"busy_timeout_s must be positive, got {busy_timeout_s!r}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        self.path = str(path)
        self.busy_timeout_s = float(busy_timeout_s)
        self.retries = int(retries)
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.read_only = bool(read_only)
        self._lock = threading.RLock()
        if self.path == ":memory:" and self.read_only:
            raise ValueError("an in-memory store cannot be opened read-only")
        if self.path != ":memory:":
            self._check_openable(Path(self.path))
        try:
            self._open()
        except BaseException:
            # A refused file must not stay open: a leaked connection keeps SQLite's lock, and
            # the next open of the same path (a retry, a fixed copy) would wait for it.
            connection = getattr(self, "_connection", None)
            if connection is not None:
                connection.close()
            raise

    def _open(self) -> None:
        try:
            self._connection = self._connect(immutable=False)
            try:
                self._retrying(self._initialise)
            except sqlite3.OperationalError as error:
                if not self.read_only or not any(
                    text in str(error) for text in ("unable to open", "readonly")
                ):
                    raise
                # A WAL store on read-only media: SQLite cannot make its shared-memory file,
                # and nothing can write the file, so it may be read as immutable.
                self._connection.close()
                self._connection = self._connect(immutable=True)
                self._retrying(self._initialise)
        except sqlite3.OperationalError as error:
            if "unable to open" not in str(error) and "readonly" not in str(error):
                raise
            # SQLite makes its journal files beside the store: the folder must be writable.
            raise sqlite3.OperationalError(
                f"{error}; is the store's folder writable? (`kdnas bench export` only "
                f"reads and also works on read-only media)"
            ) from None
        except sqlite3.DatabaseError as error:
            raise IncompatibleStoreError(
                f"store {self.path}: not a kdnas SQLite store ({error})"
            ) from None

    # ------------------------------------------------------------------ plumbing

    def _check_openable(self, file: Path) -> None:
        """Raise the operating system's own error (naming the file) if ``file`` cannot be
        opened as asked, rather than SQLite's vague "unable to open database file"."""
        if file.is_dir():
            raise IncompatibleStoreError(f"store {self.path}: is a folder, expected a file")
        if self.read_only:
            os.close(os.open(file, os.O_RDONLY))
            return
        if not file.exists():
            file.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(file, os.O_RDWR | os.O_CREAT, 0o666))

    def _connect(self, *, immutable: bool) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, so each write is one explicit,
        # short transaction.
        options = {"timeout": self.busy_timeout_s, "isolation_level": None}
        if not self.read_only:
            return sqlite3.connect(self.path, check_same_thread=False, **options)
        location = urllib.parse.quote(str(Path(self.path).resolve()))
        query = "mode=ro" + ("&immutable=1" if immutable else "")
        return sqlite3.connect(
            f"file:{location}?{query}", uri=True, check_same_thread=False, **options
        )

    def _initialise(self) -> None:
        connection = self._connection
        connection.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
        # The tables are checked before anything is written: a foreign database is refused
        # untouched (its journal mode included).
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if tables and "meta" not in tables:
            raise IncompatibleStoreError(
                f"store {self.path}: an SQLite database, but not a kdnas store "
                f"(it holds the tables {', '.join(sorted(tables))})"
            )
        if self.read_only:
            row = None
            if "meta" in tables:
                row = connection.execute(
                    "SELECT value FROM meta WHERE key='schema_version'"
                ).fetchone()
            self._check_schema_version(None if row is None else row[0])
            return
        if self.path != ":memory:":
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("store %s: WAL journal unavailable (mode %s)", self.path, mode)
        # FULL: a committed evaluation survives a power cut, not only a killed process; the
        # fsync costs milliseconds against evaluations of seconds.
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        with self._transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            row = connection.execute(
                "SELECT value FROM meta WHERE key='schema_version'"
            ).fetchone()
            if row is None:
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES ('created_by', ?)",
                    (f"kdnas {_current_version()}",),
                )
            else:
                self._check_schema_version(row[0])

    def _check_schema_version(self, version: str | None) -> None:
        if version is None:
            raise IncompatibleStoreError(f"store {self.path}: not a kdnas store (no schema)")
        if int(version) > SCHEMA_VERSION:
            raise IncompatibleStoreError(
                f"store {self.path}: written with store schema {version} by a newer kdnas; "
                f"this kdnas {_current_version()} reads schema {SCHEMA_VERSION} at most"
            )

    class _Transaction:
        def __init__(self, store: SQLiteStore) -> None:
            self.store = store

        def __enter__(self) -> sqlite3.Connection:
            self.store._lock.acquire()
            try:
                self.store._connection.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.store._lock.release()
                raise
            return self.store._connection

        def __exit__(self, kind: object, error: object, traceback: object) -> None:
            try:
                if kind is None:
                    self.store._connection.execute("COMMIT")
                else:
                    self.store._connection.execute("ROLLBACK")
            finally:
                self.store._lock.release()

    def _transaction(self) -> SQLiteStore._Transaction:
        return SQLiteStore._Transaction(self)

    def _retrying(self, operation: Callable[[], _T]) -> _T:
        """Run ``operation`` (one transaction), retrying while another writer holds the lock."""
        delay = 0.05
        for attempt in range(self.retries + 1):
            try:
                return operation()
            except sqlite3.OperationalError as error:
                text = str(error).lower()
                if ("locked" not in text and "busy" not in text) or attempt == self.retries:
                    if self.path in str(error):
                        raise
                    # A full disk or an I/O error: name the store it happened to.
                    raise sqlite3.OperationalError(f"store {self.path}: {error}") from error
                logger.warning(
                    "store %s busy (%s); retry %d of %d",
                    self.path,
                    error,
                    attempt + 1,
                    self.retries,
                )
                time.sleep(delay * (1.0 + random.random()))
                delay = min(delay * 2.0, 5.0)
        raise AssertionError("unreachable")

    def _read(self, query: str, parameters: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        def operation() -> list[tuple[Any, ...]]:
            with self._lock:
                return self._connection.execute(query, parameters).fetchall()

        return self._retrying(operation)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._connection.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # ------------------------------------------------------------------ runs

    def open_run(
        self,
        run_id: str,
        config: Mapping[str, Any],
        *,
        package_version: str | None = None,
    ) -> RunInfo:
        """Create the run ``run_id``, or check that an existing one may be resumed.

        Args:
            run_id: the run's name.
            config: everything that decides the run's results (JSON-representable); its
                fingerprint is stored with the run.
            package_version: the kdnas version (default: the installed one).

        Returns:
            The run (newly created, or the stored one).

        Raises:
            RunMismatchError: the store holds ``run_id`` made with another configuration or an
                incompatible kdnas version; the message names the differences.
        """
        if not run_id:
            raise ValueError("run_id must be a non-empty string")
        version = package_version or _current_version()
        config = json.loads(canonical_json(dict(config)))
        fingerprint = config_fingerprint(config)

        def operation() -> RunInfo:
            with self._transaction() as connection:
                row = connection.execute(
                    "SELECT fingerprint, config_json, package_version, created_at FROM runs "
                    "WHERE run_id = ?",
                    (run_id,),
                ).fetchone()
                if row is None:
                    created_at = time.time()
                    connection.execute(
                        "INSERT INTO runs (run_id, fingerprint, config_json, package_version, "
                        "created_at) VALUES (?, ?, ?, ?, ?)",
                        (run_id, fingerprint, canonical_json(config), version, created_at),
                    )
                    return RunInfo(run_id, fingerprint, config, version, created_at)
            stored = self._run_from_row((run_id, *row))
            self._check_resumable(stored, fingerprint, config, version)
            return stored

        return self._retrying(operation)

    def _check_resumable(
        self, stored: RunInfo, fingerprint: str, config: Mapping[str, Any], version: str
    ) -> None:
        check_resumable(self.path, stored, fingerprint, config, version)

    def run(self, run_id: str) -> RunInfo | None:
        """The run ``run_id``, or None if the store has no such run."""
        rows = self._read(
            "SELECT fingerprint, config_json, package_version, created_at FROM runs "
            "WHERE run_id = ?",
            (run_id,),
        )
        if not rows:
            return None
        return self._run_from_row((run_id, *rows[0]))

    def runs(self) -> list[RunInfo]:
        """Every run of the store, oldest first."""
        rows = self._read(
            "SELECT run_id, fingerprint, config_json, package_version, created_at FROM runs "
            "ORDER BY created_at, run_id"
        )
        return [self._run_from_row(row) for row in rows]

    def _run_from_row(self, row: tuple[Any, ...]) -> RunInfo:
        """The run of a row ``(run_id, fingerprint, config_json, package_version, created_at)``.

        Raises:
            IncompatibleStoreError: the row's configuration is not JSON (the message names the
                store and the run).
        """
        run_id, fingerprint, config_json, version, created_at = row
        try:
            config = json.loads(config_json)
        except (TypeError, ValueError) as error:
            raise IncompatibleStoreError(
                f"store {self.path}: the configuration of run {run_id!r} is corrupt ({error}); "
                f"repair that row of table runs or delete the run"
            ) from None
        return RunInfo(run_id, fingerprint, config, version, created_at)

    def _require_run(self, connection: sqlite3.Connection, run_id: str) -> int:
        row = connection.execute(
            "SELECT next_seq FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"store {self.path}: no run {run_id!r}; call open_run first")
        connection.execute("UPDATE runs SET next_seq = next_seq + 1 WHERE run_id = ?", (run_id,))
        return int(row[0])

    # ------------------------------------------------------------------ writes

    def record_ask(self, run_id: str, suggestion: Suggestion) -> int:
        """Record that ``suggestion`` was handed out; returns its sequence number."""
        arch, fidelity = suggestion.arch, suggestion.fidelity

        def operation() -> int:
            with self._transaction() as connection:
                seq = self._require_run(connection, run_id)
                try:
                    connection.execute(
                        "INSERT INTO asks (run_id, trial_id, seq, arch_key, arch_json, part, "
                        "method, epochs, asked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            run_id,
                            suggestion.trial_id,
                            seq,
                            arch.key(),
                            arch.to_json(),
                            fidelity.part,
                            fidelity.method,
                            fidelity.epochs,
                            time.time(),
                        ),
                    )
                except sqlite3.IntegrityError:
                    raise self._same_run_error(run_id, "suggestion", suggestion) from None
                return seq

        return self._retrying(operation)

    def put(
        self,
        run_id: str,
        suggestion: Suggestion,
        result: EvalResult,
        *,
        loss_hyperparameters: Mapping[str, Any] | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        worker: str | None = None,
        package_version: str | None = None,
    ) -> StoredEvaluation:
        """Commit one finished evaluation (its own transaction, durable on return).

        Args:
            run_id: the run (created by ``open_run``).
            suggestion: the suggestion the evaluation answers.
            result: what the evaluation returned (any status).
            loss_hyperparameters: the loss's hyperparameters, stored as JSON.
            started_at: Unix time (seconds) the evaluation started; default finished - cost.
            finished_at: Unix time (seconds) it ended; default now.
            worker: where it ran; default this store's worker name.
            package_version: default the installed kdnas version.

        Raises:
            ValueError: the result is for another architecture or fidelity than the
                suggestion, or the run already holds a result for this trial.
        """
        arch, fidelity = suggestion.arch, suggestion.fidelity
        check_answer(suggestion, result)
        finished = time.time() if finished_at is None else float(finished_at)
        started = finished - result.cost_s if started_at is None else float(started_at)
        version = package_version or _current_version()
        loss = dict(loss_hyperparameters or {})
        worker_name = worker or self.worker

        def operation() -> int:
            with self._transaction() as connection:
                seq = self._require_run(connection, run_id)
                try:
                    connection.execute(
                        f"INSERT INTO evaluations ({_EVAL_COLUMNS}) VALUES "
                        f"({', '.join('?' * 22)})",
                        (
                            run_id,
                            suggestion.trial_id,
                            seq,
                            arch.key(),
                            arch.to_json(),
                            arch.space,
                            fidelity.part,
                            fidelity.method,
                            fidelity.epochs,
                            result.seed,
                            _json_dumps(loss),
                            result.info.get("subset_hash"),
                            _to_sql_float(result.valid_acc),
                            _to_sql_float(result.test_acc),
                            float(result.cost_s),
                            result.status,
                            _json_dumps(result.metrics),
                            _json_dumps(result.info),
                            started,
                            finished,
                            version,
                            worker_name,
                        ),
                    )
                except sqlite3.IntegrityError:
                    raise self._same_run_error(run_id, "result", suggestion) from None
                return seq

        seq = self._retrying(operation)
        return StoredEvaluation(
            run_id=run_id,
            trial_id=suggestion.trial_id,
            seq=seq,
            arch=arch,
            result=result,
            loss_hyperparameters=loss,
            started_at=started,
            finished_at=finished,
            package_version=version,
            worker=worker_name,
        )

    def _same_run_error(self, run_id: str, what: str, suggestion: Suggestion) -> ValueError:
        return ValueError(
            f"store {self.path}: run {run_id!r} already holds a {what} for trial "
            f"{suggestion.trial_id}: is another process running the same run? Give each "
            f"concurrent search its own --run-id"
        )

    # ------------------------------------------------------------------ reads

    def _evaluation_from_row(self, row: tuple[Any, ...]) -> StoredEvaluation:
        """The evaluation of a row of ``SELECT id, <the evaluation columns>``.

        Raises:
            IncompatibleStoreError: the row is corrupt (the message names the store and row).
        """
        try:
            return self._parse_evaluation(row[1:])
        except (ValueError, TypeError, KeyError) as error:
            raise IncompatibleStoreError(
                f"store {self.path}: evaluation row id {row[0]} is corrupt ({error}); "
                f"repair or delete that row"
            ) from None

    @staticmethod
    def _parse_evaluation(row: tuple[Any, ...]) -> StoredEvaluation:
        (
            run_id,
            trial_id,
            seq,
            arch_key,
            arch_json,
            _space,
            part,
            method,
            epochs,
            seed,
            loss_json,
            _subset_hash,
            valid_acc,
            test_acc,
            cost_s,
            status,
            metrics_json,
            info_json,
            started_at,
            finished_at,
            package_version,
            worker,
        ) = row
        fidelity = Fidelity(part=int(part), method=method, epochs=epochs)
        result = EvalResult(
            arch_key=arch_key,
            fidelity=fidelity,
            valid_acc=_from_sql_float(valid_acc),
            test_acc=_from_sql_float(test_acc),
            cost_s=float(cost_s),
            status=status,
            seed=seed,
            metrics=json.loads(metrics_json),
            info=json.loads(info_json),
        )
        return StoredEvaluation(
            run_id=run_id,
            trial_id=int(trial_id),
            seq=int(seq),
            arch=Architecture.from_json(arch_json),
            result=result,
            loss_hyperparameters=json.loads(loss_json),
            started_at=_from_sql_float(started_at),
            finished_at=_from_sql_float(finished_at),
            package_version=package_version,
            worker=worker,
        )

    def results(self, run_id: str | None = None) -> list[StoredEvaluation]:
        """Finished evaluations in commit order, of one run or (None) of every run."""
        if run_id is None:
            rows = self._read(f"SELECT id, {_EVAL_COLUMNS} FROM evaluations ORDER BY id")
        else:
            rows = self._read(
                f"SELECT id, {_EVAL_COLUMNS} FROM evaluations WHERE run_id = ? ORDER BY seq",
                (run_id,),
            )
        return [self._evaluation_from_row(row) for row in rows]

    def __iter__(self) -> Iterator[StoredEvaluation]:
        return iter(self.results())

    def count(self, run_id: str | None = None) -> int:
        """Number of finished evaluations of one run, or of the whole store."""
        if run_id is None:
            return int(self._read("SELECT COUNT(*) FROM evaluations")[0][0])
        return int(
            self._read("SELECT COUNT(*) FROM evaluations WHERE run_id = ?", (run_id,))[0][0]
        )

    def lookup(
        self,
        arch_key: str,
        fidelity: Fidelity,
        seed: int | None = None,
        *,
        run_id: str | None = None,
    ) -> StoredEvaluation | None:
        """The first finished evaluation of an architecture at a fidelity, or None.

        Args:
            arch_key: ``Architecture.key()``.
            fidelity: part, method and epochs must all match.
            seed: when given, the evaluation's seed must match too.
            run_id: when given, only that run is searched.
        """
        query = (
            f"SELECT id, {_EVAL_COLUMNS} FROM evaluations WHERE arch_key = ? AND part = ? "
            "AND method = ? AND epochs IS ?"
        )
        parameters: list[Any] = [arch_key, fidelity.part, fidelity.method, fidelity.epochs]
        if seed is not None:
            query += " AND seed = ?"
            parameters.append(seed)
        if run_id is not None:
            query += " AND run_id = ?"
            parameters.append(run_id)
        rows = self._read(query + " ORDER BY id LIMIT 1", tuple(parameters))
        return self._evaluation_from_row(rows[0]) if rows else None

    def events(self, run_id: str) -> list[StoreEvent]:
        """The run's history of asks and tells, in the order they happened."""
        asks = self._read(
            "SELECT trial_id, seq, arch_json, part, method, epochs FROM asks WHERE run_id = ?",
            (run_id,),
        )
        events = [
            StoreEvent(
                kind="ask",
                seq=int(seq),
                trial_id=int(trial_id),
                arch=Architecture.from_json(arch_json),
                fidelity=Fidelity(part=int(part), method=method, epochs=epochs),
            )
            for trial_id, seq, arch_json, part, method, epochs in asks
        ]
        events.extend(
            StoreEvent(
                kind="tell",
                seq=evaluation.seq,
                trial_id=evaluation.trial_id,
                arch=evaluation.arch,
                fidelity=evaluation.result.fidelity,
                evaluation=evaluation,
            )
            for evaluation in self.results(run_id)
        )
        events.sort(key=lambda event: event.seq)
        return events
