"""Single values of a required, PLAIN-encoded byte-array Parquet column, decompressing only their pages.

``record_json`` is the widest column by far and a page of results needs only a few of its rows, often one
per row group. Arrow decodes whole column chunks (a row group of 30,000 rows is 14 pages of about 1.2 MB
each), so this module walks the chunk's page headers (Thrift compact protocol, parsed here) and decodes
only the pages holding the wanted rows. Anything it does not handle (dictionary or other encodings,
nullable or nested columns, unknown codecs) raises ``Unsupported``; the caller then reads the row group
with Arrow.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable, Iterable
from typing import Any

import pyarrow as pa

DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 2, 3
PLAIN = 0
HEADER_READ_BYTES = 4096
MAX_HEADER_BYTES = 16 * 1024 * 1024
CODECS = {"ZSTD": "zstd", "SNAPPY": "snappy", "GZIP": "gzip", "BROTLI": "brotli", "LZ4_RAW": "lz4_raw",
          "UNCOMPRESSED": None}
_LENGTH = struct.Struct("<I")

ReadAt = Callable[[int, int], Any]
"""``read_at(offset, size)``: bytes-like with up to ``size`` bytes of the file from ``offset``."""


class Unsupported(Exception):
    """The column chunk is not in a form this reader decodes; read it with Arrow instead."""


@dataclasses.dataclass(frozen=True, slots=True)
class Page:
    """Where one data page of a column chunk lies and which rows it holds."""

    first_row: int
    rows: int
    body_offset: int
    compressed_size: int
    uncompressed_size: int
    levels_size: int
    compressed: bool


@dataclasses.dataclass(frozen=True, slots=True)
class ChunkPages:
    """The data pages of one column chunk and its codec (an Arrow codec name, None for uncompressed).

    ``readable`` is False for a chunk this module cannot decode (remembered so it is not tried again).
    """

    codec: str | None
    pages: tuple[Page, ...]
    readable: bool = True

    @property
    def nbytes(self) -> int:
        """Approximate memory held (for byte-bounded caches)."""
        return 64 * len(self.pages) + 64


def _varint(data: Any, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, at
        shift += 7


def _zigzag(value: int) -> int:
    return (value >> 1) ^ -(value & 1)


def _skip(data: Any, at: int, kind: int, in_container: bool = False) -> int:
    """Skip one value of a compact-protocol type."""
    if kind in (1, 2):  # booleans: in a field header, in a container one byte each
        return at + 1 if in_container else at
    if kind == 3:
        return at + 1
    if kind in (4, 5, 6):
        return _varint(data, at)[1]
    if kind == 7:
        return at + 8
    if kind == 8:
        size, at = _varint(data, at)
        return at + size
    if kind in (9, 10):
        head = data[at]
        at += 1
        size, element = head >> 4, head & 0x0F
        if size == 15:
            size, at = _varint(data, at)
        for _ in range(size):
            at = _skip(data, at, element, True)
        return at
    if kind == 11:
        size, at = _varint(data, at)
        if size:
            types = data[at]
            at += 1
            for _ in range(size):
                at = _skip(data, at, types >> 4, True)
                at = _skip(data, at, types & 0x0F, True)
        return at
    if kind == 12:
        return _struct(data, at)[1]
    raise Unsupported(f"unknown thrift type {kind}")


def _struct(data: Any, at: int) -> tuple[dict[int, Any], int]:
    """Decode a compact-protocol struct: integers and nested structs by field id; other fields skipped."""
    fields: dict[int, Any] = {}
    field = 0
    while True:
        head = data[at]
        at += 1
        if head == 0:
            return fields, at
        kind, delta = head & 0x0F, head >> 4
        if delta:
            field += delta
        else:
            raw, at = _varint(data, at)
            field = _zigzag(raw)
        if kind in (1, 2):
            fields[field] = kind == 1
        elif kind in (3, 4, 5, 6):
            if kind == 3:
                fields[field] = data[at]
                at += 1
            else:
                raw, at = _varint(data, at)
                fields[field] = _zigzag(raw)
        elif kind == 12:
            fields[field], at = _struct(data, at)
        else:
            at = _skip(data, at, kind)


def _header(read_at: ReadAt, offset: int) -> tuple[dict[int, Any], int]:
    """The page header at ``offset`` and its length in bytes."""
    size = HEADER_READ_BYTES
    while True:
        data = read_at(offset, size)
        try:
            header, length = _struct(data, 0)
            return header, length
        except IndexError:
            if len(data) < size or size >= MAX_HEADER_BYTES:
                raise Unsupported("truncated page header") from None
            size *= 4


def locate_pages(read_at: ReadAt, chunk: Any, column: Any) -> ChunkPages:
    """The data pages of a column chunk (``chunk``: Arrow column chunk metadata, ``column``: its schema column)."""
    if column.physical_type != "BYTE_ARRAY" or column.max_definition_level or column.max_repetition_level:
        raise Unsupported("only required, flat byte-array columns")
    if chunk.compression not in CODECS:
        raise Unsupported(f"codec {chunk.compression}")
    offset = chunk.data_page_offset
    if chunk.has_dictionary_page and chunk.dictionary_page_offset:
        offset = min(offset, chunk.dictionary_page_offset)
    end = offset + chunk.total_compressed_size
    pages = []
    row = 0
    while offset < end:
        header, length = _header(read_at, offset)
        kind, uncompressed, compressed = header.get(1), header.get(2), header.get(3)
        if kind is None or uncompressed is None or compressed is None:
            raise Unsupported("page header without type or sizes")
        body = offset + length
        if kind == DATA_PAGE:
            info = header.get(5) or {}
            rows, encoding, levels, is_compressed = info.get(1), info.get(2), 0, True
        elif kind == DATA_PAGE_V2:
            info = header.get(8) or {}
            rows, encoding = info.get(3), info.get(4)
            levels = (info.get(5) or 0) + (info.get(6) or 0)
            is_compressed = info.get(7, True)
        elif kind == DICTIONARY_PAGE:
            offset = body + compressed
            continue
        else:
            raise Unsupported(f"page type {kind}")
        if encoding != PLAIN or rows is None:
            raise Unsupported(f"page encoding {encoding}")
        pages.append(Page(row, rows, body, compressed, uncompressed, levels, bool(is_compressed)))
        row += rows
        offset = body + compressed
    if row != chunk.num_values:
        raise Unsupported("pages do not add up to the chunk's values")
    return ChunkPages(CODECS[chunk.compression], tuple(pages))


def _page_values(read_at: ReadAt, page: Page, codec: pa.Codec | None) -> Any:
    """The PLAIN-encoded values of a page, decompressed (into Arrow's memory pool, which reuses memory)."""
    raw = read_at(page.body_offset, page.compressed_size)
    if len(raw) != page.compressed_size:
        raise Unsupported("page body cut short")
    values = memoryview(raw)[page.levels_size:]
    if codec is None or not page.compressed:
        return values
    try:
        return memoryview(codec.decompress(values, decompressed_size=page.uncompressed_size - page.levels_size))
    except (OSError, pa.ArrowException) as exc:  # corrupt data: Arrow raises its IOError
        raise Unsupported(f"page does not decompress: {exc}") from None


def read_rows(read_at: ReadAt, pages: ChunkPages, rows: Iterable[int]) -> dict[int, str]:
    """The values of ``rows`` (row numbers within the row group), decoding only the pages that hold them.

    A page that does not decode as expected (corrupt, cut short) raises ``Unsupported``.
    """
    try:
        return _read_rows(read_at, pages, sorted(set(rows)))
    except (struct.error, ValueError, IndexError) as exc:  # ArrowInvalid is a ValueError
        raise Unsupported(f"page does not decode: {exc}") from None


def _read_rows(read_at: ReadAt, pages: ChunkPages, wanted: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    codec = pa.Codec(pages.codec) if pages.codec is not None else None
    unpack = _LENGTH.unpack_from
    index = 0
    for page in pages.pages:
        if index == len(wanted):
            break
        if wanted[index] >= page.first_row + page.rows:
            continue
        values = _page_values(read_at, page, codec)
        at, position = 0, page.first_row
        while index < len(wanted) and wanted[index] < page.first_row + page.rows:
            target = wanted[index]
            for _ in range(target - position):
                at += 4 + unpack(values, at)[0]
            position = target
            size = unpack(values, at)[0]
            if at + 4 + size > len(values):
                raise Unsupported("value runs past its page")
            found[target] = bytes(values[at + 4:at + 4 + size]).decode("utf-8")
            index += 1
    if index != len(wanted):
        raise Unsupported("row beyond the chunk's pages")
    return found
