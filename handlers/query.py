"""Query strings at the edge: a pydantic model per route, so the checks and the document agree.

One rule for every route (docs/PROTOCOL.md, "Query strings"): a query string carries text only:
a field typed ``int`` takes plain digits (``invalid_payload`` otherwise); other fields are
validated by the model as given. A parameter the route takes given twice is ``invalid_payload``
(which one was meant?); parameters the route does not take are ignored (a cache-busting ``?_=``
from a browser must keep working). The admin routes read through :func:`query_values` too.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from aiohttp import web
from multidict import MultiMapping
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


def _is_int(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:  # a constrained int inside an optional (Millis | None)
        return _is_int(get_args(annotation)[0])
    return annotation is int


def _takes_int(field: FieldInfo) -> bool:
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_is_int(arg) for arg in get_args(annotation))
    return _is_int(annotation)


def one_value(query: Mapping[str, str], key: str) -> str | None:
    """The one value of parameter ``key`` (None when absent); ``invalid_payload`` when repeated."""
    values = query.getall(key, []) if isinstance(query, MultiMapping) else [query[key]] if key in query else []
    if len(values) > 1:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{key} is given more than once")
    return values[0] if values else None


def query_values(model: type[BaseModel], query: Mapping[str, str]) -> dict[str, Any]:
    """The parameters of ``query`` that ``model`` names, whole numbers converted; the rest ignored."""
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        key = field.alias or name
        raw = one_value(query, key)
        if raw is None:
            continue
        if _takes_int(field):
            digits = raw.removeprefix("-")
            if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_DIGITS):
                raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{key} must be a whole number")
            # A negative number is a whole number: the model's bound says what is allowed
            # ("limit=-5 must be a whole number" read as if "-5" were not one).
            values[key] = int(raw)
        else:
            values[key] = raw
    return values


def parse_query(model: type[Q], request: web.Request) -> Q:
    """The request's query string as ``model``, or ``invalid_payload`` naming the parameter (or
    ``query`` for a rule over several: they are no body's)."""
    return validate(model, query_values(model, request.query), whole="query")


def at_most(name: str, value: int, high: int) -> int:
    """``value`` when at most ``high`` (a bound that is a setting, so not in the model), else
    ``invalid_payload``."""
    if value > high:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{name} must be a whole number in 1..{high}")
    return value
