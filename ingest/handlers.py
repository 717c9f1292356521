"""HTTP handlers for posting and querying events: thin adapters between HTTP and the link/reader."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from ingest import keys
from ingest.answer import JsonAnswer, error_answer, json_answer
from ingest.auth import principal
from ingest.body import Rejected
from ingest.compact_batch import canonical_events, prepare
from ingest.hardening import check_count, check_posted, check_structure, encode_events, guard_events, read_json
from ingest.link import AckTimeout, QueueFull, WriterRefused, WriterUnavailable
from ingest.stats import utc_now_iso
from shared import typed_columns
from shared.errors import EventError
from shared.events import normalize_event

log = logging.getLogger("auditlake.ingest.events")


def events_of(document: Any) -> list[Any]:
    """The list of posted events from any accepted body shape; raise EventError otherwise."""
    if isinstance(document, dict):
        if "events" in document:
            events = document["events"]
            if not isinstance(events, list):
                raise EventError("'events' must be an array of event objects")
            return events
        return [document]
    if isinstance(document, list):
        return document
    raise EventError("body must be an event object, an array of event objects or {\"events\": [...]}")


async def _payload(app: web.Application, request: web.Request, received_at: str) -> tuple[bytes, int, int, bytes]:
    """The NDJSON lines to store, how many events they hold, how many were posted and the lines' typed
    fields (``typed_columns.encode``); raise Rejected/EventError, or QueueFull/WriterUnavailable when the
    writer's queue has no room left once the body is read and its parse turn has come (it is not parsed).

    Everything parsed is dropped when this returns, before the request waits for the writer: a parsed
    batch is hundreds of objects, and keeping them alive across the wait makes every allocation slower.
    """
    settings = app[keys.SETTINGS]
    body, document = await read_json(request, settings, app[keys.TURNS], app[keys.LINK].admit)
    posted = events_of(document)
    check_count(posted, settings)
    tenant = principal(request).tenant
    events = posted  # completed in place by ``prepare`` when it answers
    encoded = canonical_events(body, document)
    prepared = None if encoded is None else prepare(posted, encoded, body, received_at, tenant, settings.max_event_bytes)
    if prepared is None:
        await check_structure(body, document)
        check_posted(posted)
        events = [normalize_event(raw, received_at, index) for index, raw in enumerate(posted)]
        guard_events(events, tenant)
        lines, payload, columns = encode_events(events, settings.max_event_bytes), None, None
    else:
        lines, (payload, columns) = None, prepared
    preset = app[keys.PRESET]
    if not preset.allow_all:
        kept = [index for index, event in enumerate(events) if preset.allows(event.get("type"))]
        if len(kept) < len(events):
            every = lines if lines is not None else payload.split(b"\n")[:-1]  # stored lines hold no raw newline
            events, lines, payload, columns = [events[index] for index in kept], [every[index] for index in kept], None, None
    if payload is None:
        if not lines:
            return b"", 0, len(posted), b""
        payload = b"\n".join([*lines, b""])
    if columns is None:
        columns = typed_columns.encode(events, received_at, body)
    return payload, len(events), len(posted), columns


async def post_events(request: web.Request) -> web.Response | JsonAnswer:
    """The route's handler (``ingest.front_door`` calls ``accept_events`` without the router)."""
    return await accept_events(request.app, request)


async def accept_events(app: web.Application, request: web.BaseRequest) -> web.Response | JsonAnswer:
    """Validate, filter by verbosity, forward to the writer and answer 202 once it acknowledged."""
    stats = app[keys.STATS]
    link = app[keys.LINK]
    received_at = utc_now_iso()
    try:
        link.admit()  # full or no writer: refuse before spending a read and a parse on the body
        payload, kept, posted, columns = await _payload(app, request, received_at)
    except (QueueFull, WriterUnavailable) as exc:  # at once, or filled up while it was read or waited its turn
        stats.refused_unread_requests += 1
        return error_answer(503, str(exc))
    except Rejected as exc:
        stats.invalid_requests += 1
        return exc.response()
    except EventError as exc:
        stats.invalid_requests += 1
        return error_answer(400, str(exc))
    stats.dropped_by_verbosity += posted - kept
    if not kept:
        return json_answer({"accepted": 0, "queued": link.queued_events}, 202)
    if len(payload) > link.max_frame_bytes:
        stats.invalid_requests += 1
        return error_answer(413, "request events exceed the maximum batch size after normalization")
    try:
        submission = link.submit(payload, kept, columns)
        await link.wait(submission)
    except (QueueFull, WriterUnavailable, WriterRefused) as exc:
        stats.rejected_events += kept
        return error_answer(503, str(exc) if not isinstance(exc, WriterRefused) else "audit writer refused the events")
    except AckTimeout as exc:
        stats.unconfirmed_events += kept
        return error_answer(504, str(exc))
    stats.accepted_events += kept
    stats.last_received_at = received_at
    return json_answer({"accepted": kept, "queued": link.queued_events}, 202)
