"""Structured logs: JSON lines only, one line per flush and retention run, an opt-in sampled access log, no secrets."""

from __future__ import annotations

import itertools
import subprocess
import sys

from aiohttp import web

from ingest.metrics import IngestMetrics
from ingest.ops import RequestRecorder, observe_requests
from tests.ledger import make_events
from tests.ops.helpers import log_lines, raw_log, wait_for
from tests.service import REPO, Service, http

SECRET_PAYLOAD = "payload-marker-5f0c9d2e"
SECRET_TOKEN = "tok-7b1e4a0c9f3d2e8a6b5c"
ACCESS_FIELDS = {"method", "route", "status", "duration_ms", "bytes"}


def access_lines(service: Service) -> list[dict]:
    return [line for line in log_lines(service, "ingest") if line["logger"] == "auditlake.ingest.access"]


def test_access_log_on_writes_one_line_per_request_without_secrets(service_factory) -> None:
    """With AUDIT_SERVICE_ACCESS_LOG=on each request is one JSON line (method, route, status, duration, bytes);
    no payload, query value or token reaches any log, even at debug level."""
    service = service_factory(AUDIT_SERVICE_ACCESS_LOG="on", AUDIT_SERVICE_LOG_LEVEL="debug",
                              AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.1")
    before = len(access_lines(service))
    events = make_events(2, "logs")
    events[0]["details"] = {"secret": SECRET_PAYLOAD}
    headers = {"Authorization": f"Bearer {SECRET_TOKEN}"}
    assert http("POST", f"{service.url}/v1/audit/events", {"events": events}, headers=headers)[0] == 202
    assert http("GET", f"{service.url}/v1/audit/events?window=1h&user_email={SECRET_PAYLOAD}",
                headers=headers)[0] == 200
    assert service.get("/nowhere")[0] == 404
    service.wait_flushed(2)
    lines = wait_for(lambda: (lambda found: found if len(found) >= before + 3 else None)(access_lines(service)),
                     what="three access lines")[before:]
    posted = next(line for line in lines if line["method"] == "POST")
    assert ACCESS_FIELDS <= posted.keys()
    assert (posted["route"], posted["status"], posted["level"]) == ("/v1/audit/events", 202, "info")
    assert posted["bytes"] > 0 and posted["duration_ms"] > 0 and posted["request_bytes"] > 0
    queried = next(line for line in lines if line["method"] == "GET" and line["route"] == "/v1/audit/events")
    assert queried["status"] == 200
    assert any(line["route"] == "unmatched" and line["status"] == 404 for line in lines)
    service.stop()
    everything = raw_log(service)
    assert SECRET_PAYLOAD.encode() not in everything
    assert SECRET_TOKEN.encode() not in everything


def test_every_line_is_json_and_each_flush_is_one_line_with_its_figures(ops_service: Service) -> None:
    """Both processes write only JSON objects (ts, level, process, logger, msg); a flush logs its range and figures;
    the access log is off by default."""
    events = make_events(5, "flush-line")
    assert ops_service.post({"events": events})[0] == 202
    flushes = wait_for(lambda: [line for line in log_lines(ops_service, "writer") if line["msg"] == "flush"],
                       what="a flush line")
    for process in ("writer", "ingest"):
        lines = log_lines(ops_service, process)
        assert lines, process
        for line in lines:
            assert {"ts", "level", "process", "logger", "msg"} <= line.keys(), line
            assert line["process"] == process and line["ts"].endswith("Z")
    flush = flushes[-1]
    assert {"first_seq", "last_seq", "events", "duplicates", "files", "bytes", "duration_ms"} <= flush.keys()
    assert flush["first_seq"] <= flush["last_seq"] and flush["events"] >= 1
    assert sum(line["events"] for line in flushes) >= 5
    assert access_lines(ops_service) == [], "no access log line per request by default"
    started = next(line for line in log_lines(ops_service, "ingest") if line["msg"] == "ingest started")
    assert started["gc_frozen_objects"] > 0  # what ingest built at start is out of every later collection
    pool = next(line for line in log_lines(ops_service, "writer") if line["msg"] == "arrow memory pool")
    assert (pool["pool"], pool["keep_freed_ms"]) == ("jemalloc", 5000)  # the local backend keeps freed pages


async def test_sampled_access_log_logs_the_sampled_fraction(aiohttp_client, caplog) -> None:
    """At a rate of 0.25 a request is logged when its random draw is below 0.25 (draws injected here)."""
    app = web.Application()
    draws = itertools.cycle([0.1, 0.5, 0.9, 0.2])
    app.middlewares.append(observe_requests(RequestRecorder(IngestMetrics(app), 0.25, sample=lambda: next(draws))))
    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"pong": True})

    app.router.add_get("/ping/{name}", ping)
    client = await aiohttp_client(app)
    with caplog.at_level("INFO", logger="auditlake.ingest.access"):
        for index in range(8):
            assert (await client.get(f"/ping/{index}?q=secret")).status == 200
    logged = [record for record in caplog.records if record.name == "auditlake.ingest.access"]
    assert len(logged) == 4
    assert {(record.route, record.status, record.method) for record in logged} == {("/ping/{name}", 200, "GET")}


def test_an_invalid_access_log_setting_stops_ingest_at_start(tmp_path) -> None:
    """AUDIT_SERVICE_ACCESS_LOG=sometimes is a configuration error naming the variable (exit 3)."""
    service = Service(tmp_path, AUDIT_SERVICE_ACCESS_LOG="sometimes")
    child = subprocess.run([sys.executable, "-m", "ingest"], cwd=REPO, env=service.env, capture_output=True,
                           timeout=30)
    assert child.returncode == 3
    assert b"AUDIT_SERVICE_ACCESS_LOG" in child.stderr
