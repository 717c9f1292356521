"""Nothing a producer sends chooses a path; the socket and spool are owner-only; the writer listens on loopback."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.security.conftest import INGEST, READ, assert_json_error, call, marker, poll
from tests.service import Service

STORE_FILE = re.compile(r"^\d{4}/\d{2}/\d{2}/audit-[0-9A-Za-z._-]+\.ndjson(\.gz)?(\.parquet)?$")
HOSTILE_TENANTS = ["../../etc", "/etc/passwd", "..\\..\\windows", "a/b/c", "%2e%2e%2f", "~root", "$(id)",
                   "x" * 1000, "\u202e\u0645\u062b\u0627\u0644", "NUL", "con.txt", ".", "..", "*", "?"]


@pytest.mark.parametrize("ts", ["../../etc", "2026/01/01", "2026-01-01T00:00:00/../../x", "../../../../tmp/x",
                                "..\\..\\x", "2026-01-01T00:00:00Z/../../etc"])
def test_path_like_timestamps_are_400(secure_service: Service, ts: str) -> None:
    """A ts that is not a timestamp is refused; it can never become a directory."""
    assert_json_error(call(secure_service, "POST", "/v1/audit/events", INGEST, {"type": "auth", "ts": ts}), 400)


def test_hostile_tenant_ids_are_data_not_paths(secure_service: Service) -> None:
    """Events with path-like tenant ids are stored as data under YYYY/MM/DD files only; nothing lands elsewhere."""
    tag = marker("paths")
    before = {path for path in secure_service.root.parent.rglob("*")}
    events = [{"type": "auth", "tenant_id": tenant, "correlation_id": tag, "resource_ref": tenant,
               "source": tenant} for tenant in HOSTILE_TENANTS]
    status, body, _ = call(secure_service, "POST", "/v1/audit/events", INGEST, {"events": events})
    assert status == 202, body
    stored = poll(lambda: [event for event in secure_service.stored_events() if event.get("correlation_id") == tag]
                  if len([event for event in secure_service.stored_events()
                          if event.get("correlation_id") == tag]) == len(events) else None, 20, "published events")
    assert sorted(event["tenant_id"] for event in stored) == sorted(HOSTILE_TENANTS)
    for path in secure_service.store.rglob("*"):
        relative = path.relative_to(secure_service.store).as_posix()
        if path.is_file() and not relative.startswith("_"):
            assert STORE_FILE.match(relative), relative
    after = {path for path in secure_service.root.parent.rglob("*")}
    outside = [path for path in after - before
               if secure_service.store not in path.parents and secure_service.spool not in path.parents]
    assert outside == [], outside
    status, body, _ = call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}&tenant_id=../../etc",
                           READ)
    assert status == 200 and body["total"] == 1


def test_socket_and_spool_are_owner_only(secure_service: Service) -> None:
    """The writer's socket and spool directory have no group or other permission bits; segments are 0600."""
    socket_path = Path(secure_service.env["AUDIT_SERVICE_SOCKET_PATH"])
    socket_mode = stat.S_IMODE(os.stat(socket_path).st_mode)
    assert stat.S_ISSOCK(os.stat(socket_path).st_mode) and socket_mode & 0o077 == 0, oct(socket_mode)
    assert stat.S_IMODE(os.stat(secure_service.spool).st_mode) == 0o700
    segments = list(secure_service.spool.glob("seg-*"))
    assert segments, list(secure_service.spool.iterdir())
    for segment in segments:
        assert stat.S_IMODE(os.stat(segment).st_mode) == 0o600, (segment, oct(os.stat(segment).st_mode))


def _listeners(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) listening on a TCP port."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if int(hex_port, 16) == port and fields[3] == "0A":
                found.append(address)
    return found


def test_writer_health_port_binds_to_loopback(secure_service: Service) -> None:
    """The writer's health listener is on 127.0.0.1 only, and that is the default setting."""
    assert Settings().writer_health_host == "127.0.0.1"
    assert Settings.from_env({}).writer_health_host == "127.0.0.1"
    assert "AUDIT_SERVICE_WRITER_HEALTH_HOST" not in secure_service.env
    assert _listeners(secure_service.writer_port) == ["0100007F"]
