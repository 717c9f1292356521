"""Entry point of the writer process: ``python -m writer`` or ``auditlake-writer``."""

from __future__ import annotations

import logging
import sys

from shared import cpu_pinning, event_loop, native_memory, stack_dump
from shared.errors import ConfigError
from shared.logs import configure_logging
from shared.settings import Settings

EXIT_CONFIG_ERROR = 3
EXIT_START_FAILED = 4


def main() -> None:
    """Read settings from the environment, then run the writer until SIGTERM."""
    try:
        settings = Settings.from_env()
        # First, before Arrow or a flush starts a thread (every later thread inherits the CPUs).
        pinning = cpu_pinning.pin_process("writer", settings.writer_cpus, "AUDIT_SERVICE_WRITER_CPUS")
    except ConfigError as exc:
        print(f"auditlake-writer: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    configure_logging("writer", settings.log_level)
    stack_dump.install()
    keep_freed_ms = native_memory.arrow_keep_freed_ms(settings.backend)
    pool = native_memory.arrow_on_jemalloc(keep_freed_ms)
    logging.getLogger("auditlake.writer").info("arrow memory pool", extra={"pool": pool, "keep_freed_ms": keep_freed_ms,
                                                                            "cpus": pinning.describe()})
    from writer.service import WriterService

    try:
        event_loop.run(WriterService(settings, pinning).run())
    except ConfigError as exc:
        print(f"auditlake-writer: configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    except OSError as exc:
        logging.getLogger("auditlake.writer").error("writer failed to start", extra={"error": repr(exc)})
        sys.exit(EXIT_START_FAILED)


if __name__ == "__main__":
    main()
