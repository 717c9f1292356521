"""Prometheus metrics of both processes, scraped over real HTTP from the running service."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timezone

import orjson
import pytest

from ingest.link import MAX_FRAMES_IN_FLIGHT
from ingest.metrics import STATS_COUNTERS, VERBOSITY_COUNTERS
from ingest.stats import IngestStats
from ingest.turns import LARGE_BODY_BYTES
from tests.ledger import make_events
from tests.ops.helpers import Scrape, log_lines, wait_for
from tests.service import Service, http
from writer.metrics import FIELDS, WriterCollector
from writer.stats import WriterStats

EXPIRED_NAME = "audit-20200102T000000Z-000000000001-000000000001-20200102T000001Z.ndjson.gz"
EXPIRED_BYTES = 321
NAME = re.compile(r"^auditlake_(ingest|writer)_[a-z][a-z0-9_]*$")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service keeping the ``standard`` verbosity, flushing fast, with one expired file planted for retention."""
    root = tmp_path_factory.mktemp("metrics")
    svc = Service(root, AUDIT_LOG_VERBOSITY="standard", AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1",
                  AUDIT_SERVICE_LOCAL_RETENTION_DAYS="1")
    expired = svc.store / "2020" / "01" / "02" / EXPIRED_NAME
    expired.parent.mkdir(parents=True)
    expired.write_bytes(b"x" * EXPIRED_BYTES)
    stamp = time.time() - 3 * 86400
    os.utime(expired, (stamp, stamp))
    try:
        yield svc.start_all()
    finally:
        svc.stop()


def ingest_scrape(service: Service) -> Scrape:
    return Scrape(f"{service.url}/metrics")


def writer_scrape(service: Service) -> Scrape:
    return Scrape(f"{service.writer_url}/metrics")


def test_ingest_counts_requests_by_canonical_route_and_events_by_outcome(service: Service) -> None:
    """Accepted, dropped-by-verbosity and request counters move by exactly what was sent; routes are canonical."""
    before = ingest_scrape(service)
    kept = make_events(3, "metrics-kept")
    dropped = [dict(event, type="tool_call") for event in make_events(2, "metrics-dropped")]
    status, body, _ = service.post({"events": kept + dropped})
    assert (status, body["accepted"]) == (202, 3)
    assert service.get("/v1/audit/events?window=1h&tenant_id=secret-tenant&limit=5")[0] == 200
    assert service.get("/no/such/path?x=1")[0] == 404
    assert http("POST", f"{service.url}/v1/audit/events", b"{not json")[0] == 400
    after = ingest_scrape(service)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert after.content_type.startswith("text/plain; version=0.0.4")
    assert delta("auditlake_ingest_events_accepted_total") == 3
    assert delta("auditlake_ingest_events_dropped_total", verbosity="standard") == 2
    assert delta("auditlake_ingest_invalid_requests_total") == 1
    requests = "auditlake_ingest_http_requests_total"
    assert delta(requests, route="/v1/audit/events", method="POST", status="202") == 1
    assert delta(requests, route="/v1/audit/events", method="POST", status="400") == 1
    assert delta(requests, route="/v1/audit/events", method="GET", status="200") == 1
    assert delta(requests, route="unmatched", method="GET", status="404") == 1
    routes = after.label_values(requests, "route")
    assert not [route for route in routes if "?" in route or "secret" in route or "no/such" in route], routes
    assert delta("auditlake_ingest_http_request_duration_seconds_count", route="/v1/audit/events", method="GET") == 1
    assert delta("auditlake_ingest_query_duration_seconds_count", kind="events") == 1
    assert delta("auditlake_ingest_ack_latency_seconds_count") >= 1
    assert after.value("auditlake_ingest_ack_latency_seconds_sum") > 0
    assert "auditlake_ingest_queue_events" in after.samples and "auditlake_ingest_queue_bytes" in after.samples
    wait_for(lambda: ingest_scrape(service).value("auditlake_ingest_queue_events") == 0, what="an empty queue")
    assert after.value("auditlake_ingest_queue_max_events") == 10000
    assert after.value("auditlake_ingest_queue_max_bytes") == 64 * 1024 * 1024
    assert "auditlake_ingest_frames_in_flight" in after.samples
    assert after.value("auditlake_ingest_frames_in_flight_limit") == MAX_FRAMES_IN_FLIGHT  # a writer that keeps up
    assert "auditlake_ingest_parse_turn_waits_total" in after.samples
    assert "auditlake_ingest_parse_turns_skipped_total" in after.samples
    assert after.value("auditlake_ingest_writer_connected") == 1
    assert after.value("auditlake_ingest_ready") == 1
    assert after.value("auditlake_ingest_info", backend="local", verbosity="standard") == 1


