"""The fast lane (``ingest.fast_lane``): plain posts parsed and answered without aiohttp's protocol, and every
other request handed to aiohttp with the rest of its connection, over the real processes and raw sockets.

Each test counts, from /metrics, the posts the lane answered and the connections it handed over, so a
test notices both a post the lane should have taken going to aiohttp and one it should not have taken
staying in the lane. How the lane's answers compare with the app's, case by case, is
tests/test_front_door.py's; its deadlines are tests/security/test_slow_clients.py's.
"""

from __future__ import annotations

import gzip
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from tests.ops.helpers import Scrape, wait_for
from tests.service import Service, http

LANE = "auditlake_ingest_lane_requests_total"
HANDOVERS = "auditlake_ingest_lane_handovers_total"
DOOR = "auditlake_ingest_front_door_requests_total"
MAX_BODY = 64 * 1024


def event(**fields: Any) -> dict[str, Any]:
    """A usual event with a fresh id, stamped now."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"audit_event_id": str(uuid.uuid4()), "ts": stamp, "type": "auth", "component": "lane-test", **fields}


def post(body: bytes, headers: bytes = b"Content-Type: application/json\r\n", line: bytes = b"POST /v1/audit/events HTTP/1.1") -> bytes:
    """A post's bytes: the request line, ``headers``, its Content-Length and the body."""
    return line + b"\r\nHost: lane\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body


def read_answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``count`` answers read off the connection (each framed by its Content-Length): status, headers, body."""
    data = b""
    answers = []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            lines = data[:end].decode("latin-1").split("\r\n")
            headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
            length = int(headers.get("content-length", "0"))
            if len(data) >= end + 4 + length:
                status = int(lines[0].split()[1])
                if status != 100:  # an interim answer to Expect: 100-continue
                    answers.append((status, headers, data[end + 4:end + 4 + length]))
                data = data[end + 4 + length:]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {len(answers)} of {count} answers: {data[:300]!r}")
        data += chunk
    return answers


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server has closed the connection (nothing more to read)."""
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


