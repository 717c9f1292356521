"""The front door (``ingest.front_door``): posts answered without the router, exactly as through the app.

Over the real processes a post to ``/v1/audit/events`` takes the front door and one to
``/v1/audit/events?`` (the same route for the router) goes through the app, so every case is sent both
ways and the answers, the metrics and what is stored are compared. In-process (this test's own ingest app
on a real socket, the real writer process behind it) the app's handler is watched to see which requests
reach it, and the front door's own error and cancellation paths are driven by a replaced handler.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timezone
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from ingest import fast_lane, front_door
from ingest.app import create_app
from ingest.body import handler_options
from ingest.ops import UNMATCHED_ROUTE
from shared.settings import Settings
from tests.ops.helpers import Scrape, wait_for
from tests.service import Service, http

INGEST = "ingest-frontdoor-0123456789"
INGEST_ACME = "ingest-frontdoor-acme-0123"
READ = "read-frontdoor-0123456789ab"
EXACT = "/v1/audit/events"
THROUGH_APP = "/v1/audit/events?"
POSTS = "auditlake_ingest_http_requests_total"
DOOR = "auditlake_ingest_front_door_requests_total"


def event(**fields: Any) -> dict[str, Any]:
    """A usual event with a fresh id, stamped now in the canonical form (the short checks take it)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"audit_event_id": str(uuid.uuid4()), "ts": stamp, "type": "auth", "tenant_id": "acme",
            "component": "front-door-test", **fields}


def cases() -> list[tuple[str, str | None, bytes, dict[str, str]]]:
    """(name, token, body, extra headers): one of every kind of answer a post can get."""
    json_type = {"Content-Type": "application/json"}
    return [
        ("one event", INGEST, orjson.dumps(event()), json_type),
        ("a batch", INGEST, orjson.dumps({"events": [event(), event(action="read")]}), json_type),
        ("an array with whitespace", INGEST, orjson.dumps([event()], option=orjson.OPT_INDENT_2), json_type),
        ("no content type", INGEST, orjson.dumps(event()), {}),
        ("tenant-bound, its tenant", INGEST_ACME, orjson.dumps(event()), json_type),
        ("tenant-bound, another tenant", INGEST_ACME, orjson.dumps(event(tenant_id="other")), json_type),
        ("no token", None, orjson.dumps(event()), json_type),
        ("unknown token", "not-a-known-token-000000", orjson.dumps(event()), json_type),
        ("a read token", READ, orjson.dumps(event()), json_type),
        ("basic scheme", None, orjson.dumps(event()), {**json_type, "Authorization": "Basic abc"}),
        ("malformed JSON", INGEST, b'{"events": [', json_type),
        ("not JSON", INGEST, orjson.dumps(event()), {"Content-Type": "text/plain"}),
        ("a bad timestamp", INGEST, orjson.dumps(event(ts="yesterday")), json_type),
        ("a null value", INGEST, orjson.dumps(event(action=None)), json_type),
        ("a number for a string field", INGEST, orjson.dumps(event(action=5)), json_type),
        ("no events", INGEST, b'{"events": []}', json_type),
        ("a service event type", INGEST, orjson.dumps(event(type="audit_read")), json_type),
        ("too large", INGEST, b'{"events": [' + b" " * (2 * 1024 * 1024) + b"]}", json_type),
    ]


def answer(service: Service, path: str, token: str | None, body: bytes, headers: dict[str, str]) -> tuple:
    """What a post gets, with what differs between any two posts left out (the queue's depth)."""
    auth = {} if token is None else {"Authorization": f"Bearer {token}"}
    status, decoded, answer_headers = http("POST", f"{service.url}{path}", body, headers={**headers, **auth})
    if isinstance(decoded, dict):
        decoded.pop("queued", None)
    kept = {key.lower(): value for key, value in answer_headers.items()
            if key.lower() in ("content-type", "www-authenticate", "retry-after", "allow")}
    return status, decoded, kept


