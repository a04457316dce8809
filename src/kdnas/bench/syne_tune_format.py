"""A benchmark written as Syne Tune blackboxes (``kdnas bench export --format syne-tune DIR``).

Syne Tune simulates optimizers on tabular "blackboxes": a folder per blackbox holding
``configspace.json``, ``fidelityspace.json``, ``hyperparameters.parquet``,
``fidelities_values.npy``, ``objectives_evaluations.npy`` and ``metadata.json``, read by
``syne_tune.blackbox_repository.blackbox_tabular.deserialize`` into one ``BlackboxTabular``
per task. This module writes those files with pandas and fastparquet only (no Syne Tune
needed to write); the layout, in docs/benchmark.md:

- one blackbox per search space (``DIR/<space>``), one task per dataset that holds the whole
  ladder for every architecture;
- hyperparameters ``arch`` (the benchmark's architecture index, categorical) and ``method``
  (the loss method of the low rungs, categorical): every (arch, method) pair is a row, so
  Syne Tune's random searcher never proposes a configuration outside the table (two columns
  also keep clear of ``BlackboxTabular``'s failure under pandas 3 with a single one);
- fidelity ``resource``: the ladder of training-data parts, cheapest first, as integers
  ``lcm(parts) / part`` (1, 3, 9, 27 for 1/27, 1/9, 1/3 and full data). Each rung is a
  separate training; the top rung (full data) is the paper's high fidelity, plain
  cross-entropy, whatever the row's method;
- objectives ``valid_acc``, ``test_acc`` (fractions), ``elapsed_time`` (seconds of the
  separate trainings up to and including this rung: the cumulative time Syne Tune's simulator
  charges a trial that reaches it) and ``wall_time`` (seconds of this rung's training alone).

Values are stored as float64, so they are the benchmark's bit for bit (Syne Tune's own
writer rounds to float32; its reader takes either). An optimizer's incumbent must be taken
from top-rung rows only: a low rung's accuracy is not comparable.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from kdnas.bench.tabular import METRICS

if TYPE_CHECKING:
    from kdnas.bench.tabular import TabularBenchmark

__all__ = [
    "FIDELITY_NAME",
    "HYPERPARAMETERS",
    "OBJECTIVES",
    "SyneTuneBlackbox",
    "SyneTuneExport",
    "check_new_folder",
    "write_syne_tune_blackboxes",
]

FORMAT_NAME = "kdnas-syne-tune-blackbox"
FORMAT_VERSION = 1
#: The hyperparameter columns of every blackbox.
HYPERPARAMETERS: tuple[str, ...] = ("arch", "method")
#: The fidelity's name in the blackbox (Syne Tune's ``time_attr`` / ``fidelity_name()``).
FIDELITY_NAME = "resource"
#: The objectives, in the order of the last axis of ``objectives_evaluations.npy``.
OBJECTIVES: tuple[str, ...] = ("valid_acc", "test_acc", "elapsed_time", "wall_time")
_UNITS = {
    "valid_acc": "fraction",
    "test_acc": "fraction",
    "elapsed_time": "seconds: the separate trainings up to and including this rung",
    "wall_time": "seconds: this rung's training alone",
}
_HIGH_FIDELITY = ("nokd", 1)


@dataclass(frozen=True)
class SyneTuneBlackbox:
    """One blackbox written: a search space, its tasks (datasets) and its table's shape."""

    name: str
    tasks: tuple[str, ...]
    num_architectures: int
    methods: tuple[str, ...]
    parts: tuple[int, ...]  # the ladder, cheapest first, ending at 1 (full data)
    resources: tuple[int, ...]  # the fidelity values, one per part

    @property
    def num_configurations(self) -> int:
        return self.num_architectures * len(self.methods)


