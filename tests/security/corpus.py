"""A generated corpus of hostile requests (sizes, encodings, shapes, types, headers), each with its expected 4xx."""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import socket
import zlib
from collections.abc import Iterator
from typing import Any

import orjson

from tests.security.conftest import ADMIN, INGEST, INGEST_ACME, READ, READ_ACME, WRONG, bearer

MIB = 1024 * 1024
MAX_BODY = 5 * MIB
NAMED_FIELDS = ("audit_event_id", "ts", "type", "tenant_id", "subject_hash", "subject_ref", "actor_ref", "action",
                "outcome", "reason_code", "correlation_id", "component", "resource_ref", "pdp", "source")
EVENTS = "/v1/audit/events"
JSON = {"Content-Type": "application/json"}


@dataclasses.dataclass
class Case:
    """One hostile request; ``expected`` None means any 4xx (protocol errors answered by aiohttp itself)."""

    name: str
    expected: int | None
    body: bytes | list[bytes] | None = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    method: str = "POST"
    path: str = EVENTS
    token: str | None = INGEST
    raw: bytes | None = None


def _event(**fields: Any) -> bytes:
    return orjson.dumps({"events": [{"type": "auth", **fields}]})


def _gzip_bomb(decoded_bytes: int) -> bytes:
    """A gzip member whose JSON inflates to ``decoded_bytes`` (built without holding them all)."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [deflater.compress(b'{"events":[{"type":"auth","details":{"pad":"')]
    block = b"A" * MIB
    for _ in range(decoded_bytes // MIB):
        parts.append(deflater.compress(block))
    parts.append(deflater.compress(b'"}}]}'))
    parts.append(deflater.flush())
    return b"".join(parts)


def size_cases() -> Iterator[Case]:
    """Bodies, decoded bodies, events and event counts over their limits: 413."""
    padding = b'{"events":[{"type":"auth","details":{"pad":"' + b"x" * MAX_BODY + b'"}}]}'
    yield Case("body over the limit with a length", 413, padding, JSON)
    yield Case("chunked body over the limit", 413, [padding[i:i + 65536] for i in range(0, len(padding), 65536)], JSON)
    bomb = _gzip_bomb(64 * MIB)
    yield Case("gzip bomb", 413, bomb, {**JSON, "Content-Encoding": "gzip"})
    yield Case("chunked gzip bomb", 413, [bomb[i:i + 4096] for i in range(0, len(bomb), 4096)],
               {**JSON, "Content-Encoding": "gzip"})
    small = _gzip_bomb(2 * MIB)
    yield Case("multi-member gzip bomb", 413, small * 4, {**JSON, "Content-Encoding": "gzip"})
    yield Case("one event over 64 KiB", 413, _event(details={"pad": "y" * 70000}), JSON)
    yield Case("10001 events", 413, orjson.dumps({"events": [{"type": "auth"}] * 10001}), JSON)
    yield Case("10001 events gzipped", 413, gzip.compress(orjson.dumps([{"type": "auth"}] * 10001)),
               {**JSON, "Content-Encoding": "gzip"})


def encoding_cases() -> Iterator[Case]:
    """Bytes that are not UTF-8 JSON, charsets and content encodings the service does not take."""
    bad_bytes = {
        "invalid utf-8": b'{"type":"auth","actor_ref":"\xff\xfe"}',
        "overlong utf-8": b'{"type":"auth","actor_ref":"\xc0\xaf"}',
        "raw surrogate": b'{"type":"auth","actor_ref":"\xed\xa0\x80"}',
        "escaped lone high surrogate": b'{"type":"auth","actor_ref":"\\ud800"}',
        "escaped lone low surrogate": b'{"type":"auth","actor_ref":"\\udc00"}',
        "escaped reversed pair": b'{"type":"auth","details":{"x":"\\udc00\\ud800"}}',
        "surrogate in a key": b'{"type":"auth","\\ud800":1}',
        "byte order mark": b'\xef\xbb\xbf{"type":"auth"}',
        "utf-16": '{"type":"auth"}'.encode("utf-16"),
        "utf-32": '{"type":"auth"}'.encode("utf-32"),
        "nul outside strings": b'{"type":"auth"}\x00',
        "latin-1 text": '{"type":"auth","actor_ref":"caf\xe9"}'.encode("latin-1"),
    }
    for name, body in bad_bytes.items():
        yield Case(name, 400, body, JSON)
    for charset in ("latin-1", "utf-16", "ascii", "x-unknown"):
        yield Case(f"charset {charset}", 415, _event(), {"Content-Type": f"application/json; charset={charset}"})
    for encoding in ("br", "deflate", "compress", "gzip, gzip", "zstd", "identity, gzip"):
        yield Case(f"content-encoding {encoding}", 415, _event(), {**JSON, "Content-Encoding": encoding})
    packed = gzip.compress(_event())
    gz = {**JSON, "Content-Encoding": "gzip"}
    yield Case("gzip header on plain JSON", 400, _event(), gz)
    yield Case("truncated gzip", 400, packed[:-12], gz)
    yield Case("gzip with trailing garbage", 400, packed + b"garbage!", gz)
    yield Case("gzip with a bad crc", 400, packed[:-8] + b"\x00\x00\x00\x00" + packed[-4:], gz)
    yield Case("empty gzip body", 400, b"", gz)
    yield Case("gzip of gzip", 400, gzip.compress(packed), gz)
    yield Case("gzip of garbage", 400, gzip.compress(b"\x00\x01not json"), gz)


def shape_cases() -> Iterator[Case]:
    """Bodies that are not an event, an array of events or {"events": [...]}, or that nest too deeply."""
    bodies = [b"", b"   ", b"null", b"5", b'"text"', b"true", b"[1]", b"[[]]", b"[null]", b'{"events": 5}',
              b'{"events": {}}', b'{"events": [1, {}]}', b'{"events": "x"}', b'[{}, 3]', b'{"events": [',
              b'{"type":"auth"} x', b'{}{}', b"{'type': 'auth'}", b'{type: "auth"}', b'{"type":"auth",}',
              b'{"type":"auth"} // comment', b'{"details": NaN}', b'{"details": Infinity}', b'{"details": -Infinity}',
              b'{"details": 1e999}', b'{"details": 0x10}', b'{"details": 01}', b'{"details": .5}',
              b'{"details": undefined}', b'[' * 2000 + b']' * 2000, b'{"a":' * 100000]
    for index, body in enumerate(bodies):
        yield Case(f"shape {index}: {body[:24]!r}", 400, body, JSON)
    for depth in (33, 40, 200, 1000):
        nested: Any = "leaf"
        for level in range(depth - 3):
            nested = [nested] if level % 2 else {"k": nested}
        yield Case(f"nesting {depth}", 400, orjson.dumps({"events": [{"type": "auth", "details": nested}]})
                   if depth < 250 else b'{"events":[{"details":' + b"[" * depth + b"]" * depth + b"}]}", JSON)
    for field in ("type", "ts", "tenant_id", "audit_event_id", "actor_ref"):
        yield Case(f"duplicate {field}", 400, b'{"type":"auth","%s":"2026-01-01T00:00:00Z","%s":"x"}'
                   % (field.encode(), field.encode()), JSON)
    yield Case("duplicate escaped key", 400, b'{"type":"auth","typ\\u0065":"cas_grant"}', JSON)
    yield Case("duplicate in second event", 400, b'{"events":[{"type":"auth"},{"tenant_id":"a","tenant_id":"b"}]}',
               JSON)
    yield Case("duplicate named key in details", 400, b'{"type":"auth","details":{"source":"a","source":"b"}}', JSON)
    for number in (b"18446744073709551616", b"-9223372036854775809", b"1" + b"0" * 30, b"9" * 400, b"-" + b"9" * 25):
        yield Case(f"integer {number[:12]!r} beyond 64 bits", 400, b'{"type":"auth","details":{"n":%s}}' % number, JSON)
    yield Case("integer ts beyond 64 bits", 400, b'{"type":"auth","ts":%s}' % (b"9" * 30), JSON)


def type_cases() -> Iterator[Case]:
    """Named fields of the wrong type, timestamps that do not parse, control characters, service-only types."""
    for field in NAMED_FIELDS:
        for value in ({"x": 1}, [1], True, 12 if field != "ts" else False):
            yield Case(f"{field} as {value!r}", 400, _event(**{field: value}), JSON)
    for ts in ("../../etc", "2026-01-01T00:00:00/../../x", "", " ", "yesterday", "2026-13-01", "9999999-01-01",
               "0000-00-00T00:00:00Z", "2026-01-01T25:00:00Z", "2026-01-01T00:00:00\u0000", 1e20, -1e20):
        yield Case(f"ts {ts!r}", 400, _event(ts=ts), JSON)
    for field in NAMED_FIELDS:
        if field == "ts":
            continue
        for char in ("\u0000", "\n", "\u001b", "\u007f"):
            yield Case(f"{field} with {char!r}", 400, _event(**{field: f"a{char}b"}), JSON)
    for event_type in ("audit_read", "service_start", "service_stop"):
        yield Case(f"service type {event_type}", 403, _event(type=event_type), JSON)
    yield Case("bound token, other tenant", 403, _event(tenant_id="globex"), JSON, token=INGEST_ACME)


def header_cases() -> Iterator[Case]:
    """Media types, credentials and methods the endpoint refuses."""
    for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                  "application/xml", "text/html", "application/octet-stream", "image/png", "application/jsonx",
                  "json", "text/json"):
        yield Case(f"content-type {media}", 415, _event(), {"Content-Type": media})
    for token, status in ((None, 401), (WRONG, 401), (READ, 403), (ADMIN, 403), (READ_ACME, 403)):
        yield Case(f"token {token and token[:6]}", status, _event(), JSON, token=token)
    yield Case("basic auth", 401, _event(), {**JSON, "Authorization": "Basic YTpi"}, token=None)
    for method in ("PATCH", "DELETE"):
        yield Case(f"method {method}", 405, _event(), JSON, method=method)
    yield Case("unknown path", 404, None, {}, method="GET", path="/v1/audit/../../etc/passwd")
    queries = ("since=garbage", "until=2026-99-01", "since=2026-02-01&until=2026-01-01", "window=99y", "limit=0",
               "limit=-1", "limit=abc", "time_resolution=second", "since=2020-01-01&until=2026-01-01",
               "since=../../etc", "from=%00")
    for query in queries:
        yield Case(f"query {query}", 400, None, {}, method="GET", path=f"{EVENTS}?{query}", token=READ)
    yield Case("bound read, other tenant", 403, None, {}, method="GET", path=f"{EVENTS}?tenant_id=globex",
               token=READ_ACME)


def raw_cases() -> Iterator[Case]:
    """Malformed HTTP, answered by the server's parser (any 4xx, not necessarily JSON)."""
    auth = f"Authorization: Bearer {INGEST}\r\n".encode()
    start = b"POST /v1/audit/events HTTP/1.1\r\nHost: x\r\n" + auth
    yield Case("header line too long", None, raw=start + b"X-Long: " + b"a" * 20000 + b"\r\n\r\n")
    yield Case("too many headers", None, raw=start + b"".join(b"X-%d: y\r\n" % i for i in range(300)) + b"\r\n")
    yield Case("length and chunked", None, raw=start + b"Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}")
    yield Case("bad content-length", None, raw=start + b"Content-Length: abc\r\n\r\n{}")
    yield Case("negative content-length", None, raw=start + b"Content-Length: -5\r\n\r\n{}")
    yield Case("bad chunk size", None, raw=start + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    yield Case("garbage request line", None, raw=b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n")
    yield Case("nul in header", None, raw=start + b"X-Bad: a\x00b\r\nContent-Length: 2\r\n\r\n{}")
    yield Case("http/0.9 style", None, raw=b"GET /\r\n\r\n")


def all_cases() -> list[Case]:
    """Every case of the corpus."""
    return [*size_cases(), *encoding_cases(), *shape_cases(), *type_cases(), *header_cases(), *raw_cases()]


def send(host: str, port: int, case: Case, timeout: float = 30.0) -> tuple[int, bytes, dict[str, str]]:
    """Send one case; (status, body, headers). Status 0 means the server closed without an answer."""
    if case.raw is not None:
        return _send_raw(host, port, case.raw, timeout)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        headers = {**bearer(case.token), **case.headers}
        if isinstance(case.body, list):
            connection.request(case.method, case.path, body=iter(case.body),
                               headers={**headers, "Transfer-Encoding": "chunked"}, encode_chunked=True)
        else:
            connection.request(case.method, case.path, body=case.body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        connection.close()


def _send_raw(host: str, port: int, data: bytes, timeout: float) -> tuple[int, bytes, dict[str, str]]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except OSError:
            pass
        answer = b""
        while b"\r\n" not in answer:
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    line = answer.split(b"\r\n", 1)[0].split()
    return (int(line[1]) if len(line) > 1 and line[1].isdigit() else 0), answer, {}
