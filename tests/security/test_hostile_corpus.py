"""The hostile-input corpus against the real service while a well-formed producer keeps posting."""

from __future__ import annotations

import collections
import concurrent.futures
from pathlib import Path

import orjson

from tests.ledger import Ledger, LoadGenerator
from tests.security.conftest import INGEST, assert_json_error, bearer, call, poll
from tests.security.corpus import Case, all_cases, send
from tests.service import Service

MAX_RSS_GROWTH_BYTES = 50 * 1024 * 1024
WORKERS = 4


def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


def _outcome(service: Service, case: Case) -> tuple[Case, int, bytes, dict[str, str]]:
    status, body, headers = send("127.0.0.1", service.port, case)
    return case, status, body, headers


def test_corpus_is_large_and_varied() -> None:
    """At least 200 cases, spread over sizes, encodings, shapes, types and headers."""
    cases = all_cases()
    assert len(cases) >= 200, len(cases)
    assert len({case.name for case in cases}) == len(cases), "case names are unique"
    assert collections.Counter(case.expected for case in cases).keys() >= {400, 401, 403, 404, 405, 413, 415, None}


def test_hostile_corpus_gets_4xx_and_harms_nothing(secure_service: Service) -> None:
    """Every hostile request gets its 4xx (JSON error shape where the app answers), the service stays ready,
    a concurrent producer loses nothing, and ingest's memory grows by less than 50 MB."""
    pid = secure_service.procs["ingest"].pid
    for _ in range(20):
        call(secure_service, "POST", "/v1/audit/events", INGEST, {"events": [{"type": "auth"}] * 50})
    rss_before = rss_bytes(pid)
    ledger = Ledger()
    producer = LoadGenerator(secure_service, ledger, batch_size=20, headers=bearer(INGEST))
    producer.start()
    failures = []
    try:
        with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
            for case, status, body, headers in pool.map(lambda case: _outcome(secure_service, case), all_cases()):
                if not 400 <= status <= 499 or (case.expected is not None and status != case.expected):
                    failures.append((case.name, case.expected, status, body[:200]))
                elif case.expected is not None:
                    decoded = orjson.loads(body)
                    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
                    if list(decoded) != ["detail"] or not content_type.startswith("application/json"):
                        failures.append((case.name, "json error shape", content_type, body[:200]))
    finally:
        producer.stop()
    rss_after = rss_bytes(pid)
    assert not failures, "\n".join(map(repr, failures))
    assert secure_service.get("/readyz")[0] == 200
    assert producer.requests > 0 and ledger.acknowledged, "the producer got acknowledgements meanwhile"
    stored_ids = poll(lambda: (lambda ids: ids if ledger.acknowledged <= ids else None)(
        {event["audit_event_id"] for event in secure_service.stored_events()}), 20, "acknowledged events stored")
    verdict = ledger.compare([event for event in secure_service.stored_events()
                              if event["audit_event_id"] in ledger.acknowledged | ledger.refused | ledger.unknown])
    assert not verdict.lost and not verdict.duplicated and not verdict.phantom, verdict
    assert len(stored_ids) >= verdict.acknowledged
    assert rss_after - rss_before < MAX_RSS_GROWTH_BYTES, (rss_before, rss_after)


def test_well_formed_variants_are_still_accepted(secure_service: Service) -> None:
    """What the hardening must not refuse: gzip, chunked, +json media types, no Content-Type, deep-but-legal."""
    import gzip

    body = orjson.dumps({"events": [{"type": "auth", "details": {"n": 2**63, "m": -(2**63), "u": 2**64 - 1,
                                                                 "s": "caf\u00e9 \u2028 \U0001f600"}}]})
    nested: object = "leaf"
    for _ in range(29):
        nested = [nested]
    legal = [
        Case("gzip", 202, gzip.compress(body), {"Content-Type": "application/json", "Content-Encoding": "gzip"}),
        Case("x-gzip chunked", 202, [gzip.compress(body)], {"Content-Encoding": "x-gzip"}),
        Case("vendor json", 202, body, {"Content-Type": "application/vnd.audit+json; charset=UTF-8"}),
        Case("no content type", 202, body, {}),
        Case("application/json; charset=utf-8", 202, body, {"Content-Type": "application/json; charset=utf-8"}),
        Case("application/json;charset=UTF-8", 202, body, {"Content-Type": "application/json;charset=UTF-8"}),
        Case("Application/JSON", 202, body, {"Content-Type": "Application/JSON"}),
        Case("depth 32", 202, orjson.dumps({"events": [{"type": "auth", "details": nested}]}), {}),
        Case("duplicate unnamed key", 202, b'{"type":"auth","details":{"a":1,"a":2}}', {}),
        Case("named word as a value", 202, b'{"type":"auth","action":"type","details":{"k":"tenant_id"}}', {}),
        Case("escaped non-ascii", 202, b'{"type":"auth","actor_ref":"caf\\u00e9","details":{"x":"\\ud83d\\ude00"}}',
             {}),
        Case("long digit string", 202, b'{"type":"auth","subject_ref":"12345678901234567890123"}', {}),
    ]
    for case in legal:
        status, answer, _ = send("127.0.0.1", secure_service.port, case)
        assert status == 202, (case.name, status, answer)


def test_json_error_shape_on_every_refusal_kind(secure_service: Service) -> None:
    """413, 415 and 400 answers produced by the hardening all use {"detail": "..."}."""
    assert_json_error(call(secure_service, "POST", "/v1/audit/events", INGEST, b"[1]"), 400)
    assert_json_error(call(secure_service, "POST", "/v1/audit/events", INGEST, b"{}",
                           headers={"Content-Type": "text/plain"}), 415)
    assert_json_error(call(secure_service, "POST", "/v1/audit/events", INGEST,
                           {"events": [{"type": "auth"}] * 10001}), 413)
