"""Entry point of the ingest process: ``python -m ingest`` or ``auditlake-ingest``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from shared import cpu_pinning, event_loop, stack_dump
from shared.errors import ConfigError
from shared.logs import configure_logging
from shared.settings import Settings

EXIT_CONFIG_ERROR = 3
EXIT_START_FAILED = 4
log = logging.getLogger("auditlake.ingest")


async def serve(settings: Settings, pinning: cpu_pinning.Pinning) -> None:
    """Serve HTTP until SIGTERM/SIGINT, then stop listening and drain outstanding requests."""
    from ingest import fast_lane, front_door
    from ingest.app import create_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from ingest.body import handler_options

    runner = web.AppRunner(create_app(settings, pinning=pinning), access_log=None,
                           shutdown_timeout=settings.drain_seconds, **handler_options(settings))
    await runner.setup()
    door = front_door.install(runner)
    lanes = fast_lane.Lanes(door, runner.server, settings)
    frozen = event_loop.freeze_started_objects()  # before the port opens: no request waits for it
    await lanes.start(settings.host, settings.port, backlog=1024)
    log.info("ingest started", extra={"host": settings.host, "port": settings.port,
                                     "socket": str(settings.resolved_socket_path), "verbosity": settings.verbosity,
                                     "gc_frozen_objects": frozen, "cpus": pinning.describe()})
    await stop.wait()
    log.info("ingest draining")
    lanes.stop_listening()
    await runner.cleanup()  # waits for aiohttp's requests, then the app's cleanup drains the writer link
    await lanes.shutdown(timeout=1.0)
    log.info("ingest stopped")


def main() -> None:
    """Read settings from the environment, then run the ingest process until SIGTERM."""
    try:
        settings = Settings.from_env()
        # First, before any thread starts (every later thread inherits the CPUs).
        pinning = cpu_pinning.pin_process("ingest", settings.ingest_cpus, "AUDIT_SERVICE_INGEST_CPUS")
    except ConfigError as exc:
        print(f"auditlake-ingest: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    configure_logging("ingest", settings.log_level)
    stack_dump.install()
    try:
        event_loop.run(serve(settings, pinning))
    except OSError as exc:
        log.error("ingest failed to start", extra={"error": repr(exc)})
        sys.exit(EXIT_START_FAILED)


if __name__ == "__main__":
    main()
