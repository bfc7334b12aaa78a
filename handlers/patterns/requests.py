"""Request bodies of the pattern API: create, PUT and PATCH, with the origin app's leniencies."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field

from handlers.patterns.api_errors import invalid
from handlers.patterns.state import COMPLETE, PatternState, SessionName, Strict, no_null_defaults

_WRAPPER_FIELDS = frozenset({"name", "state"})


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise invalid("body: must be a JSON object")
    return body


def _publish_complete(schema: dict[str, Any], at_least_one: bool = False) -> None:
    """Say in the published schema what ``_complete`` checks: a given state has every field of
    COMPLETE (and, with ``at_least_one``, that the body names name or state)."""
    no_null_defaults(schema)
    state = schema["properties"]["state"]
    complete = {"required": list(COMPLETE)}
    branches = state.get("anyOf")
    if branches:  # state or null: the state branch is the complete one
        state["anyOf"] = [{"allOf": [b, complete]} if b.get("type") != "null" else b for b in branches]
    else:
        schema["properties"]["state"] = {"allOf": [state, complete]}
    if at_least_one:
        schema["minProperties"] = 1


def _publish_complete_or_name(schema: dict[str, Any]) -> None:
    _publish_complete(schema, at_least_one=True)


def _complete(state: PatternState, prefix: str = "state") -> PatternState:
    missing = state.missing()
    if missing:
        raise invalid(*(f"{prefix}.{name}: Field required" for name in missing))
    return state


class CreateBody(Strict):
    """``POST /api/sessions``: ``{name?, state?}``; defaults fill what the state lacks."""

    name: SessionName | None = None
    state: PatternState | None = None

    @classmethod
    def parse(cls, body: Any) -> CreateBody:
        """None (no JSON body) is a default session; a dict of state fields is a bare state."""
        if body is None:
            return cls()
        fields = _object(body)
        if fields and not fields.keys() <= _WRAPPER_FIELDS:
            return cls(state=PatternState.model_validate(fields))
        return cls.model_validate(fields)


class PutBody(Strict):
    """``PUT /api/sessions/<id>``: ``{state}``, complete (tracks, tempo, swing, version)."""

    model_config = ConfigDict(json_schema_extra=_publish_complete)

    state: PatternState

    @classmethod
    def parse(cls, body: Any) -> PutBody:
        parsed = cls.model_validate(_object(body))
        _complete(parsed.state)
        return parsed


class PatchBody(Strict):
    """``PATCH /api/sessions/<id>``: ``{name?, state?}``, at least one; a state is complete."""

    model_config = ConfigDict(json_schema_extra=_publish_complete_or_name)

    name: SessionName | None = Field(default=None)
    state: PatternState | None = None

    @classmethod
    def parse(cls, body: Any) -> PatchBody:
        parsed = cls.model_validate(_object(body))
        if not parsed.model_fields_set & _WRAPPER_FIELDS:
            raise invalid("body: name or state is required")
        if parsed.state is not None:
            _complete(parsed.state)
        return parsed