def test_writer_counts_flushes_bytes_and_spool(service: Service) -> None:
    """After a post, the writer's flush counters, bytes written per backend, flush and commit histograms move."""
    before = writer_scrape(service)
    assert service.post({"events": make_events(7, "metrics-writer")})[0] == 202
    after = wait_for(lambda: (lambda s: s if s.value("auditlake_writer_flushed_events_total")
                              >= before.value("auditlake_writer_flushed_events_total") + 7 else None)(writer_scrape(service)),
                     what="the writer to flush 7 events")
    assert after.value("auditlake_writer_flushes_total") > before.value("auditlake_writer_flushes_total")
    assert after.value("auditlake_writer_received_events_total") - before.value("auditlake_writer_received_events_total") >= 7
    assert after.value("auditlake_writer_written_bytes_total", backend="local") > \
        before.value("auditlake_writer_written_bytes_total", backend="local")
    assert after.value("auditlake_writer_flush_duration_seconds_count", outcome="ok") >= 1
    for name in ("auditlake_writer_commit_latency_seconds", "auditlake_writer_spool_sync_seconds"):
        assert after.value(f"{name}_count") > before.value(f"{name}_count"), name
    # the disk's share of a commit is within the commit's latency
    assert 0 < after.value("auditlake_writer_spool_sync_seconds_sum") <= \
        after.value("auditlake_writer_commit_latency_seconds_sum")
    assert after.value("auditlake_writer_flush_failures_total") == 0
    # a few events: their typed fields stay in memory, none is spilled
    assert after.value("auditlake_writer_typed_fields_spilled_batches_total") == 0
    assert after.value("auditlake_writer_flush_failing_seconds") == 0
    assert after.value("auditlake_writer_spool_max_bytes") == 1024 ** 3
    assert after.value("auditlake_writer_spool_segments") >= 1
    assert after.value("auditlake_writer_spool_disk_total_bytes") > 0
    assert after.value("auditlake_writer_storage_status", backend="local", status="healthy") == 1
    assert after.value("auditlake_writer_storage_status", status="down") == 0
    assert after.value("auditlake_writer_ready") == 1
    assert after.value("auditlake_writer_catching_up") == 0
    assert after.value("auditlake_writer_disk_free_bytes") > 0
    last_flush = after.value("auditlake_writer_last_flush_timestamp_seconds")
    assert abs(last_flush - time.time()) < 60


def test_retention_deletions_are_counted_and_logged_once_per_run(service: Service) -> None:
    """The expired file deleted at start shows in the retention counters and in one 'retention' log line."""
    scrape = writer_scrape(service)
    assert scrape.value("auditlake_writer_retention_deleted_files_total") == 1
    assert scrape.value("auditlake_writer_retention_deleted_bytes_total") == EXPIRED_BYTES
    runs = [line for line in log_lines(service, "writer") if line["msg"] == "retention"]
    assert runs[0]["files_deleted"] == 1 and runs[0]["bytes_deleted"] == EXPIRED_BYTES
    assert runs[0]["retention_days"] == 1 and runs[0]["logger"] == "auditlake.writer.flush"


def test_metric_names_follow_prometheus_conventions(service: Service) -> None:
    """Every family is auditlake_<process>_…; counters end in _total, histograms in _seconds, sizes in _bytes."""
    for scrape in (ingest_scrape(service), writer_scrape(service)):
        ours = {name: family for name, family in scrape.families.items() if not name.startswith("process_")}
        assert ours and all(NAME.match(name) for name in ours), sorted(ours)
        for name, family in ours.items():
            if family.type == "counter":
                assert {sample.name for sample in family.samples} <= {f"{name}_total", f"{name}_created"}, name
            if family.type == "histogram":
                assert name.endswith("_seconds"), name
            if "bytes" in name:
                assert name.endswith(("_bytes", "_bytes_total")) or family.type == "counter", name


def test_every_stats_field_has_a_metric_row() -> None:
    """A new int counter in IngestStats or WriterStats needs one row in the metrics table (named, with help)."""
    for stats, table in ((WriterStats(), FIELDS), (IngestStats(), {**STATS_COUNTERS, **VERBOSITY_COUNTERS})):
        unmapped = [field.name for field in dataclasses.fields(stats)
                    if type(getattr(stats, field.name)) is int and field.name not in table]
        assert unmapped == [], f"add rows for {unmapped} to the metrics table of {type(stats).__name__}"


def test_an_unmapped_writer_counter_is_still_exposed() -> None:
    """A WriterStats field without a row still reaches Prometheus as auditlake_writer_<field>_total."""

    @dataclasses.dataclass
    class FutureStats(WriterStats):
        widgets_uploaded: int = 5

    class Fake:
        settings = type("S", (), {"backend": "s3", "writer_id": "w"})()
        stats = FutureStats(failing_since=None)
        spool = type("P", (), {"bytes": 0, "max_bytes": 1, "file_bytes": 0, "segments": 0, "backlog_events": 0,
                               "spares": [], "reused_segments": 0,
                               "quarantined": [], "last_write_error": None, "committed_batches": 0,
                               "committed_events": 0, "columns_bytes": 0,
                               "columns_spill": type("C", (), {"spilled_batches": 0})()})()
        encoder = type("E", (), {"dedupe_ids": 0, "dedupe_covered_seconds": 0.0, "starts": 1})()

        def status(self) -> dict:
            return {"ready": True, "storage": {"status": "healthy", "uploads": 2}}

    families = {family.name: family for family in WriterCollector(Fake(), {}).collect()}
    assert families["auditlake_writer_widgets_uploaded"].samples[0].value == 5
    assert families["auditlake_writer_uploads"].samples[0].value == 2


