"""Access control over real HTTP: every endpoint × no token, a wrong token, each scope and tenant-bound tokens."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from shared.errors import ConfigError
from shared.settings import Settings
from tests.security.conftest import (
    ADMIN, INGEST, INGEST_ACME, READ, READ_ACME, TENANT, TOKENS, WRONG, assert_json_error, call, header, marker,
    poll,
)
from tests.service import REPO, Service

CREDENTIALS = {"none": None, "wrong": WRONG, **TOKENS}
OPEN = {name: 200 for name in CREDENTIALS}
NEEDS_READ = {"none": 401, "wrong": 401, "ingest": 403, "ingest_acme": 403, "read": 200, "read_acme": 403,
              "admin": 200}
# (method, path, body, expected status per credential)
MATRIX = [
    ("GET", "/healthz", None, OPEN),
    ("GET", "/readyz", None, OPEN),
    ("GET", "/v1/audit/status", None, OPEN),
    ("POST", "/v1/audit/events", "event", {"none": 401, "wrong": 401, "ingest": 202, "ingest_acme": 202,
                                           "read": 403, "read_acme": 403, "admin": 403}),
    ("GET", "/v1/audit/events?window=5m&limit=1", None, {**NEEDS_READ, "read_acme": 200}),
    ("GET", "/v1/audit/verbosity", None, NEEDS_READ),
    ("GET", "/v1/audit/storage", None, NEEDS_READ),
    ("GET", "/v1/audit/retention", None, NEEDS_READ),
    # The admin passes the token check; the local backend then refuses retention changes (400).
    ("PUT", "/v1/audit/retention", {"days": 3}, {**NEEDS_READ, "read": 403, "admin": 400}),
    ("GET", "/metrics", None, NEEDS_READ),
    ("GET", "/openapi.json", None, OPEN),
]


def _body(body, credential: str):
    if body != "event":
        return body
    return {"events": [{"type": "auth", "tenant_id": TENANT, "correlation_id": f"matrix-{credential}"}]}


@pytest.mark.parametrize("method, path, body, expected", MATRIX, ids=[f"{m} {p.split('?')[0]}" for m, p, _, _ in MATRIX])
def test_token_matrix(secure_service: Service, method: str, path: str, body, expected: dict[str, int]) -> None:
    """Each credential gets exactly the status its scope allows; refusals carry the JSON error and a challenge."""
    for credential, token in CREDENTIALS.items():
        response = call(secure_service, method, path, token, _body(body, credential))
        status, answer, headers = response
        assert status == expected[credential], (credential, status, answer)
        if status in (401, 403):
            assert_json_error(response, status)
            challenge = header(headers, "WWW-Authenticate") or ""
            assert challenge.startswith('Bearer realm="auditlake"'), (credential, headers)
            if credential == "none":
                assert "error=" not in challenge
            elif status == 401:
                assert 'error="invalid_token"' in challenge
            elif status == 403:
                assert 'error="insufficient_scope"' in challenge


@pytest.mark.parametrize("value", ["Basic aW5nZXN0OnBhc3N3b3Jk", "Bearer", "Bearer ", f"Token {INGEST}",
                                   f"Bearer {INGEST}x", f"Bearer {INGEST[:-1]}", f"bearer  {WRONG}"])
def test_malformed_or_unknown_credentials_are_401(secure_service: Service, value: str) -> None:
    """An Authorization header that is not one configured bearer token is 401 invalid_token."""
    response = call(secure_service, "POST", "/v1/audit/events", body={"type": "auth"},
                    headers={"Authorization": value})
    assert_json_error(response, 401)
    assert 'error="invalid_token"' in header(response[2], "WWW-Authenticate")


def test_bearer_scheme_is_case_insensitive(secure_service: Service) -> None:
    """``bearer`` in lower case is accepted (RFC 6750 schemes are case-insensitive)."""
    status, body, _ = call(secure_service, "GET", "/v1/audit/verbosity", headers={"Authorization": f"bearer {READ}"})
    assert status == 200, body


def test_tenant_bound_read_sees_only_its_tenant(secure_service: Service) -> None:
    """A token bound to acme reads only acme's events; an explicit other tenant_id is 403."""
    tag = marker("tenant")
    events = [{"type": "auth", "tenant_id": tenant, "correlation_id": tag} for tenant in (TENANT, "globex", "initech")]
    assert call(secure_service, "POST", "/v1/audit/events", INGEST, {"events": events})[0] == 202
    poll(lambda: call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}", READ)[1]["total"] == 3,
         10, "three events")
    status, body, _ = call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}", READ_ACME)
    assert status == 200 and [record["tenant_id"] for record in body["records"]] == [TENANT], body
    status, body, _ = call(secure_service, "GET",
                           f"/v1/audit/events?window=1h&correlation_id={tag}&tenant_id={TENANT}", READ_ACME)
    assert status == 200 and body["total"] == 1
    body = assert_json_error(call(secure_service, "GET",
                                  f"/v1/audit/events?window=1h&correlation_id={tag}&tenant_id=globex", READ_ACME), 403)
    assert "tenant" in body["detail"]