@pytest.fixture(scope="module")
def token_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Ingest, read and tenant-bound tokens, 1 MiB bodies at most, every event type kept."""
    service = Service(tmp_path_factory.mktemp("front-door"), AUDIT_SERVICE_INGEST_TOKENS=f"{INGEST},{INGEST_ACME}:acme",
                      AUDIT_SERVICE_READ_TOKENS=READ, AUDIT_SERVICE_MAX_BODY_BYTES=str(1024 * 1024),
                      AUDIT_SERVICE_FLUSH_INTERVAL_SECONDS="0.2")
    try:
        yield service.start_all()
    finally:
        service.stop()


def test_every_post_is_answered_as_the_app_answers_it(token_service: Service) -> None:
    """Each case sent to the exact path (front door) and with a bare query (the app) gets the same status,
    body and headers; the front door counted exactly the posts to the exact path; both ways are counted
    under the route; and every accepted event of both ways is stored once."""
    read = {"Authorization": f"Bearer {READ}"}
    before = Scrape(f"{token_service.url}/metrics", read)
    statuses: dict[str, int] = {}
    accepted_ids = []
    for name, token, body, headers in cases():
        through_door = answer(token_service, EXACT, token, body, headers)
        through_app = answer(token_service, THROUGH_APP, token, body, headers)
        assert through_door == through_app, name
        statuses[str(through_door[0])] = statuses.get(str(through_door[0]), 0) + 2
        if through_door[0] == 202 and through_door[1]["accepted"]:
            posted = orjson.loads(body)
            posted = posted["events"] if isinstance(posted, dict) and "events" in posted else posted
            accepted_ids += [item["audit_event_id"] for item in (posted if isinstance(posted, list) else [posted])]
    assert set(statuses) >= {"202", "400", "401", "403", "413", "415"}, statuses
    after = Scrape(f"{token_service.url}/metrics", read)
    assert after.value(DOOR) - before.value(DOOR) == len(cases())
    for status, count in statuses.items():
        grown = after.value(POSTS, route=EXACT, method="POST", status=status) - \
            before.value(POSTS, route=EXACT, method="POST", status=status)
        assert grown == count, (status, grown, count)
    assert after.value(POSTS, route=UNMATCHED_ROUTE) == before.value(POSTS, route=UNMATCHED_ROUTE)

    def stored() -> list[str] | None:
        code, page, _ = http("GET", f"{token_service.url}/v1/audit/events?window=1h&limit=1000"
                                    "&component=front-door-test", headers=read)
        assert code == 200, page
        ids = [record["audit_event_id"] for record in page["records"]]
        return ids if len(ids) >= len(accepted_ids) else None

    ids = wait_for(stored, timeout=20, what="the accepted events stored")
    assert sorted(ids) == sorted(accepted_ids)  # the second post of each is a duplicate id: stored once


@pytest.fixture
async def in_process(tmp_path: Path) -> AsyncIterator[tuple[str, front_door.FrontDoor, list[tuple[str, str]]]]:
    """This test's ingest app behind a front door on a loopback port, the real writer process behind it;
    yields the base URL, the front door and the (method, target) of every request that reached the app."""
    service = Service(tmp_path)
    service.start("writer")
    settings = Settings.from_env(service.env)
    runner = web.AppRunner(create_app(settings), access_log=None, **handler_options(settings))
    await runner.setup()
    door = front_door.install(runner)
    reached: list[tuple[str, str]] = []
    app_handler = door.through_app

    async def watched(request: web.BaseRequest) -> web.StreamResponse:
        reached.append((request.method, request.raw_path))
        return await app_handler(request)

    door.through_app = watched
    lanes = fast_lane.Lanes(door, runner.server, settings)  # as ingest listens: the lane, aiohttp behind it
    await lanes.start("127.0.0.1", 0, backlog=128)
    port = lanes.port
    try:
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                async with session.get(f"{url}/readyz") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.05)
        reached.clear()  # the readiness polls
        yield url, door, reached
    finally:
        lanes.stop_listening()
        await runner.cleanup()
        await lanes.shutdown(timeout=1.0)
        service.stop()


async def test_only_plain_posts_take_the_front_door(in_process) -> None:
    """A post to the exact path is answered without reaching the app; one with a query string, one that
    expects 100-continue, the route's GET and other methods and paths reach the app, and all are answered."""
    url, door, reached = in_process
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}{EXACT}", json=event()) as response:
            assert response.status == 202 and (await response.json())["accepted"] == 1
        assert reached == [] and door.stats.front_door_requests == 1
        async with session.post(f"{url}{EXACT}?source=query", json=event()) as response:
            assert response.status == 202
        async with session.post(f"{url}{EXACT}", json=event(), expect100=True) as response:
            assert response.status == 202
        async with session.put(f"{url}{EXACT}", json=event()) as response:
            assert response.status == 405 and "detail" in await response.json()
        async with session.post(f"{url}/v1/audit/event", json=event()) as response:
            assert response.status == 404 and "detail" in await response.json()
        async with session.get(f"{url}{EXACT}?window=1h") as response:
            assert response.status == 200
    assert [method for method, _ in reached] == ["POST", "POST", "PUT", "POST", "GET"]
    assert reached[0][1] == f"{EXACT}?source=query" and reached[1][1] == EXACT
    assert door.stats.front_door_requests == 1


