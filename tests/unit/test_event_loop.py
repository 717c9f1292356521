"""The event loop helpers: objects built at start are kept out of later garbage collections."""

from __future__ import annotations

import gc

from shared import event_loop


def test_objects_alive_at_start_are_frozen_out_of_later_collections() -> None:
    """After ``freeze_started_objects`` a container made before it is no longer among the objects a
    collection walks, one made after it is, and the returned count covers the frozen ones."""
    before = [["made before the freeze"]]  # lists are always tracked (a dict of strings may not be)
    assert any(item is before for item in gc.get_objects())
    try:
        frozen = event_loop.freeze_started_objects()
        after = [["made after the freeze"]]
        walked = gc.get_objects()
        assert not any(item is before for item in walked)
        assert any(item is after for item in walked)
        assert frozen >= gc.get_freeze_count() > 0  # frozen objects may die since (other tests' threads)
    finally:
        gc.unfreeze()  # the other tests' objects go back to the collected generations
