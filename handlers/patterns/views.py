"""The shapes the pattern API answers with (the origin app's field names, ms timestamps)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from storage.events import Position
from storage.patterns.repository import PatternRecord, PatternSessions

UNKNOWN_PARENT = "Unknown Session"
UNTITLED = "Untitled Session"


class Answer(BaseModel):
    """Base of the API's success bodies (the origin app's camelCase names)."""

    model_config = ConfigDict(frozen=True)


class Created(Answer):
    """``POST /api/sessions`` (seed 001: ``{ id, url, createdAt }``)."""

    id: str
    url: str
    createdAt: int


class Remixed(Created):
    """``POST /api/sessions/<id>/remix``."""

    remixedFrom: str


class Published(Created):
    """``POST /api/sessions/<id>/publish``."""

    immutable: bool
    sourceId: str


class Replaced(Answer):
    """``PUT /api/sessions/<id>``."""

    id: str
    updatedAt: int
    trackCount: int


class Renamed(Answer):
    """``PATCH /api/sessions/<id>``."""

    id: str
    name: str | None
    updatedAt: int


class Health(Answer):
    """``GET /api/health``: the origin app's probe."""

    status: Literal["ok"]


def session_url(session_id: str) -> str:
    """Every pattern URL is relative, exactly ``/s/<id>``."""
    return f"/s/{session_id}"


def etag(position: Position) -> str:
    """The session's log position as an ETag: ``"<epoch>:<offset>"``."""
    return f'"{position.epoch}:{position.offset}"'


def lineage_name(record: PatternRecord) -> str:
    """The name a remix or published copy caches for its parent, as the origin app picks it
    (sessions.ts): the parent's name, else its first track's, else "Untitled Session"."""
    if record.name:
        return record.name
    tracks = record.state.get("tracks") or []
    first = tracks[0].get("name") if tracks and isinstance(tracks[0], dict) else None
    return first if isinstance(first, str) and first else UNTITLED


async def parent_name_now(patterns: PatternSessions, record: PatternRecord) -> str | None:
    """``remixedFromName`` as a load shows it. Seed 001: the parent's name is fetched on load, the
    cached one is the fallback: the parent's current name (a rename after the remix shows), the
    cached name while the parent is unnamed, "Unknown Session" once it is gone."""
    if not record.remixed_from:
        return record.remixed_from_name
    stored, name = await patterns.name_if_stored(record.remixed_from)
    if not stored:
        return UNKNOWN_PARENT
    return name or record.remixed_from_name


def full_view(record: PatternRecord, *, orphaned: bool, parent_name: str | None = None) -> dict[str, Any]:
    """``GET /api/sessions/<id>``: the whole session; ``parent_name`` is the lineage's name as
    loaded now (:func:`parent_name_now`), else the one cached at the remix."""
    if parent_name is None:
        parent_name = record.remixed_from_name
    return {
        "id": record.id,
        "name": record.name,
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "lastAccessedAt": record.last_accessed_at,
        "remixedFrom": record.remixed_from,
        "remixedFromName": parent_name,
        "remixCount": record.remix_count,
        "immutable": record.immutable,
        "orphaned": orphaned,
        "state": record.state,
    }
