"""Health-probe latency of both processes while producers post events (local backend).

Usage: .venv/bin/python bench/health_latency.py [--calls 1000] [--producers 2] [--batch 50]
Prints one JSON line: p50/p99/max in milliseconds per endpoint, each probe on a fresh connection.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ops.latency import measure_under_load  # noqa: E402
from tests.service import Service  # noqa: E402


def main() -> int:
    """Start a service, measure under load, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--producers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="auditlake-health-"))
    service = Service(root, AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    service.start_all()
    try:
        figures, acknowledged = measure_under_load(service, args.calls, args.producers, args.batch)
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"calls_per_endpoint": args.calls, "producers": args.producers, "batch": args.batch,
                      "events_acknowledged": acknowledged, "nproc": os.cpu_count(),
                      "python": platform.python_version(), "latency_ms": figures}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
