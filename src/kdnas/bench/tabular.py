"""The tabular benchmark: stored results of training every architecture of a search space at
every low fidelity (data part x loss method) and at high fidelity.

Layout of the data (the paper's benchmark.pickle uses the same key names):

    dataset -> space -> method -> part -> arch_index -> (test_acc, valid_acc, wall_time)

Accuracies are fractions in [0, 1]; ``wall_time`` is the seconds the training run took on the
hardware that made the table. Part is the denominator of the training-data fraction (27 = the
fixed 1/27 subset, 1 = the full training set). High fidelity is method "nokd" at part 1.

The table is held as one dense float64 array per metric with axes
``dataset x space x method x part x arch`` (NaN where the table has no entry), so that a whole
column is a cheap read-only view: simulated searches read columns, not dicts.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from kdnas.core import METHODS
from kdnas.paper import SPACE_BENCHMARK_KEYS
from kdnas.safe_pickle import UnsafePickleError, load_plain_pickle

__all__ = [
    "BENCHMARK_ENV_VAR",
    "METRICS",
    "PAPER_SPACE_KEYS",
    "BenchmarkCell",
    "BenchmarkEntry",
    "BenchmarkFormatError",
    "BenchmarkKeyError",
    "BenchmarkRecord",
    "TabularBenchmark",
    "resolve_benchmark_path",
]

logger = logging.getLogger(__name__)

#: The metrics every entry holds, in storage order.
METRICS: tuple[str, ...] = ("test_acc", "valid_acc", "wall_time")

#: Environment variable naming the default benchmark (a benchmark.pickle or an open-format folder).
BENCHMARK_ENV_VAR = "KDNAS_BENCHMARK"

#: ``Architecture.space`` names of kdnas's search spaces -> the paper benchmark's space keys.
PAPER_SPACE_KEYS: Mapping[str, str] = MappingProxyType(SPACE_BENCHMARK_KEYS)

_PAPER_REPOSITORY = "github.com/IlyaTrofimov/MF_NAS_KD"
_PICKLE_NAME = "benchmark.pickle"
# Names end up in CSV cells, JSON keys and key paths such as "cifar100/mobilenet/kd/27".
_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.+-]+")


class BenchmarkFormatError(ValueError):
    """A benchmark file is malformed. The message is one line naming the file and the problem."""


class BenchmarkKeyError(KeyError, ValueError):
    """A query names a dataset, space, method, part or architecture the table does not hold.

    It is both a ``KeyError`` (a failed lookup) and a ``ValueError`` (bad user input), and its
    message lists what the table does hold.
    """

    def __str__(self) -> str:
        # KeyError would print the message in quotes.
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class BenchmarkEntry:
    """One stored evaluation.

    Args:
        test_acc: accuracy on the test split, a fraction in [0, 1].
        valid_acc: accuracy on the validation split, a fraction in [0, 1].
        wall_time: seconds the training run took on the benchmark's hardware.
    """

    test_acc: float
    valid_acc: float
    wall_time: float


@dataclass(frozen=True)
class BenchmarkCell:
    """One column of the table: a (dataset, space, method, part) combination."""

    dataset: str
    space: str
    method: str
    part: int

    def path(self) -> str:
        """Key path, e.g. ``"cifar100/mobilenet/kd/27"``."""
        return f"{self.dataset}/{self.space}/{self.method}/{self.part}"


@dataclass(frozen=True)
class BenchmarkRecord:
    """One row of a benchmark, the unit of ``TabularBenchmark.from_records`` and the CSV format.

    Args:
        dataset: dataset key, e.g. "cifar100".
        space: search-space key, e.g. "mobilenet".
        method: loss-method key, e.g. "nokd" or "kd".
        part: denominator of the training-data fraction (1 = all of it), an integer >= 1.
        arch_index: index of the architecture within the space, an integer >= 0.
        test_acc: test accuracy, a fraction in [0, 1].
        valid_acc: validation accuracy, a fraction in [0, 1].
        wall_time: training seconds, finite and >= 0.
    """

    dataset: str
    space: str
    method: str
    part: int
    arch_index: int
    test_acc: float
    valid_acc: float
    wall_time: float

    def __post_init__(self) -> None:
        problem = _record_problem(self)
        if problem is not None:
            raise ValueError(f"BenchmarkRecord {self.key_path()}: {problem}")

    def key_path(self) -> str:
        """Key path, e.g. ``"cifar100/mobilenet/kd/27/arch 5"``."""
        return f"{self.dataset}/{self.space}/{self.method}/{self.part}/arch {self.arch_index}"

    @classmethod
    def from_mapping(cls, row: Mapping[str, Any]) -> BenchmarkRecord:
        """Build a record from a dict with the eight field names as keys."""
        missing = [name for name in _RECORD_FIELDS if name not in row]
        if missing:
            raise ValueError(f"record lacks the field(s) {', '.join(missing)}")
        extra = sorted(str(name) for name in row if name not in _RECORD_FIELDS)
        if extra:
            raise ValueError(
                f"record has unknown field(s) {', '.join(extra)}; "
                f"expected exactly {', '.join(_RECORD_FIELDS)}"
            )
        return cls(**{name: row[name] for name in _RECORD_FIELDS})


_RECORD_FIELDS: tuple[str, ...] = (
    "dataset",
    "space",
    "method",
    "part",
    "arch_index",
    *METRICS,
)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return _is_int(value) or isinstance(value, (float, np.floating))


def _name_problem(kind: str, value: Any) -> str | None:
    if not isinstance(value, str) or not _NAME_PATTERN.fullmatch(value):
        return f"{kind} key must be a name of letters, digits and _.+-, got {value!r}"
    return None


def _part_problem(value: Any) -> str | None:
    if not _is_int(value) or value < 1:
        return f"part key must be an integer >= 1, got {value!r}"
    return None


def _arch_problem(value: Any) -> str | None:
    if not _is_int(value) or value < 0:
        return f"architecture index must be an integer >= 0, got {value!r}"
    return None


def _metric_problem(name: str, value: Any) -> str | None:
    if not _is_number(value):
        return f"{name} must be a number, got {type(value).__name__} {value!r}"
    number = float(value)
    if name == "wall_time":
        if not (math.isfinite(number) and number >= 0.0):
            return f"wall_time must be a finite number of seconds >= 0, got {number!r}"
    elif not (0.0 <= number <= 1.0):
        return f"{name} must be a fraction in [0, 1], got {number!r}"
    return None


def _record_problem(record: BenchmarkRecord) -> str | None:
    problems = (
        _name_problem("dataset", record.dataset),
        _name_problem("space", record.space),
        _name_problem("method", record.method),
        _part_problem(record.part),
        _arch_problem(record.arch_index),
        *(_metric_problem(name, getattr(record, name)) for name in METRICS),
    )
    return next((problem for problem in problems if problem is not None), None)


def _method_order(names: Iterable[str]) -> list[str]:
    """The paper's methods in ``kdnas.core.METHODS`` order, then any others by name."""
    names = set(names)
    known = [name for name in METHODS if name in names]
    return known + sorted(names.difference(known))


