"""Running a process's main coroutine: uvloop, and a short GIL switch interval so worker threads cannot stall the loop."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

# Python hands the GIL to a waiting thread only every switch interval (5 ms by default). A flush or read
# thread running Python code would make the event loop (acks, HTTP answers) wait up to that long for every
# step; 0.5 ms keeps the loop's latency low at a small cost in thread switches.
GIL_SWITCH_INTERVAL_SECONDS = 0.0005


def run(main: Coroutine[Any, Any, Any]) -> Any:
    """Run ``main`` to completion on uvloop (asyncio's loop where uvloop is missing)."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on supported platforms
        return asyncio.run(main)
    return uvloop.run(main)
