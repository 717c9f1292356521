"""Slow or stalled clients are cut off by the header and body read deadlines, over raw sockets."""

from __future__ import annotations

import concurrent.futures
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from tests.ops.helpers import Scrape
from tests.service import Service

DEADLINE = 1.0
MARGIN = 2.5  # the answer must come within DEADLINE + MARGIN seconds


@pytest.fixture(scope="module")
def strict_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An open-mode service with 1 s header and body read deadlines."""
    service = Service(tmp_path_factory.mktemp("slow"), AUDIT_SERVICE_HEADER_READ_TIMEOUT_SECONDS=str(DEADLINE),
                      AUDIT_SERVICE_BODY_READ_TIMEOUT_SECONDS=str(DEADLINE))
    try:
        yield service.start_all()
    finally:
        service.stop()


def _connect(service: Service) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=DEADLINE + MARGIN + 5)
    sock.setblocking(True)
    return sock


def _read_answer(sock: socket.socket, started: float, answer: bytes = b"") -> tuple[bytes, float]:
    """What the server sends until it closes or a whole JSON error arrived; with the time of its first byte."""
    first = time.monotonic() if answer else None
    try:
        while not (b"\r\n\r\n" in answer and b'"detail"' in answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            first = first or time.monotonic()
            answer += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return answer, (first or time.monotonic()) - started


def slowloris_headers(service: Service) -> tuple[bytes, float]:
    """Headers trickle in, one line every 0.25 s, forever."""
    sock = _connect(service)
    started = time.monotonic()
    sock.sendall(b"POST /v1/audit/events HTTP/1.1\r\nHost: x\r\n")
    sock.settimeout(0.25)
    try:
        for index in range(int((DEADLINE + MARGIN + 2) / 0.25)):
            try:
                data = sock.recv(1)
                if not data:
                    return b"", time.monotonic() - started
            except TimeoutError:
                pass
            sock.sendall(b"X-Slow-%d: y\r\n" % index)
    except (BrokenPipeError, ConnectionResetError):
        return b"", time.monotonic() - started
    finally:
        sock.close()
    return b"never closed", time.monotonic() - started


def silent_connection(service: Service) -> tuple[bytes, float]:
    """A connection that never sends a byte."""
    with _connect(service) as sock:
        return _read_answer(sock, time.monotonic())


def stalled_body(service: Service) -> tuple[bytes, float]:
    """Complete headers, then 10 of 1000 announced body bytes, then nothing."""
    with _connect(service) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"events\":")
        return _read_answer(sock, started)


def stalled_chunked_body(service: Service) -> tuple[bytes, float]:
    """A chunked body without a length that stops after its first chunk."""
    with _connect(service) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/audit/events HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"a\r\n{\"events\":\r\n")
        return _read_answer(sock, started)


def trickled_body(service: Service) -> tuple[bytes, float]:
    """A body sent one byte every 0.1 s: alive, but too slow for the body deadline."""
    with _connect(service) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /v1/audit/events HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n")
        sock.settimeout(0.1)
        for _ in range(int((DEADLINE + MARGIN) / 0.1)):
            try:
                answer = sock.recv(65536)
                sock.settimeout(DEADLINE + MARGIN)
                return _read_answer(sock, started, answer)
            except TimeoutError:
                sock.sendall(b" ")
        return b"", time.monotonic() - started


CLOSED = {"slowloris headers": slowloris_headers, "silent connection": silent_connection}
ANSWERED_408 = {"stalled body": stalled_body, "stalled chunked body": stalled_chunked_body,
                "trickled body": trickled_body}


def test_slow_clients_are_cut_off_within_the_deadlines(strict_service: Service) -> None:
    """Header stalls are closed and body stalls answered 408 (JSON) within the deadline, all at once, each 408
    counted as a refused post under the route (the two with a length in the fast lane, the chunked one
    through aiohttp)."""
    before = Scrape(f"{strict_service.url}/metrics")
    attacks: dict[str, Callable[[Service], tuple[bytes, float]]] = {**CLOSED, **ANSWERED_408}
    with concurrent.futures.ThreadPoolExecutor(len(attacks)) as pool:
        futures = {name: pool.submit(attack, strict_service) for name, attack in attacks.items()}
        results = {name: future.result() for name, future in futures.items()}
    for name, (answer, elapsed) in results.items():
        assert DEADLINE * 0.8 <= elapsed <= DEADLINE + MARGIN, (name, elapsed, answer[:200])
        if name in ANSWERED_408:
            assert answer.startswith(b"HTTP/1.1 408"), (name, answer[:300])
            assert b"application/json" in answer and b'"detail"' in answer, (name, answer[:300])
        else:
            assert answer == b"", (name, answer[:200])
    after = Scrape(f"{strict_service.url}/metrics")
    grown = {name: after.value(name, **labels) - before.value(name, **labels) for name, labels in (
        ("auditlake_ingest_front_door_requests_total", {}), ("auditlake_ingest_lane_requests_total", {}),
        ("auditlake_ingest_invalid_requests_total", {}),
        ("auditlake_ingest_http_requests_total", {"route": "/v1/audit/events", "method": "POST", "status": "408"}))}
    assert list(grown.values()) == [3, 2, 3, 3], grown
    assert strict_service.post({"type": "auth"})[0] == 202
    assert strict_service.get("/readyz")[0] == 200


def test_a_prompt_client_on_a_kept_alive_connection_is_served(strict_service: Service) -> None:
    """Two requests on one connection within the deadline both succeed (the deadline is per request head)."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", strict_service.port, timeout=10)
    try:
        for _ in range(2):
            connection.request("POST", "/v1/audit/events", body=b'{"type":"auth"}',
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            assert response.status == 202, response.read()
            response.read()
            time.sleep(DEADLINE / 4)  # think time between requests, well inside the deadline
    finally:
        connection.close()
