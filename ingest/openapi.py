"""The OpenAPI document of the ingest HTTP API: hand-written operation table, paths taken from the router."""

from __future__ import annotations

import importlib.metadata
import logging
from typing import Any

import orjson
from aiohttp import web

from ingest.auth import rule_for
from ingest.tokens import OPEN

log = logging.getLogger("auditlake.ingest.openapi")
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options")
WINDOWS = ["5m", "15m", "30m", "1h", "6h", "12h", "24h", "7d"]
EXACT_FILTERS = ["type", "outcome", "component", "correlation_id", "tenant_id", "source", "action", "resource_ref",
                 "subject_hash", "reason_code", "agent_name", "tool_name"]
NAMED_FIELDS = ["audit_event_id", "ts", "type", "tenant_id", "subject_hash", "subject_ref", "actor_ref", "action",
                "outcome", "reason_code", "correlation_id", "component", "resource_ref", "pdp", "source"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(description: str, schema: str | dict[str, Any], headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {
        "schema": _ref(schema) if isinstance(schema, str) else schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str) -> dict[str, Any]:
    return _json(description, "Error")


RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


TIMESTAMP = {"type": "string", "description": "ISO-8601; a naive timestamp means UTC"}
EVENT_QUERY_PARAMETERS = [
    _query("since", "Start of the range, inclusive (alias `from`).", TIMESTAMP),
    _query("from", "Alias of `since`.", TIMESTAMP),
    _query("until", "End of the range, inclusive (alias `to`); default now.", TIMESTAMP),
    _query("to", "Alias of `until`.", TIMESTAMP),
    _query("window", "Range length back from `until` when `since` is absent; default one day.",
           {"type": "string", "enum": WINDOWS}),
    _query("time_resolution", "Planning hint.", {"type": "string", "enum": ["auto", "minute", "hour", "day"]}),
    _query("limit", "Records to return (default 1000, clamped to 10000; the response echoes the clamped value).",
           {"type": "integer", "minimum": 1}),
    *[_query(name, f"Exact match on `{name}`.") for name in EXACT_FILTERS],
    _query("capability", "Matches `capability`, or `action` where `capability` is absent."),
    _query("user_email", "Case-insensitive substring match on `user_email`."),
]
PAGE_PARAMETERS = [
    *EVENT_QUERY_PARAMETERS,
    _query("cursor", "The `next_cursor` of the previous page: continues exactly after it, over the same range."),
]
EXPORT_PARAMETERS = [
    *[parameter for parameter in EVENT_QUERY_PARAMETERS if parameter["name"] != "limit"],
    _query("format", "`ndjson` (default) or `csv`.", {"type": "string", "enum": ["ndjson", "csv"]}),
]
STATS_PARAMETERS = [
    *[parameter for parameter in EVENT_QUERY_PARAMETERS if parameter["name"] != "limit"],
    _query("bucket", "Bucket width (default 1h).", {"type": "string", "enum": ["1m", "5m", "1h", "1d"]}),
    _query("group_by", "Count per value of this field within each bucket."),
]

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/healthz"): {
        "summary": "Liveness of the ingest process", "tags": ["health"],
        "description": "Checks nothing else; answers from memory.",
        "responses": {"200": _json("Alive.", "Health")},
    },
    ("GET", "/readyz"): {
        "summary": "Readiness to take traffic", "tags": ["health"],
        "description": "200 while the writer is connected and acknowledging, storage is usable and the queue is "
                       "below 95 % of its bound (events and bytes); answered from cached state.",
        "responses": {"200": _json("Ready, with the status fields.", "Ready"),
                      "503": _error("Not ready: writer not connected or not ready, storage down, or "
                                    "\"audit queue saturated\".")},
    },
    ("GET", "/v1/audit/status"): {
        "summary": "Counters and storage health", "tags": ["health"],
        "description": "Always 200, from cached state (fast enough for a 1 s health-check timeout).",
        "responses": {"200": _json("Status document.", "Status")},
    },
    ("POST", "/v1/audit/events"): {
        "summary": "Ingest audit events", "tags": ["events"],
        "description": "All or nothing. 202 means the writer holds the events durably (spool, fsync'd). Events whose "
                       "type the verbosity preset excludes are dropped and not counted in `accepted`.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("PostBody")}}},
        "responses": {
            "202": _json("Stored durably.", "Accepted"),
            "400": _error("Malformed JSON, a body of the wrong shape, or a field of the wrong type."),
            "408": _error("The body did not arrive in time."),
            "413": _error("Body larger than AUDIT_SERVICE_MAX_BODY_BYTES."),
            "415": _error("The body is not JSON (Content-Type)."),
            "503": _json("Nothing stored: \"audit queue full\", writer unavailable or refusing.", "Error", RETRY_AFTER),
            "504": _error("The writer did not confirm in time: outcome unknown; retry with the same audit_event_ids."),
        },
    },
    ("GET", "/v1/audit/events"): {
        "summary": "Query audit events", "tags": ["events"],
        "description": "Newest first by `ts` (ties by `audit_event_id`); `total` counts every match in the range; "
                       "filters AND; `next_cursor` is present when `truncated`.",
        "parameters": PAGE_PARAMETERS,
        "responses": {"200": _json("Matching records.", "QueryResult"),
                      "400": _error("Unparsable timestamp, unknown window or time_resolution, since after until, "
                                    "range over AUDIT_SERVICE_READ_MAX_DAYS, limit < 1, or a bad cursor."),
                      "503": _json("Storage temporarily unreadable, or too many concurrent reads.", "Error",
                                   RETRY_AFTER)},
    },
    ("GET", "/v1/audit/export"): {
        "summary": "Stream every matching event", "tags": ["events"],
        "description": "Every match, newest first, no cap, streamed in constant memory as NDJSON or CSV (columns: "
                       "ts, received_at, the named string fields, user_email, capability, agent_name, tool_name, "
                       "record_json).",
        "parameters": EXPORT_PARAMETERS,
        "responses": {"200": {"description": "The matching events.",
                              "content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                          "text/csv": {"schema": {"type": "string"}}}},
                      "400": _error("A bad parameter or format."),
                      "503": _json("Storage temporarily unreadable, or too many concurrent reads.", "Error",
                                   RETRY_AFTER)},
    },
    ("GET", "/v1/audit/stats"): {
        "summary": "Counts per time bucket", "tags": ["events"],
        "description": "Counts of matching events per bucket, optionally per value of one field, for charts.",
        "parameters": STATS_PARAMETERS,
        "responses": {"200": _json("Counts.", "Stats"),
                      "400": _error("A bad parameter, bucket or group_by."),
                      "503": _json("Storage temporarily unreadable, or too many concurrent reads.", "Error",
                                   RETRY_AFTER)},
    },
    ("GET", "/v1/audit/verbosity"): {
        "summary": "Active verbosity preset and all presets", "tags": ["config"],
        "responses": {"200": _json("The active preset.", "Verbosity")},
    },
    ("GET", "/v1/audit/storage"): {
        "summary": "Bytes (local) or objects (s3) held by the backend", "tags": ["config"],
        "responses": {"200": _json("Storage size.", {"oneOf": [_ref("StorageLocal"), _ref("StorageS3")]}),
                      "503": _json("Storage temporarily unreadable.", "Error", RETRY_AFTER)},
    },
    ("GET", "/v1/audit/retention"): {
        "summary": "Retention setting of the backend", "tags": ["config"],
        "responses": {"200": _json("Retention.", "Retention"),
                      "502": _error("The bucket's lifecycle configuration could not be read.")},
    },
    ("PUT", "/v1/audit/retention"): {
        "summary": "Set the S3 lifecycle retention rule (caipe-audit-retention)", "tags": ["config"],
        "description": "S3 only; 0 removes the rule; other lifecycle rules are kept.",
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("RetentionUpdate")}}},
        "responses": {"200": _json("The new retention.", "Retention"),
                      "400": _error("Local backend, or a missing, non-integer or negative `days`."),
                      "502": _error("The bucket's lifecycle configuration could not be updated; nothing changed.")},
    },
    ("GET", "/v1/audit/verify"): {
        "summary": "Verify the store against the signed digest chain and the manifest journal", "tags": ["admin"],
        "description": "Admin scope. `ok` is false when anything was modified, missing, unexpected, or a chain "
                       "or signature does not verify; `first_problem` names the first bad item.",
        "parameters": [_query("since", "Check objects with events from here on.", TIMESTAMP),
                       _query("until", "Check objects with events up to here.", TIMESTAMP)],
        "responses": {"200": _json("The verification report.", "VerifyReport"),
                      "400": _error("An unparsable timestamp, or since after until."),
                      "503": _json("No signing key yet, or the object store is unreachable.", "Error", RETRY_AFTER)},
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics", "tags": ["operations"],
        "description": "Prometheus text exposition format (see docs/operations.md for the metric names).",
        "responses": {"200": {"description": "Metrics.", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    ("GET", "/openapi.json"): {
        "summary": "This document", "tags": ["operations"],
        "responses": {"200": {"description": "OpenAPI 3.1 document.",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    },
}

_STRING = {"type": "string"}
_NULLABLE_STRING = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_CPUS = {"type": ["array", "null"], "items": {"type": "integer"}}
SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["detail"], "properties": {"detail": _STRING}},
    "Health": {"type": "object", "properties": {"status": {"const": "ok"}}},
    "Event": {"type": "object", "additionalProperties": True,
              "description": "Named fields are strings (a numeric `ts` is epoch seconds); every other field is kept "
                             "as posted; null-valued keys are dropped; `audit_event_id` and `ts` are filled when absent.",
              "properties": {name: ({"type": ["string", "number"]} if name == "ts" else _STRING) for name in NAMED_FIELDS}},
    "StoredEvent": {"allOf": [_ref("Event"), {"type": "object", "required": ["audit_event_id", "ts", "received_at"],
                                              "properties": {"received_at": _STRING}}]},
    "PostBody": {"oneOf": [_ref("Event"), {"type": "array", "items": _ref("Event")},
                           {"type": "object", "required": ["events"],
                            "properties": {"events": {"type": "array", "items": _ref("Event")}}}]},
    "Accepted": {"type": "object", "required": ["accepted", "queued"], "properties": {"accepted": _INT, "queued": _INT}},
    "QueryResult": {"type": "object", "required": ["records", "total", "limit", "truncated"], "properties": {
        "records": {"type": "array", "items": _ref("StoredEvent")}, "total": _INT, "limit": _INT,
        "truncated": {"type": "boolean"}, "next_cursor": _STRING}},
    "Stats": {"type": "object", "required": ["bucket", "total", "series"], "properties": {
        "bucket": _STRING, "group_by": {"type": ["string", "null"]}, "since": _STRING, "until": _STRING,
        "total": _INT, "series": {"type": "array", "items": {"type": "object", "properties": {
            "start": _STRING, "count": _INT, "groups": {"type": "object", "additionalProperties": _INT}}}}}},
    "StorageHealth": {"type": "object", "required": ["backend", "status", "detail"], "additionalProperties": True,
                      "properties": {"backend": _STRING, "status": {"enum": ["healthy", "warning", "down"]},
                                     "detail": _STRING}},
    "Status": {"type": "object", "additionalProperties": True, "properties": {
        "running": {"type": "boolean"}, "backend": _STRING, "queue_size": _INT, "queue_max_size": _INT,
        "queue_bytes": _INT, "queue_max_bytes": _INT, "frames_in_flight": _INT, "flush_batch_size": _INT,
        "flush_interval_seconds": {"type": "number"}, "accepted_events": _INT, "rejected_events": _INT,
        "flushed_events": _INT, "failed_flushes": _INT, "last_received_at": _NULLABLE_STRING,
        "last_flush_at": _NULLABLE_STRING, "last_error": _NULLABLE_STRING, "writer_connected": {"type": "boolean"},
        "quarantined_segments": {"type": "array", "items": _STRING}, "storage": _ref("StorageHealth"),
        "cpus": {"type": "object", "description": "CPUs each process is pinned to; null when not pinned.",
                 "properties": {"ingest": _CPUS, "writer": _CPUS}}}},
    "Ready": {"allOf": [_ref("Status"), {"type": "object", "properties": {"status": {"const": "ready"}}}]},
    "Preset": {"type": "object", "properties": {
        "name": _STRING, "label": _STRING, "description": _STRING,
        "allowed_types": {"type": "array", "items": _STRING}, "allow_all": {"type": "boolean"}}},
    "Verbosity": {"type": "object", "properties": {
        "verbosity": _STRING, "label": _STRING, "description": _STRING,
        "allowed_types": {"type": "array", "items": _STRING}, "allow_all": {"type": "boolean"},
        "available_presets": {"type": "array", "items": _ref("Preset")}}},
    "StorageLocal": {"type": "object", "properties": {
        "backend": {"const": "local"}, "audit_bytes": _INT, "audit_bytes_human": _STRING, "local_path": _STRING,
        "retention_days": _INT}},
    "StorageS3": {"type": "object", "properties": {
        "backend": {"const": "s3"}, "object_count": _INT, "total_bytes": _INT, "total_bytes_human": _STRING,
        "capped": {"type": "boolean"}, "bucket": _STRING, "prefix": _STRING}},
    "Retention": {"type": "object", "required": ["backend", "retention_days", "configurable"], "properties": {
        "backend": _STRING, "retention_days": _INT, "configurable": {"type": "boolean"}, "note": _STRING,
        "bucket": _STRING, "prefix": _STRING}},
    "VerifyReport": {"type": "object", "required": ["ok", "verified", "modified", "missing", "unexpected",
                                                    "chain_breaks", "signature_failures"], "properties": {
        "ok": {"type": "boolean"}, **{name: _INT for name in (
            "verified", "modified", "missing", "unexpected", "chain_breaks", "signature_failures", "pending",
            "expired", "deleted", "legacy", "predates_chain", "from_journal", "digests")},
        "writers": {"type": "object"}, "first_problem": {"type": ["object", "null"]},
        "problems": {"type": "array", "items": {"type": "object", "properties": {
            "finding": _STRING, "item": _STRING, "detail": _STRING}}}}},
    "RetentionUpdate": {"type": "object", "required": ["days"], "properties": {"days": {"type": "integer", "minimum": 0}}},
}


def registered_operations(router: web.UrlDispatcher) -> set[tuple[str, str]]:
    """(METHOD, canonical path) of every route the app serves, without the HEAD twins aiohttp adds to GETs."""
    return {(route.method, route.resource.canonical) for route in router.routes()
            if route.resource is not None and route.method.lower() in HTTP_METHODS}


def build_spec(router: web.UrlDispatcher) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes registered in ``router`` that the table describes."""
    served = registered_operations(router)
    undocumented = sorted(served - OPERATIONS.keys())
    if undocumented:
        log.warning("routes without an OpenAPI description", extra={"routes": [" ".join(op) for op in undocumented]})
    paths: dict[str, dict[str, Any]] = {}
    for method, path in sorted(served & OPERATIONS.keys()):
        operation = {"operationId": _operation_id(method, path), **OPERATIONS[(method, path)]}
        operation.update(_security(method, path, operation["responses"]))
        paths.setdefault(path, {})[method.lower()] = operation
    try:
        version = importlib.metadata.version("auditlake")
    except importlib.metadata.PackageNotFoundError:
        version = "0.0.0"
    return {
        "openapi": "3.1.0",
        "info": {"title": "auditlake", "version": version,
                 "description": "Durable audit-log service: ingest and query audit events."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearerAuth": {
            "type": "http", "scheme": "bearer",
            "description": "Required on routes with a scope once AUDIT_SERVICE_*_TOKENS are configured."}}},
    }


def _security(method: str, path: str, responses: dict[str, Any]) -> dict[str, Any]:
    """The bearer requirement, scope and 401/403 answers of a route, from ingest/auth.py's table."""
    scope = rule_for(method, path).scope
    if scope == OPEN:
        return {}
    return {"security": [{"bearerAuth": []}], "x-required-scope": scope, "responses": {
        **responses,
        "401": _error("No, or an unknown, bearer token (when tokens are configured); WWW-Authenticate says which."),
        "403": _error(f"The token lacks the '{scope}' scope, or is bound to another tenant."),
    }}


def _operation_id(method: str, path: str) -> str:
    words = [part for part in path.replace(".", "_").split("/") if part and part not in ("v1", "audit")]
    return "_".join([method.lower(), *words]) or method.lower()


_SPEC_BODY = web.AppKey("openapi_body", dict)


async def openapi_handler(request: web.Request) -> web.Response:
    """``GET /openapi.json``: built from the router on first use (every route is registered by then)."""
    cache = request.app.get(_SPEC_BODY)
    body = cache.get("body") if cache is not None else None
    if body is None:
        body = orjson.dumps(build_spec(request.app.router))
        if cache is not None:
            cache["body"] = body
    return web.Response(body=body, content_type="application/json")


def install_cache(app: web.Application) -> None:
    """Give the app a place to keep the rendered document (set before the app starts)."""
    app[_SPEC_BODY] = {}
