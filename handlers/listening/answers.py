"""Answer shapes of the listening routes (``/api/listening/*``), as /openapi.json documents them.

The routes that answer stored sessions send them as read (an item's metadata as the scripts
stored it: a duration may come back a whole number); these models say what they hold. The
small answers the routes make themselves are built through them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from handlers.answers import Answer, orphan_days_field, orphaned_field


class ListeningSessionView(Answer):
    """One listening session, with its item's metadata as stored (title falls back to the item id)."""

    id: str
    item_id: str
    title: str
    artist: str | None
    album: str | None
    artwork_url: str | None
    item_duration_s: float | None
    device_id: str
    started_at: int
    ended_at: int = Field(description="the last report's time while open")
    duration_ms: int
    start_position_s: float | None
    end_position_s: float | None
    open: bool
    source: Literal["live", "upload"]
    client_id: str | None = Field(description="an upload's; null for a live session")


class ListeningHistory(Answer):
    """``GET /api/listening``: the caller's history (made on first use), totals, open sessions."""

    session_id: str
    epoch: str
    offset: int
    total_ms: int
    count: int
    open: list[ListeningSessionView]
    orphaned: bool = orphaned_field("history")
    orphan_days: int = orphan_days_field()


class ReportAck(Answer):
    """``POST /api/listening/report``: as ``listening_report``'s ack, without ``ok``."""

    session_id: str
    action: Literal["started", "resumed", "extended", "throttled", "finalized", "deleted", "none"]
    changed: bool
    offset: int
    listening: ListeningSessionView | None


class UploadAck(Answer):
    """``POST /api/listening/upload``: stored (201), or a repeat or too short (200)."""

    session_id: str
    action: Literal["uploaded", "duplicate", "deleted"]
    changed: bool
    offset: int
    listening: ListeningSessionView | None = Field(
        description="null when too short, or for a repeat whose session was deleted (or cleared) since"
    )
    duplicate: bool


class ListeningPage(Answer):
    """``GET /api/listening/sessions``: newest first by ``started_at``."""

    sessions: list[ListeningSessionView]
    next_cursor: str | None = Field(description="pass it back as ?cursor= for the next page; null at the end")


class ListeningDeleted(Answer):
    """``DELETE /api/listening/sessions/{id}``."""

    session_id: str
    id: str
    offset: int


class HistoryCleared(Answer):
    """``POST /api/listening/clear``."""

    session_id: str
    removed: int
    offset: int
    repeated: bool = Field(description="a resend of a request_id already answered: nothing deleted")


class ItemTotal(Answer):
    """An item's listening time."""

    item_id: str
    title: str
    artist: str | None
    total_ms: int


class DayTotal(Answer):
    """A local day's listening time."""

    date: str = Field(description="YYYY-MM-DD")
    total_ms: int


class Streak(Answer):
    """Days in a row with listening."""

    current: int
    longest: int
    window_days: int


class ListeningStats(Answer):
    """``GET /api/listening/stats``."""

    tz: str
    today: str = Field(description="YYYY-MM-DD in tz")
    total_ms: int
    count: int
    items: list[ItemTotal] = Field(description="the top 20")
    days: list[DayTotal] = Field(description="the last ?days= local days, oldest first, zeros included")
    streak: Streak
    last: list[ListeningSessionView] = Field(description="the 10 newest sessions")


class ListeningExport(Answer):
    """``GET /api/listening/export?format=json``: the whole history, newest first."""

    user_id: str
    sessions: list[ListeningSessionView]
