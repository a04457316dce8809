"""Export a store's evaluations to the tabular-benchmark format, so users build their own."""

from __future__ import annotations

import json
import logging
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdnas.core import Architecture
from kdnas.store._protocol import describe_config_difference
from kdnas.store._records import StoredEvaluation

if TYPE_CHECKING:
    from kdnas.bench.tabular import TabularBenchmark
    from kdnas.store._protocol import Store

__all__ = ["ARCHITECTURES_FILE", "export_benchmark", "store_to_benchmark"]

logger = logging.getLogger(__name__)

#: Written beside the benchmark: index -> architecture, per space, so rows can be rebuilt.
ARCHITECTURES_FILE = "architectures.json"


def _architecture_order(
    store: Store, evaluations: Sequence[StoredEvaluation], run_ids: Sequence[str]
) -> dict[str, list[Architecture]]:
    """Per space, the architectures in index order: run candidates first, then the rest."""
    order: dict[str, dict[str, Architecture]] = defaultdict(dict)
    for run_id in run_ids:
        run = store.run(run_id)
        for text in (run.config.get("candidates", []) if run else []) or []:
            arch = Architecture.from_json(text) if isinstance(text, str) else None
            if arch is not None:
                order[arch.space].setdefault(arch.key(), arch)
    for evaluation in evaluations:
        order[evaluation.arch.space].setdefault(evaluation.arch.key(), evaluation.arch)
    return {space: list(archs.values()) for space, archs in order.items()}


#: Run settings that decide how an evaluation was trained: evaluations of one benchmark cell
#: are averaged only when these agree (seeds may differ: averaging seeds is the point).
_TRAINING_SETTINGS = ("train_config", "valid_fraction", "dataset_hash", "subset_seed")


def _training_settings(config: Mapping[str, Any], evaluation: StoredEvaluation) -> dict:
    settings = {name: config[name] for name in _TRAINING_SETTINGS if name in config}
    settings["loss_hyperparameters"] = dict(evaluation.loss_hyperparameters)
    return settings


def _check_same_training(
    store: Store, cell: str, group: Sequence[StoredEvaluation], runs: Mapping[str, Any]
) -> None:
    """Refuse to average evaluations of one cell that were trained differently."""
    first = group[0]
    reference = _training_settings(runs[first.run_id].config, first)
    for evaluation in group[1:]:
        settings = _training_settings(runs[evaluation.run_id].config, evaluation)
        if settings != reference:
            difference = describe_config_difference(reference, settings)
            where = getattr(store, "path", "in memory")
            raise ValueError(
                f"store {where}: {cell} holds evaluations trained differently (runs "
                f"{first.run_id!r} and {evaluation.run_id!r}: {difference}); refusing to "
                f"average them: export one run at a time with --run-id"
            )


