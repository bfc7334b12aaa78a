"""The shapes the pattern API answers with (the origin app's field names, ms timestamps)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from storage.events import Position
from storage.patterns.repository import PatternRecord

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


def full_view(record: PatternRecord, *, orphaned: bool, parent_gone: bool = False) -> dict[str, Any]:
    """``GET /api/sessions/<id>``: the whole session."""
    parent_name = record.remixed_from_name
    if record.remixed_from and parent_gone:
        parent_name = UNKNOWN_PARENT
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
