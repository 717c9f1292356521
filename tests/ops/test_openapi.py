"""GET /openapi.json describes exactly the routes the ingest router serves, with the contract's parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ingest.app import create_app
from ingest.openapi import OPERATIONS, registered_operations
from ingest.query_params import EXACT_FILTERS
from shared.settings import Settings
from tests.service import Service

CONTRACT_QUERY = {"since", "from", "until", "to", "window", "time_resolution", "limit", "capability", "user_email",
                  *EXACT_FILTERS}


def _spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in spec["paths"].items() for method in item}


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_route_has_a_description_and_every_description_a_route(tmp_path: Path) -> None:
    """A route registered without an entry in ingest/openapi.py OPERATIONS, or an entry without a route, fails."""
    app = create_app(Settings(local_path=tmp_path / "store", socket_path=tmp_path / "w.sock"))
    served = registered_operations(app.router)
    assert sorted(served - OPERATIONS.keys()) == [], "add these routes to OPERATIONS in ingest/openapi.py"
    assert sorted(OPERATIONS.keys() - served) == [], "these documented routes are not registered"


def test_served_document_matches_the_router_and_the_contract(ops_service: Service) -> None:
    """The served document is OpenAPI 3.1 with every route, every query parameter of the contract, the
    request bodies, status codes and resolvable schema references."""
    status, spec, headers = ops_service.get("/openapi.json")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert spec["openapi"] == "3.1.0" and spec["info"]["title"] == "auditlake"
    assert _spec_operations(spec) == set(OPERATIONS)
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation["summary"] and operation["responses"], (method, path)
            assert operation["operationId"]
    query = spec["paths"]["/v1/audit/events"]["get"]
    assert {parameter["name"] for parameter in query["parameters"]} >= CONTRACT_QUERY
    window = next(parameter for parameter in query["parameters"] if parameter["name"] == "window")
    assert window["schema"]["enum"] == ["5m", "15m", "30m", "1h", "6h", "12h", "24h", "7d"]
    post = spec["paths"]["/v1/audit/events"]["post"]
    assert set(post["responses"]) >= {"202", "400", "413", "503", "504"}
    assert post["security"] == [{"bearerAuth": []}] and post["x-required-scope"] == "ingest"
    assert {"401", "403"} <= set(post["responses"]) and "security" not in spec["paths"]["/healthz"]["get"]
    assert "Retry-After" in post["responses"]["503"]["headers"]
    assert post["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/PostBody"
    assert set(spec["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
    assert set(spec["paths"]["/v1/audit/retention"]["put"]["responses"]) >= {"200", "400"}
    schemas = spec["components"]["schemas"]
    for ref in _refs(spec):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    ids = [operation["operationId"] for item in spec["paths"].values() for operation in item.values()]
    assert len(ids) == len(set(ids))
