"""What the dashboard shows, read from a store opened read-only.

Every query opens its own short read transaction on a ``mode=ro`` connection: in WAL mode a
reader never takes the writer's lock, so a search writing the store goes on at its own pace
while the page follows it. Nothing here writes to the store, its folder or its journal.
"""

from __future__ import annotations

import bisect
import json
import math
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GRID_COLUMNS", "GridQuery", "StoreView"]

#: The evaluations grid's columns: name shown -> SQL expression (sortable and filterable).
GRID_COLUMNS: dict[str, str] = {
    "id": "id",
    "run": "run_id",
    "trial": "trial_id",
    "arch": "arch_key",
    "part": "part",
    "method": "method",
    "epochs": "epochs",
    "valid_acc": "valid_acc",
    "test_acc": "test_acc",
    "seconds": "cost_s",
    "worker": "worker",
    "started_at": "started_at",
    "finished_at": "finished_at",
    "status": "status",
}

#: Columns whose filter is a number compared for equality; the others match a substring.
_NUMERIC_COLUMNS = frozenset({"id", "trial", "part", "epochs"})

#: Bootstrap resamples behind each interval of the fidelities view (seeded: same page twice).
BOOTSTRAP_RESAMPLES = 400

#: Most evaluations the workers timeline draws (the newest ones): a browser draws 2,000 bars
#: at once without stalling, 100,000 it does not.
TIMELINE_LIMIT = 2000


@dataclass(frozen=True)
class GridQuery:
    """One page of the evaluations grid.

    Args:
        page: 0-based page number.
        page_size: rows per page (1 to 500).
        sort: a key of ``GRID_COLUMNS``.
        descending: sort order.
        filters: column -> text; numeric columns match exactly, others as a substring.
    """

    page: int = 0
    page_size: int = 50
    sort: str = "id"
    descending: bool = True
    filters: Mapping[str, str] = ()  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.page < 0:
            raise ValueError(f"page must be >= 0, got {self.page}")
        if not 1 <= self.page_size <= 500:
            raise ValueError(f"page_size must lie in [1, 500], got {self.page_size}")
        if self.sort not in GRID_COLUMNS:
            raise ValueError(
                f"unknown sort column {self.sort!r}; valid: {', '.join(GRID_COLUMNS)}"
            )
        filters = dict(self.filters or {})
        for column in filters:
            if column not in GRID_COLUMNS:
                raise ValueError(
                    f"unknown filter column {column!r}; valid: {', '.join(GRID_COLUMNS)}"
                )
        object.__setattr__(self, "filters", filters)


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_high(part: int, method: str) -> bool:
    """The full-data fidelity: the whole training set, no distillation."""
    return int(part) == 1 and method == "nokd"


def _fidelity_label(part: int, method: str, epochs: int | None) -> str:
    text = f"1/{part} {method}"
    return text if epochs is None else f"{text} {epochs} ep"


