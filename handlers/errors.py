"""The one place where an exception becomes an ack or an HTTP error response."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from auth.errors import AuthError
from storage.errors import StorageError

log = logging.getLogger(__name__)

HTTP_STATUS: dict[str, int] = {
    "invalid_payload": 400,
    "invalid_session_id": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "session_not_found": 404,
    "not_found": 404,
    "conflict": 409,
    "invalid_state": 409,
    "payload_too_large": 413,
    "rate_limited": 429,
    "internal_error": 500,
    "unavailable": 503,
}


class ProtocolError(Exception):
    """A request refused at the edge; ``code`` is the wire code."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.code = code
        self.message = message or code


def classify(exc: BaseException) -> tuple[str, str]:
    """Wire code and message for ``exc``; anything unexpected is logged and hidden."""
    if isinstance(exc, ProtocolError | AuthError | StorageError):
        return exc.code, exc.message
    log.exception("internal error", exc_info=exc)
    return "internal_error", "internal error"


def error_ack(code: str, message: str) -> dict[str, Any]:
    """The error ack body."""
    return {"ok": False, "error": code, "message": message}


def to_ack(exc: BaseException) -> dict[str, Any]:
    """The error ack for ``exc``."""
    return error_ack(*classify(exc))


def to_http(exc: BaseException) -> web.Response:
    """The JSON error response for ``exc``."""
    code, message = classify(exc)
    return http_error(code, message)


def http_error(code: str, message: str) -> web.Response:
    """``{"error": code, "message": ...}`` with the status that belongs to ``code``."""
    return web.json_response({"error": code, "message": message}, status=HTTP_STATUS.get(code, 400))