def test_tenant_bound_ingest_fills_and_refuses(secure_service: Service) -> None:
    """A token bound to acme stamps acme on events without tenant_id and refuses a request holding another tenant."""
    tag = marker("bound")
    status, body, _ = call(secure_service, "POST", "/v1/audit/events", INGEST_ACME,
                           {"events": [{"type": "auth", "correlation_id": tag}, {"type": "auth", "correlation_id": tag,
                                                                                "tenant_id": TENANT}]})
    assert status == 202 and body["accepted"] == 2, body
    refused = marker("refused")
    response = call(secure_service, "POST", "/v1/audit/events", INGEST_ACME,
                    {"events": [{"type": "auth", "correlation_id": refused, "tenant_id": TENANT},
                                {"type": "auth", "correlation_id": refused, "tenant_id": "globex"}]})
    assert_json_error(response, 403)
    records = poll(lambda: (lambda body: body["records"] if body["total"] == 2 else None)(
        call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}", READ)[1]), 10, "two events")
    assert {record["tenant_id"] for record in records} == {TENANT}
    assert call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={refused}", READ)[1]["total"] == 0


def test_status_hides_paths_and_errors_from_callers_without_read(secure_service: Service) -> None:
    """Without a read token status and readyz show no path, error or reason text; read and admin see them."""
    store = str(secure_service.store)
    for token in (None, WRONG, INGEST, INGEST_ACME, READ_ACME):
        for path in ("/v1/audit/status", "/readyz"):
            status, body, _ = call(secure_service, "GET", path, token)
            assert status == 200 and body["auth"] == "enabled", body
            assert store not in repr(body) and str(secure_service.spool) not in repr(body), (token, body)
            assert body["storage"]["local_path"] == "redacted" and body["storage"]["detail"] == "redacted"
            assert body["last_error"] in (None, "redacted")
            assert body["storage"]["status"] in ("healthy", "warning", "down")
            assert isinstance(body["accepted_events"], int)
    for token in (READ, ADMIN):
        status, body, _ = call(secure_service, "GET", "/v1/audit/status", token)
        assert status == 200 and body["storage"]["local_path"] == store, body


def test_tokens_never_appear_in_logs_or_status(secure_service: Service) -> None:
    """No configured or presented token shows up in the process logs or in any status document."""
    documents = [repr(call(secure_service, "GET", "/v1/audit/status", token)[1]) for token in (None, READ, ADMIN)]
    logs = "\n".join(path.read_text(errors="replace") for path in secure_service.logs)
    for token in (*TOKENS.values(), WRONG):
        assert token not in logs
        assert all(token not in document for document in documents)


def test_open_mode_warns_and_reports_auth_disabled(service_factory) -> None:
    """Without tokens everything is reachable, status says auth disabled, and the start logs a warning."""
    service = service_factory()
    status, body, _ = service.get("/v1/audit/status")
    assert status == 200 and body["auth"] == "disabled" and body["storage"]["local_path"] == str(service.store)
    assert service.get("/v1/audit/verbosity")[0] == 200
    poll(lambda: "authentication disabled" in service.logs[-1].read_text(), 5, "the open-mode warning")


def _run_ingest(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("AUDIT_")}
    return subprocess.run([sys.executable, "-m", "ingest"], cwd=REPO, env={**clean, **env}, capture_output=True,
                          text=True, timeout=30)


def test_require_auth_without_tokens_refuses_to_start(tmp_path) -> None:
    """AUDIT_SERVICE_REQUIRE_AUTH=true and no token: exit code 3 and a message naming the variable."""
    result = _run_ingest({"AUDIT_SERVICE_REQUIRE_AUTH": "true", "AUDIT_SERVICE_LOCAL_PATH": str(tmp_path),
                          "AUDIT_SERVICE_SOCKET_PATH": f"/tmp/al-{os.getpid()}.sock"})
    assert result.returncode == 3, result
    assert "AUDIT_SERVICE_REQUIRE_AUTH" in result.stderr


def test_unreadable_token_file_refuses_to_start(tmp_path) -> None:
    """A _FILE variable pointing nowhere is a configuration error naming that variable, exit code 3."""
    result = _run_ingest({"AUDIT_SERVICE_READ_TOKENS_FILE": str(tmp_path / "missing"),
                          "AUDIT_SERVICE_LOCAL_PATH": str(tmp_path),
                          "AUDIT_SERVICE_SOCKET_PATH": f"/tmp/al-{os.getpid()}.sock"})
    assert result.returncode == 3 and "AUDIT_SERVICE_READ_TOKENS_FILE" in result.stderr, result


def test_token_settings_parse_lists_files_and_bindings(tmp_path) -> None:
    """Comma lists and files (comments and blank lines skipped) merge; tenant bindings are kept."""
    path = tmp_path / "tokens"
    path.write_text(f"# comment\n\n{READ}\n{READ_ACME}:{TENANT}\n")
    settings = Settings.from_env({"AUDIT_SERVICE_INGEST_TOKENS": f" {INGEST} ,{INGEST_ACME}:{TENANT},",
                                  "AUDIT_SERVICE_READ_TOKENS_FILE": str(path)})
    assert settings.ingest_tokens == ((INGEST, None), (INGEST_ACME, TENANT))
    assert settings.read_tokens == ((READ, None), (READ_ACME, TENANT))
    assert settings.auth_enabled and not Settings.from_env({}).auth_enabled
    assert INGEST not in repr(settings)


@pytest.mark.parametrize("env, variable", [
    ({"AUDIT_SERVICE_INGEST_TOKENS": "short"}, "AUDIT_SERVICE_INGEST_TOKENS"),
    ({"AUDIT_SERVICE_READ_TOKENS": f"{READ} with-space"}, "AUDIT_SERVICE_READ_TOKENS"),
    ({"AUDIT_SERVICE_ADMIN_TOKENS": f"{ADMIN}:"}, "AUDIT_SERVICE_ADMIN_TOKENS"),
    ({"AUDIT_SERVICE_INGEST_TOKENS": f"{INGEST}:a", "AUDIT_SERVICE_READ_TOKENS": f"{INGEST}:b"},
     "AUDIT_SERVICE_READ_TOKENS"),
    ({"AUDIT_SERVICE_REQUIRE_AUTH": "true"}, "AUDIT_SERVICE_REQUIRE_AUTH"),
    ({"AUDIT_SERVICE_BODY_READ_TIMEOUT_SECONDS": "0"}, "AUDIT_SERVICE_BODY_READ_TIMEOUT_SECONDS"),
    ({"AUDIT_SERVICE_MAX_EVENTS_PER_REQUEST": "0"}, "AUDIT_SERVICE_MAX_EVENTS_PER_REQUEST"),
])
def test_bad_token_settings_name_the_variable_without_the_secret(env: dict[str, str], variable: str) -> None:
    """Every invalid security setting is a ConfigError naming its variable and never echoing a token."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert caught.value.variable == variable
    for token in (INGEST, READ, ADMIN):
        assert token not in str(caught.value)


def test_audit_events_read_by_admin_include_every_tenant(secure_service: Service) -> None:
    """An unbound admin token reads all tenants (it holds the read scope)."""
    tag = marker("admin")
    events = [{"type": "auth", "tenant_id": tenant, "correlation_id": tag,
               "ts": datetime.now(timezone.utc).isoformat()} for tenant in ("a1", "a2")]
    assert call(secure_service, "POST", "/v1/audit/events", INGEST, {"events": events})[0] == 202
    poll(lambda: call(secure_service, "GET", f"/v1/audit/events?window=1h&correlation_id={tag}", ADMIN)[1]["total"] == 2,
         10, "both tenants")


def test_every_route_declares_its_scope(tmp_path) -> None:
    """Each route the app registers has a line in ROUTE_RULES (undeclared ones would need admin)."""
    from ingest.app import create_app
    from ingest.auth import undeclared_routes

    app = create_app(Settings(local_path=tmp_path, socket_path=tmp_path / "w.sock"))
    assert undeclared_routes(app) == []
