"""Running a process's main coroutine: uvloop, a short GIL switch interval and scheduler slice, and garbage collection tuned for throughput."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Coroutine
from typing import Any

from shared import native_memory, sched_slice

# Python hands the GIL to a waiting thread only every switch interval (5 ms by default). A flush or read
# thread running Python code would make the event loop (acks, HTTP answers) wait up to that long for every
# step; 0.5 ms keeps the loop's latency low at a small cost in thread switches.
GIL_SWITCH_INTERVAL_SECONDS = 0.0005
# A parsed request is hundreds of container objects, so the default first-generation threshold (700)
# starts a collection every other request, and the older generations then walk every live object again:
# measured, parsing 100-event batches while others are in flight took twice as long. Reference cycles are
# rare here (nothing in the request path makes them), so collect the young generation every 50,000
# allocations; the modules and settings loaded at start are frozen out of every collection.
GC_THRESHOLDS = (50_000, 20, 20)


def freeze_started_objects() -> int:
    """Move everything alive now (the modules, app and settings a process built at start) out of every
    later garbage collection, and return how many objects are frozen; call once before serving.

    ``run`` freezes what exists before ``main`` starts; what ``main`` imports and builds would otherwise be
    walked by every full collection. Measured in ingest at the maximum (100-event bodies): a full
    collection took 17-47 ms, during which no request is answered; with the app frozen, 0.3 ms.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` to completion on uvloop (asyncio's loop where uvloop is missing), on a thread with the
    scheduler's shortest slice (``shared.sched_slice``)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    sched_slice.shorten_for_event_loop()
    native_memory.limit_arenas()
    native_memory.reuse_big_blocks()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on supported platforms
        return asyncio.run(main)
    return uvloop.run(main)
