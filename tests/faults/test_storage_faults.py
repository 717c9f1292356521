"""Storage faults: a read-only store, a full spool, a full spool disk; 503s, then recovery, nothing lost."""

from __future__ import annotations

import errno
import os
import time

from tests.ledger import Ledger, LoadGenerator, make_events, poll, settle, wait_for_acks


def _post_one(service) -> int:
    events = make_events(50, "probe")
    return service.post({"events": events}, timeout=5)


def _fill_disk(path) -> None:
    """Write zeros to path until the file system is full, through the raw descriptor.

    A buffered file would keep the bytes of a short write and raise ENOSPC again on close.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while True:
            os.write(descriptor, b"\0" * 65536)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
    finally:
        os.close(descriptor)


def test_read_only_store_keeps_accepting_and_recovers(service_factory, tmpfs) -> None:
    """With the store read-only, events are still acknowledged into the spool, then published once it heals."""
    store = tmpfs("store", "64m")
    service = service_factory(AUDIT_SERVICE_LOCAL_PATH=str(store.path / "data"),
                              AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1", AUDIT_SERVICE_FLUSH_FAILING_READY_SECONDS="1")
    ledger = Ledger()
    producers = [LoadGenerator(service, ledger, batch_size=10) for _ in range(2)]
    for producer in producers:
        producer.start()
    try:
        wait_for_acks(ledger, 100)
        store.read_only(True)
        poll(lambda: service.get("/v1/audit/status")[1]["failed_flushes"] > 0, 10, "flushes did not fail")
        during = len(ledger.acknowledged)
        wait_for_acks(ledger, during + 200)
        status = service.get("/v1/audit/status")[1]
        assert status["last_error"] and status["storage"]["status"] in ("warning", "down")
        assert status["spool_backlog_events"] > 0
        poll(lambda: service.get("/readyz")[0] == 503, 5, "readyz stayed 200 while flushes kept failing")
        assert service.post({"events": make_events(5, "still")})[0] == 202, "the spool still takes events"
        healed_at = time.monotonic()
        store.read_only(False)
        poll(lambda: service.get("/v1/audit/status")[1]["last_error"] is None, 5, "no recovery within 5 s")
        poll(lambda: service.get("/readyz")[0] == 200, 5, "readyz did not recover")
        assert time.monotonic() - healed_at < 5
    finally:
        for producer in producers:
            producer.stop()
    verdict = settle(ledger, service.stored_events)
    assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], [])


def test_full_spool_answers_503_then_recovers(service_factory, tmpfs) -> None:
    """A spool at its byte bound makes ingest answer 503 with Retry-After; space back means 202 within 5 s."""
    store = tmpfs("store", "64m")
    service = service_factory(AUDIT_SERVICE_LOCAL_PATH=str(store.path / "data"),
                              AUDIT_SERVICE_SPOOL_MAX_BYTES="65536", AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    ledger = Ledger()
    store.read_only(True)
    producer = LoadGenerator(service, ledger, batch_size=20)
    producer.start()
    try:
        poll(lambda: ledger.refused, 20, "the spool never filled")
        started = time.monotonic()
        status, body, headers = _post_one(service)
        assert status == 503 and headers.get("Retry-After") and "detail" in body
        assert time.monotonic() - started < 1.0
        healed_at = time.monotonic()
        store.read_only(False)
        poll(lambda: _post_one(service)[0] == 202, 5, "no 202 within 5 s of space returning")
        assert time.monotonic() - healed_at < 5
        wait_for_acks(ledger, len(ledger.acknowledged) + 100)
    finally:
        producer.stop()
    verdict = settle(ledger, service.stored_events)
    assert verdict.refused > 0
    assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], [])


def test_full_spool_disk_answers_503_then_recovers(service_factory, tmpfs) -> None:
    """When the spool's disk is full, appends fail cleanly (503) and resume once space returns."""
    spool = tmpfs("spool", "4m")
    service = service_factory(AUDIT_SERVICE_SPOOL_PATH=str(spool.path / "spool"),
                              AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    ledger = Ledger()
    producer = LoadGenerator(service, ledger, batch_size=20)
    producer.start()
    filler = spool.path / "filler"
    try:
        wait_for_acks(ledger, 100)
        _fill_disk(filler)
        poll(lambda: ledger.refused, 20, "no request was refused on a full disk")
        status, _, headers = _post_one(service)
        assert status == 503 and headers.get("Retry-After")
        healed_at = time.monotonic()
        filler.unlink()
        poll(lambda: _post_one(service)[0] == 202, 5, "no 202 within 5 s of space returning")
        assert time.monotonic() - healed_at < 5
        wait_for_acks(ledger, len(ledger.acknowledged) + 100)
    finally:
        producer.stop()
    verdict = settle(ledger, service.stored_events)
    assert (verdict.lost, verdict.duplicated, verdict.phantom) == ([], [], []), service.tail()
