"""The OpenAPI 3.1 document of the operations a server has installed, generated from their models.

Query, path, header and body schemas are the JSON Schemas of the pydantic models the routes
validate with (nested models become ``#/components/schemas/<Name>``), so the document cannot
drift from what is accepted; the statuses per route are the ones its code can answer.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel

from auth.claims import USER_ID_PATTERN

from handlers.bodyless import takes_no_body
from handlers.head_requests import NO_HEAD, takes_head
from handlers.http_common import REQUEST_ID_HEADER, REQUEST_ID_PATTERN
from handlers.ids import UUID4_ANY_CASE
from handlers.query import MAX_DIGITS
from handlers.openapi_registry import (
    BINARY,
    HTML,
    IDEMPOTENCY_KEY,
    JSON,
    MULTIPART,
    REPLAYED,
    Auth,
    ErrorShape,
    Header,
    Operation,
)
from protocol.errors import ErrorCode

REF_TEMPLATE = "#/components/schemas/{model}"
# HEAD is not listed operation by operation: every GET takes it, but those that say otherwise.
HEAD_NOTE = (
    "Every GET operation also answers HEAD: the GET's status and headers without its body, and nothing"
    " changed; a GET whose description says HEAD is refused answers it 405 (its Allow without HEAD)."
)
QUERY_INT_MAX = 10**MAX_DIGITS - 1
# Ids are taken in any case and answered lower-case (handlers.ids.parse_session_id).
_UUID4 = UUID4_ANY_CASE
# Every path parameter a route uses, by name (a route with another name fails the build).
PATH_PARAMETERS: dict[str, dict[str, Any]] = {
    "session_id": _UUID4,
    "clip_id": _UUID4,
    "id": _UUID4,
    "chunk_id": {"type": "string", "pattern": "^ch[0-9]{6,9}$", "description": "a chunk id (ch + digits)"},
    "webhook_path": {"type": "string", "description": "SESSIONHUB_VOICE_TELEGRAM_WEBHOOK_PATH (a secret)"},
    "device_id": {"type": "string", "pattern": "^[0-9a-fA-F]{24}$", "description": "a device id (GET /api/auth/me)"},
    "passkey_id": {"type": "string", "pattern": "^[0-9a-fA-F]{32}$", "description": "a passkey id"},
    "user_id": {"type": "string", "pattern": USER_ID_PATTERN, "description": "a user id (a clip's submitted_by)"},
    "job_id": {
        "type": "string",
        "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
        "description": "a job id (a UUID, any version and case), as GET /admin/jobs/dead lists it",
    },
}
# The pattern API (Keyboardia's) takes any 8-4-4-4-12 hex UUID in either case as a well-formed id
# (handlers/patterns/http.py parse_id): one no pattern has is 404, not 400. Ids it makes are v4.
PATTERN_API_PREFIX = "/api/sessions/"
# A page's id is read by the page, not by its route (handlers.web_pages.add_page): any segment is
# answered with the page, which reads it over the API. Published as a session id, it made
# GET /s/not-a-uuid a request the document refuses and the server answers 200.
PAGE_PARAMETER: dict[str, Any] = {
    "type": "string",
    "description": "read by the page: the route answers the page for any",
}
PATTERN_ID: dict[str, Any] = {
    "type": "string",
    "pattern": "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    "description": "a UUID, any version and case (the ids made here are v4); an unknown one is 404",
}
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No content",
    206: "Partial content (a Range request)",
    304: "Not modified: the If-None-Match named this answer's ETag; no body",
    416: "Range not satisfiable: no part of the file is in the Range asked (or it is malformed); no body",
    400: "the request does not validate (invalid_payload, invalid_session_id)",
    401: "unauthorized: no valid bearer token (or an expired link)",
    403: "forbidden: the token lacks a permission or access to the session",
    404: "not found (session_not_found, not_found)",
    409: "the session's state refuses it (invalid_state, conflict, limit_reached, session_full), or a request"
    " with this Idempotency-Key still runs (conflict)",
    412: "precondition_failed: the request's precondition does not hold",
    413: "payload_too_large",
    429: "rate_limited: too many requests; wait",
    503: "unavailable: a dependency does not answer (or, for /readyz, not ready)",
}
ERROR_SCHEMAS: dict[str, dict[str, Any]] = {
    ErrorShape.CODED.value: {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "enum": [code.value for code in ErrorCode]},
            "message": {"type": "string"},
        },
        "description": "sessionhub's error: a code of docs/PROTOCOL.md and a message; some add details",
    },
    ErrorShape.PATTERNS.value: {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "the origin app's text, e.g. 'Session not found'"},
            "message": {"type": "string"},
            "details": {"type": "array", "items": {"type": "string"}},
            "immutable": {"type": "boolean"},
            "retryAfter": {"type": "integer"},
            "maxBytes": {"type": "integer"},
            "etag": {"type": "string"},
            "session": {"type": "object"},
        },
        "description": "the pattern API's error, in the shape of the app it is compatible with",
    },
}


# Each model's JSON schema by mode, generated once a process: pydantic's generation was ~60 % of
# an app's start-up (~50 ms of ~80 ms of CPU), paid again by every server a test starts, and a
# class's schema does not change. Weak keys: a model made per app (the admin's SessionsQuery over
# the installed kinds) goes with its app.
_SCHEMAS: weakref.WeakKeyDictionary[type[BaseModel], dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()


def _json_schema(model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
    """A copy of the model's schema, the caller's to change (``Components.model`` takes its
    ``$defs`` out)."""
    by_mode = _SCHEMAS.setdefault(model, {})
    if mode not in by_mode:
        by_mode[mode] = _no_null_defaults(model.model_json_schema(ref_template=REF_TEMPLATE, mode=mode))
    return copy.deepcopy(by_mode[mode])


def _no_null_defaults(node: Any) -> Any:
    """``node`` without a ``default: null`` on any schema whose type is not null: no valid
    default of a number or an array (the validator refuses the document). pydantic 2.6, the
    lowest pyproject allows, writes one into the number branch of an optional field whose type
    carries its own schema (``WithJsonSchema``: a Track's ``swing``); later versions do not."""
    if isinstance(node, dict):
        kind = node.get("type", "null")
        if node.get("default", 0) is None and kind != "null" and not (isinstance(kind, list) and "null" in kind):
            del node["default"]
        for value in node.values():
            _no_null_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _no_null_defaults(value)
    return node


class Components:
    """``components.schemas``: every model's schema once, under its class name."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {name: dict(schema) for name, schema in ERROR_SCHEMAS.items()}

    def _add(self, name: str, schema: dict[str, Any]) -> None:
        if self.schemas.setdefault(name, schema) != schema:
            raise ValueError(f"two different models are both named {name!r}: rename one")

    def model(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        """The model's schema, inline, with its nested models moved to the components."""
        schema = _json_schema(model, mode)
        for name, nested in schema.pop("$defs", {}).items():
            self._add(name, nested)
        return schema

    def ref(self, model: type[BaseModel], mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        """A ``$ref`` to the model's schema in the components."""
        schema = self.model(model, mode)
        self._add(model.__name__, schema)
        return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: an optional field is an absent parameter, never a null."""
    branches = schema.get("anyOf")
    if branches:
        kept = [branch for branch in branches if branch.get("type") != "null"]
        if len(kept) == 1:
            schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept[0]}
    return {k: v for k, v in schema.items() if k not in ("default", "title")}


def _query_value(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema as the server reads it: an integer is plain digits, at most
    MAX_DIGITS of them (handlers/query.py and the admin routes' parse_query), so never negative."""
    schema = _without_null(schema)
    if schema.get("type") == "integer":
        schema["minimum"] = max(schema.get("minimum", 0), 0)
        schema["maximum"] = min(schema.get("maximum", QUERY_INT_MAX), QUERY_INT_MAX)
    return schema


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _parameters(op: Operation, components: Components) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in _path_names(op.path):
        if name not in PATH_PARAMETERS:
            raise ValueError(f"{op.path}: path parameter {name!r} has no schema in PATH_PARAMETERS")
        pattern_id = op.path.startswith(PATTERN_API_PREFIX) and name == "session_id"
        path_schema = PATTERN_ID if pattern_id else PATH_PARAMETERS[name]
        if op.ok_types == (HTML,):
            path_schema = PAGE_PARAMETER
        params.append({"name": name, "in": "path", "required": True, "schema": path_schema})
    if op.query is not None:
        schema = components.model(op.query, "validation")
        for name, field in schema.get("properties", {}).items():
            required = name in schema.get("required", [])
            param = {"name": name, "in": "query", "required": required, "schema": _query_value(field)}
            if "description" in field:  # where a reader (and a generator of clients) looks for it
                param["description"] = field["description"]
            params.append(param)
    for header in (*op.headers, *((IDEMPOTENCY_KEY,) if op.idempotent else ())):
        schema = {"type": "string", **({"pattern": header.pattern} if header.pattern else {})}
        params.append(
            {
                "name": header.name,
                "in": "header",
                "required": header.required,
                "description": header.description,
                "schema": schema,
            }
        )
    return params


def _request_body(op: Operation, components: Components) -> dict[str, Any] | None:
    if op.body is None:
        return None
    if op.body_type != MULTIPART:
        schema = components.ref(op.body, "validation")
        if op.body_nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        return {"required": op.body_required, "content": {op.body_type: {"schema": schema}}}
    schema = components.model(op.body, "validation")
    encoding: dict[str, Any] = {}
    for name, media_types in op.files:
        schema["properties"][name] = {"type": "string", "contentMediaType": BINARY, "description": "the file"}
        schema.setdefault("required", []).append(name)
        encoding[name] = {"contentType": ", ".join(media_types)}
    return {"required": True, "content": {MULTIPART: {"schema": schema, "encoding": encoding}}}


# The answer of a route without a response model: its fields are in docs/PROTOCOL.md only.
UNTYPED_ANSWER = "a JSON object whose fields docs/PROTOCOL.md gives under this route (not typed in this document yet)"


def _ok_schema(op: Operation, media: str, components: Components) -> dict[str, Any]:
    if media == JSON:
        if op.response is not None:
            return components.ref(op.response, "serialization")
        # Not typed yet: a code generator is told where the fields are, not handed an empty type.
        return {"type": "object", "description": UNTYPED_ANSWER}
    if media == HTML:
        return {"type": "string", "contentMediaType": HTML}
    return {"type": "string"}


def _auth_statuses(auth: Auth) -> set[int]:
    return {Auth.BEARER: {401}, Auth.ADMIN: {401, 403}}.get(auth, set())


# The mark of an answer replayed for a repeated Idempotency-Key (handlers/idempotency.py).
REPLAYED_HEADER = {
    "description": "true when this is the stored answer of an earlier request with the same Idempotency-Key",
    "schema": {"type": "string", "enum": ["true"]},
}


# A refusal that says how long to wait (handlers.errors.retry_after; the pattern API's 429 and 503):
# every 429 does (handlers/rate_limit.py), so it is always there.
RETRY_AFTER_HEADER = {
    "description": "whole seconds to wait before trying again",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
    "required": True,
}
# Any other 503 says how long to wait when it knows (the storage guard's and a full disk's
# storage_full: handlers.storage_guard), and not when a dependency simply does not answer.
RETRY_AFTER_WHEN_KNOWN = {
    "description": "whole seconds to wait before trying again, when the refusal knows (storage_full)",
    "schema": {"type": "string", "pattern": "^[0-9]+$"},
}

CONTENT_RANGE_UNSATISFIED = {
    "description": "bytes */<the file's size>",
    "required": True,
    "schema": {"type": "string", "pattern": "^bytes \\*/[0-9]+$"},
}


# Every answer names its request (handlers/admin/request_log.py, installed with this document).
REQUEST_ID = Header(
    REQUEST_ID_HEADER,
    "the caller's own X-Request-Id when it is a plain token, else a fresh id: the request's log line names it",
    required=True,
    pattern=REQUEST_ID_PATTERN,
)


def _response_header(header: Header) -> dict[str, Any]:
    schema = {"type": "string", **({"pattern": header.pattern} if header.pattern else {})}
    return {"description": header.description, "schema": schema, **({"required": True} if header.required else {})}


def _responses(op: Operation, components: Components) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in op.ok:
        content = {media: {"schema": _ok_schema(op, media, components)} for media in op.ok_types}
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            **({"content": content} if status not in (204, 304) else {}),
        }
        headers = {h.name: _response_header(h) for h in (REQUEST_ID, *op.ok_headers)}
        if op.idempotent:
            headers[REPLAYED] = REPLAYED_HEADER
        if headers:
            responses[str(status)]["headers"] = headers
    if 206 in op.ok:
        # A Range the file cannot satisfy: aiohttp's file answer, no error body, the file's size
        # in Content-Range (a player asks again from within it).
        responses["416"] = {
            "description": STATUS_TEXT[416],
            "headers": {REQUEST_ID.name: _response_header(REQUEST_ID), "Content-Range": CONTENT_RANGE_UNSATISFIED},
        }
    error_ref = {"$ref": REF_TEMPLATE.format(model=op.errors.value)}
    # A repeat while the first request with its key still runs is 409 (conflict); a write that
    # takes no body refuses a declared one over the cap (handlers.bodyless).
    extra = ({409} if op.idempotent else set()) | ({413} if takes_no_body(op) else set())
    for status in sorted(set(op.statuses) | _auth_statuses(op.auth) | extra):
        error_headers = {REQUEST_ID.name: _response_header(REQUEST_ID)}
        if status == 429 or (status == 503 and op.errors is ErrorShape.PATTERNS):
            error_headers["Retry-After"] = RETRY_AFTER_HEADER
        elif status == 503:
            error_headers["Retry-After"] = RETRY_AFTER_WHEN_KNOWN
        if status == 412:
            error_headers |= {h.name: _response_header(h) for h in op.ok_headers}
        responses[str(status)] = {
            "description": STATUS_TEXT[status],
            "headers": error_headers,
            "content": {JSON: {"schema": error_ref}},
        }
    return responses


def _security(auth: Auth) -> list[dict[str, list[str]]]:
    if auth is Auth.NONE:
        return []
    if auth is Auth.OPTIONAL:
        return [{"bearer": []}, {}]
    return [{"bearer": []}]


def _operation_id(op: Operation) -> str:
    words = op.path.strip("/").replace("{", "").replace("}", "").replace(".", "_").replace("-", "_")
    return f"{op.method}_{words.replace('/', '_') or 'root'}"


def _operation(op: Operation, components: Components) -> dict[str, Any]:
    summary = op.summary + (" (admin token)" if op.auth is Auth.ADMIN else "")
    doc: dict[str, Any] = {
        "summary": summary,
        "operationId": _operation_id(op),
        "tags": [op.tag],
        "parameters": _parameters(op, components),
        "responses": _responses(op, components),
        "security": _security(op.auth),
    }
    if op.method == "get" and not takes_head(op.path):
        doc["description"] = f"HEAD is refused (405, its Allow without HEAD): this GET {NO_HEAD[op.path]}."
    body = _request_body(op, components)
    if body is not None:
        doc["requestBody"] = body
    return doc


def build_document(
    operations: Iterable[Operation], server_url: str = "", *, list_limit: int | None = None
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations`` (a route declared twice fails the build).

    ``list_limit`` (SESSIONHUB_LIST_LIMIT) is the maximum of every ``limit`` query parameter
    whose model sets none of its own: a setting, so no model can say it, yet those routes refuse
    a larger one (``handlers.query.at_most``). A ``limit`` with its model's own bound (the admin
    listing's 100, the audit log's 500) is checked against that bound alone, whatever the setting.
    """
    components = Components()
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        methods = paths.setdefault(op.path, {})
        if op.method in methods:
            raise ValueError(f"{op.method.upper()} {op.path} is declared twice")
        methods[op.method] = _operation(op, components)
        for param in methods[op.method].get("parameters", []):
            # No bound of the model's own: _query_value gave it the digits' (QUERY_INT_MAX).
            unbounded = param["schema"].get("maximum", QUERY_INT_MAX) >= QUERY_INT_MAX
            if list_limit is not None and param["in"] == "query" and param["name"] == "limit" and unbounded:
                param["schema"] = {**param["schema"], "maximum": list_limit}
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "sessionhub HTTP API",
            "version": "1",
            "description": "Every HTTP route of this server. Most need a bearer JWT (POST /api/auth/guest "
            "issues a guest's); admin routes need the admin permission. The Socket.IO protocol is in "
            f"docs/PROTOCOL.md. {HEAD_NOTE}",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": dict(sorted(components.schemas.items())),
        },
    }
    if server_url:
        spec["servers"] = [{"url": server_url}]
    return spec
