"""kdnas's open benchmark format: a folder with ``metadata.json`` and ``entries.csv``.

Plain text, no pickle, so benchmarks can be shared and inspected safely. The full
specification is in docs/benchmark.md; in short:

- ``metadata.json``: ``{"format": "kdnas-tabular-benchmark", "version": 1, "description",
  "datasets", "spaces", "methods", "parts", "num_architectures", "metrics", "units",
  "num_entries", "provenance"}``.
- ``entries.csv``: a header ``dataset,space,method,part,arch_index,test_acc,valid_acc,wall_time``
  and one row per entry; floats are written with Python's ``repr`` (the shortest text that reads
  back to the same float64), so export -> import is exact.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdnas.bench.tabular import (
    METRICS,
    BenchmarkFormatError,
    _TableBuilder,
    build_with_metadata,
)

if TYPE_CHECKING:
    from kdnas.bench.tabular import TabularBenchmark

__all__ = [
    "COLUMNS",
    "ENTRIES_FILE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "METADATA_FILE",
    "read_open_format",
    "write_open_format",
]

FORMAT_NAME = "kdnas-tabular-benchmark"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
ENTRIES_FILE = "entries.csv"
COLUMNS: tuple[str, ...] = ("dataset", "space", "method", "part", "arch_index", *METRICS)
_UNITS = {"test_acc": "fraction", "valid_acc": "fraction", "wall_time": "seconds"}


def write_open_format(bench: TabularBenchmark, folder: str | os.PathLike[str]) -> Path:
    """Write ``bench`` into ``folder`` (created if needed; existing files are replaced).

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    metadata: dict[str, Any] = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "description": bench.metadata.get("description", ""),
        **bench.name_orders(),
        "num_architectures": bench.architecture_counts(),
        "metrics": list(METRICS),
        "units": dict(_UNITS),
        "num_entries": bench.num_entries,
        "provenance": dict(bench.metadata.get("provenance", {})),
    }
    with (folder / ENTRIES_FILE).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        for record in bench.records():
            writer.writerow(
                (
                    record.dataset,
                    record.space,
                    record.method,
                    record.part,
                    record.arch_index,
                    *(repr(getattr(record, name)) for name in METRICS),
                )
            )
    text = json.dumps(metadata, indent=1, sort_keys=False)
    (folder / METADATA_FILE).write_text(text + "\n", encoding="utf-8")
    return folder


def read_open_format(folder: str | os.PathLike[str]) -> TabularBenchmark:
    """Read a benchmark folder written by ``write_open_format`` (or by hand to the spec).

    Raises:
        FileNotFoundError: a file is missing.
        BenchmarkFormatError: malformed JSON or CSV; one line naming the file and line.
    """
    folder = Path(folder)
    metadata = _read_metadata(folder / METADATA_FILE)
    builder = _TableBuilder(str(folder / ENTRIES_FILE))
    count = _read_entries(folder / ENTRIES_FILE, builder)
    if count == 0:
        raise builder.fail("", "holds no entries")
    expected = metadata.get("num_entries")
    if expected is not None and expected != count:
        raise builder.fail(
            "",
            f"holds {count} entries but {METADATA_FILE} says num_entries={expected!r} "
            "(truncated or edited file?)",
        )
    meta_builder_source = builder.source
    try:
        return build_with_metadata(builder, metadata)
    except BenchmarkFormatError as error:
        # Problems found here concern the metadata's lists rather than a CSV line.
        message = str(error).replace(meta_builder_source, str(folder / METADATA_FILE), 1)
        raise BenchmarkFormatError(message) from None


def _read_metadata(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (an open-format benchmark needs it)")
    try:
        metadata = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise BenchmarkFormatError(
            f"{path}: line {error.lineno} column {error.colno}: invalid JSON ({error.msg})"
        ) from None
    except UnicodeDecodeError as error:
        raise BenchmarkFormatError(f"{path}: not UTF-8 text ({error.reason})") from None
    except RecursionError:
        raise BenchmarkFormatError(f"{path}: JSON nested too deeply") from None
    if not isinstance(metadata, dict):
        raise BenchmarkFormatError(f"{path}: expected a JSON object at the top level")
    if metadata.get("format") != FORMAT_NAME:
        raise BenchmarkFormatError(
            f'{path}: "format" must be {FORMAT_NAME!r}, got {metadata.get("format")!r}'
        )
    version = metadata.get("version")
    if version != FORMAT_VERSION:
        raise BenchmarkFormatError(
            f'{path}: unsupported "version" {version!r}; this kdnas reads version {FORMAT_VERSION}'
        )
    metrics = metadata.get("metrics", list(METRICS))
    if list(metrics) != list(METRICS):
        raise BenchmarkFormatError(f'{path}: "metrics" must be {list(METRICS)}, got {metrics!r}')
    for key, kind in (("description", str), ("provenance", dict)):
        if key in metadata and not isinstance(metadata[key], kind):
            raise BenchmarkFormatError(
                f'{path}: "{key}" must be a JSON {"string" if kind is str else "object"}'
            )
    return metadata


def _read_entries(path: Path, builder: _TableBuilder) -> int:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (an open-format benchmark needs it)")
    count = 0
    try:
        # utf-8-sig: spreadsheet programs save CSV with a byte-order mark; it is skipped.
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = next(reader, None)
            if header is None or tuple(field.strip() for field in header) != COLUMNS:
                raise BenchmarkFormatError(
                    f"{path}: line 1: header must be {','.join(COLUMNS)}, got "
                    f"{','.join(header) if header else 'nothing'}"
                )
            for row in reader:
                where = f"line {reader.line_num}"
                if not row:
                    continue
                if len(row) != len(COLUMNS):
                    raise builder.fail(where, f"expected {len(COLUMNS)} fields, got {len(row)}")
                dataset, space, method, part, arch, *metrics = (field.strip() for field in row)
                key = (dataset, space, method, _parse_int(part), _parse_int(arch))
                values = tuple(_parse_float(text) for text in metrics)
                builder.add(
                    key, values, f"{where} ({dataset}/{space}/{method}/{part}/arch {arch})"
                )
                count += 1
    except csv.Error as error:
        raise BenchmarkFormatError(f"{path}: line {reader.line_num}: bad CSV ({error})") from None
    except UnicodeDecodeError as error:
        raise BenchmarkFormatError(f"{path}: not UTF-8 text ({error.reason})") from None
    return count


def _parse_int(text: str) -> int | str:
    # Returning the text unchanged lets the builder's check name the bad value.
    try:
        return int(text)
    except ValueError:
        return text


def _parse_float(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text
