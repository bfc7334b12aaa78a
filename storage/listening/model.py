"""Listening-history values: the rules the scripts apply, a listening session, reports, outcomes."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

KIND = "listening"
META_FIELDS: tuple[str, ...] = ("title", "artist", "album", "artwork_url", "duration_s")


@dataclass(frozen=True, slots=True)
class ListeningRules:
    """The seed's numbers and the caps, as the scripts apply them."""

    window_ms: int = 300_000
    throttle_ms: int = 5_000
    min_ms: int = 1_000
    silence_ms: int = 60_000
    max_devices: int = 16
    max_items: int = 10_000
    max_sessions: int = 100_000


@dataclass(frozen=True, slots=True)
class ListeningSession:
    """One listening session: a time range of one item on one device."""

    id: str
    item_id: str
    device_id: str
    started_at: int
    ended_at: int
    open: bool
    source: str
    start_position_s: float | None = None
    end_position_s: float | None = None
    client_id: str | None = None

    @classmethod
    def from_json(cls, raw: str) -> ListeningSession:
        """Parse a stored record (cjson numbers may come back as floats)."""
        doc = json.loads(raw)
        return cls(
            id=str(doc["id"]),
            item_id=str(doc["item_id"]),
            device_id=str(doc["device_id"]),
            started_at=int(doc["started_at"]),
            ended_at=int(doc["ended_at"]),
            open=bool(doc.get("open")),
            source=str(doc.get("source", "live")),
            start_position_s=_float_or_none(doc.get("start_position_s")),
            end_position_s=_float_or_none(doc.get("end_position_s")),
            client_id=doc.get("client_id"),
        )

    @property
    def duration_ms(self) -> int:
        """Length of the range."""
        return self.ended_at - self.started_at

    def public(self, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """The shape clients see, with the item's metadata (title falls back to the item id)."""
        meta = meta or {}
        return {
            "id": self.id,
            "item_id": self.item_id,
            "title": meta.get("title") or self.item_id,
            "artist": meta.get("artist"),
            "album": meta.get("album"),
            "artwork_url": meta.get("artwork_url"),
            "item_duration_s": meta.get("duration_s"),
            "device_id": self.device_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration_ms": self.duration_ms,
            "start_position_s": self.start_position_s,
            "end_position_s": self.end_position_s,
            "open": self.open,
            "source": self.source,
            "client_id": self.client_id,
        }


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True)
class Report:
    """A player's status report, validated at the edge."""

    item_id: str
    status: str
    device_id: str
    position_s: float | None = None
    meta: dict[str, Any] | None = None
    # A pause or stop pressed this long before it was sent (offline, sent once back): the
    # session ends then, not when the report arrived.
    ago_ms: int = 0
    # A pause or stop's own id (the player's, the same for every send of one press; '' for none):
    # sent again after it was applied, it changes nothing.
    pause_id: str = ""
    # With `playing`: the session this play continues, on the player's word that it played on
    # since that session's last report (its node was down past the silence): '' for none.
    continues: str = ""


@dataclass(frozen=True, slots=True)
class Upload:
    """A finished session an offline player sends later, validated at the edge."""

    item_id: str
    device_id: str
    client_id: str
    started_at: int
    ended_at: int
    meta: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a report or upload did: ``offset`` is 0 when nothing changed."""

    action: str
    offset: int
    session: ListeningSession | None
    meta: dict[str, Any] | None = None  # the item's metadata as stored after the change


@dataclass(frozen=True, slots=True)
class HistorySnapshot:
    """A history as of one log position."""

    record: dict[str, str]
    total_ms: int
    count: int
    open: list[ListeningSession] = field(default_factory=list)