def store_to_benchmark(
    store: Store,
    *,
    run_ids: Sequence[str] | None = None,
    dataset: str | None = None,
) -> tuple[TabularBenchmark, dict[str, list[Architecture]]]:
    """Build a ``TabularBenchmark`` from the ok evaluations of a store.

    Architectures are indexed per space in the order of each run's candidate list (its
    ``config["candidates"]``), then in order of first evaluation. Repeated evaluations of one
    (architecture, part, method), e.g. several seeds, are averaged.

    Args:
        store: the store to read.
        run_ids: the runs to export (default: all).
        dataset: the dataset key of the table (default: each run's ``config["dataset"]``, or
            "dataset").

    Returns:
        The benchmark, and per space the architectures in index order.

    Raises:
        ValueError: the store holds no ok evaluation, or one cell mixes evaluations of
            different epoch counts (the benchmark has no epochs axis) or of runs trained
            with different settings (learning rate, width, loss hyperparameters, data, ...).
    """
    from kdnas.bench.tabular import PAPER_SPACE_KEYS, TabularBenchmark

    runs = store.runs()
    wanted = [run.run_id for run in runs] if run_ids is None else list(run_ids)
    known = {run.run_id: run for run in runs}
    unknown = [run_id for run_id in wanted if run_id not in known]
    if unknown:
        raise ValueError(
            f"store {store.path} has no run(s) {', '.join(unknown)}; it holds "
            f"{', '.join(known) or 'no runs'}"
        )
    evaluations = [e for run_id in wanted for e in store.results(run_id) if e.result.ok]
    if not evaluations:
        raise ValueError(f"store {store.path}: no finished ok evaluation to export")
    order = _architecture_order(store, evaluations, wanted)
    index = {space: {a.key(): i for i, a in enumerate(archs)} for space, archs in order.items()}

    cells: dict[tuple[str, str, str, int, int], list[StoredEvaluation]] = defaultdict(list)
    for evaluation in evaluations:
        run_dataset = dataset or str(known[evaluation.run_id].config.get("dataset", "dataset"))
        space = evaluation.arch.space
        fidelity = evaluation.result.fidelity
        key = (
            run_dataset,
            PAPER_SPACE_KEYS.get(space, space),
            fidelity.method,
            fidelity.part,
            index[space][evaluation.arch.key()],
        )
        cells[key].append(evaluation)

    records: list[dict[str, Any]] = []
    for key, group in cells.items():
        epochs = {e.result.fidelity.epochs for e in group}
        if len(epochs) > 1:
            raise ValueError(
                f"store {store.path}: {'/'.join(map(str, key))} holds evaluations with "
                f"different epoch counts {sorted(epochs, key=str)}; export one run at a time"
            )
        _check_same_training(store, "/".join(map(str, key)), group, known)
        n = len(group)
        records.append(
            {
                "dataset": key[0],
                "space": key[1],
                "method": key[2],
                "part": key[3],
                "arch_index": key[4],
                "test_acc": sum(e.result.test_acc for e in group) / n,
                "valid_acc": sum(e.result.valid_acc for e in group) / n,
                "wall_time": sum(e.result.cost_s for e in group) / n,
            }
        )
    records.sort(key=lambda r: (r["dataset"], r["space"], r["method"], r["part"], r["arch_index"]))
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for record in records:
        space_key = record["space"]
        counts[record["dataset"]][space_key] = len(
            next(archs for s, archs in order.items() if PAPER_SPACE_KEYS.get(s, s) == space_key)
        )
    metadata = {
        "description": f"Exported by kdnas from the store {Path(store.path).name}.",
        "provenance": {
            "source": "kdnas store",
            "runs": {
                run_id: {
                    "fingerprint": known[run_id].fingerprint,
                    "package_version": known[run_id].package_version,
                }
                for run_id in wanted
            },
            "repeats_averaged": True,
            "architectures_file": ARCHITECTURES_FILE,
        },
        "num_architectures": {d: dict(by_space) for d, by_space in counts.items()},
    }
    return TabularBenchmark.from_records(records, metadata=metadata), order


def export_benchmark(
    store: Store,
    folder: str | os.PathLike[str],
    *,
    run_ids: Sequence[str] | None = None,
    dataset: str | None = None,
) -> Path:
    """Write a store's ok evaluations to ``folder`` in the open benchmark format.

    Besides the benchmark's own files, ``architectures.json`` maps each space's architecture
    indices to the architectures (canonical JSON), so the table can be searched again with
    ``kdnas reproduce --benchmark FOLDER`` or rebuilt architecture by architecture.

    Returns:
        The folder written.
    """
    benchmark, order = store_to_benchmark(store, run_ids=run_ids, dataset=dataset)
    path = Path(benchmark.save(folder))
    listing = {space: [json.loads(a.to_json()) for a in archs] for space, archs in order.items()}
    (path / ARCHITECTURES_FILE).write_text(json.dumps(listing, indent=1) + "\n")
    logger.info("exported %d entries to %s", benchmark.num_entries, path)
    return path