def test_failing_flushes_show_in_counters_histogram_and_storage_state(service_factory) -> None:
    """While the store cannot be written, failures, the failed-flush histogram and 'warning' state are exposed."""
    service = service_factory(AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    blocker = service.store / datetime.now(timezone.utc).strftime("%Y")
    shutil.rmtree(blocker, ignore_errors=True)
    blocker.write_bytes(b"not a directory")  # publishing into <store>/YYYY/ now fails
    assert service.post({"events": make_events(4, "metrics-failing")})[0] == 202
    failing = wait_for(lambda: (lambda s: s if s.value("auditlake_writer_flush_failures_total") >= 2 else None)(
        writer_scrape(service)), what="failed flushes")
    assert failing.value("auditlake_writer_flush_duration_seconds_count", outcome="failed") >= 2
    assert failing.value("auditlake_writer_storage_status", status="warning") == 1
    assert failing.value("auditlake_writer_spool_backlog_events") >= 4
    wait_for(lambda: writer_scrape(service).value("auditlake_writer_flush_failing_seconds") > 0.2,
             what="flush_failing_seconds to grow")
    blocker.unlink()
    healed = wait_for(lambda: (lambda s: s if s.value("auditlake_writer_flush_failing_seconds") == 0 else None)(
        writer_scrape(service)), what="flushes to recover")
    assert healed.value("auditlake_writer_flushed_events_total") >= 4
    assert healed.value("auditlake_writer_storage_status", status="healthy") == 1


def test_s3_backend_exposes_uploads_and_their_duration(service_factory, s3_env) -> None:
    """On the S3 backend, uploads, uploaded bytes, upload durations and bytes written per backend are exposed."""
    service = service_factory(**s3_env)
    assert service.post({"events": make_events(6, "metrics-s3")})[0] == 202
    scrape = wait_for(lambda: (lambda s: s if s.value("auditlake_writer_written_bytes_total", backend="s3") > 0
                               else None)(writer_scrape(service)), what="a first completed upload flush")
    assert scrape.value("auditlake_writer_uploads_total") >= 1
    assert scrape.value("auditlake_writer_upload_duration_seconds_count") >= 1
    assert scrape.value("auditlake_writer_uploaded_bytes_total") > 0
    assert scrape.value("auditlake_writer_upload_failures_total") == 0
    assert scrape.value("auditlake_writer_storage_status", backend="s3", status="healthy") == 1
    assert scrape.value("auditlake_writer_info", backend="s3", writer_id="writer-a") == 1


def _post_together(service: Service, bodies: list[bytes]) -> list[int]:
    """Send each body on its own connection, all but their last byte first and the last bytes back to back,
    so that ingest finds them complete in one poll; the HTTP status of each answer."""
    connections = [socket.create_connection(("127.0.0.1", service.port), timeout=10) for _ in bodies]
    try:
        for connection, body in zip(connections, bodies):
            head = (f"POST /v1/audit/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
            connection.sendall(head + body[:-1])
        time.sleep(0.2)
        for connection, body in zip(connections, bodies):
            connection.sendall(body[-1:])
        statuses = []
        for connection in connections:
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
            statuses.append(int(answer.split(b" ", 2)[1]))
        return statuses
    finally:
        for connection in connections:
            connection.close()


def test_large_bodies_arriving_together_wait_for_parse_turns(service: Service) -> None:
    """Large bodies completed in the same moment are parsed one per loop iteration: some of them are counted
    as having waited for a turn, and every one is still accepted."""
    before = ingest_scrape(service)
    sent = 0
    for attempt in range(5):  # the kernel may hand ingest the last bytes over two polls; then try again
        bodies = [orjson.dumps({"events": make_events(100, f"turns-{attempt}-{index}")}) for index in range(6)]
        assert all(len(body) >= LARGE_BODY_BYTES for body in bodies)
        assert _post_together(service, bodies) == [202] * len(bodies)
        sent += 100 * len(bodies)
        if ingest_scrape(service).value("auditlake_ingest_parse_turn_waits_total") > \
                before.value("auditlake_ingest_parse_turn_waits_total"):
            break
    after = ingest_scrape(service)
    waits = "auditlake_ingest_parse_turn_waits_total"
    accepted = "auditlake_ingest_events_accepted_total"
    assert after.value(waits) > before.value(waits)
    assert after.value(accepted) - before.value(accepted) == sent
