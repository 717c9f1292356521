"""GET /v1/audit/verify on a running service: admin scope, journal-backed checks of the current interval."""

from __future__ import annotations

from pathlib import Path

from ingest.evidence_sources import LocalSource, verify_store
from tests.service import Service, http
from tests.tamper.conftest import poll

INGEST = "ingest-0123456789abcdef"
READ = "read-0123456789abcdefgh"
ADMIN = "admin-0123456789abcdefg"


def _verify(service: Service, token: str | None, query: str = "") -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, body, _ = http("GET", f"{service.url}/v1/audit/verify{query}", headers=headers, timeout=30)
    return status, body


def test_verify_needs_admin_and_checks_the_current_interval_against_the_journal(service_factory,
                                                                                  tmp_path: Path) -> None:
    """401 without a token, 403 with a read token; an admin sees files no digest covers yet verified through
    the journal (offline they are ``pending``), then a changed one reported by name."""
    service = service_factory(AUDIT_SERVICE_DIGEST_INTERVAL_SECONDS="3600", AUDIT_SERVICE_INGEST_TOKENS=INGEST,
                              AUDIT_SERVICE_READ_TOKENS=READ, AUDIT_SERVICE_ADMIN_TOKENS=ADMIN,
                              AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    poll(lambda: list((service.store / "_digests").glob("*/latest.json")), 10, "no genesis digest")
    events = [{"type": "auth", "ts": f"2026-02-0{day}T10:00:00Z"} for day in (1, 2, 3)]
    status, _, _ = http("POST", f"{service.url}/v1/audit/events", {"events": events},
                        headers={"Authorization": f"Bearer {INGEST}"})
    assert status == 202
    service.wait_flushed(3)
    assert _verify(service, None)[0] == 401
    assert _verify(service, READ)[0] == 403
    status, report = _verify(service, ADMIN)
    assert status == 200 and report["ok"], report["problems"]
    assert report["verified"] >= report["from_journal"] >= 6 and report["pending"] == 0
    key = (service.spool / "evidence" / "public-key.pem").read_bytes()
    offline = verify_store(LocalSource(service.store), [key])
    assert offline["ok"] and offline["pending"] >= 6
    assert offline["verified"] == report["verified"] - report["from_journal"], "only the genesis digest's files"
    victim = sorted(service.store.rglob("audit-20260202*.ndjson.gz"))[0]
    victim.write_bytes(victim.read_bytes()[:-1])
    status, report = _verify(service, ADMIN)
    assert status == 200 and not report["ok"] and report["modified"] == 1
    assert report["first_problem"]["item"] == victim.relative_to(service.store).as_posix()
    assert _verify(service, ADMIN, "?since=yesterday")[0] == 400
    assert _verify(service, ADMIN, "?since=2026-02-03T00:00:00Z&until=2026-02-01T00:00:00Z")[0] == 400
    status, report = _verify(service, ADMIN, "?since=2026-02-03T00:00:00Z&until=2026-02-03T23:00:00Z")
    assert status == 200 and report["ok"] and report["verified"] == 2


def test_a_clean_stop_publishes_a_final_digest(service_factory) -> None:
    """SIGTERM ends with one more digest, so the stopped store verifies offline with nothing pending."""
    service = service_factory(AUDIT_SERVICE_DIGEST_INTERVAL_SECONDS="3600", AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    assert service.post({"events": [{"type": "auth"}]})[0] == 202
    service.wait_flushed(1)
    key = poll(lambda: (service.spool / "evidence" / "public-key.pem").read_bytes(), 5, "no public key")
    service.stop()
    report = verify_store(LocalSource(service.store), [key])
    assert report["ok"] and report["pending"] == 0 and report["verified"] >= 2
