"""Session ids at the edge: UUID v4 in canonical form, or a link that ends in one."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import WithJsonSchema

from handlers.wording import worded
from protocol.errors import CodedError, ErrorCode

UUID4_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
_UUID4 = re.compile(UUID4_PATTERN)
# What is taken (docs/PROTOCOL.md, ids): hex in either case, answered in the canonical lower-case
# form; the published patterns (path, query, body) say so, so an upper-case id is inside them.
UUID4_ANY_CASE_PATTERN = worded(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}$",
    "a UUID v4, such as 0b7e6f3c-1d2a-4c5b-9e8f-a1b2c3d4e5f6",
)
UUID4_ANY_CASE = {"type": "string", "pattern": UUID4_ANY_CASE_PATTERN, "description": "a UUID v4 (any case)"}
# A payload's session id: any string to the model, so that parse_session_id answers a bad one with
# its own code (invalid_session_id, not invalid_payload); the published schema says the rule.
SessionIdText = Annotated[str, WithJsonSchema(UUID4_ANY_CASE)]
_LINK = re.compile(r"^(?:https?://[^/\s]+)?/session/([0-9A-Fa-f-]{36})/?$")
# An id or a session link ending in one, as parse_session_ref takes it: the published schema
# says both forms, so a client validating with the OpenAPI document may send a link. The host is
# spelt out (name, address, port) rather than "no slash, no space", which JSON Schema's regex
# dialect and Python's read differently (U+001C-001F are spaces to Python only).
_ANY = UUID4_ANY_CASE_PATTERN[1:-1]
SESSION_REF_PATTERN = rf"^((https?://[A-Za-z0-9.:\[\]-]+)?/session/{_ANY}/?|{_ANY})$"
SessionRefText = Annotated[
    str,
    WithJsonSchema(
        {"type": "string", "pattern": SESSION_REF_PATTERN, "description": "a UUID v4 (any case) or a session link"}
    ),
]


def parse_session_id(value: object) -> str:
    """The canonical (lower-case) id, or ``invalid_session_id``."""
    if isinstance(value, str) and len(value) == 36:
        candidate = value.lower()
        if _UUID4.match(candidate):
            return candidate
    raise CodedError(ErrorCode.INVALID_SESSION_ID, "session_id must be a UUID v4")


def parse_session_ref(value: object) -> str:
    """An id or a session link (``https://host/session/<id>``, any host), as a canonical id."""
    if isinstance(value, str):
        match = _LINK.match(value.strip())
        if match:
            return parse_session_id(match.group(1))
        return parse_session_id(value.strip())
    return parse_session_id(value)
