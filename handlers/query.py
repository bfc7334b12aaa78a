"""Query strings at the edge: a pydantic model per route, so the checks and the document agree.

A query string carries text only: a field typed ``int`` takes plain digits (``invalid_payload``
otherwise); other fields are validated by the model as given. Parameters the model does not
name are ignored, and a repeated one counts by its first value, as before these models (a
cache-busting ``?_=`` from a browser must keep working).
"""

from __future__ import annotations

import types
from typing import Any, TypeVar, Union, get_args, get_origin

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from handlers.payloads import validate
from protocol.errors import CodedError, ErrorCode

MAX_DIGITS = 16


class QueryModel(BaseModel):
    """Base of every capability's query model (strict: values are converted here, not guessed)."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=True)


Q = TypeVar("Q", bound=QueryModel)


class LimitQuery(QueryModel):
    """``?limit=`` of a listing: at most SESSIONHUB_LIST_LIMIT (checked with :func:`at_most`)."""

    limit: int = Field(default=50, ge=1)


def _takes_int(field: FieldInfo) -> bool:
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        return int in get_args(annotation)
    return annotation is int


def parse_query(model: type[Q], request: web.Request) -> Q:
    """The request's query string as ``model``, or ``invalid_payload`` naming the parameter."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        raw = request.query.get(key)
        if raw is None:
            continue
        if _takes_int(field):
            if not (raw.isascii() and raw.isdigit() and len(raw) <= MAX_DIGITS):
                raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{key} must be a whole number")
            values[key] = int(raw)
        else:
            values[key] = raw
    return validate(model, values)


def at_most(name: str, value: int, high: int) -> int:
    """``value`` when at most ``high`` (a bound that is a setting, so not in the model), else
    ``invalid_payload``."""
    if value > high:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{name} must be a whole number in 1..{high}")
    return value
