"""The 64-bit hashes under which the dedupe window remembers ids, computed for a whole Arrow column at once.

A flush hashed each id with BLAKE2b, three C calls and a Python frame per id (about 0.3 µs an id, the
largest per-id step of its dedupe). ``column_hashes`` reads the ids' bytes eight at a time straight from
the column's buffers and mixes all rows' words together in numpy: each row starts from its length and
absorbs its words one by one through MurmurHash3's 64-bit finaliser (a bijection with full avalanche), the
last word zero-padded. A row's hash depends only on its bytes, never on the other rows. Window files
written with BLAKE2b (``legacy_hashes``) are still searched with it until they leave the window.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa

_SEED = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xFF51AFD7ED558CCD)
_MIX_2 = np.uint64(0xC4CEB9FE1A85EC53)
_SHIFT = np.uint64(33)
_ALL_BITS = np.uint64(0xFFFFFFFFFFFFFFFF)
_WORD = 8


def _mix(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's ``fmix64`` of each value, in place; returns the array."""
    values ^= values >> _SHIFT
    values *= _MIX_1
    values ^= values >> _SHIFT
    values *= _MIX_2
    values ^= values >> _SHIFT
    return values


def column_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The hash of each id (string or binary, no nulls) as a uint64 array: the one the window remembers."""
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.binary())
    ids = ids.cast(pa.binary())
    if ids.null_count:
        raise ValueError("an id column with nulls")
    count = len(ids)
    _, offset_buffer, data_buffer = ids.buffers()
    if not count:
        return np.empty(0, dtype=np.uint64)
    offsets = np.frombuffer(offset_buffer, dtype=np.int32, count=ids.offset + count + 1)[ids.offset:].astype(np.int64)
    first, end = int(offsets[0]), int(offsets[-1])
    data = np.zeros(end - first + _WORD, dtype=np.uint8)  # a word read from any row's start stays inside
    if end > first:
        data[: end - first] = np.frombuffer(data_buffer, dtype=np.uint8, count=end)[first:]
    # every byte position's eight bytes as one little-endian word (overlapping, unaligned views of ``data``)
    words = np.ndarray(shape=(len(data) - _WORD + 1,), dtype="<u8", buffer=data, strides=(1,))
    starts = offsets[:-1] - first
    lengths = np.diff(offsets)
    hashes = _mix(lengths.astype(np.uint64) ^ _SEED)
    rows = np.flatnonzero(lengths)  # the rows with bytes left to absorb
    position = 0
    while len(rows):
        left = lengths[rows] - position  # each row's bytes from this word on
        word = words[starts[rows] + position]
        short = np.flatnonzero(left < _WORD)  # the last, partial word: its bytes past the id are cleared
        if len(short):
            word[short] &= _ALL_BITS >> ((_WORD - left[short]) * _WORD).astype(np.uint64)
        hashes[rows] = _mix(hashes[rows] ^ word)
        position += _WORD
        rows = rows[left > _WORD]
    return hashes


def id_hashes(event_ids: list[str]) -> np.ndarray:
    """``column_hashes`` of ids given as strings (their UTF-8 bytes, lone surrogates passed through)."""
    return column_hashes(pa.array([event_id.encode("utf-8", "surrogatepass") for event_id in event_ids], pa.binary()))


def id_hash(event_id: str) -> int:
    """The hash of one id."""
    return int(id_hashes([event_id])[0])


def legacy_hashes(encoded_ids: list[bytes]) -> np.ndarray:
    """The 64-bit BLAKE2b (big-endian) of each id's UTF-8 bytes, as window files written before
    ``column_hashes`` hold them: a copied hasher per id."""
    copy = hashlib.blake2b(digest_size=8).copy

    def digest(data: bytes) -> bytes:
        hasher = copy()
        hasher.update(data)
        return hasher.digest()

    return np.frombuffer(b"".join([digest(data) for data in encoded_ids]), dtype=">u8").astype(np.uint64)


def legacy_column_hashes(ids: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``legacy_hashes`` of a column of ids."""
    return legacy_hashes(ids.cast(pa.binary()).to_pylist())