class StoreView:
    """A read-only view of a kdnas SQLite store for the dashboard and the HTML report.

    Args:
        path: the store file; it must exist and be a kdnas store.

    Raises:
        FileNotFoundError: no such file.
        kdnas.store.IncompatibleStoreError: the file is not a kdnas store.
    """

    def __init__(self, path: str | Path) -> None:
        from kdnas.store import SQLiteStore

        self.path = Path(path).resolve()
        SQLiteStore(self.path, read_only=True).close()  # refuses what is not a kdnas store
        self._local = threading.local()
        self._fidelity_cache: tuple[int, list[dict[str, Any]]] | None = None
        self._report_cache: tuple[tuple[int, int], dict[str, Any]] | None = None
        self._cache_lock = threading.Lock()
        self._first_view_cache: tuple[int, dict[str, Any]] | None = None
        self._pass_cache: tuple[int, Any] | None = None
        self._first_view_lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            location = urllib.parse.quote(str(self.path))
            try:
                connection = sqlite3.connect(f"file:{location}?mode=ro", uri=True, timeout=5.0)
                connection.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
            except sqlite3.OperationalError:
                # A store on read-only media whose journal files cannot be made: nothing can
                # write it either, so it is read as immutable.
                connection = sqlite3.connect(
                    f"file:{location}?mode=ro&immutable=1", uri=True, timeout=5.0
                )
            self._local.connection = connection
        return connection

    def _rows(self, query: str, parameters: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._connection().execute(query, tuple(parameters)).fetchall()

    def latest_id(self) -> int:
        """The id of the newest evaluation (0 for an empty store)."""
        return int(self._rows("SELECT COALESCE(MAX(id), 0) FROM evaluations")[0][0])

    # ------------------------------------------------------------------ runs

    def _beside(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)

    def _report_json(self) -> dict[str, Any]:
        """``<store>.report/report.json`` (what ``kdnas search`` writes), if readable; parsed
        again only when the file changed (it lists every evaluation, and the page asks for
        the overview at each new one)."""
        file = self._beside(".report") / "report.json"
        try:
            stat = file.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            with self._cache_lock:
                if self._report_cache is not None and self._report_cache[0] == stamp:
                    return self._report_cache[1]
            payload = json.loads(file.read_text())
        except (OSError, ValueError):
            return {}
        payload = payload if isinstance(payload, dict) else {}
        with self._cache_lock:
            self._report_cache = (stamp, payload)
        return payload

    def _teacher_seconds(self) -> float | None:
        """Summed training seconds of the teachers saved beside the store, if any."""
        folder = self._beside(".teachers")
        if not folder.is_dir():
            return None
        total = 0.0
        for record in folder.glob("*.json"):
            try:
                total += float(json.loads(record.read_text()).get("train_time_s", 0.0))
            except (OSError, ValueError, AttributeError, TypeError):
                continue
        return total

    def runs(self) -> list[dict[str, Any]]:
        """The overview: one dict per run, oldest first."""
        report = self._report_json()
        teacher_s = self._teacher_seconds()
        runs = self._rows(
            "SELECT run_id, fingerprint, config_json, package_version, created_at FROM runs "
            "ORDER BY created_at, run_id"
        )
        stats, improvements = self._pass(self.latest_id())
        pending = dict(
            self._rows(
                "SELECT a.run_id, COUNT(*) FROM asks a LEFT JOIN evaluations e "
                "ON a.run_id = e.run_id AND a.trial_id = e.trial_id "
                "WHERE e.id IS NULL GROUP BY a.run_id"
            )
        )
        overview = []
        for run_id, fingerprint, config_json, version, created_at in runs:
            try:
                config = json.loads(config_json)
            except ValueError:
                config = {"unreadable": config_json}
            count, ok, high_s, low_s, last, _, _ = stats.get(run_id, (0, 0, 0.0, 0.0, None, 0, 0))
            from_report = report if report.get("run_id") == run_id else {}
            settings = from_report.get("settings") or {}
            budget = settings.get("budget_evaluations")
            if pending.get(run_id):
                status = f"running ({pending[run_id]} evaluation(s) in progress)"
            elif from_report.get("stop_reason"):
                status = f"stopped: {from_report['stop_reason']}"
            else:
                status = "idle (no evaluation in progress)"
            steps = improvements.get(run_id)
            best = None
            if steps:  # the last improvement: the first evaluation to reach the best
                eval_id, arch, valid, test, _ = steps[-1]
                best = {"id": eval_id, "arch": arch, "valid_acc": valid, "test_acc": _finite(test)}
            overview.append(
                {
                    "run_id": run_id,
                    "status": status,
                    "evaluations": int(count or 0),
                    "ok": int(ok or 0),
                    "budget_evaluations": budget,
                    "seconds": {
                        # The report names the teacher of its run; without it, the teachers
                        # saved beside the store may be shared by several runs.
                        "teacher": (from_report.get("cost") or {}).get("teacher_s", teacher_s),
                        "teacher_shared": not from_report and teacher_s is not None,
                        "low": float(low_s or 0.0),
                        "full": float(high_s or 0.0),
                    },
                    "best": best,
                    "warnings": list(from_report.get("warnings") or []),
                    "settings": settings or config,
                    "fingerprint": fingerprint,
                    "package_version": version,
                    "created_at": created_at,
                    "last_finished_at": last,
                }
            )
        return overview

    def _pass(self, limit: int) -> tuple[dict[str, tuple[Any, ...]], dict[str, list[Any]]]:
        """The overview's and the incumbent's figures of the evaluations up to id ``limit``,
        in two scans of the table (kept for the newest ``limit``: the page's first view asks
        for both at once).

        Returns:
            per run (count, ok count, full-data seconds, low-fidelity seconds, newest
            finished_at, first id, last id), and per run its full-data improvements in tell
            order: (id, architecture key, valid, test, finished_at), each ok full-data
            result whose validation accuracy beats every earlier one of its run.
        """
        with self._cache_lock:
            if self._pass_cache is not None and self._pass_cache[0] == limit:
                return self._pass_cache[1]
        stats = {
            row[0]: row[1:]
            for row in self._rows(
                "SELECT run_id, COUNT(*), SUM(status = 'ok'), "
                "SUM(CASE WHEN part = 1 AND method = 'nokd' THEN cost_s ELSE 0 END), "
                "SUM(CASE WHEN part = 1 AND method = 'nokd' THEN 0 ELSE cost_s END), "
                "MAX(finished_at), MIN(id), MAX(id) FROM evaluations WHERE id <= ? "
                "GROUP BY run_id",
                (limit,),
            )
        }
        # A run's evaluations are told in id order: the store takes a row's ``seq`` in the
        # write transaction that gives it its id, so both rise together and no sort is
        # needed (a window function ordered by seq took 0.4 s on 100,000 rows).
        improvements: dict[str, list[Any]] = {}
        for run_id, eval_id, arch, valid, test, finished in self._rows(
            "SELECT run_id, id, arch_key, valid_acc, test_acc, finished_at FROM evaluations "
            "WHERE id <= ? AND part = 1 AND method = 'nokd' AND status = 'ok' "
            "AND valid_acc IS NOT NULL ORDER BY id",
            (limit,),
        ):
            steps = improvements.setdefault(run_id, [])
            if not steps or valid > steps[-1][2]:
                steps.append((eval_id, arch, float(valid), test, finished))
        with self._cache_lock:
            self._pass_cache = (limit, (stats, improvements))
        return stats, improvements

    # ------------------------------------------------------------------ incumbent

    def incumbent(self, upto: int | None = None) -> dict[str, dict[str, Any]]:
        """Per run, the full-fidelity incumbent after each change of it.

        Args:
            upto: only evaluations with an id up to this one (None: all); the page then
                asks for the newer ones alone and extends the series itself.

        Returns:
            run -> {"wall_s", "evaluation", "valid_acc", "test_acc"}: parallel lists, one
            entry each time the best validation accuracy improved plus the run's last
            evaluation (so steps reach the end), with "tail" (whether the last entry is that
            end point), "count" (evaluations told) and "origin" (Unix seconds the run's first
            evaluation started); ``wall_s`` is seconds since then, ``evaluation`` the 1-based
            number of evaluations told.
        """
        limit = self.latest_id() if upto is None else int(upto)
        stats, improvements = self._pass(limit)
        series: dict[str, dict[str, Any]] = {}
        for run_id in sorted(stats):
            count, first_id, last_id = stats[run_id][0], stats[run_id][5], stats[run_id][6]
            origin = float(self._rows(
                "SELECT COALESCE(started_at, finished_at, 0) FROM evaluations WHERE id = ?",
                (first_id,),
            )[0][0])  # fmt: skip
            last_finished = self._rows(
                "SELECT finished_at FROM evaluations WHERE id = ?", (last_id,)
            )[0][0]
            number = self._numbering(run_id, int(count), int(first_id), int(last_id))
            entry: dict[str, Any] = {
                "wall_s": [],
                "evaluation": [],
                "valid_acc": [],
                "test_acc": [],
                "count": int(count),
                "origin": origin,
                "tail": False,
                "best": None,
            }
            for eval_id, _, valid, test, finished in improvements.get(run_id, []):
                entry["wall_s"].append(float(finished or origin) - origin)
                entry["evaluation"].append(number(eval_id))
                entry["valid_acc"].append(valid)
                entry["test_acc"].append(_finite(test))
            if entry["valid_acc"]:
                entry["best"] = entry["valid_acc"][-1]
                if entry["evaluation"][-1] != entry["count"]:
                    entry["tail"] = True
                    entry["wall_s"].append(float(last_finished or origin) - origin)
                    entry["evaluation"].append(entry["count"])
                    entry["valid_acc"].append(entry["best"])
                    entry["test_acc"].append(entry["test_acc"][-1])
            series[run_id] = entry
        return series

    def _numbering(self, run_id: str, count: int, first_id: int, last_id: int) -> Any:
        """A function: evaluation id -> its 1-based number within its run (ids up to
        ``last_id``, of which the run holds ``count``)."""
        if last_id - first_id + 1 == count:
            # The run's ids are contiguous (one run in the store, or runs one after another).
            return lambda eval_id: eval_id - first_id + 1
        ids = [
            row[0]
            for row in self._rows(
                "SELECT id FROM evaluations WHERE run_id = ? AND id <= ? ORDER BY id",
                (run_id, last_id),
            )
        ]
        return lambda eval_id: bisect.bisect_right(ids, eval_id)

    # ------------------------------------------------------------------ fidelities

    def fidelities(self) -> list[dict[str, Any]]:
        """Each low fidelity of each run against the full-data results of the same
        architectures: the pairs, Spearman and Kendall correlations with 95 % bootstrap
        intervals (recomputed only when the store has new evaluations)."""
        latest = self.latest_id()
        with self._cache_lock:
            if self._fidelity_cache is not None and self._fidelity_cache[0] == latest:
                return self._fidelity_cache[1]
        rows = self._rows(
            "SELECT run_id, arch_key, part, method, epochs, valid_acc, test_acc FROM evaluations "
            "WHERE status = 'ok' AND id <= ? ORDER BY id",
            (latest,),
        )
        high: dict[tuple[str, str], float] = {}
        low: dict[tuple[str, int, str, int | None], dict[str, float]] = {}
        for run_id, arch, part, method, epochs, valid, test in rows:
            if _is_high(part, method):
                if test is not None:
                    high.setdefault((run_id, arch), float(test))
            elif valid is not None:
                low.setdefault((run_id, part, method, epochs), {}).setdefault(arch, float(valid))
        views = []
        for (run_id, part, method, epochs), by_arch in sorted(
            low.items(), key=lambda item: (item[0][0], item[0][1], item[0][2], item[0][3] or 0)
        ):
            archs = [arch for arch in by_arch if (run_id, arch) in high]
            x = np.array([by_arch[arch] for arch in archs], dtype=float)
            y = np.array([high[(run_id, arch)] for arch in archs], dtype=float)
            views.append(
                {
                    "run_id": run_id,
                    "fidelity": _fidelity_label(part, method, epochs),
                    "part": part,
                    "method": method,
                    "epochs": epochs,
                    "n": len(archs),
                    "archs": archs,
                    "low_valid_acc": x.tolist(),
                    "full_test_acc": y.tolist(),
                    **rank_correlations(x, y),
                }
            )
        with self._cache_lock:
            self._fidelity_cache = (latest, views)
        return views

    # ------------------------------------------------------------------ grid

    def evaluations(self, query: GridQuery) -> dict[str, Any]:
        """One page of the evaluations grid, sorted and filtered by SQLite."""
        clauses, parameters = [], []
        for column, text in query.filters.items():
            text = str(text).strip()
            if not text:
                continue
            expression = GRID_COLUMNS[column]
            if column in _NUMERIC_COLUMNS:
                try:
                    parameters.append(int(text))
                except ValueError:
                    raise ValueError(
                        f"filter {column}: expected an integer, got {text!r}"
                    ) from None
                clauses.append(f"{expression} = ?")
            else:
                # instr, not LIKE: the user's % and _ are plain characters.
                clauses.append(f"instr(CAST({expression} AS TEXT), ?) > 0")
                parameters.append(text)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        total = int(self._rows(f"SELECT COUNT(*) FROM evaluations {where}", parameters)[0][0])
        order = "DESC" if query.descending else "ASC"
        rows = self._rows(
            f"SELECT {', '.join(GRID_COLUMNS.values())} FROM evaluations {where} "
            f"ORDER BY {GRID_COLUMNS[query.sort]} {order}, id {order} LIMIT ? OFFSET ?",
            [*parameters, query.page_size, query.page * query.page_size],
        )
        names = list(GRID_COLUMNS)
        return {
            "total": total,
            "page": query.page,
            "page_size": query.page_size,
            "columns": names,
            "rows": [dict(zip(names, row, strict=True)) for row in rows],
        }

    def evaluation(self, eval_id: int) -> dict[str, Any] | None:
        """One evaluation in full: the architecture's description, multiply-adds, parameters."""
        from kdnas.core import Architecture
        from kdnas.spaces import get_space

        rows = self._rows(
            "SELECT run_id, trial_id, arch_key, arch_json, space, part, method, epochs, seed, "
            "valid_acc, test_acc, cost_s, status, metrics_json, info_json, worker, started_at, "
            "finished_at FROM evaluations WHERE id = ?",
            (int(eval_id),),
        )
        if not rows:
            return None
        names = (
            "run_id", "trial", "arch_key", "arch_json", "space", "part", "method", "epochs",
            "seed", "valid_acc", "test_acc", "seconds", "status", "metrics", "info", "worker",
            "started_at", "finished_at",
        )  # fmt: skip
        entry: dict[str, Any] = dict(zip(names, rows[0], strict=True))
        entry["id"] = int(eval_id)
        for key in ("metrics", "info"):
            try:
                entry[key] = json.loads(entry[key])
            except ValueError:
                entry[key] = {}
        description = None
        try:
            arch = Architecture.from_json(entry["arch_json"])
            space = get_space(entry["space"])
            description = space.describe(arch)
            entry.setdefault("metrics", {}).setdefault("params", space.parameter_count(arch))
        except (ValueError, KeyError, TypeError):
            pass
        entry["description"] = description
        entry["params"] = entry["metrics"].get("params")
        entry["multiply_adds"] = entry["metrics"].get("multiply_adds")
        return _json_ready(entry)

    # ------------------------------------------------------------------ workers and updates

    def workers(
        self, upto: int | None = None, limit: int = TIMELINE_LIMIT
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` evaluations (up to id ``upto``) as (worker, start, end) bars,
        oldest first."""
        rows = self._rows(
            "SELECT id, run_id, worker, started_at, finished_at, part, method, status "
            "FROM evaluations WHERE id <= ? ORDER BY id DESC LIMIT ?",
            (self.latest_id() if upto is None else int(upto), int(limit)),
        )
        names = ("id", "run_id", "worker", "started_at", "finished_at", "part", "method", "status")
        return [dict(zip(names, row, strict=True)) for row in reversed(rows)]

    def updates(self, since: int) -> dict[str, Any]:
        """Evaluations newer than id ``since`` (what the page lacks), at most 1,000."""
        rows = self._rows(
            f"SELECT {', '.join(GRID_COLUMNS.values())} FROM evaluations WHERE id > ? "
            "ORDER BY id LIMIT 1000",
            (int(since),),
        )
        names = list(GRID_COLUMNS)
        new = [dict(zip(names, row, strict=True)) for row in rows]
        latest = new[-1]["id"] if new else max(int(since), 0)
        return {"latest": latest, "rows": _json_ready(new), "time": time.time()}

    def first_view(self) -> dict[str, Any]:
        """What the page shows first, in one answer: the runs, the incumbent, the grid's
        first page (newest 50) and the workers timeline, up to the newest id.

        Kept until a newer evaluation arrives; computed under a lock, so a page that asks
        while the server warms up (``DashboardServer.warm_up``) waits for that computation
        instead of repeating it.
        """
        with self._first_view_lock:
            latest = self.latest_id()
            if self._first_view_cache is not None and self._first_view_cache[0] == latest:
                return self._first_view_cache[1]
            view = _json_ready(
                {
                    "store": str(self.path),
                    "latest": latest,
                    "runs": self.runs(),
                    "incumbent": self.incumbent(latest),
                    "evaluations": self.evaluations(GridQuery()),
                    "workers": self.workers(latest),
                }
            )
            self._first_view_cache = (latest, view)
            return view

    def snapshot(self) -> dict[str, Any]:
        """Every view at once: what ``kdnas report --html`` inlines."""
        latest = self.latest_id()
        return {
            "store": str(self.path),
            "latest": latest,
            "written_at": time.time(),
            "runs": _json_ready(self.runs()),
            "incumbent": _json_ready(self.incumbent(latest)),
            "fidelities": _json_ready(self.fidelities()),
            "evaluations": _json_ready(self.evaluations(GridQuery(page_size=500))),
            "workers": _json_ready(self.workers(latest)),
        }

    def close(self) -> None:
        """Close this thread's connection (other threads' close when they end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


def rank_correlations(
    x: np.ndarray, y: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """Spearman and Kendall (tau-b) correlation of ``x`` and ``y`` with percentile bootstrap
    intervals (95 %, pairs resampled with replacement, seeded).

    The resamples are computed as arrays at once (a loop over scipy calls took seconds for
    400 resamples on a shared core, and the page waits for them). Fewer than three pairs, or
    a constant vector, give None for everything; a resample whose values are constant is
    left out of the interval.
    """
    from scipy import stats

    empty = {
        "spearman": None,
        "kendall": None,
        "spearman_ci": None,
        "kendall_ci": None,
        "resamples": 0,
    }
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0.0 or np.ptp(y) == 0.0:
        return empty
    result: dict[str, Any] = {
        "spearman": float(stats.spearmanr(x, y)[0]),
        "kendall": float(stats.kendalltau(x, y)[0]),
    }
    # Beyond 500 pairs fewer resamples (at least 100): the interval is then narrow, and a
    # store of 10,000 pairs would otherwise keep a core busy for seconds at each update.
    resamples = max(min(resamples, 100), min(resamples, resamples * 500 // len(x)))
    result["resamples"] = resamples
    index = np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))
    a, b = x[index], y[index]
    for name, values in (("spearman", _spearman_rows(a, b)), ("kendall", _kendall_rows(a, b))):
        finite = values[np.isfinite(values)]
        result[f"{name}_ci"] = (
            [float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5))]
            if len(finite)
            else None
        )
    return result


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (NaN where a row is constant)."""
    from scipy import stats

    ra = stats.rankdata(a, axis=1)
    rb = stats.rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denominator = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(axis=1) / denominator


def _kendall_rows(a: np.ndarray, b: np.ndarray, chunk_elements: int = 2_000_000) -> np.ndarray:
    """Kendall's tau-b of each row pair, from the signs of all pairs (NaN where a row is
    constant); rows are taken in chunks of at most ``chunk_elements`` pair signs."""
    n = a.shape[1]
    if n * (n - 1) // 2 * a.shape[0] > 4 * chunk_elements:
        # Many pairs: scipy's O(n log n) tau-b per row beats the O(n^2) signs.
        from scipy import stats

        return np.array([stats.kendalltau(x, y)[0] for x, y in zip(a, b, strict=True)])
    upper = np.triu_indices(n, 1)
    rows = max(1, chunk_elements // max(1, len(upper[0])))
    out = np.empty(a.shape[0])
    for start in range(0, a.shape[0], rows):
        part_a, part_b = a[start : start + rows], b[start : start + rows]
        sign_a = np.sign(part_a[:, upper[0]] - part_a[:, upper[1]]).astype(np.int8)
        sign_b = np.sign(part_b[:, upper[0]] - part_b[:, upper[1]]).astype(np.int8)
        concordance = (sign_a.astype(np.int64) * sign_b).sum(axis=1)
        untied = np.sqrt(
            np.count_nonzero(sign_a, axis=1).astype(float) * np.count_nonzero(sign_b, axis=1)
        )
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + rows] = np.where(untied > 0, concordance / untied, np.nan)
    return out


def _json_ready(value: Any) -> Any:
    """NaN and infinities become None (standard JSON), tuples lists."""
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return _finite(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
