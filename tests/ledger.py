"""A producer ledger: what each posted event got (202, refused, unknown), compared with the store."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
import uuid
from datetime import datetime, timezone
from typing import Any

from tests.service import Service, http


@dataclasses.dataclass
class Verdict:
    """The comparison of a ledger with the stored events."""

    lost: list[str]
    duplicated: list[str]
    phantom: list[str]
    acknowledged: int
    refused: int
    unknown: int


class Ledger:
    """Records the outcome of every event a load generator posted."""

    def __init__(self) -> None:
        self.acknowledged: set[str] = set()
        self.refused: set[str] = set()
        self.unknown: set[str] = set()
        self.lock = threading.Lock()

    def record(self, ids: list[str], status: int | None) -> None:
        """File ids under the outcome their request got (None: no answer)."""
        with self.lock:
            if status == 202:
                self.acknowledged.update(ids)
            elif status is not None and (400 <= status < 500 or status == 503):
                self.refused.update(ids)
            else:
                self.unknown.update(ids)

    def compare(self, stored: list[dict[str, Any]]) -> Verdict:
        """Lost: acknowledged but not stored; duplicated: stored twice; phantom: refused yet stored."""
        counts = collections.Counter(event["audit_event_id"] for event in stored)
        return Verdict(
            lost=sorted(self.acknowledged - counts.keys()),
            duplicated=sorted(event_id for event_id, count in counts.items() if count > 1),
            phantom=sorted(self.refused & counts.keys()),
            acknowledged=len(self.acknowledged),
            refused=len(self.refused),
            unknown=len(self.unknown),
        )


def make_events(count: int, tag: str) -> list[dict[str, Any]]:
    """Events with unique ids, the current time and a tag in ``correlation_id``."""
    now = datetime.now(timezone.utc).isoformat()
    return [
        {"audit_event_id": str(uuid.uuid4()), "ts": now, "type": "auth", "correlation_id": tag,
         "user_email": "load@example.com", "details": {"n": index}}
        for index in range(count)
    ]


class LoadGenerator(threading.Thread):
    """Posts batches in a loop until stopped, filing every outcome in a ledger."""

    def __init__(self, service: Service, ledger: Ledger, batch_size: int = 20, timeout: float = 15.0,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.headers = headers
        self.service = service
        self.ledger = ledger
        self.batch_size = batch_size
        self.timeout = timeout
        self.stopping = threading.Event()
        self.requests = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            events = make_events(self.batch_size, "load")
            ids = [event["audit_event_id"] for event in events]
            try:
                status, _, _ = http("POST", f"{self.service.url}/v1/audit/events", {"events": events},
                                    timeout=self.timeout, headers=self.headers)
            except OSError:
                status = None
            self.ledger.record(ids, status)
            self.requests += 1
            if status != 202:
                self.stopping.wait(0.02)

    def stop(self) -> None:
        """Stop after the request in progress and wait for the thread."""
        self.stopping.set()
        self.join(timeout=60)


def poll(predicate: Callable[[], Any], timeout: float, message: str) -> Any:
    """Call ``predicate`` until it returns something truthy (returned) or ``timeout`` passes (fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def wait_for_acks(ledger: Ledger, at_least: int, timeout: float = 30.0) -> None:
    """Block until the ledger holds ``at_least`` acknowledged events."""
    poll(lambda: len(ledger.acknowledged) >= at_least, timeout,
         f"only {len(ledger.acknowledged)} of {at_least} events acknowledged")


def settle(ledger: Ledger, stored: Callable[[], list[dict[str, Any]]], timeout: float = 30.0) -> Verdict:
    """Wait until every acknowledged event is stored (or time out); return the verdict."""
    deadline = time.monotonic() + timeout
    verdict = ledger.compare(stored())
    while verdict.lost and time.monotonic() < deadline:
        time.sleep(0.2)
        verdict = ledger.compare(stored())
    return verdict
