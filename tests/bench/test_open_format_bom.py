"""Open-format files saved by spreadsheet programs (a UTF-8 byte-order mark) load."""

from __future__ import annotations

from pathlib import Path

from kdnas.bench import TabularBenchmark


def test_files_with_a_utf8_byte_order_mark_load_identically(
    tmp_path: Path, tiny_bench: TabularBenchmark
) -> None:
    folder = tiny_bench.save(tmp_path / "bench")
    for name in ("entries.csv", "metadata.json"):
        path = folder / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    loaded = TabularBenchmark.load(folder)
    assert list(loaded.records()) == list(tiny_bench.records())