class Counts:
    """The lane's, hand-overs' and front door's counters, scraped before and compared after."""

    def __init__(self, service: Service) -> None:
        self.url = f"{service.url}/metrics"
        self.before = Scrape(self.url)

    def grown(self) -> tuple[float, float, float]:
        """(lane posts, hand-overs, front-door posts) since this was made, the scrape's own hand-over left out
        (its GET is handed over before the metrics are rendered)."""
        after = Scrape(self.url)
        lane, handovers, door = (after.value(name) - self.before.value(name) for name in (LANE, HANDOVERS, DOOR))
        return lane, handovers - 1, door


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The two processes with 64 KiB bodies at most."""
    started = Service(tmp_path_factory.mktemp("lane"), AUDIT_SERVICE_MAX_BODY_BYTES=str(MAX_BODY),
                      AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    try:
        yield started.start_all()
    finally:
        started.stop()


def connect(service: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=10)


def stored_ids(service: Service, ids: list[str]) -> list[str]:
    """Waits until every id of ``ids`` is stored; the stored ones of them."""
    def found() -> list[str] | None:
        code, page, _ = http("GET", f"{service.url}/v1/audit/events?window=1h&limit=1000&component=lane-test")
        assert code == 200, page
        have = [record["audit_event_id"] for record in page["records"] if record["audit_event_id"] in ids]
        return have if len(have) >= len(ids) else None
    return wait_for(found, timeout=20, what="the events stored")


def test_posts_on_one_kept_alive_connection_stay_in_the_lane(service: Service) -> None:
    """Five posts one after the other on one connection: five 202s from the lane, no hand-over, all stored."""
    counts = Counts(service)
    events = [event() for _ in range(5)]
    with connect(service) as sock:
        for posted in events:
            sock.sendall(post(orjson.dumps(posted)))
            [(status, headers, body)] = read_answers(sock, 1)
            assert status == 202 and orjson.loads(body)["accepted"] == 1
            assert headers["content-type"] == "application/json" and "connection" not in headers
    assert counts.grown() == (5, 0, 5)
    ids = [posted["audit_event_id"] for posted in events]
    assert sorted(stored_ids(service, ids)) == sorted(ids)


def test_pipelined_posts_are_answered_one_by_one_in_order(service: Service) -> None:
    """Three posts in one write, the middle one refused: 202, 400, 202 in that order."""
    counts = Counts(service)
    good = [event(), event()]
    with connect(service) as sock:
        sock.sendall(post(orjson.dumps(good[0])) + post(orjson.dumps(event(ts="yesterday"))) + post(orjson.dumps(good[1])))
        statuses = [status for status, _, _ in read_answers(sock, 3)]
    assert statuses == [202, 400, 202]
    assert counts.grown() == (3, 0, 3)
    ids = [posted["audit_event_id"] for posted in good]
    assert sorted(stored_ids(service, ids)) == sorted(ids)


@pytest.mark.parametrize("piece", [1, 7, 60])
def test_a_post_arriving_in_pieces_is_answered_once_whole(service: Service, piece: int) -> None:
    """A post sent ``piece`` bytes at a time (head and body cut anywhere) is answered 202 by the lane."""
    counts = Counts(service)
    posted = event(detail="x" * 300)
    data = post(orjson.dumps(posted))
    with connect(service) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for start in range(0, len(data), piece):
            sock.sendall(data[start:start + piece])
            time.sleep(0.001)
        [(status, _, body)] = read_answers(sock, 1)
    assert status == 202 and orjson.loads(body)["accepted"] == 1
    assert counts.grown() == (1, 0, 1)


def test_a_compressed_post_is_taken_by_the_lane(service: Service) -> None:
    """A gzip body (as the producer library sends) is decoded and accepted in the lane."""
    counts = Counts(service)
    posted = event()
    with connect(service) as sock:
        sock.sendall(post(gzip.compress(orjson.dumps({"events": [posted]})),
                          b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"))
        [(status, _, body)] = read_answers(sock, 1)
    assert status == 202 and orjson.loads(body)["accepted"] == 1
    assert counts.grown() == (1, 0, 1)
    assert stored_ids(service, [posted["audit_event_id"]]) == [posted["audit_event_id"]]


def test_the_connection_goes_to_aiohttp_at_the_first_request_the_lane_does_not_take(service: Service) -> None:
    """A post, then a GET in the same write, then another post: the lane answers the first, aiohttp the GET
    (from its first byte) and, the connection now its own, the second post through the front door."""
    counts = Counts(service)
    with connect(service) as sock:
        sock.sendall(post(orjson.dumps(event())) + b"GET /readyz HTTP/1.1\r\nHost: lane\r\n\r\n")
        (first, _, _), (second, _, ready) = read_answers(sock, 2)
        sock.sendall(post(orjson.dumps(event())))
        [(third, _, _)] = read_answers(sock, 1)
    assert (first, second, third) == (202, 200, 202) and orjson.loads(ready)
    assert counts.grown() == (1, 1, 2)


CLOSE = b"Content-Type: application/json\r\nConnection: close\r\n"
NOT_TAKEN = {  # name: (request bytes, the status aiohttp answers, whether it then closes the connection)
    "connection: close": (post(orjson.dumps(event()), CLOSE), 202, True),
    "HTTP/1.0": (post(orjson.dumps(event()), line=b"POST /v1/audit/events HTTP/1.0"), 202, True),
    "a query string": (post(orjson.dumps(event()), line=b"POST /v1/audit/events?x=1 HTTP/1.1"), 202, False),
    "chunked": (b"POST /v1/audit/events HTTP/1.1\r\nHost: lane\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(orjson.dumps(event())) + orjson.dumps(event()) + b"\r\n0\r\n\r\n", 202, False),
    "expect 100-continue": (post(orjson.dumps(event()), b"Expect: 100-continue\r\n"), 202, False),
    "another media type": (post(orjson.dumps(event()), b"Content-Type: text/plain\r\n"), 415, False),
    "a body over the limit": (post(b" " * (MAX_BODY + 1)), 413, True),
    "a head over 8190 bytes": (post(orjson.dumps(event()), b"X-Long: " + b"a" * 9000 + b"\r\n"), 400, True),
    "not HTTP": (b"HELLO THERE\r\n\r\n", 400, True),
    "a bare LF": (post(orjson.dumps(event()), b"Content-Type: application/json\n"), 400, True),
}


PARSER_REFUSED = ("a head over 8190 bytes", "not HTTP", "a bare LF")  # aiohttp's parser answers these in plain text


@pytest.mark.parametrize("name", list(NOT_TAKEN))
def test_requests_the_lane_does_not_take_are_answered_by_aiohttp(service: Service, name: str) -> None:
    """Each kind of request the lane leaves to aiohttp is answered as aiohttp answers it, its connection
    handed over once and no post counted in the lane."""
    request, expected, closes = NOT_TAKEN[name]
    counts = Counts(service)
    with connect(service) as sock:
        sock.sendall(request)
        [(status, _, body)] = read_answers(sock, 1)
        assert status == expected, body[:300]
        if expected >= 400 and name not in PARSER_REFUSED:
            assert "detail" in orjson.loads(body)
        if closes:
            assert closed_by_server(sock)
    lane, handovers, _ = counts.grown()
    assert (lane, handovers) == (0, 1)


def test_shutdown_closes_idle_connections_and_answers_the_posts_in_flight(tmp_path) -> None:
    """SIGTERM to ingest while one lane connection is idle and another's post waits for a stopped writer:
    the idle one is closed at once; once the writer resumes the post is answered 202 with ``Connection:
    close`` and its connection closed; ingest exits 0 and the event is stored."""
    service = Service(tmp_path, AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2", AUDIT_SERVICE_DRAIN_SECONDS="10")
    try:
        service.start_all()
        posted = event()
        with connect(service) as idle, connect(service) as waiting:
            idle.sendall(post(orjson.dumps(event())))
            assert read_answers(idle, 1)[0][0] == 202
            service.procs["writer"].send_signal(signal.SIGSTOP)
            waiting.sendall(post(orjson.dumps(posted)))
            time.sleep(0.3)  # the post is in the lane, waiting for the writer's ack
            service.procs["ingest"].send_signal(signal.SIGTERM)
            assert closed_by_server(idle)
            service.procs["writer"].send_signal(signal.SIGCONT)
            [(status, headers, _)] = read_answers(waiting, 1)
            assert status == 202 and headers["connection"] == "close"
            assert closed_by_server(waiting)
        assert service.procs["ingest"].wait(timeout=15) == 0
        service.start("ingest")
        service.wait_ready()
        assert stored_ids(service, [posted["audit_event_id"]]) == [posted["audit_event_id"]]
    finally:
        service.procs["writer"].send_signal(signal.SIGCONT)
        service.stop()
