"""page_reader: single values read page by page equal what Arrow reads; what it cannot read it says so."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ingest.column_cache import ColumnCache
from ingest.page_reader import Unsupported, locate_pages, read_rows
from ingest.parquet_source import ParquetSource, open_parquet

SCHEMA = pa.schema([pa.field("n", pa.int64()), pa.field("maybe", pa.string()),
                    pa.field("text", pa.string(), nullable=False)])


def _write(path: Path, rows: int, **options) -> pa.Table:
    generator = random.Random(rows)
    texts = ["{\"i\": %d, \"pad\": \"%s\"}" % (i, "é" * generator.randrange(0, 300)) for i in range(rows)]
    table = pa.Table.from_arrays([pa.array(range(rows), pa.int64()),
                                  pa.array([t if i % 3 else None for i, t in enumerate(texts)], pa.string()),
                                  pa.array(texts, pa.string())], schema=SCHEMA)
    pq.write_table(table, path, **options)
    return table


def _read_at(path: Path):
    data = path.read_bytes()
    return lambda offset, size: memoryview(data)[offset:offset + size]


def _chunk(path: Path, group: int, name: str):
    metadata = pq.ParquetFile(path).metadata
    index = metadata.schema.names.index(name)
    return metadata.row_group(group).column(index), metadata.schema.column(index)


@pytest.mark.parametrize("options", [
    {"compression": "zstd", "data_page_size": 4096, "write_batch_size": 64},
    {"compression": "snappy", "data_page_size": 20_000, "data_page_version": "2.0"},
    {"compression": "gzip", "data_page_version": "2.0", "write_statistics": False},
    {"compression": "none", "data_page_size": 1024, "write_batch_size": 10},
    {"compression": "brotli", "use_dictionary": ["maybe"]},
], ids=["zstd-v1", "snappy-v2", "gzip-v2-nostats", "none", "brotli"])
def test_values_equal_arrow_for_any_rows(tmp_path: Path, options: dict) -> None:
    """Any set of rows, in any order, over many pages and row groups, reads as Arrow reads it."""
    path = tmp_path / "t.parquet"
    _write(path, 3000, row_group_size=1100, use_dictionary=options.pop("use_dictionary", False), **options)
    arrow = pq.ParquetFile(path)
    read_at = _read_at(path)
    generator = random.Random(7)
    for group in range(arrow.metadata.num_row_groups):
        expected = arrow.read_row_group(group, columns=["text"]).column("text").to_pylist()
        pages = locate_pages(read_at, *_chunk(path, group, "text"))
        assert sum(page.rows for page in pages.pages) == len(expected)
        rows = generator.sample(range(len(expected)), 17) + [0, len(expected) - 1]
        assert read_rows(read_at, pages, reversed(rows)) == {row: expected[row] for row in rows}
        assert read_rows(read_at, pages, range(len(expected))) == dict(enumerate(expected))


def test_many_pages_are_found_and_only_needed_ones_decoded(tmp_path: Path) -> None:
    """A chunk of many small pages: reading one row touches the bytes of one page only."""
    path = tmp_path / "t.parquet"
    _write(path, 2000, compression="zstd", data_page_size=2048, write_batch_size=16, use_dictionary=False)
    data = path.read_bytes()
    touched: list[tuple[int, int]] = []

    def read_at(offset: int, size: int):
        touched.append((offset, size))
        return memoryview(data)[offset:offset + size]

    pages = locate_pages(read_at, *_chunk(path, 0, "text"))
    assert len(pages.pages) > 20
    touched.clear()
    target = pages.pages[len(pages.pages) // 2]
    value = read_rows(read_at, pages, [target.first_row + 1])
    assert value == {target.first_row + 1: pq.read_table(path).column("text")[target.first_row + 1].as_py()}
    assert touched == [(target.body_offset, target.compressed_size)]


def test_nullable_dictionary_and_framed_lz4_columns_are_unsupported(tmp_path: Path) -> None:
    """A nullable column, a dictionary-encoded one and Hadoop-framed LZ4 are refused rather than misread."""
    path = tmp_path / "t.parquet"
    _write(path, 500, use_dictionary=["text"])
    with pytest.raises(Unsupported):
        locate_pages(_read_at(path), *_chunk(path, 0, "maybe"))
    with pytest.raises(Unsupported):
        locate_pages(_read_at(path), *_chunk(path, 0, "text"))
    framed = tmp_path / "lz4.parquet"
    _write(framed, 500, compression="lz4")
    if pq.ParquetFile(framed).metadata.row_group(0).column(2).compression == "LZ4":
        with pytest.raises(Unsupported):
            locate_pages(_read_at(framed), *_chunk(framed, 0, "text"))


def test_source_values_fall_back_to_arrow(tmp_path: Path) -> None:
    """ParquetSource.values gives the same answer with page reads, through the fallback, and without raw access."""
    path = tmp_path / "t.parquet"
    table = _write(path, 1500, row_group_size=600, data_page_size=4096, write_batch_size=64, use_dictionary=["maybe"])
    data = path.read_bytes()

    def read_at(offset: int, size: int):
        return memoryview(data)[offset:offset + size]

    cache = ColumnCache()
    paged = ParquetSource(lambda: open_parquet(path), key=("t",), cache=cache, read_at=read_at)
    plain = ParquetSource(lambda: open_parquet(path))
    for group, first in ((0, 0), (1, 600), (2, 1200)):
        rows = [0, 5, 299, 1, 298]
        for name in ("text", "maybe", "n"):
            expected = {row: table.column(name)[first + row].as_py() for row in rows}
            assert paged.values(group, name, rows) == expected
            assert plain.values(group, name, rows) == expected


def test_a_page_that_does_not_decode_falls_back(tmp_path: Path) -> None:
    """Bytes that are not what the footer promises (a torn copy) raise Unsupported; values come from Arrow."""
    path = tmp_path / "t.parquet"
    table = _write(path, 800, data_page_size=4096, write_batch_size=64, use_dictionary=False)
    data = bytearray(path.read_bytes())
    pages = locate_pages(_read_at(path), *_chunk(path, 0, "text"))
    page = pages.pages[3]
    data[page.body_offset:page.body_offset + page.compressed_size] = bytes(page.compressed_size)
    with pytest.raises(Unsupported):
        read_rows(lambda offset, size: memoryview(bytes(data))[offset:offset + size], pages, [page.first_row])
    source = ParquetSource(lambda: open_parquet(path), key=("torn",), cache=ColumnCache(),
                           read_at=lambda offset, size: memoryview(bytes(data))[offset:offset + size])
    assert source.values(0, "text", [page.first_row]) == {page.first_row: table.column("text")[page.first_row].as_py()}
