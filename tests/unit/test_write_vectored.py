"""``fsutil.write_vectored``: every byte handed over in order, at most IOV_MAX views a call, short writes resumed."""

from __future__ import annotations

import numpy as np

from writer.fsutil import IOV_MAX, write_vectored


def test_pieces_reach_a_short_writer_whole_and_in_order_within_the_view_limit() -> None:
    """A writer that takes at most 7 bytes a call (cutting views in the middle) still receives every piece's
    bytes once, in order; empty pieces are skipped and a numpy array goes as its bytes."""
    pieces = [b"abc", b"", memoryview(b"defghij"), np.arange(5, dtype=np.uint16), *[bytes([n % 256]) for n in range(2500)]]
    received = bytearray()
    calls = []

    def write(views: list[memoryview]) -> int:
        calls.append(len(views))
        data = b"".join(views)[:7]
        received.extend(data)
        return len(data)

    write_vectored(pieces, write)
    assert bytes(received) == b"".join(bytes(memoryview(piece).cast("B")) for piece in pieces)
    assert max(calls) <= IOV_MAX
