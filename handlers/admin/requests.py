"""Admin request models: strict, bounded, unknown body fields refused (query strings: handlers.query)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, create_model, model_validator

from auth.claims import USER_ID_PATTERN
from handlers.query import query_values
from protocol.errors import CodedError, ErrorCode

KindName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
Millis = Annotated[int, Field(ge=0, le=2**53)]
_CURSOR_PATTERN = r"^[+-]?(inf|([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?):[0-9]{1,9}$"


class AdminModel(BaseModel):
    """Base of every admin request model."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# The rules over several parameters (_owner_sorts_by_created), published with each of them.
_STATE_RULE = "state and filter name the same filter: give one, or both with the same value (400 otherwise)"
_RANGE_RULE = "created_from must not be after created_to (400 otherwise)"


class SessionsQuery(AdminModel):
    """``GET /admin/sessions`` query: sort, order, filters, page size and cursor."""

    sort: Literal["created", "updated", "accessed", "size", "files", "remixes"] = "created"
    order: Literal["asc", "desc"] = "desc"
    kind: KindName | None = None
    state: Literal["active", "orphaned"] | None = Field(default=None, description=_STATE_RULE)
    # Seed 001's name for the same filter (``/admin/sessions?filter=orphaned``).
    filter: Literal["active", "orphaned"] | None = Field(
        default=None, description=f"seed 001's name for state; {_STATE_RULE}"
    )
    created_from: Millis | None = Field(default=None, description=f"ms since the epoch; {_RANGE_RULE}")
    created_to: Millis | None = Field(default=None, description=f"ms since the epoch; {_RANGE_RULE}")
    owner: Annotated[str, StringConstraints(pattern=USER_ID_PATTERN)] | None = None
    limit: int = Field(default=50, ge=1, le=100)
    # The score is what storage/admin/repository.py's Cursor.decode reads with float(): a decimal
    # number or an infinity, never NaN (the pattern publishes that rule, so the schema is exact).
    cursor: Annotated[str, StringConstraints(max_length=64, pattern=_CURSOR_PATTERN)] | None = None

    @model_validator(mode="after")
    def _owner_sorts_by_created(self) -> SessionsQuery:
        if self.created_from is not None and self.created_to is not None and self.created_from > self.created_to:
            raise ValueError("created_from is after created_to")
        if self.state is not None and self.filter is not None and self.state != self.filter:
            raise ValueError("state and filter name the same filter: give one, or the same value")
        return self

    @property
    def wanted_state(self) -> str:
        """The state filter, given as ``state`` or as seed 001's ``filter`` ('' for none)."""
        return self.state or self.filter or ""


def sessions_query_for(kinds: Sequence[str]) -> type[SessionsQuery]:
    """:class:`SessionsQuery` whose ``kind`` must be one of ``kinds`` (the installed kinds), in its
    schema too: a filter by a kind the server does not have is a mistake (400), not an empty page.

    One model per set of kinds in a process: an app built again with the same kinds gets the same
    class, so its routes are the same operations (and the OpenAPI document written for them is
    reused: handlers/admin/openapi.py)."""
    return _sessions_query(tuple(kinds))


@functools.lru_cache(maxsize=8)
def _sessions_query(kinds: tuple[str, ...]) -> type[SessionsQuery]:
    kind: Any = Literal.__getitem__(kinds)  # Literal["voice", "pattern", ...]
    model: type[SessionsQuery] = create_model("SessionsQuery", __base__=SessionsQuery, kind=(kind | None, None))
    return model


class DetailQuery(AdminModel):
    """``GET /admin/sessions/{id}`` query: how many of the latest events to include."""

    events: int = Field(default=100, ge=0, le=1000)


class DeleteSession(AdminModel):
    """``DELETE /admin/sessions/{id}`` body: the id typed again, as the confirmation."""

    confirm: Annotated[str, StringConstraints(max_length=64)]


class AuditQuery(AdminModel):
    """``GET /admin/audit`` query."""

    limit: int = Field(default=50, ge=1, le=500)


class ExportQuery(AdminModel):
    """``GET /admin/export`` query: every session, or only orphans."""

    scope: Literal["all", "orphans"] = "all"
    older_than_days: int | None = Field(default=None, ge=1, le=36_500)


class OrphanDelete(AdminModel):
    """``POST /admin/orphans/delete``: a dry run counts; the deletion repeats that count."""

    # _confirmed's rule, published: a dry run, or a confirm_count.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["dry_run"], "properties": {"dry_run": {"const": True}}},
                {"required": ["confirm_count"], "properties": {"confirm_count": {"type": "integer"}}},
            ]
        }
    )

    older_than_days: int | None = Field(
        default=None, ge=1, le=36_500, description="default: the orphan threshold (SESSIONHUB_ADMIN_ORPHAN_DAYS)"
    )
    dry_run: bool = False
    confirm_count: int | None = Field(default=None, ge=0, le=10_000_000)

    @model_validator(mode="after")
    def _confirmed(self) -> OrphanDelete:
        if not self.dry_run and self.confirm_count is None:
            raise ValueError("confirm_count (the count of a dry run) is required to delete")
        return self


class NoFields(AdminModel):
    """A request that takes no fields (``GET /admin/metrics``, ``POST /admin/recalculate``)."""


M = TypeVar("M", bound=AdminModel)


def parse_query(model: type[M], query: Any) -> M:
    """A query string as ``model``, by the rule of every route (handlers.query): a parameter the
    model names given twice, or not a whole number where one is due, is ``invalid_payload``;
    others are ignored. A rule over several parameters is named ``query``, not ``body``."""
    return parse_body(model, query_values(model, query), whole="query")


def parse_body(model: type[M], values: dict[str, Any], *, whole: str = "body") -> M:
    """``values`` as ``model``, or ``invalid_payload`` naming the first problem: its field, or
    ``whole`` for a rule over several fields."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or whole
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"{where}: {first['msg']}"[:200]) from exc


# A job id: a UUID, v4 (a random job) or v5 (a press's job, handlers.voice.actions.press_job_id).
_JOB_ID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class DeadLettersQuery(AdminModel):
    """``GET /admin/jobs/dead`` query: a page of the dead-letter list, newest first."""

    limit: int = Field(default=50, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=10_000, description="entries to skip, counted from the newest")


class DeadLetterId(AdminModel):
    """The ``{job_id}`` of ``/admin/jobs/dead/{job_id}``: taken in any case, answered lower-case."""

    job_id: Annotated[str, StringConstraints(pattern=_JOB_ID_PATTERN, to_lower=True)]


class DeadLettersClear(AdminModel):
    """``DELETE /admin/jobs/dead`` query: the count of dead letters the operator saw, repeated."""

    confirm: int = Field(ge=0, le=10_000_000, description="the list's total as last read (409 when it differs)")
    newest: str = Field(
        default="",
        pattern=r"^([0-9a-f]{16})?$",
        description="the list's newest as last read (409 when another entry is the newest now); without it, the"
        " count alone is checked",
    )
