"""The records of stream sessions: the session with its segments, a clip, and outcomes of changes."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any

KIND = "stream"


@dataclass(frozen=True, slots=True)
class StreamSession:
    """A stream session as stored, with its segments."""

    id: str
    owner_id: str
    title: str
    game: str
    viewer_delay_s: int
    state: str
    clip_count: int
    clipped_count: int
    created_at: int
    updated_at: int
    ended_at: int | None
    audience_id: str
    segments: tuple[dict[str, Any], ...]

    @classmethod
    def from_hash(cls, fields: dict[str, str], segments: list[str]) -> StreamSession:
        """Build from the stored hash and segment list (``decode_responses=True``)."""
        ended_at = fields.get("ended_at") or ""
        return cls(
            id=fields["id"],
            owner_id=fields["owner_id"],
            title=fields.get("title", ""),
            game=fields.get("game", ""),
            viewer_delay_s=int(fields.get("viewer_delay_s") or 0),
            state=fields.get("state", "created"),
            clip_count=int(fields.get("clip_count") or 0),
            clipped_count=int(fields.get("clipped_count") or 0),
            created_at=int(fields["created_at"]),
            updated_at=int(fields.get("updated_at") or fields["created_at"]),
            ended_at=int(ended_at) if ended_at else None,
            audience_id=fields.get("audience_id", ""),
            segments=tuple(json.loads(s) for s in segments),
        )

    def public(self) -> dict[str, Any]:
        """What anyone holding the link sees: no owner id, no viewer identities."""
        return {
            "session_id": self.id,
            "kind": KIND,
            "title": self.title,
            "game": self.game,
            "viewer_delay_s": self.viewer_delay_s,
            "state": self.state,
            "clip_count": self.clip_count,
            "clipped_count": self.clipped_count,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "ended_at": self.ended_at,
            "audience_id": self.audience_id,
            "segments": list(self.segments),
        }


@dataclass(frozen=True, slots=True)
class Clip:
    """One viewer's click, as stored (``submitted_by`` is for the owner's eyes only)."""

    clip_id: str
    segment_index: int
    offset_ms: int
    stream_offset_ms: int
    note: str
    submitted_by: str
    viewer_tag: str
    seq: int
    clipped: bool
    created_at: int

    @classmethod
    def parse(cls, text: str) -> Clip:
        """Read a stored clip JSON object."""
        doc = json.loads(text)
        return cls(**{name: doc[name] for name in _CLIP_FIELDS})

    def sort_key(self) -> tuple[int, int, int]:
        """Segment, then offset, then arrival."""
        return (self.segment_index, self.offset_ms, self.seq)

    def for_viewer(self) -> dict[str, Any]:
        """The clip without the submitter's identity."""
        return {name: getattr(self, name) for name in _CLIP_FIELDS if name != "submitted_by"}

    def for_owner(self) -> dict[str, Any]:
        """The whole clip."""
        return {name: getattr(self, name) for name in _CLIP_FIELDS}


_CLIP_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Clip))


@dataclass(frozen=True, slots=True)
class Transition:
    """Outcome of a state action."""

    offset: int
    previous: str
    state: str


@dataclass(frozen=True, slots=True)
class Submission:
    """Outcome of a click: the clip, and whether this call stored it (False: a retry)."""

    clip: Clip | None
    created: bool
    offset: int
