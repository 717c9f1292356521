"""text_search: bytes.find over a lowercased column matches exactly what Arrow's match_substring matches."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from ingest.text_search import DENSE_SHARE, LowerText, contains_mask


def _arrow(values: pa.Array, needle: str) -> list[bool]:
    return pc.fill_null(pc.match_substring(pc.utf8_lower(values), needle.lower()), False).to_pylist()


VALUES = ["Alice@Example.com", None, "", "ab", "cd", "abcd", "ÄRGER@Straße.de", "bob@example.COM", "xab", "cdx",
          "aaa", "aaaa", "user4242@example3.com", "user42@example3.com"]


@pytest.mark.parametrize("needle", ["example", "alice@", "bc", "ab", "cd", "ärger", "straße", "aa", "user4242@",
                                    "4242@", "@", ".com", "nothing", "x"])
def test_matches_equal_arrow(needle: str) -> None:
    """Sparse and dense needles, hits at row edges, repeated hits, non-ASCII text, nulls and empty strings."""
    array = pa.array(VALUES * 40, pa.string())
    text = LowerText(array)
    assert text.contains(needle.lower().encode()).to_pylist() == _arrow(array, needle)


def test_a_hit_across_two_rows_is_not_a_match() -> None:
    """Rows "ab" and "cd" lie next to each other in the data buffer; "bc" matches neither."""
    text = LowerText(pa.array(["ab", "cd"] * 100 + ["xbcx"]))
    assert text.contains(b"bc").to_pylist() == [False] * 200 + [True]


def test_sliced_chunked_and_dictionary_columns() -> None:
    """A slice (non-zero offset), several chunks and a dictionary column search like a plain array."""
    generator = random.Random(3)
    words = [f"user{generator.randrange(500)}@example{generator.randrange(7)}.com" for _ in range(3000)]
    plain = pa.array(words)
    for column in (plain.slice(17, 2500), pa.chunked_array([plain.slice(0, 1000), plain.slice(1000)]),
                   plain.dictionary_encode()):
        text = LowerText(column)
        expected_source = column.cast(pa.string())
        for needle in ("user42@", "example3", "user1", "@"):
            assert text.contains(needle.encode()).to_pylist() == _arrow(expected_source, needle)


def test_dense_needles_use_the_kernel_and_agree() -> None:
    """A needle in most rows goes through match_substring after rows / DENSE_SHARE hits."""
    array = pa.array([f"row{index}@example.com" for index in range(10 * DENSE_SHARE)])
    assert LowerText(array).contains(b"example").to_pylist() == [True] * len(array)


def test_contains_mask_has_a_chunk_per_text() -> None:
    """One boolean chunk per row group, in order."""
    texts = [LowerText(pa.array(["A", "b"])), LowerText(pa.array(["ab", None, "B"]))]
    mask = contains_mask(texts, "b")
    assert [chunk.to_pylist() for chunk in mask.chunks] == [[False, True], [True, False, True]]