async def test_the_app_has_no_response_prepare_hooks(in_process) -> None:
    """The posting route's answers (``ingest.answer.JsonAnswer``) skip aiohttp's ``on_response_prepare``
    signals, so the started app must have none."""
    _, door, _ = in_process
    assert door.app.frozen and len(door.app.on_response_prepare) == 0


async def test_errors_and_cancellations_are_answered_and_counted(in_process, monkeypatch) -> None:
    """What the app's middlewares make of a handler's failures, the front door makes too: an unexpected
    exception is a JSON 500 (logged), aiohttp's HTTP errors keep their status in the JSON shape, a redirect
    is raised as it is, and a request whose client went away is counted as 499."""
    url, door, _ = in_process
    metrics = door.recorder.metrics
    outcomes: list[BaseException | None] = [RuntimeError("boom"), web.HTTPRequestEntityTooLarge(10, 20),
                                            web.HTTPFound("/elsewhere"), None]

    async def failing(app: web.Application, request: web.BaseRequest) -> web.Response:
        outcome = outcomes.pop(0)
        if outcome is None:
            await asyncio.sleep(60)  # cancelled when its client goes away
            raise AssertionError("the abandoned request was not cancelled")
        raise outcome

    monkeypatch.setattr(front_door, "accept_events", failing)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}{EXACT}", json=event()) as response:
            assert (response.status, await response.json()) == (500, {"detail": "internal error"})
        async with session.post(f"{url}{EXACT}", json=event()) as response:
            assert response.status == 413 and list(await response.json()) == ["detail"]
            assert response.content_type == "application/json"
        async with session.post(f"{url}{EXACT}", json=event(), allow_redirects=False) as response:
            assert response.status == 302 and response.headers["Location"] == "/elsewhere"
        with pytest.raises(asyncio.TimeoutError):
            async with session.post(f"{url}{EXACT}", json=event(), timeout=aiohttp.ClientTimeout(total=0.5)):
                pass

    def counted(status: int) -> int:
        return metrics.requests.labels(EXACT, "POST", str(status)).value

    for _ in range(100):  # the server runs on this loop: wait on it, not in a blocking poll
        if counted(499):
            break
        await asyncio.sleep(0.05)
    assert [counted(status) for status in (500, 413, 302, 499)] == [1, 1, 1, 1]
    assert door.stats.front_door_requests == 4
