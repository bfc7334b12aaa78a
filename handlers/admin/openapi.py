"""OpenAPI 3.1 for the admin and operations routes, generated from the request models.

The query and body schemas are the JSON Schemas of the same pydantic models the routes
validate with (``handlers/admin/requests.py``), so the document cannot drift from what is
accepted; the statuses listed per route are the ones its code can answer. Served at
``/openapi.json`` (public: it holds no data) with a page at ``/api-docs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from handlers.admin.requests import (
    AuditQuery,
    DeleteSession,
    DetailQuery,
    ExportQuery,
    NoFields,
    OrphanDelete,
    SessionsQuery,
)
from handlers.web_pages import add_page
from protocol.errors import ErrorCode

JSON = "application/json"
NDJSON = "application/x-ndjson"
PROMETHEUS = "text/plain"
SESSION_ID_SCHEMA = {
    "type": "string",
    "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$",
    "description": "a UUID v4",
}
STATUS_TEXT = {
    200: "OK",
    400: "invalid_payload / invalid_session_id",
    401: "unauthorized: no valid bearer token",
    403: "forbidden: the token lacks the admin permission",
    404: "session_not_found",
    409: "conflict: the orphan count changed since the dry run",
    412: "precondition_failed: confirm does not repeat the id",
    413: "payload_too_large",
    429: "rate_limited: too many admin actions",
    503: "not ready",
}
ADMIN_ERRORS = (400, 401, 403)


@dataclass(frozen=True, slots=True)
class Operation:
    """One route as documented: its models, its statuses and the media type of its 200."""

    method: str
    path: str
    summary: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_required: bool = False
    statuses: tuple[int, ...] = ADMIN_ERRORS
    ok_types: tuple[str, ...] = (JSON,)
    admin: bool = True


OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/admin/metrics", "Counts per kind and in total, cost, nodes, alerts", query=NoFields),
    Operation("get", "/admin/sessions", "Sessions, sorted, filtered, by cursor", query=SessionsQuery),
    Operation(
        "get",
        "/admin/sessions/{session_id}",
        "One session: record, events, lineage",
        query=DetailQuery,
        statuses=(*ADMIN_ERRORS, 404),
    ),
    Operation(
        "delete",
        "/admin/sessions/{session_id}",
        "Delete a session (confirm repeats its id)",
        body=DeleteSession,
        body_required=True,
        statuses=(*ADMIN_ERRORS, 404, 412, 413, 429),
    ),
    Operation(
        "post",
        "/admin/recalculate",
        "Rebuild the counters; report the drift",
        body=NoFields,
        statuses=(*ADMIN_ERRORS, 413, 429),
    ),
    Operation("get", "/admin/audit", "The audit log, newest first", query=AuditQuery),
    Operation("get", "/admin/alerts", "The alerts raised now", query=NoFields),
    Operation(
        "get", "/admin/export", "Stream sessions (all or orphans) as JSON lines", query=ExportQuery, ok_types=(NDJSON,)
    ),
    Operation(
        "post",
        "/admin/orphans/delete",
        "Count orphans (dry run) or delete them (confirmed count)",
        body=OrphanDelete,
        body_required=True,
        statuses=(*ADMIN_ERRORS, 409, 413, 429),
        ok_types=(JSON, NDJSON),
    ),
    Operation("get", "/metrics", "Prometheus text format", query=NoFields, ok_types=(PROMETHEUS,)),
    Operation("get", "/openapi.json", "This document", admin=False, statuses=()),
)


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: an optional field is an absent parameter, never a null."""
    branches = schema.get("anyOf")
    if branches:
        kept = [branch for branch in branches if branch.get("type") != "null"]
        if len(kept) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}
    return {k: v for k, v in schema.items() if k not in ("default", "title")}


def _parameters(op: Operation) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    if "{session_id}" in op.path:
        params.append({"name": "session_id", "in": "path", "required": True, "schema": SESSION_ID_SCHEMA})
    if op.query is not None:
        schema = op.query.model_json_schema()
        for name, field in schema.get("properties", {}).items():
            params.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in schema.get("required", []),
                    "schema": _without_null(field),
                }
            )
    return params


def _responses(op: Operation) -> dict[str, Any]:
    ok_schema: dict[str, Any] = {"type": "object"} if JSON in op.ok_types else {"type": "string"}
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {media: {"schema": ok_schema} for media in op.ok_types}}
    }
    for status in op.statuses:
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    return responses


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "summary": op.summary,
        "operationId": f"{op.method}_{op.path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}",
        "parameters": _parameters(op),
        "responses": _responses(op),
        "security": [{"bearer": []}] if op.admin else [],
    }
    if op.body is not None:
        schema = op.body.model_json_schema()
        schema.pop("title", None)
        doc["requestBody"] = {"required": op.body_required, "content": {JSON: {"schema": schema}}}
    return doc


def build_spec(server_url: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sessionhub admin and operations API",
            "version": "1",
            "description": "Admin routes need a bearer JWT with the admin permission. The Socket.IO protocol and "
            "the other capabilities' routes are described in docs/PROTOCOL.md.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": {"type": "string", "enum": [code.value for code in ErrorCode]},
                        "message": {"type": "string"},
                    },
                }
            },
        },
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec


class OpenApiRoutes:
    """``GET /openapi.json`` and its page."""

    def __init__(self, web_dir: Any) -> None:
        self._web_dir = web_dir
        self._spec = build_spec()

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/openapi.json", self.spec)
        add_page(app, "/api-docs", self._web_dir / "api-docs.html")

    async def spec(self, request: web.Request) -> web.Response:
        """The document (built once: it depends on the code only)."""
        return web.json_response(self._spec)