@dataclass(frozen=True)
class SyneTuneExport:
    """What ``write_syne_tune_blackboxes`` wrote to ``folder``; ``skipped``: what it left out
    (a dataset/space, a method or a part) and why, one line each."""

    folder: Path
    blackboxes: tuple[SyneTuneBlackbox, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class _Layout:
    num_architectures: int
    methods: tuple[str, ...]
    parts: tuple[int, ...]


def check_new_folder(folder: str | os.PathLike[str]) -> Path:
    """``folder`` must not exist or be an empty folder (nothing in it is ever replaced).

    Raises:
        FileExistsError: a file, or a folder with something in it.
    """
    folder = Path(folder)
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir():
            raise FileExistsError(f"{folder}: exists and is not a folder; choose a new folder")
        if any(folder.iterdir()):
            raise FileExistsError(
                f"{folder}: the folder is not empty; choose a new or empty folder "
                "(nothing was written)"
            )
    return folder


def _layout(bench: TabularBenchmark, space: str, dataset: str) -> tuple[_Layout | None, list[str]]:
    """The ladder that (dataset, space) holds for every architecture (None if none), and
    notes on what is left out: methods that hold no low part for every architecture, and
    parts that not every remaining method holds."""
    n = bench.num_architectures(space, dataset)
    where = f"{dataset}/{space}"

    def complete(method: str, part: int) -> bool:
        if not bench.has_fidelity(space, method, part, dataset):
            return False
        return not np.isnan(bench.column(space, method, part, "valid_acc", dataset)).any()

    if not complete(*_HIGH_FIDELITY):
        return None, [
            f"{where}: left out, the high fidelity (nokd at full data) does not hold every "
            f"one of its {n} architectures"
        ]
    held = {
        method: {p for p in bench.parts(space, method, dataset) if p > 1 and complete(method, p)}
        for method in bench.methods(space, dataset)
    }
    notes = [
        f"{where}: method {method} left out, it holds no low part for every architecture"
        for method, parts in held.items()
        if not parts
    ]
    held = {method: parts for method, parts in held.items() if parts}
    if not held:
        return None, [*notes, f"{where}: left out, no low-fidelity part is complete"]
    ladder = sorted(set.intersection(*held.values()), reverse=True)
    dropped = sorted(set.union(*held.values()) - set(ladder), reverse=True)
    if dropped:
        notes.append(
            f"{where}: part(s) {', '.join(f'1/{p}' for p in dropped)} left out, not held by "
            "every method for every architecture"
        )
    if not ladder:
        return None, [*notes, f"{where}: left out, no low part is held by every method"]
    return _Layout(n, tuple(held), (*ladder, 1)), notes


def _objectives(bench: TabularBenchmark, space: str, dataset: str, layout: _Layout) -> np.ndarray:
    """[configurations, 1 seed, fidelities, objectives]; rows arch-major, then method."""
    n, methods, parts = layout.num_architectures, layout.methods, layout.parts
    out = np.empty((n, len(methods), 1, len(parts), len(OBJECTIVES)))
    for m, method in enumerate(methods):
        elapsed = np.zeros(n)
        for f, part in enumerate(parts):
            key = _HIGH_FIDELITY if part == 1 else (method, part)
            column = {name: bench.column(space, *key, name, dataset) for name in METRICS}
            elapsed = elapsed + column["wall_time"]
            out[:, m, 0, f] = np.stack(
                [column["valid_acc"], column["test_acc"], elapsed, column["wall_time"]], axis=1
            )
    return out.reshape(n * len(methods), 1, len(parts), len(OBJECTIVES))


def _domain(kind: str, **kwargs: Any) -> dict[str, Any]:
    """A Syne Tune domain as its ``config_space_to_json_dict`` writes it."""
    return {
        "domain_cls": kind,
        "domain_kwargs": kwargs,
        "sampler_cls": "Uniform",
        "sampler_kwargs": {},
    }


def _import_parquet_writer() -> tuple[Any, Any]:
    try:
        import fastparquet
        import pandas
    except ImportError as error:
        raise ImportError(
            "writing a Syne Tune blackbox needs pandas and fastparquet: pip install "
            f"'kdnas[syne-tune]' (or pip install pandas fastparquet) ({error})"
        ) from None
    return pandas, fastparquet


def write_syne_tune_blackboxes(
    bench: TabularBenchmark,
    folder: str | os.PathLike[str],
    architectures: Mapping[str, Sequence[Any]] | None = None,
) -> SyneTuneExport:
    """Write ``bench`` as Syne Tune blackboxes, one per search space, into ``folder``.

    Args:
        bench: the benchmark (the paper's, an open-format folder, or a store's).
        folder: a new or empty folder (made with its parents); written whole or not at all
            (the files go to a temporary folder beside it, renamed when complete).
        architectures: optional ``{space: [JSON-able architecture, ...]}`` in index order,
            written as ``architectures.json`` beside the blackbox (a store's export has it).

    Returns:
        The blackboxes written and the (dataset, space) pairs left out, with the reason.

    Raises:
        FileExistsError: ``folder`` is a file or a folder with something in it.
        ValueError: no (dataset, space) holds a complete ladder (nothing is written).
        ImportError: pandas or fastparquet is missing (the message says what to install).
    """
    folder = check_new_folder(folder)
    writers = _import_parquet_writer()
    plans: dict[str, tuple[_Layout, list[str]]] = {}
    skipped: list[str] = []
    for dataset in bench.datasets():
        for space in bench.spaces(dataset):
            layout, notes = _layout(bench, space, dataset)
            skipped += notes
            if layout is None:
                continue
            if space not in plans:
                plans[space] = (layout, [dataset])
            elif plans[space][0] != layout:
                first = plans[space][1][0]
                skipped.append(
                    f"{dataset}/{space}: left out, its architectures, methods or parts differ "
                    f"from {first}/{space}'s, and the tasks of one blackbox share its rows"
                )
            else:
                plans[space][1].append(dataset)
    if not plans:
        raise ValueError(
            "no dataset/space of the benchmark holds a complete fidelity ladder, so there "
            "is no Syne Tune blackbox to write (nothing was written): " + "; ".join(skipped)
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's folder is private; the export is not
    try:
        written = []
        for space, (layout, datasets) in plans.items():
            written.append(
                _write_blackbox(bench, staging / space, space, layout, datasets, *writers)
            )
            if architectures and space in architectures:
                listing = [architectures[space][i] for i in range(layout.num_architectures)]
                text = json.dumps(listing, indent=1) + "\n"
                (staging / space / "architectures.json").write_text(text, encoding="utf-8")
        check_new_folder(folder)  # nobody filled it meanwhile
        if folder.is_dir():
            folder.rmdir()
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return SyneTuneExport(folder, tuple(written), tuple(skipped))


def _write_blackbox(
    bench: TabularBenchmark,
    path: Path,
    space: str,
    layout: _Layout,
    datasets: list[str],
    pandas: Any,
    parquet: Any,
) -> SyneTuneBlackbox:
    path.mkdir()
    n, methods, parts = layout.num_architectures, layout.methods, layout.parts
    scale = math.lcm(*parts)
    resources = tuple(scale // part for part in parts)
    config_space = {
        "arch": _domain("Categorical", categories=list(range(n))),
        "method": _domain("Categorical", categories=list(methods)),
    }
    fidelity_space = {FIDELITY_NAME: _domain("Integer", lower=resources[0], upper=resources[-1])}
    for name, content in (("configspace", config_space), ("fidelityspace", fidelity_space)):
        (path / f"{name}.json").write_text(json.dumps(content), encoding="utf-8")
    rows = pandas.DataFrame(
        {
            "arch": np.repeat(np.arange(n, dtype=np.int64), len(methods)),
            "method": list(methods) * n,
        }
    )
    # fastparquet, gzip: what Syne Tune writes and reads its own blackboxes with.
    parquet.write(
        str(path / "hyperparameters.parquet"), rows, compression="GZIP", write_index=False
    )
    objectives = np.stack([_objectives(bench, space, d, layout) for d in datasets])
    np.save(path / "objectives_evaluations.npy", objectives, allow_pickle=False)
    np.save(path / "fidelities_values.npy", np.asarray(resources, np.int64), allow_pickle=False)
    metadata = {
        "objectives_names": list(OBJECTIVES),
        "task_names": list(datasets),
        "kdnas": {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "space": space,
            "hyperparameters": list(HYPERPARAMETERS),
            "fidelity": FIDELITY_NAME,
            "parts": list(parts),
            "resources": list(resources),
            "top_rung": "full data with plain cross-entropy (nokd), the high fidelity, "
            "for every method",
            "units": dict(_UNITS),
            "description": bench.metadata.get("description", ""),
            "provenance": dict(bench.metadata.get("provenance", {})),
        },
    }
    text = json.dumps(metadata, indent=1) + "\n"
    (path / "metadata.json").write_text(text, encoding="utf-8")
    return SyneTuneBlackbox(space, tuple(datasets), n, methods, parts, resources)
