"""The field's leaderboard: kdnas's optimizers and the field's multi-fidelity optimizers, from
their own libraries, on the paper's benchmark through kdnas's simulated clock.

Every run goes through the one evaluation loop (``kdnas.loop``) with 1 or 4 simulated
asynchronous workers on ``ArraysObjective`` (each evaluation charged its stored training
seconds; the peers' low rungs are separate trainings). A run ends when the optimum (best
high-fidelity valid accuracy) has been evaluated at high fidelity, when the optimizer has
nothing left to ask, or when the clock passes the horizon.

Cells: {MobileNetV2, ShuffleNetV2} x {1, 4 workers} x {whole space, random sub-spaces of 2/3
of the architectures (one per run, the same sub-space for every optimizer)}. Per cell: mean
seconds to the optimum (runs that never reach it count at the horizon; the share that reached
it is given), and the non-oracle incumbent (best high-fidelity valid accuracy so far,
full-data results only) at 5,000, 10,000 and 20,000 s: regret in points, averaged over the
runs that have a full-data result by then, and the share of all runs holding the optimum.

Work is cut into ``Chunk`` s (a few runs of one row in one cell); run r of a cell always uses
the same seed and sub-space, so chunks computed in different processes, sessions or Python
environments (DEHB needs one of its own) merge into the same cells (``merge_chunks``).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from kdnas.core import Optimizer
from kdnas.paper import best_algorithm2_cell
from kdnas.peers.adapters import (
    ENCODINGS,
    DEHBMultiFidelity,
    OptunaMultiFidelity,
    SMACMultiFidelity,
    SyneTuneMultiFidelity,
    ZeroCostSuccessiveHalving,
)
from kdnas.replay.arrays import SpaceArrays, cell_rng
from kdnas.replay.benchmark_requests import benchmark_proxy, optimizer_on_arrays
from kdnas.replay.runs import run_on_arrays, time_to_optimum
from kdnas.search.candidates import CandidateSet
from kdnas.search.registry import OptimizerEntry, registered_optimizers

__all__ = [
    "BUDGETS_S",
    "KDNAS_BEST",
    "MIN_RUNS_FOR_A_CLAIM",
    "PEER_ROWS",
    "TEN_MINUTE_RUNS",
    "Chunk",
    "FieldRow",
    "anecdotal_losses",
    "available_rows",
    "better_encodings",
    "encodings_markdown",
    "encodings_table",
    "format_incumbent",
    "leaderboard_markdown",
    "leaderboard_rows",
    "losses_of_best",
    "make_chunks",
    "merge_chunks",
    "one_encoding_only",
    "plot_curves",
    "quiet_peer_logging",
    "run_chunks",
    "summarise",
]

BUDGETS_S: tuple[float, ...] = (5_000.0, 10_000.0, 20_000.0)
SPACES: tuple[str, ...] = ("mobilenet", "shufflenet")
WORKERS: tuple[int, ...] = (1, 4)
KINDS: tuple[str, ...] = ("whole", "sub")
#: Simulated seconds after which a run that has not found the optimum stops.
HORIZON_S = 40_000.0

Factory = Callable[[CandidateSet, SpaceArrays, int], Optimizer]


@dataclass(frozen=True)
class FieldRow:
    """One optimizer of the leaderboard.

    Args:
        key: short name (``--rows``, JSON keys).
        label: what the table prints; a peer's names its library (and ", features" for the
            features encoding).
        library: the distribution whose algorithm runs ("kdnas" or a peer's pip name).
        extra: the kdnas extra that installs ``library`` (None for kdnas's own rows).
        factory: (candidates, space arrays, seed) -> a fresh optimizer.
        encoding: how a peer sees the candidates (``kdnas.peers.adapters.ENCODINGS``); None
            for kdnas's own rows and the zero-cost baseline, which read the features
            themselves.
        peer: the key the encodings of one peer share (its "index" row's key); None where
            ``encoding`` is None.
    """

    key: str
    label: str
    library: str
    extra: str | None
    factory: Factory
    encoding: str | None = None
    peer: str | None = None


def _ladder_methods(arrays: SpaceArrays) -> tuple[str, ...]:
    """Methods present at every low rung of the ladder (the categorical choice)."""
    return tuple(
        sorted({m for m, _ in arrays.low if all((m, p) in arrays.low for p in (27, 9, 3))})
    )


def _best(arrays: SpaceArrays) -> str:
    """The method of the paper's best Algorithm 2 cell (its Table 4); every ladder is also
    run with it."""
    return best_algorithm2_cell(arrays.space)[1]


def _registered_row(entry: OptimizerEntry) -> FieldRow:
    """A leaderboard row of a registered kdnas optimizer (no budget: the horizon stops it)."""

    def factory(candidates: CandidateSet, arrays: SpaceArrays, seed: int) -> Optimizer:
        return optimizer_on_arrays(entry, candidates, arrays, seed)

    assert entry.leaderboard_key is not None
    return FieldRow(entry.leaderboard_key, entry.field_label, "kdnas", None, factory)


#: (candidates, space arrays, seed, encoding) -> a fresh peer optimizer.
PeerFactory = Callable[[CandidateSet, SpaceArrays, int, str], Optimizer]

#: The key suffix and label suffix of a peer's "features" row.
FEATURES_SUFFIX = "_features"


def _both_encodings(key: str, label: str, library: str, extra: str, make: PeerFactory) -> list:
    """A peer's two rows: ``key`` with one categorical architecture id ("index"), and
    ``key_features`` with one float per standardised feature column ("features")."""

    def bind(encoding: str) -> Factory:
        return lambda c, a, s: make(c, a, s, encoding)

    return [
        FieldRow(key, label, library, extra, bind("index"), "index", key),
        FieldRow(
            key + FEATURES_SUFFIX,
            f"{label}, features",
            library,
            extra,
            bind("features"),
            "features",
            key,
        ),
    ]


def _peer_rows(*groups: FieldRow | list[FieldRow]) -> dict[str, FieldRow]:
    rows = [row for group in groups for row in (group if isinstance(group, list) else [group])]
    return {row.key: row for row in rows}


#: The field's rows: the zero-cost baseline and the peers' optimizers, each peer with both
#: encodings (paired rows: ``key`` sees one categorical id, ``key_features`` the features).
PEER_ROWS: dict[str, FieldRow] = _peer_rows(
    FieldRow(
        "zero_cost_sh",
        "zero-cost: multiply-adds top 27, then SH (best method)",
        "kdnas",
        None,
        lambda c, a, s: ZeroCostSuccessiveHalving(c, benchmark_proxy(a), method=_best(a), seed=s),
    ),
    _both_encodings(
        "optuna_hb_nokd",
        "Optuna TPE + Hyperband pruner, nokd",
        "optuna",
        "field",
        lambda c, a, s, e: OptunaMultiFidelity(c, ("nokd",), "hyperband", s, e),
    ),
    _both_encodings(
        "optuna_hb_best",
        "Optuna TPE + Hyperband pruner, best method",
        "optuna",
        "field",
        lambda c, a, s, e: OptunaMultiFidelity(c, (_best(a),), "hyperband", s, e),
    ),
    _both_encodings(
        "optuna_hb_choice",
        "Optuna TPE + Hyperband pruner, method chosen by TPE",
        "optuna",
        "field",
        lambda c, a, s, e: OptunaMultiFidelity(c, _ladder_methods(a), "hyperband", s, e),
    ),
    _both_encodings(
        "optuna_sh_best",
        "Optuna TPE + successive-halving pruner, best method",
        "optuna",
        "field",
        lambda c, a, s, e: OptunaMultiFidelity(c, (_best(a),), "successive_halving", s, e),
    ),
    _both_encodings(
        "smac_nokd",
        "SMAC multi-fidelity facade, nokd",
        "smac",
        "field",
        lambda c, a, s, e: SMACMultiFidelity(c, ("nokd",), s, e),
    ),
    _both_encodings(
        "smac_best",
        "SMAC multi-fidelity facade, best method",
        "smac",
        "field",
        lambda c, a, s, e: SMACMultiFidelity(c, (_best(a),), s, e),
    ),
    _both_encodings(
        "dehb_nokd",
        "DEHB, nokd",
        "dehb",
        "dehb",
        lambda c, a, s, e: DEHBMultiFidelity(c, ("nokd",), s, e),
    ),
    _both_encodings(
        "dehb_best",
        "DEHB, best method",
        "dehb",
        "dehb",
        lambda c, a, s, e: DEHBMultiFidelity(c, (_best(a),), s, e),
    ),
    _both_encodings(
        "dehb_choice",
        "DEHB, method chosen by DEHB",
        "dehb",
        "dehb",
        lambda c, a, s, e: DEHBMultiFidelity(c, _ladder_methods(a), s, e),
    ),
    # ASHA samples at random: with features it draws uniform points of the feature box, so
    # candidates alone in their region are drawn more often; cheap, so both are run.
    _both_encodings(
        "synetune_asha_nokd",
        "Syne Tune ASHA, nokd",
        "syne-tune",
        "syne-tune",
        lambda c, a, s, e: SyneTuneMultiFidelity(c, ("nokd",), "asha", s, e),
    ),
    _both_encodings(
        "synetune_asha_best",
        "Syne Tune ASHA, best method",
        "syne-tune",
        "syne-tune",
        lambda c, a, s, e: SyneTuneMultiFidelity(c, (_best(a),), "asha", s, e),
    ),
    _both_encodings(
        "synetune_asha_choice",
        "Syne Tune ASHA, method chosen at random",
        "syne-tune",
        "syne-tune",
        lambda c, a, s, e: SyneTuneMultiFidelity(c, _ladder_methods(a), "asha", s, e),
    ),
    # BOHB with nokd or the method as its choice is left out: over 12 CPU seconds per run
    # (its KDE refits on every result), and with the best method no better than ASHA.
    _both_encodings(
        "synetune_bohb_best",
        "Syne Tune BOHB, best method",
        "syne-tune",
        "syne-tune",
        lambda c, a, s, e: SyneTuneMultiFidelity(c, (_best(a),), "bohb", s, e),
    ),
)


def leaderboard_rows() -> dict[str, FieldRow]:
    """Every row in print order: the registered kdnas optimizers that have a
    ``leaderboard_key`` (``kdnas.search.registry``), then ``PEER_ROWS``."""
    own = [
        _registered_row(entry)
        for entry in registered_optimizers().values()
        if entry.leaderboard_key is not None
    ]
    return {**{row.key: row for row in own}, **PEER_ROWS}


#: kdnas's best optimizer: every cell where a peer beats it is reported (``losses_of_best``).
KDNAS_BEST = "proxy_gp_ucb"

#: Runs per cell of ``kdnas reproduce field`` (what fits in about 10 minutes on 2 cores), by
#: library, each peer's row run with both encodings; the issue's protocol is 100 everywhere
#: (benchmarks/field_comparison.py). CPU seconds per simulated run, measured on the shared
#: machine (docs/results.md): SMAC ~8-13 (either encoding), Optuna ~0.4-3, Algorithm 2 and
#: HF GP-UCB ~0.5, DEHB and Syne Tune's ASHA ~0.2-0.4, Syne Tune's BOHB 2-12. With one id
#: per architecture only (half the peer rows) it was 50 / 20 / 10 / 2 / 3 runs, 521 s.
TEN_MINUTE_RUNS: dict[str, int] = {
    "kdnas": 50,
    "dehb": 10,
    "optuna": 4,
    "smac": 1,
    "syne-tune": 2,
}
#: Runs per cell for a library missing from ``TEN_MINUTE_RUNS``.
DEFAULT_TEN_MINUTE_RUNS = 20


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def available_rows(
    keys: Iterable[str] | None = None,
) -> tuple[list[FieldRow], dict[str, str], list[tuple[FieldRow, str]]]:
    """The rows whose library is installed, {library: version} of those, and the others with
    the pip command that adds their library."""
    rows, versions, skipped = [], {}, []
    every = leaderboard_rows()
    for key in every if keys is None else keys:
        if key not in every:
            raise ValueError(f"unknown row {key!r}; valid: {', '.join(every)}")
        row = every[key]
        version = _version(row.library)
        if version is None:
            skipped.append((row, f"pip install 'kdnas[{row.extra}]'"))
        else:
            rows.append(row)
            versions[row.library] = version
    return rows, versions, skipped


@dataclass(frozen=True)
class Chunk:
    """Runs ``first_run`` .. ``first_run + runs - 1`` of one row in one cell."""

    row: str
    space: str
    workers: int
    kind: str
    first_run: int
    runs: int

    @property
    def cell(self) -> str:
        return f"{self.row}/{self.space}/{self.workers}/{self.kind}"


def make_chunks(
    runs_of: Mapping[str, int],
    spaces: Sequence[str] = SPACES,
    workers: Sequence[int] = WORKERS,
    kinds: Sequence[str] = KINDS,
    chunk_runs: int = 10,
    done: Mapping[str, set[int]] | None = None,
) -> list[Chunk]:
    """Chunks of at most ``chunk_runs`` runs covering runs 0 .. runs_of[row] - 1 of every cell,
    leaving out runs already ``done`` ({cell: run indices}). Ordered chunk index first, so
    every cell grows evenly when the work is cut short."""
    if chunk_runs < 1:
        raise ValueError(f"chunk_runs must be >= 1, got {chunk_runs}")
    done = done or {}
    out = []
    for start in range(0, max(runs_of.values(), default=0), chunk_runs):
        for row, runs in runs_of.items():
            for space in spaces:
                for n_workers in workers:
                    for kind in kinds:
                        cell = f"{row}/{space}/{n_workers}/{kind}"
                        todo = [
                            r
                            for r in range(start, min(start + chunk_runs, runs))
                            if r not in done.get(cell, set())
                        ]
                        # Contiguous pieces: a chunk is a range of runs.
                        for first, count in _ranges(todo):
                            out.append(Chunk(row, space, n_workers, kind, first, count))
    return out


def _ranges(indices: list[int]) -> Iterator[tuple[int, int]]:
    start = None
    for i, r in enumerate(indices):
        if start is None:
            start = r
        if i + 1 == len(indices) or indices[i + 1] != r + 1:
            yield start, r - start + 1
            start = None


def sub_space(arrays: SpaceArrays, seed: int, run: int) -> SpaceArrays:
    """Run ``run``'s random 2/3 of the architectures (the same for every optimizer)."""
    rows = cell_rng(seed, "field-subspace", arrays.space, run).choice(
        arrays.size, (2 * arrays.size) // 3, replace=False
    )
    return arrays.subset(np.sort(rows))


def one_run(
    arrays: SpaceArrays, factory: Factory, seed: int, workers: int, horizon_s: float
) -> tuple[float, list[tuple[float, float]], float]:
    """(seconds to the optimum or inf, [(clock s, HF valid acc)] of the full-data results,
    the optimum's HF valid acc) of one run, stopped at ``horizon_s`` on the workers' clock."""
    candidates = arrays.placeholder_candidates()
    optimizer = factory(candidates, arrays, seed)
    trace = run_on_arrays(arrays, optimizer, workers, horizon_s=horizon_s)
    events = [
        (step.elapsed_s, float(arrays.hf_valid[candidates.index_of(step.suggestion.arch)]))
        for step in trace.steps
        if step.result.fidelity.is_high and step.result.ok
    ]
    return time_to_optimum(arrays, trace), events, float(arrays.hf_valid.max())


def run_chunk(
    arrays: SpaceArrays, chunk: Chunk, seed: int, horizon_s: float = HORIZON_S
) -> dict[str, Any]:
    """Every run of ``chunk`` on the whole space ``arrays`` (or its run's sub-space): a
    JSON-ready record (the chunk's fields, seed, horizon, per-run times, events, optima,
    CPU seconds)."""
    row = leaderboard_rows()[chunk.row]
    factory = row.factory
    started = time.process_time()
    times, events, optima = [], [], []
    for run in range(chunk.first_run, chunk.first_run + chunk.runs):
        target = arrays if chunk.kind == "whole" else sub_space(arrays, seed, run)
        found, seen, best = one_run(
            target, factory, 1000 + seed * 1_000_003 + run, chunk.workers, horizon_s
        )
        times.append(found)
        events.append(seen)
        optima.append(best)
    return {
        **asdict(chunk),
        "library": row.library,
        "version": _version(row.library),
        "seed": seed,
        "horizon_s": horizon_s,
        "times": times,
        "events": events,
        "optima": optima,
        "cpu_s": time.process_time() - started,
    }


_SPACE_CACHE: dict[str, SpaceArrays] = {}


def quiet_peer_logging() -> None:
    """Silence the peers' per-trial log lines and warnings (one per simulated run otherwise)."""
    for name in ("optuna", "smac"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:
        pass


def _load_spaces(benchmark: str) -> None:
    """Per worker process: quiet the peers' loggers, load both spaces once."""
    quiet_peer_logging()
    from kdnas.bench import TabularBenchmark
    from kdnas.replay.arrays import load_space_arrays

    bench = TabularBenchmark.load(benchmark)
    for space in SPACES:
        _SPACE_CACHE[space] = load_space_arrays(bench, space, Path(benchmark).parent)


def _run_in_worker(job: tuple[Chunk, int, float]) -> dict[str, Any]:
    chunk, seed, horizon_s = job
    return run_chunk(_SPACE_CACHE[chunk.space], chunk, seed, horizon_s)


def run_chunks(
    benchmark: str | Path,
    chunks: Sequence[Chunk],
    seed: int = 0,
    horizon_s: float = HORIZON_S,
    jobs: int = 2,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run ``chunks`` in ``jobs`` processes (one BLAS thread each); ``on_record`` sees each
    record in this process as soon as its chunk ends (to save it: nothing finished is lost
    if the rest is interrupted)."""
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    records = []
    # The runs are many small fits: one thread per process, set before the pool forks.
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    with ProcessPoolExecutor(jobs, initializer=_load_spaces, initargs=(str(benchmark),)) as pool:
        futures = [pool.submit(_run_in_worker, (chunk, seed, horizon_s)) for chunk in chunks]
        for future in as_completed(futures):
            record = future.result()
            if on_record is not None:
                on_record(record)
            records.append(record)
    return records


def merge_chunks(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{cell: {"times", "events", "optima" by run order, "runs", "cpu_s", "library" (name
    and version), "seed", "horizon_s"}} from chunk records. A run recorded twice must agree
    (same seed, same result); records of another seed or horizon than the first are refused."""
    runs: dict[str, dict[int, tuple[float, list, float]]] = {}
    cpu: dict[str, float] = {}
    versions: dict[str, str] = {}
    setting: tuple[int, float] | None = None
    for record in records:
        this = (int(record["seed"]), float(record["horizon_s"]))
        if setting is None:
            setting = this
        elif this != setting:
            raise ValueError(f"chunks of different settings (seed, horizon): {setting}, {this}")
        cell = f"{record['row']}/{record['space']}/{record['workers']}/{record['kind']}"
        by_run = runs.setdefault(cell, {})
        for offset, value in enumerate(
            zip(record["times"], record["events"], record["optima"], strict=True)
        ):
            run = int(record["first_run"]) + offset
            value = (float(value[0]), [tuple(e) for e in value[1]], float(value[2]))
            if run in by_run and by_run[run] != value:
                raise ValueError(f"{cell} run {run} was recorded twice with different results")
            by_run[run] = value
        cpu[cell] = cpu.get(cell, 0.0) + float(record["cpu_s"])
        versions[cell] = f"{record.get('library')} {record.get('version')}"
    if setting is None:
        return {}
    out = {}
    for cell, by_run in runs.items():
        order = sorted(by_run)
        out[cell] = {
            "times": [by_run[r][0] for r in order],
            "events": [by_run[r][1] for r in order],
            "optima": [by_run[r][2] for r in order],
            "runs": len(order),
            "cpu_s": cpu[cell],
            "library": versions[cell],
            "seed": setting[0],
            "horizon_s": setting[1],
        }
    return out


def _incumbent(events: Sequence[Sequence[float]], at_s: float) -> float:
    values = [v for t, v in events if t <= at_s]
    return max(values) if values else math.nan


def summarise(cell: Mapping[str, Any], horizon_s: float = HORIZON_S) -> dict[str, Any]:
    """Mean seconds to the optimum (censored at ``horizon_s``) with its standard error, the
    share of runs that reached it, and the incumbent at each of ``BUDGETS_S``."""
    times = np.asarray(cell["times"], float)
    censored = np.minimum(times, horizon_s)
    out: dict[str, Any] = {
        "runs": len(times),
        "time_to_optimum_s": float(censored.mean()),
        "se_s": float(censored.std(ddof=1) / math.sqrt(len(times))) if len(times) > 1 else 0.0,
        "found_share": float(np.isfinite(times).mean()),
        "cpu_s": float(cell["cpu_s"]),
    }
    optima = np.asarray(cell["optima"], float)
    for budget in BUDGETS_S:
        inc = np.array([_incumbent(e, budget) for e in cell["events"]])
        has = np.isfinite(inc)
        out[f"at_{int(budget)}"] = {
            "with_incumbent": float(has.mean()),
            "regret_pp": float(100 * (optima[has] - inc[has]).mean()) if has.any() else math.nan,
            "holding_optimum": float((inc[has] == optima[has]).sum() / len(inc)),
        }
    return out


def format_incumbent(point: Mapping[str, float]) -> str:
    """regret / share holding the optimum; "none yet" when no run has a full-data result."""
    if not point["with_incumbent"]:
        return "none yet"
    share = "" if point["with_incumbent"] == 1 else f" ({point['with_incumbent']:.0%} have one)"
    return f"{point['regret_pp']:.2f} / {point['holding_optimum']:.0%}{share}"


def leaderboard_markdown(summary: Mapping[str, Mapping[str, Any]], horizon_s: float) -> str:
    """The leaderboard as markdown tables, one per space and kind of space."""
    lines = []
    for space in SPACES:
        for kind in KINDS:
            if not any(key.endswith(f"/{space}/{w}/{kind}") for key in summary for w in WORKERS):
                continue
            title = "whole space" if kind == "whole" else "random 2/3 sub-spaces"
            lines += [
                f"\n#### {space}, {title}\n",
                "| optimizer | workers | runs | seconds to optimum | reached | "
                + " | ".join(f"{int(b):,} s regret / holds" for b in BUDGETS_S)
                + " |",
                "|---|---:|---:|---:|---:|" + "---:|" * len(BUDGETS_S),
            ]
            for workers in WORKERS:
                for key, row in leaderboard_rows().items():
                    cell = summary.get(f"{key}/{space}/{workers}/{kind}")
                    if cell is None:
                        continue
                    reached = cell["found_share"]
                    mark = "" if reached == 1.0 else ">= "
                    time_s = f"{mark}{cell['time_to_optimum_s']:,.0f} ± {cell['se_s']:,.0f}"
                    name = f"**{row.label}**" if key == KDNAS_BEST else row.label
                    at = " | ".join(format_incumbent(cell[f"at_{int(b)}"]) for b in BUDGETS_S)
                    lines.append(
                        f"| {name} | {workers} | {cell['runs']} | {time_s} | "
                        f"{reached:.0%} | {at} |"
                    )
    lines.append(
        f"\nRuns that never reach the optimum by {horizon_s:,.0f} s count as {horizon_s:,.0f} s "
        "(the mean is then a lower bound, marked >=)."
    )
    return "\n".join(lines)


def _time_text(cell: Mapping[str, Any]) -> str:
    mark = "" if cell["found_share"] == 1.0 else ">= "
    return f"{mark}{cell['time_to_optimum_s']:,.0f}"


def _rank(cell: Mapping[str, Any]) -> tuple[float, ...]:
    """Sort key of "better" between two encodings of a peer in one cell: lower mean seconds to
    the optimum; where equal (both censored at the horizon, say), more runs holding the
    optimum and then less regret at the latest of ``BUDGETS_S``."""
    last = cell[f"at_{int(BUDGETS_S[-1])}"]
    regret = last["regret_pp"] if last["with_incumbent"] else math.inf
    return (cell["time_to_optimum_s"], -last["holding_optimum"], regret)


def _by_peer(
    summary: Mapping[str, Mapping[str, Any]],
) -> dict[tuple[str, str], dict[str, str]]:
    """{(peer, "space/workers/kind"): {encoding: row key}} of the rows that are not kdnas's
    own (the zero-cost baseline is its own peer, under encoding "")."""
    rows = leaderboard_rows()
    out: dict[tuple[str, str], dict[str, str]] = {}
    for key in summary:
        row_key, where = key.split("/", 1)
        row = rows[row_key]
        if row.library == "kdnas" and row.key != "zero_cost_sh":
            continue
        out.setdefault((row.peer or row.key, where), {})[row.encoding or ""] = row_key
    return out


def better_encodings(summary: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{"peer/space/workers/kind": the better of the peer's encodings in that cell}: the row
    key and encoding that win by ``_rank`` (mean seconds to the optimum first), the
    encodings measured there, and each one's summary (``by_encoding``)."""
    out = {}
    for (peer, where), keys in _by_peer(summary).items():
        if peer == "zero_cost_sh":
            continue
        cells = {encoding: summary[f"{key}/{where}"] for encoding, key in keys.items()}
        encoding = min(cells, key=lambda e: (_rank(cells[e]), ENCODINGS.index(e)))
        out[f"{peer}/{where}"] = {
            "row": keys[encoding],
            "encoding": encoding,
            "measured": sorted(cells, key=ENCODINGS.index),
            "by_encoding": cells,
        }
    return out


def one_encoding_only(summary: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """ "peer/space/workers/kind" cells where only one of the peer's encodings was measured
    (a claim about the peer there rests on that one alone)."""
    return sorted(
        key for key, better in better_encodings(summary).items() if len(better["measured"]) < 2
    )


def encodings_table(
    summary: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Each peer's better encoding per cell: (column titles, [(peer label, entries)]), an entry
    "encoding: its mean seconds to the optimum (the other's)" ("" where not measured)."""
    better = better_encodings(summary)
    rows = leaderboard_rows()
    wheres = [(space, workers, kind) for space in SPACES for kind in KINDS for workers in WORKERS]
    wheres = [w for w in wheres if any(key.endswith("/{}/{}/{}".format(*w)) for key in better)]
    short = {"whole": "whole", "sub": "sub-spaces"}
    titles = [f"{space} {short[kind]}, {workers} w" for space, workers, kind in wheres]
    lines = []
    for peer in (key for key, row in rows.items() if row.encoding == "index"):
        entries = []
        for where in wheres:
            cell = better.get("{}/{}/{}/{}".format(peer, *where))
            if cell is None:
                entries.append("")
                continue
            others = [e for e in cell["measured"] if e != cell["encoding"]]
            other = f" ({_time_text(cell['by_encoding'][others[0]])})" if others else " (only one)"
            entries.append(
                f"{cell['encoding']}: {_time_text(cell['by_encoding'][cell['encoding']])}{other}"
            )
        if any(entries):
            lines.append((rows[peer].label, entries))
    return titles, lines


def encodings_markdown(summary: Mapping[str, Mapping[str, Any]]) -> str:
    """``encodings_table`` as markdown ("" when no peer was measured)."""
    titles, lines = encodings_table(summary)
    if not lines:
        return ""
    out = ["| peer | " + " | ".join(titles) + " |", "|---|" + "---|" * len(titles)]
    out += [f"| {label} | " + " | ".join(entries) + " |" for label, entries in lines]
    return "\n".join(out)


#: A peer's row needs this many runs in a cell before it counts in ``losses_of_best``: with
#: one or two runs a lucky run holds the optimum "100 %" of the time against kdnas's 98 % over
#: 50 (as the 10-minute ``kdnas reproduce field`` showed); rows below it are listed by
#: ``anecdotal_losses`` instead.
MIN_RUNS_FOR_A_CLAIM = 5


def losses_of_best(
    summary: Mapping[str, Mapping[str, Any]], min_runs: int = MIN_RUNS_FOR_A_CLAIM
) -> list[str]:
    """Cells where a peer (or the zero-cost baseline) beats kdnas's best optimizer: on mean
    seconds to the optimum, or on the incumbent's mean regret or share holding the optimum
    at any of ``BUDGETS_S``. Each peer counts with the better of its encodings on each of
    these measures (the line names the row that wins), so a cell is "nowhere" only when
    neither encoding of any peer beats kdnas there. Rows with fewer than ``min_runs`` runs
    in the cell do not count (``anecdotal_losses`` lists theirs)."""
    return _losses(summary, lambda runs: runs >= min_runs)


def anecdotal_losses(
    summary: Mapping[str, Mapping[str, Any]], min_runs: int = MIN_RUNS_FOR_A_CLAIM
) -> list[str]:
    """What ``losses_of_best`` would say from the rows with fewer than ``min_runs`` runs in a
    cell: anecdotes, too few runs to tell a peer's luck from its strength."""
    return _losses(summary, lambda runs: runs < min_runs)


def _losses(summary: Mapping[str, Mapping[str, Any]], counted: Callable[[int], bool]) -> list[str]:
    out = []
    rows = leaderboard_rows()
    for (_, where), keys in _by_peer(summary).items():
        ours = summary.get(f"{KDNAS_BEST}/{where}")
        if ours is None:
            continue
        space, workers, kind = where.split("/")
        place = f"{space} ({kind}, {workers} worker{'s' * (int(workers) > 1)})"
        theirs_by_key = {
            key: summary[f"{key}/{where}"]
            for key in keys.values()
            if counted(int(summary[f"{key}/{where}"]["runs"]))
        }
        if not theirs_by_key:
            continue
        label = {key: f"{rows[key].label} ({c['runs']} runs)" for key, c in theirs_by_key.items()}
        fastest = min(theirs_by_key, key=lambda k: theirs_by_key[k]["time_to_optimum_s"])
        cell = theirs_by_key[fastest]
        if cell["time_to_optimum_s"] < ours["time_to_optimum_s"]:
            out.append(
                f"{label[fastest]} beats {rows[KDNAS_BEST].label} on {place}: mean seconds "
                f"to the optimum {cell['time_to_optimum_s']:,.0f} vs "
                f"{ours['time_to_optimum_s']:,.0f}"
            )
        for budget in BUDGETS_S:
            mine = ours[f"at_{int(budget)}"]
            for key, cell in theirs_by_key.items():
                theirs = cell[f"at_{int(budget)}"]
                if theirs["holding_optimum"] > mine["holding_optimum"] or (
                    theirs["with_incumbent"] >= mine["with_incumbent"]
                    and theirs["regret_pp"] < mine["regret_pp"]
                ):
                    out.append(
                        f"{label[key]} beats {rows[KDNAS_BEST].label} on {place} at "
                        f"{budget:,.0f} s: regret / holds {format_incumbent(theirs)} vs "
                        f"{format_incumbent(mine)}"
                    )
                    break  # one line per peer, cell and budget: the first encoding that wins
    return out


def _curve(events: Sequence[Sequence], optima: Sequence[float], grid: np.ndarray) -> np.ndarray:
    """Mean regret (points) of the incumbent on the grid, over runs that have one."""
    values = np.array([[_incumbent(e, t) for t in grid] for e in events])
    regret = 100 * (np.asarray(optima, float)[:, None] - values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(regret, 0)


def plot_curves(
    cells: Mapping[str, Mapping[str, Any]], out: Path, horizon_s: float = HORIZON_S
) -> list[Path]:
    """Anytime curves (mean regret of the incumbent vs simulated seconds), whole spaces, one
    PNG per space (``field_<space>.png`` in ``out``): kdnas's rows solid, the peers dashed
    (dotted with the features encoding)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, horizon_s, 161)
    paths = []
    for space in SPACES:
        fig, axes = plt.subplots(1, len(WORKERS), figsize=(11, 4.2), sharey=True)
        for ax, workers in zip(axes, WORKERS, strict=True):
            for key, row in leaderboard_rows().items():
                cell = cells.get(f"{key}/{space}/{workers}/whole")
                if cell is None:
                    continue
                own = row.library == "kdnas" and key != "zero_cost_sh"
                style = "-" if own else ":" if row.encoding == "features" else "--"
                curve = _curve(cell["events"], cell["optima"], grid)
                ax.plot(grid, curve, style, lw=2.0 if key == KDNAS_BEST else 1.1, label=key)
            ax.set_yscale("symlog", linthresh=0.1)
            ax.set_xlabel("simulated seconds")
            ax.set_title(f"{space}, whole space, {workers} worker{'s' * (workers > 1)}")
        axes[0].set_ylabel("mean regret of the incumbent (HF valid acc points)")
        axes[-1].legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path = out / f"field_{space}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def runs_per_cell(
    rows: Sequence[FieldRow], runs: int | None = None, by_library: Mapping[str, int] | None = None
) -> dict[str, int]:
    """{row key: runs per cell}: ``runs`` for every row, else ``by_library`` (default:
    ``TEN_MINUTE_RUNS``)."""
    if runs is not None:
        return {row.key: runs for row in rows}
    table = TEN_MINUTE_RUNS if by_library is None else by_library
    return {row.key: table.get(row.library, DEFAULT_TEN_MINUTE_RUNS) for row in rows}
