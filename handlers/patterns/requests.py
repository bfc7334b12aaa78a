"""Request bodies of the pattern API: create, PUT and PATCH, with the origin app's leniencies."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field, model_validator

from handlers.patterns.api_errors import invalid
from handlers.patterns.state import COMPLETE, PatternState, SessionName, Strict, no_null_defaults

_WRAPPER_FIELDS = frozenset({"name", "state"})
# The state fields a create takes at the top level (the origin app's index.ts, POST).
DIRECT_FIELDS = ("tracks", "tempo", "swing", "effects", "scale", "loopRegion")


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


def _publish_wrapped_wins(schema: dict[str, Any]) -> None:
    """Say in the published schema what ``_wrapped_wins`` does: beside a state object the
    top-level state fields are ignored, so only a body without one is held to their rules.

    Published as rules of every body, they made ``{"state": {...}, "swing": -1}`` a request the
    document refuses and the server takes (a contract checker's negative case).
    """
    no_null_defaults(schema)
    properties = schema["properties"]
    direct = {name: properties.pop(name) for name in (*DIRECT_FIELDS, "version")}
    wrapped = {"required": ["state"], "properties": {"state": {"type": "object"}}}
    schema["anyOf"] = [wrapped, {"properties": direct}]


def _complete(state: PatternState, prefix: str = "state") -> PatternState:
    missing = state.missing()
    if missing:
        raise invalid(*(f"{prefix}.{name}: Field required" for name in missing))
    return state


class CreateBody(PatternState):
    """``POST /api/sessions``: ``{name?, state?}``, or the state's fields at the top level beside
    ``name`` (the direct format the origin app's sample sessions are posted in); defaults fill
    what the state lacks.

    As in the origin app, other top-level keys are ignored (``description``, padding): never
    stored, so never rendered. Everything in the state is validated as strictly as a PUT's.
    """

    model_config = ConfigDict(extra="ignore", json_schema_extra=_publish_wrapped_wins)

    name: SessionName | None = None
    state: PatternState | None = None

    @model_validator(mode="before")
    @classmethod
    def _wrapped_wins(cls, body: Any) -> Any:
        # A wrapped state is the state: top-level state fields beside it are ignored, not
        # validated, as the origin app ignores them.
        if isinstance(body, dict) and body.get("state") is not None:
            return {key: value for key, value in body.items() if key in _WRAPPER_FIELDS}
        return body

    @classmethod
    def parse(cls, body: Any) -> CreateBody:
        """None (no JSON body) is a default session."""
        return cls() if body is None else cls.model_validate(_object(body))

    def initial_state(self) -> PatternState | None:
        """The state given, wrapped or direct; None for the default session.

        A wrapped state wins over top-level fields; the top-level ones form a state only when one
        of the origin app's direct fields (all but ``version``) is there, as it decides.
        """
        if self.state is not None:
            return self.state
        given = self.model_fields_set & set(DIRECT_FIELDS)
        if not given:
            return None
        fields = {name: getattr(self, name) for name in (*given, *(self.model_fields_set & {"version"}))}
        return PatternState.model_construct(_fields_set=set(fields), **fields)


class PutBody(Strict):
    """``PUT /api/sessions/<id>``: ``{state}``, complete (tracks, tempo, swing, version).

    A ``name`` beside it is ignored, whatever it holds, as the origin app ignores it on PUT (its
    clients may send the whole session back); PATCH is the way to rename.
    """

    model_config = ConfigDict(json_schema_extra=_publish_complete)

    state: PatternState
    name: Annotated[Any, Field(description="ignored (PATCH renames)")] = None

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
