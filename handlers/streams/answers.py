"""Answer shapes of the streamer's review route, as /openapi.json documents them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ViewerClip(BaseModel):
    """A clip as viewers see it: no submitter's identity."""

    clip_id: str
    segment_index: int
    offset_ms: int
    stream_offset_ms: int
    note: str
    viewer_tag: str = Field(description="opaque, the same for all clips of one viewer in one session")
    seq: int
    clipped: bool
    created_at: int


class OwnClips(BaseModel):
    """``GET /api/streams/{id}/clips/mine``: the caller's own clips, newest first, as they are now."""

    session_id: str
    viewer_tag: str = Field(
        description="the caller's tag in this session (as on their clips; known before any clip): the audience "
        "session's clips_changed and viewer_blocked events name them by it"
    )
    blocked: bool = Field(description="the owner blocked the caller from clipping in this session")
    clips: list[ViewerClip]


class OwnerClip(ViewerClip):
    """A clip as its stream's owner sees it: who clicked, by user id and by display name."""

    submitted_by: str = Field(description="the viewer's user id")
    viewer_name: str | None = Field(
        description="the viewer's current display name (read when the answer is made: a rename shows on the next "
        "load); null when they chose none, and pages then show 'viewer <viewer_tag>'. Text: escape it"
    )


class ReviewSegment(BaseModel):
    """One segment of the stream with its clips."""

    index: int
    started_at: int
    ended_at: int | None
    length_ms: int | None
    clips: list[OwnerClip]


class Review(BaseModel):
    """``GET /api/streams/{id}/clips``: every clip by segment."""

    session: dict[str, Any]
    segments: list[ReviewSegment]
    clip_count: int
    epoch: str
    offset: int


class SummarySegment(BaseModel):
    """One segment of the stream with its clip count (its clips come in pages)."""

    index: int
    started_at: int
    ended_at: int | None
    length_ms: int | None
    clip_count: int = Field(description="the segment's clips at the answer's (epoch, offset)")


class ReviewSummary(BaseModel):
    """``GET /api/streams/{id}/review``: what the dashboard shows first, bounded on any stream."""

    session: dict[str, Any]
    segments: list[SummarySegment]
    clip_count: int = Field(description="every clip of the stream at the answer's (epoch, offset)")
    last: list[OwnerClip] = Field(description="the last clips on the timeline (the last segment's latest), last first")
    epoch: str
    offset: int = Field(description="the log offset the answer reflects: apply live events after it")


class ReviewPage(BaseModel):
    """``GET /api/streams/{id}/review/clips``: one page of a segment's clips, in review order."""

    session_id: str
    segment_index: int
    clips: list[OwnerClip] = Field(description="by offset, then clip id")
    next: str | None = Field(description="the cursor of the next page (`?after=`); null at the segment's end")
    segment_clip_count: int
    epoch: str
    offset: int = Field(description="the log offset the page reflects: apply live events after it")
