"""Access control: the scope each route needs (one data table), the bearer-token middleware, tenant confinement.

A route added later declares its scope by adding one line to ``ROUTE_RULES``; a route missing from the
table needs the admin scope (fail closed) and is named in a warning at start.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from types import MappingProxyType

from aiohttp import web
from multidict import MultiDict, MultiDictProxy

from ingest import keys
from ingest.errors import error
from ingest.tokens import ADMIN, ANONYMOUS, INGEST, OPEN, OPEN_MODE, READ, Principal, TokenTable

log = logging.getLogger("auditlake.ingest.auth")
REALM = 'Bearer realm="auditlake"'
PRINCIPAL = web.RequestKey("principal", Principal)


@dataclasses.dataclass(frozen=True)
class RouteRule:
    """What a route needs: a scope, and whether its handler confines a tenant-bound token to its tenant."""

    scope: str
    tenant_aware: bool = False


ROUTE_RULES: Mapping[tuple[str, str], RouteRule] = MappingProxyType({
    ("GET", "/healthz"): RouteRule(OPEN),
    ("GET", "/readyz"): RouteRule(OPEN),
    ("GET", "/v1/audit/status"): RouteRule(OPEN),
    ("GET", "/openapi.json"): RouteRule(OPEN),
    ("POST", "/v1/audit/events"): RouteRule(INGEST, tenant_aware=True),
    ("GET", "/v1/audit/events"): RouteRule(READ, tenant_aware=True),
    ("GET", "/v1/audit/export"): RouteRule(READ, tenant_aware=True),
    ("GET", "/v1/audit/stats"): RouteRule(READ, tenant_aware=True),
    ("GET", "/v1/audit/verbosity"): RouteRule(READ),
    ("GET", "/v1/audit/storage"): RouteRule(READ),
    ("GET", "/v1/audit/retention"): RouteRule(READ),
    ("PUT", "/v1/audit/retention"): RouteRule(ADMIN),
    ("GET", "/v1/audit/verify"): RouteRule(ADMIN),
    ("GET", "/metrics"): RouteRule(READ),
})
UNDECLARED = RouteRule(ADMIN)


def rule_for(method: str, path: str) -> RouteRule:
    """The rule of a route (HEAD follows GET); undeclared routes need the admin scope."""
    return ROUTE_RULES.get(("GET" if method == "HEAD" else method, path), UNDECLARED)


def undeclared_routes(app: web.Application) -> list[str]:
    """``METHOD path`` of every registered route missing from ``ROUTE_RULES``."""
    missing = []
    for route in app.router.routes():
        if route.method in ("HEAD", "*") or route.resource is None:
            continue
        if (route.method, route.resource.canonical) not in ROUTE_RULES:
            missing.append(f"{route.method} {route.resource.canonical}")
    return missing


def principal(request: web.Request) -> Principal:
    """The caller of a request, as the middleware identified it."""
    return request.get(PRINCIPAL, ANONYMOUS)


def confined_query(request: web.Request) -> MultiDictProxy[str]:
    """The query parameters with ``tenant_id`` forced to the caller's bound tenant, if it has one."""
    tenant = principal(request).tenant
    if tenant is None:
        return request.query
    params = MultiDict(request.query)
    params["tenant_id"] = tenant
    return MultiDictProxy(params)


def _challenge(status: int, detail: str, code: str | None = None, scope: str | None = None) -> web.Response:
    value = REALM
    if code is not None:
        value += f', error="{code}"'
    if scope is not None:
        value += f', scope="{scope}"'
    return error(status, detail, {"WWW-Authenticate": value})


def _bearer(request: web.Request) -> str | None:
    """The presented token; ``""`` for an Authorization header that is not one bearer token; None when absent."""
    values = request.headers.getall("Authorization", [])
    if not values:
        return None
    scheme, _, token = values[0].strip().partition(" ")
    if len(values) > 1 or scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


@web.middleware
async def require_token(request: web.Request, handler) -> web.StreamResponse:
    """Answer 401/403 unless the caller's token holds the route's scope; remember who called."""
    table = request.app[keys.TOKENS]
    if table.enabled and request.match_info.http_exception is not None:
        return await handler(request)  # aiohttp's own 404/405 answer: no route to admit to
    rule = rule_for(request.method, request.match_info.route.resource.canonical) if table.enabled else None
    refusal = admit_caller(request, table, rule)
    return refusal if refusal is not None else await handler(request)


def admit_caller(request: web.Request, table: TokenTable, rule: RouteRule | None) -> web.Response | None:
    """Remember who called (``PRINCIPAL``) and return None when the caller may use a route of ``rule``; else
    the 401/403 answer. With no tokens configured every request is admitted as ``OPEN_MODE`` (``rule`` may
    then be None)."""
    if not table.enabled:
        request[PRINCIPAL] = OPEN_MODE
        return None
    presented = _bearer(request)
    caller = table.identify(presented) if presented else None
    if rule.scope == OPEN:
        request[PRINCIPAL] = caller or ANONYMOUS
        return None
    if presented is None:
        return _challenge(401, "authentication required: send Authorization: Bearer <token>")
    if caller is None:
        log.info("request with an unknown token refused", extra={"path": request.path, "method": request.method})
        return _challenge(401, "invalid token", "invalid_token")
    if not caller.may(rule.scope):
        log.info("request refused for scope", extra={"path": request.path, "method": request.method,
                                                     "token": caller.fingerprint, "needs": rule.scope})
        return _challenge(403, f"this token lacks the '{rule.scope}' scope", "insufficient_scope", rule.scope)
    if caller.tenant is not None:
        if not rule.tenant_aware:
            return _challenge(403, "a tenant-bound token may only post and read its tenant's events",
                              "insufficient_scope", rule.scope)
        asked = [value for value in request.query.getall("tenant_id", []) if value != ""]
        if any(value != caller.tenant for value in asked):
            return error(403, "this token is bound to another tenant than the tenant_id filter")
    request[PRINCIPAL] = caller
    return None


async def warn_at_start(app: web.Application) -> None:
    """Log once at start: open mode (no tokens) and routes that have no declared scope."""
    if not app[keys.TOKENS].enabled:
        log.warning("authentication disabled: no AUDIT_SERVICE_*_TOKENS configured; anyone reaching the port "
                    "may post and read events (set AUDIT_SERVICE_REQUIRE_AUTH=true to refuse this)")
    missing = undeclared_routes(app)
    if missing:
        log.warning("routes without a declared scope need the admin scope", extra={"routes": missing})