def _listing(values: Iterable[Any]) -> str:
    text = ", ".join(str(value) for value in values)
    return text or "nothing"


class _TableBuilder:
    """Collects validated rows, then lays them out as dense arrays."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[tuple[str, str, str, int, int, float, float, float]] = []
        self._seen: set[tuple[str, str, str, int, int]] = set()

    def fail(self, where: str, problem: str) -> BenchmarkFormatError:
        location = f"{self.source}: {where}: " if where else f"{self.source}: "
        return BenchmarkFormatError(location + problem)

    def add(
        self, key: tuple[str, str, str, int, int], values: tuple[Any, ...], where: str
    ) -> None:
        for problem in (
            _name_problem("dataset", key[0]),
            _name_problem("space", key[1]),
            _name_problem("method", key[2]),
            _part_problem(key[3]),
            _arch_problem(key[4]),
            *(_metric_problem(name, value) for name, value in zip(METRICS, values, strict=True)),
        ):
            if problem is not None:
                raise self.fail(where, problem)
        normalised = (key[0], key[1], key[2], int(key[3]), int(key[4]))
        if normalised in self._seen:
            raise self.fail(where, "duplicate entry (the same key appears twice)")
        self._seen.add(normalised)
        self.rows.append((*normalised, *(float(value) for value in values)))

    def build(
        self,
        *,
        datasets: list[str] | None = None,
        spaces: list[str] | None = None,
        methods: list[str] | None = None,
        parts: list[int] | None = None,
        num_architectures: Mapping[str, Mapping[str, int]] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> TabularBenchmark:
        if not self.rows:
            raise self.fail("", "holds no entries")
        used_datasets = list(dict.fromkeys(row[0] for row in self.rows))
        used_spaces = list(dict.fromkeys(row[1] for row in self.rows))
        datasets = datasets if datasets is not None else used_datasets
        spaces = spaces if spaces is not None else used_spaces
        methods = methods if methods is not None else _method_order(row[2] for row in self.rows)
        parts = parts if parts is not None else sorted({row[3] for row in self.rows})
        for kind, declared, used in (
            ("dataset", datasets, used_datasets),
            ("space", spaces, used_spaces),
            ("method", methods, {row[2] for row in self.rows}),
            ("part", parts, {row[3] for row in self.rows}),
        ):
            undeclared = sorted(str(name) for name in set(used) - set(declared))
            if undeclared:
                raise self.fail(
                    "",
                    f"entries use the {kind}(s) {', '.join(undeclared)} that the metadata "
                    f"does not list (it lists {_listing(declared)})",
                )
        d_index = {name: i for i, name in enumerate(datasets)}
        s_index = {name: i for i, name in enumerate(spaces)}
        m_index = {name: i for i, name in enumerate(methods)}
        p_index = {part: i for i, part in enumerate(parts)}

        sizes = np.zeros((len(datasets), len(spaces)), dtype=np.int64)
        for row in self.rows:
            cell = (d_index[row[0]], s_index[row[1]])
            sizes[cell] = max(sizes[cell], row[4] + 1)
        for dataset, by_space in (num_architectures or {}).items():
            for space, count in by_space.items():
                if dataset not in d_index or space not in s_index:
                    raise self.fail(
                        "num_architectures", f"names {dataset}/{space}, which has no entries"
                    )
                if not _is_int(count) or count < sizes[d_index[dataset], s_index[space]]:
                    raise self.fail(
                        f"num_architectures {dataset}/{space}",
                        f"must be an integer above every arch_index used "
                        f"({int(sizes[d_index[dataset], s_index[space]]) - 1}), got {count!r}",
                    )
                sizes[d_index[dataset], s_index[space]] = count

        shape = (len(datasets), len(spaces), len(methods), len(parts), int(sizes.max()))
        arrays = {name: np.full(shape, np.nan, dtype=np.float64) for name in METRICS}
        rows = np.array(
            [
                (d_index[r[0]], s_index[r[1]], m_index[r[2]], p_index[r[3]], r[4])
                for r in self.rows
            ],
            dtype=np.int64,
        )
        where = tuple(rows.T)
        for k, name in enumerate(METRICS):
            arrays[name][where] = [row[5 + k] for row in self.rows]
        return TabularBenchmark(
            datasets=datasets,
            spaces=spaces,
            methods=methods,
            parts=parts,
            num_architectures=sizes,
            arrays=arrays,
            metadata=metadata or {},
        )


class TabularBenchmark:
    """A tabular NAS benchmark held as dense arrays; immutable once built.

    Build one with ``load`` (the paper's benchmark.pickle or an open-format folder) or
    ``from_records``; the constructor is internal.

    Example:
        >>> bench = TabularBenchmark.load("benchmark.pickle")  # doctest: +SKIP
        >>> bench.query("mobilenet", 5, "kd", 27).valid_acc  # doctest: +SKIP
        >>> hf = bench.column("mobilenet", "nokd", 1, "test_acc")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        datasets: list[str],
        spaces: list[str],
        methods: list[str],
        parts: list[int],
        num_architectures: np.ndarray,
        arrays: Mapping[str, np.ndarray],
        metadata: Mapping[str, Any],
    ) -> None:
        self._datasets = tuple(datasets)
        self._spaces = tuple(spaces)
        self._methods = tuple(methods)
        self._parts = tuple(int(part) for part in parts)
        self._index = {
            "dataset": {name: i for i, name in enumerate(self._datasets)},
            "space": {name: i for i, name in enumerate(self._spaces)},
            "method": {name: i for i, name in enumerate(self._methods)},
            "part": {part: i for i, part in enumerate(self._parts)},
        }
        self._sizes = np.array(num_architectures, dtype=np.int64)
        self._sizes.setflags(write=False)
        self._arrays: dict[str, np.ndarray] = {}
        for name in METRICS:
            array = np.array(arrays[name], dtype=np.float64)
            array.setflags(write=False)
            self._arrays[name] = array
        # A (dataset, space, method, part, arch) holds an entry iff its test_acc is a number.
        self._has_entry = ~np.isnan(self._arrays["test_acc"])
        self._has_entry.setflags(write=False)
        self._cell_present = self._has_entry.any(axis=-1)
        self._metadata = dict(metadata)

    # ------------------------------------------------------------------ construction

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TabularBenchmark:
        """Load the paper's benchmark.pickle or a folder in kdnas's open format.

        Args:
            path: a pickle file; a folder holding ``metadata.json`` + ``entries.csv`` (the open
                format, see docs/benchmark.md); or a folder holding ``benchmark.pickle``.

        Raises:
            FileNotFoundError: nothing readable at ``path``.
            BenchmarkFormatError: the file is hostile, truncated or malformed (one line naming
                the file, the key path and the problem).
        """
        path = Path(path)
        if path.is_dir():
            from kdnas.bench.open_format import METADATA_FILE, read_open_format

            if (path / METADATA_FILE).is_file():
                return read_open_format(path)
            if (path / _PICKLE_NAME).is_file():
                return cls._load_pickle(path / _PICKLE_NAME)
            raise FileNotFoundError(
                f"{path}: holds neither {METADATA_FILE} (kdnas open format) nor {_PICKLE_NAME}"
            )
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such benchmark file or folder")
        return cls._load_pickle(path)

    @classmethod
    def _load_pickle(cls, path: Path) -> TabularBenchmark:
        try:
            tree = load_plain_pickle(path)
        except UnsafePickleError as error:
            raise BenchmarkFormatError(str(error)) from None
        builder = _TableBuilder(str(path))
        _walk_nested(tree, builder)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        metadata = {
            "description": "Tabular benchmark of Trofimov et al., 'Multi-fidelity neural "
            "architecture search with knowledge distillation' (CIFAR-100 and ImageNet).",
            "provenance": {
                "source": f"https://{_PAPER_REPOSITORY}",
                "file": path.name,
                "sha256": digest,
                "converted_by": "kdnas.bench.TabularBenchmark.load",
            },
        }
        bench = builder.build(metadata=metadata)
        logger.debug("loaded %s: %d entries", path, bench.num_entries)
        return bench

    @classmethod
    def from_records(
        cls,
        records: Iterable[BenchmarkRecord | Mapping[str, Any]],
        metadata: Mapping[str, Any] | None = None,
    ) -> TabularBenchmark:
        """Build a benchmark from rows (``BenchmarkRecord`` objects or dicts with its fields).

        Args:
            records: the rows, in any order; each key (dataset, space, method, part,
                arch_index) at most once.
            metadata: optional dict with "description" (str), "provenance" (dict), the name
                orders "datasets", "spaces", "methods", "parts" (lists) and
                "num_architectures" ({dataset: {space: int}}, to declare architectures that
                have no entry at the end of a space). Names default to first-appearance order
                (methods: kdnas's canonical order; parts: ascending).

        Raises:
            BenchmarkFormatError: a bad or duplicate record (naming its position).
        """
        builder = _TableBuilder("records")
        for position, item in enumerate(records):
            where = f"record {position}"
            try:
                record = (
                    item
                    if isinstance(item, BenchmarkRecord)
                    else BenchmarkRecord.from_mapping(item)
                )
            except (TypeError, ValueError) as error:
                raise builder.fail(where, str(error)) from None
            builder.add(
                (record.dataset, record.space, record.method, record.part, record.arch_index),
                tuple(getattr(record, name) for name in METRICS),
                f"{where} ({record.key_path()})",
            )
        return build_with_metadata(builder, metadata or {})

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the benchmark to ``folder`` in the open format (metadata.json + entries.csv).

        Returns:
            The folder written.
        """
        from kdnas.bench.open_format import write_open_format

        return write_open_format(self, folder)

    # ------------------------------------------------------------------ listing

    @property
    def metadata(self) -> Mapping[str, Any]:
        """Description and provenance (a read-only view)."""
        return MappingProxyType(self._metadata)

    @property
    def num_entries(self) -> int:
        """Number of stored (dataset, space, method, part, arch) entries."""
        return int(self._has_entry.sum())

    def datasets(self) -> list[str]:
        """Dataset keys, e.g. ``["cifar100", "imagenet"]``."""
        return [name for d, name in enumerate(self._datasets) if self._cell_present[d].any()]

    def spaces(self, dataset: str = "cifar100") -> list[str]:
        """Search-space keys held for ``dataset``."""
        d = self._lookup("dataset", dataset)
        return [name for s, name in enumerate(self._spaces) if self._cell_present[d, s].any()]

    def methods(self, space: str, dataset: str = "cifar100") -> list[str]:
        """Method keys held for ``space`` (``kdnas.core.METHODS`` order first)."""
        d, s = self._lookup_space(dataset, space)
        return [name for m, name in enumerate(self._methods) if self._cell_present[d, s, m].any()]

    def parts(self, space: str, method: str, dataset: str = "cifar100") -> list[int]:
        """Parts held for ``space`` and ``method``, ascending (1 = the full training set)."""
        d, s, m = self._lookup_method(dataset, space, method)
        return [part for p, part in enumerate(self._parts) if self._cell_present[d, s, m, p]]

    def num_architectures(self, space: str, dataset: str = "cifar100") -> int:
        """Number of architectures of ``space`` (indices 0 .. n-1; some may lack entries)."""
        d, s = self._lookup_space(dataset, space)
        return int(self._sizes[d, s])

    def cells(self) -> Iterator[BenchmarkCell]:
        """Every (dataset, space, method, part) that holds at least one entry."""
        for d, s, m, p in zip(*np.nonzero(self._cell_present), strict=True):
            yield BenchmarkCell(
                self._datasets[d], self._spaces[s], self._methods[m], self._parts[p]
            )

    def records(self) -> Iterator[BenchmarkRecord]:
        """Every entry as a ``BenchmarkRecord``, in storage order."""
        for d, s, m, p, i in zip(*np.nonzero(self._has_entry), strict=True):
            yield BenchmarkRecord(
                self._datasets[d],
                self._spaces[s],
                self._methods[m],
                self._parts[p],
                int(i),
                *(float(self._arrays[name][d, s, m, p, i]) for name in METRICS),
            )

    def name_orders(self) -> dict[str, list[Any]]:
        """The stored order of every name axis (used by the open format)."""
        return {
            "datasets": list(self._datasets),
            "spaces": list(self._spaces),
            "methods": list(self._methods),
            "parts": list(self._parts),
        }

    def architecture_counts(self) -> dict[str, dict[str, int]]:
        """``{dataset: {space: num_architectures}}`` for every held (dataset, space)."""
        return {
            dataset: {
                space: self.num_architectures(space, dataset) for space in self.spaces(dataset)
            }
            for dataset in self.datasets()
        }

    # ------------------------------------------------------------------ queries

    def query(
        self,
        space: str,
        arch_index: int,
        method: str,
        part: int | str,
        dataset: str = "cifar100",
    ) -> BenchmarkEntry:
        """The stored result of one architecture at one fidelity.

        Raises:
            BenchmarkKeyError: an unknown key or an architecture without an entry there; the
                message lists what the table holds.
        """
        d, s, m, p = self._lookup_cell(dataset, space, method, part)
        size = int(self._sizes[d, s])
        if not _is_int(arch_index) or not 0 <= arch_index < size:
            raise BenchmarkKeyError(
                f"architecture index {arch_index!r} is not in {dataset}/{space}: "
                f"valid indices are 0..{size - 1}"
            )
        if not self._has_entry[d, s, m, p, arch_index]:
            held = np.flatnonzero(self._has_entry[d, s, m, p, :size])
            raise BenchmarkKeyError(
                f"{dataset}/{space}/{method}/{self._parts[p]} has no entry for architecture "
                f"{arch_index}; it holds {len(held)} of {size}: {_short_listing(held)}"
            )
        return BenchmarkEntry(
            *(float(self._arrays[name][d, s, m, p, arch_index]) for name in METRICS)
        )

    def column(
        self,
        space: str,
        method: str,
        part: int | str,
        metric: str,
        dataset: str = "cifar100",
    ) -> np.ndarray:
        """One metric of every architecture of a space at one fidelity.

        Args:
            metric: "test_acc", "valid_acc" (fractions) or "wall_time" (seconds).

        Returns:
            A read-only float64 array of length ``num_architectures(space, dataset)``, indexed
            by architecture index, NaN where the table has no entry.
        """
        if metric not in METRICS:
            raise BenchmarkKeyError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
        d, s, m, p = self._lookup_cell(dataset, space, method, part)
        return self._arrays[metric][d, s, m, p, : int(self._sizes[d, s])]

    def high_fidelity(self, space: str, dataset: str = "cifar100") -> dict[str, np.ndarray]:
        """The high-fidelity columns (method "nokd", part 1): ``{metric: column}``."""
        return {name: self.column(space, "nokd", 1, name, dataset) for name in METRICS}

    def has_fidelity(self, space: str, method: str, part: int, dataset: str = "cifar100") -> bool:
        """Whether the table holds a (method, part) column for ``space``."""
        try:
            self._lookup_cell(dataset, space, method, part)
        except BenchmarkKeyError:
            return False
        return True

    # ------------------------------------------------------------------ internals

    def _lookup(self, axis: str, name: Any) -> int:
        index = self._index[axis].get(name)
        if index is None:
            raise BenchmarkKeyError(
                f"unknown {axis} {name!r}; the benchmark holds {_listing(self._index[axis])}"
            )
        return index

    def _lookup_space(self, dataset: str, space: str) -> tuple[int, int]:
        d = self._lookup("dataset", dataset)
        s = self._index["space"].get(space)
        if s is None or not self._cell_present[d, s].any():
            raise BenchmarkKeyError(
                f"unknown space {space!r} for dataset {dataset!r}; it holds "
                f"{_listing(self.spaces(dataset))}"
            )
        return d, s

    def _lookup_method(self, dataset: str, space: str, method: str) -> tuple[int, int, int]:
        d, s = self._lookup_space(dataset, space)
        m = self._index["method"].get(method)
        if m is None or not self._cell_present[d, s, m].any():
            raise BenchmarkKeyError(
                f"unknown method {method!r} for {dataset}/{space}; it holds "
                f"{_listing(self.methods(space, dataset))}"
            )
        return d, s, m

    def _lookup_cell(
        self, dataset: str, space: str, method: str, part: int | str
    ) -> tuple[int, int, int, int]:
        d, s, m = self._lookup_method(dataset, space, method)
        key = int(part) if isinstance(part, str) and part.isdigit() else part
        p = self._index["part"].get(key) if _is_int(key) else None
        if p is None or not self._cell_present[d, s, m, p]:
            raise BenchmarkKeyError(
                f"unknown part {part!r} for {dataset}/{space}/{method}; it holds "
                f"{_listing(self.parts(space, method, dataset))}"
            )
        return d, s, m, p

    def __repr__(self) -> str:
        held = ", ".join(
            f"{dataset}/{space} ({self.num_architectures(space, dataset)} archs)"
            for dataset in self.datasets()
            for space in self.spaces(dataset)
        )
        return f"TabularBenchmark({self.num_entries} entries: {held})"


def _short_listing(indices: np.ndarray, limit: int = 20) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return shown + (", ..." if len(indices) > limit else "")


def build_with_metadata(builder: _TableBuilder, metadata: Mapping[str, Any]) -> TabularBenchmark:
    """Finish a builder with the name orders, counts and description of ``metadata``."""
    orders: dict[str, Any] = {}
    for key in ("datasets", "spaces", "methods", "parts"):
        value = metadata.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or len(set(map(str, value))) != len(value):
            raise builder.fail(
                f"metadata {key}", f"must be a list of distinct names, got {value!r}"
            )
        for item in value:
            problem = _part_problem(item) if key == "parts" else _name_problem(key[:-1], item)
            if problem is not None:
                raise builder.fail(f"metadata {key}", problem)
        orders[key] = value
    counts = metadata.get("num_architectures")
    if counts is not None and not (
        isinstance(counts, Mapping) and all(isinstance(v, Mapping) for v in counts.values())
    ):
        raise builder.fail(
            "metadata num_architectures", f"must be {{dataset: {{space: int}}}}, got {counts!r}"
        )
    kept = {key: metadata[key] for key in ("description", "provenance") if key in metadata}
    return builder.build(**orders, num_architectures=counts, metadata=kept)


_LEVELS: tuple[tuple[str, str], ...] = (
    ("dataset", "a dict of datasets"),
    ("space", "a dict of spaces"),
    ("method", "a dict of methods"),
    ("part", "a dict of parts"),
    ("arch", "a dict of architecture indices"),
)


def _walk_nested(tree: Any, builder: _TableBuilder) -> None:
    """Validate the paper's nested-dict layout and feed its entries to ``builder``."""

    def check_level(node: Any, depth: int, path: tuple[Any, ...]) -> None:
        where = "/".join(str(key) for key in path) or "top level"
        kind, expected = _LEVELS[depth]
        if not isinstance(node, dict):
            raise builder.fail(where, f"expected {expected}, got {type(node).__name__}")
        if not node:
            raise builder.fail(where, f"expected {expected}, got an empty dict")
        for key in node:
            problem = (
                _part_problem(key)
                if kind == "part"
                else _arch_problem(key)
                if kind == "arch"
                else _name_problem(kind, key)
            )
            if problem is not None:
                raise builder.fail(where, problem)

    check_level(tree, 0, ())
    for dataset, by_space in tree.items():
        check_level(by_space, 1, (dataset,))
        for space, by_method in by_space.items():
            check_level(by_method, 2, (dataset, space))
            for method, by_part in by_method.items():
                check_level(by_part, 3, (dataset, space, method))
                for part, by_arch in by_part.items():
                    check_level(by_arch, 4, (dataset, space, method, part))
                    for arch, entry in by_arch.items():
                        where = f"{dataset}/{space}/{method}/{part}/arch {arch}"
                        if not isinstance(entry, dict):
                            raise builder.fail(
                                where,
                                f"expected a dict with {', '.join(METRICS)}, "
                                f"got {type(entry).__name__}",
                            )
                        if set(entry) != set(METRICS):
                            raise builder.fail(
                                where,
                                f"expected exactly the keys {', '.join(METRICS)}, got "
                                f"{', '.join(sorted(map(str, entry))) or 'none'}",
                            )
                        builder.add(
                            (dataset, space, method, part, arch),
                            tuple(entry[name] for name in METRICS),
                            where,
                        )


def resolve_benchmark_path(
    cli_value: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
) -> Path:
    """The benchmark to use: the command-line value, else ``$KDNAS_BENCHMARK``.

    Args:
        cli_value: a path given explicitly (e.g. ``--benchmark``), or None.
        environ: the environment to read (default ``os.environ``).

    Raises:
        FileNotFoundError: neither is set, or the path does not exist; the message says where
            the paper's benchmark comes from.
    """
    environ = os.environ if environ is None else environ
    origin = "--benchmark"
    value: str | os.PathLike[str] | None = cli_value
    if value is None or str(value) == "":
        value = environ.get(BENCHMARK_ENV_VAR) or None
        origin = f"${BENCHMARK_ENV_VAR}"
    hint = (
        f"the benchmark is the file {_PICKLE_NAME} from the paper's repository "
        f"({_PAPER_REPOSITORY}), or ../shared/data/mf_nas_kd/ in this project's checkout "
        "(a folder in kdnas's open format works too)"
    )
    if value is None:
        raise FileNotFoundError(
            f"no benchmark given: pass --benchmark PATH or set {BENCHMARK_ENV_VAR}; {hint}"
        )
    path = Path(value).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"benchmark {str(path)!r} (from {origin}) does not exist; {hint}")
    return path
