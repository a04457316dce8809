"""Stores with known contents for the dashboard's tests (and its benchmark)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdnas.core import EvalResult, Fidelity, Suggestion
from kdnas.spaces import get_space
from kdnas.store import SQLiteStore

#: The full-data fidelity and two low ones, as a search with --part 9 and --part 3 has them.
FULL = Fidelity(part=1, method="nokd")
LOW_KD = Fidelity(part=9, method="kd")
LOW_NOKD = Fidelity(part=3, method="nokd")


@dataclass(frozen=True)
class Row:
    """One evaluation to write: architecture number, fidelity, accuracies, times (s)."""

    arch: int
    fidelity: Fidelity
    valid: float
    test: float
    started: float
    finished: float
    worker: str = "w0"
    status: str = "ok"


def write_run(store: SQLiteStore, run_id: str, rows: Iterable[Row], archs: int = 50) -> None:
    """Open ``run_id`` and put every row (architectures sampled with seed 0)."""
    space = get_space("mobilenetv2")
    rng = np.random.default_rng(0)
    pool = [space.sample(rng) for _ in range(archs)]
    store.open_run(run_id, {"space": "mobilenetv2", "run": run_id})
    trial = store.count(run_id)
    for row in rows:
        arch = pool[row.arch]
        suggestion = Suggestion(trial_id=trial, arch=arch, fidelity=row.fidelity)
        store.record_ask(run_id, suggestion)
        result = EvalResult(
            arch_key=arch.key(),
            fidelity=row.fidelity,
            valid_acc=row.valid,
            test_acc=row.test,
            cost_s=row.finished - row.started,
            status=row.status,
            metrics={"params": 1000 + row.arch, "multiply_adds": 5000 + row.arch},
        )
        store.put(
            run_id,
            suggestion,
            result,
            started_at=row.started,
            finished_at=row.finished,
            worker=row.worker,
        )
        trial += 1


def synthetic_store(path: Path, evaluations: int, seed: int = 0, runs: int = 1) -> Path:
    """A store of ``evaluations`` evaluations (a fifth at full fidelity) over 2,000 made-up
    architecture keys, written in batches straight through the store's own tables (the
    public ``put`` commits each one durably: 100,000 of them would take minutes)."""
    import json
    import sqlite3

    with SQLiteStore(path) as store:
        for run in range(runs):
            store.open_run(f"run-{run}", {"run": run})
    rng = np.random.default_rng(seed)
    connection = sqlite3.connect(path)
    rows = []
    per_run = evaluations // runs
    for index in range(evaluations):
        run, trial = divmod(index, per_run)
        full = index % 5 == 0
        quality = rng.random()
        arch = int(rng.integers(2000))
        started = 1.7e9 + trial * 2.0
        rows.append(
            (
                f"run-{min(run, runs - 1)}", trial, trial + 1, f"arch-{arch}",
                json.dumps({"space": "mobilenetv2", "genotype": [arch]}), "mobilenetv2",
                1 if full else 9, "nokd" if full else "kd", None, 0, "{}", None,
                quality, quality - 0.01, 2.0, "ok", "{}", "{}", started, started + 2.0,
                "0.1.0", f"worker-{index % 4}",
            )
        )  # fmt: skip
    with connection:
        connection.executemany(
            "INSERT OR IGNORE INTO evaluations (run_id, trial_id, seq, arch_key, arch_json, "
            "space, part, method, epochs, seed, loss_json, subset_hash, valid_acc, test_acc, "
            "cost_s, status, metrics_json, info_json, started_at, finished_at, "
            "package_version, worker) VALUES (" + ", ".join("?" * 22) + ")",
            rows,
        )
    connection.close()
    return path
