"""Wire error codes and the one coded exception every layer raises.

``ErrorCode`` is the only source of the codes clients see: each member carries its HTTP status,
and ``docs/PROTOCOL.md`` lists exactly these members (a test keeps the two equal).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """A wire error code; ``http_status`` is what an HTTP route answers with."""

    http_status: int

    def __new__(cls, value: str, http_status: int) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.http_status = http_status
        return member

    INVALID_PAYLOAD = ("invalid_payload", 400)
    INVALID_SESSION_ID = ("invalid_session_id", 400)
    UNKNOWN_EVENT = ("unknown_event", 400)
    UNAUTHORIZED = ("unauthorized", 401)
    FORBIDDEN = ("forbidden", 403)
    QUOTA_EXCEEDED = ("quota_exceeded", 403)
    SESSION_NOT_FOUND = ("session_not_found", 404)
    NOT_FOUND = ("not_found", 404)
    METHOD_NOT_ALLOWED = ("method_not_allowed", 405)
    INVALID_STATE = ("invalid_state", 409)
    CONFLICT = ("conflict", 409)
    LIMIT_REACHED = ("limit_reached", 409)
    SESSION_FULL = ("session_full", 409)
    PRECONDITION_FAILED = ("precondition_failed", 412)
    PAYLOAD_TOO_LARGE = ("payload_too_large", 413)
    RATE_LIMITED = ("rate_limited", 429)
    INTERNAL_ERROR = ("internal_error", 500)
    UNAVAILABLE = ("unavailable", 503)


class CodedError(Exception):
    """A refused request: ``code`` is what the client is told, ``details`` extra ack/body fields.

    Raised by every layer (auth, storage, handlers); turned into an ack or an HTTP response in
    one place (``handlers.errors``).
    """

    def __init__(self, code: ErrorCode, message: str = "", **details: Any) -> None:
        super().__init__(message or code.value)
        self.code = code
        self.message = message or code.value
        self.details = details

    @classmethod
    def from_wire(cls, code: str, message: str = "", **details: Any) -> CodedError:
        """The error for a code a Lua script returned; an unknown code is a bug, not a 400."""
        known = _BY_VALUE.get(code)
        if known is None:
            return cls(ErrorCode.INTERNAL_ERROR, f"unknown error code {code!r} from storage")
        return cls(known, message, **details)


# A sequence number clients may put in a payload: a whole number a JSON double holds exactly.
MAX_SEQ = 2**53


def with_seq(ack: dict[str, Any], data: Any) -> dict[str, Any]:
    """An error ack names the request's ``seq`` (a whole number) whatever refused it -- the rate
    limit, an unknown or reserved event name included -- so a client matching acks by sequence
    number knows which one failed. ``data``: the event's payload, anything a client sent."""
    seq = data.get("seq") if isinstance(data, dict) else None
    if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= MAX_SEQ and "seq" not in ack:
        return {**ack, "seq": seq}
    return ack


_BY_VALUE: dict[str, ErrorCode] = {member.value: member for member in ErrorCode}
