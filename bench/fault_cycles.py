"""Nightly-size fault run: hundreds of SIGKILL cycles under load, with a lost/duplicated/phantom report.

Usage: .venv/bin/python bench/fault_cycles.py --cycles 300 [--producers 4] [--batch 10]
Prints one JSON line with the verdict; exits 1 on any lost, duplicated or phantom event.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.ledger import Ledger, LoadGenerator, settle, wait_for_acks  # noqa: E402
from tests.service import Service  # noqa: E402


def main() -> int:
    """Run the cycles and report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=300)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--acks-per-cycle", type=int, default=60)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="auditlake-faults-"))
    service = Service(root, AUDIT_SERVICE_ACK_TIMEOUT_SECONDS="20", AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    service.start_all()
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger, batch_size=args.batch) for _ in range(args.producers)]
    started = time.monotonic()
    for producer in producers:
        producer.start()
    try:
        for cycle in range(args.cycles):
            wait_for_acks(ledger, len(ledger.acknowledged) + args.acks_per_cycle, timeout=60)
            victim = "writer" if cycle % 2 == 0 else "ingest"
            service.signal(victim)
            service.start(victim)
            service.wait_ready(timeout=60)
    finally:
        for producer in producers:
            producer.stop()
    verdict = settle(ledger, service.stored_events, timeout=120)
    service.stop()
    report = {
        "cycles": args.cycles,
        "seconds": round(time.monotonic() - started, 1),
        "acknowledged": verdict.acknowledged,
        "refused": verdict.refused,
        "unknown": verdict.unknown,
        "lost": len(verdict.lost),
        "duplicated": len(verdict.duplicated),
        "phantom": len(verdict.phantom),
        "data": str(root),
    }
    print(json.dumps(report))
    return 1 if verdict.lost or verdict.duplicated or verdict.phantom else 0


if __name__ == "__main__":
    sys.exit(main())
