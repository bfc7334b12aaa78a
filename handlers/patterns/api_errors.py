"""Errors in the origin app's shape: ``{"error": "...", ...}`` with its HTTP status."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from protocol import wire_json


class ApiError(Exception):
    """An answer in the origin app's error shape."""

    def __init__(self, status: int, error: str, *, headers: dict[str, str] | None = None, **fields: Any) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, **fields}
        self.headers = headers or {}

    def response(self) -> web.Response:
        # orjson: a 412 carries the whole current session (up to ~64 KB of state).
        return web.json_response(self.body, status=self.status, headers=self.headers, dumps=wire_json.dumps)


def validation_failed(exc: ValidationError) -> ApiError:
    """400 naming each offending field by its path (``state.loopRegion.end``)."""
    details = []
    for error in exc.errors():
        path = ".".join(str(part) for part in error.get("loc", ())) or "body"
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        details.append(f"{path}: {message}")
    return ApiError(400, "Validation failed", details=details)


def invalid(*details: str) -> ApiError:
    return ApiError(400, "Validation failed", details=list(details))
