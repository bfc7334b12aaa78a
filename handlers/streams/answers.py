"""Answer shapes of the stream routes, as /openapi.json documents them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, RootModel

from handlers.answers import Answer, orphan_days_field, orphaned_field


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


class OwnClip(BaseModel):
    """The ``own_clip`` server event: a clip the user stored (on any of their devices), sent on the
    user's channel to their own following connections only (docs/PROTOCOL.md, "Your clips on every
    device"), never to another viewer."""

    session_id: str = Field(description="the stream session the clip is in")
    clip: ViewerClip


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


# The other stream routes' answers. Their handlers send the records as read (a segment as the
# stream's script encoded it); these models say what those hold, and the small answers the
# handlers make themselves are built through them (handlers.answers.Answer).

StreamState = Literal["created", "active", "paused", "ended"]


class StreamSegment(Answer):
    """One segment of the stream: open (``ended_at`` and ``length_ms`` null) while active."""

    index: int = Field(description="from 1")
    started_at: int
    ended_at: int | None
    length_ms: int | None


class StreamPublic(Answer):
    """A stream session's record as anyone holding its id sees it: no owner, no viewers."""

    session_id: str
    kind: Literal["stream"]
    title: str
    game: str
    viewer_delay_s: int
    state: StreamState
    clip_count: int
    clipped_count: int
    created_at: int
    updated_at: int
    ended_at: int | None = Field(description="null until ended")
    audience_id: str = Field(description="the companion stream_audience session viewers follow")
    segments: list[StreamSegment]


class StreamRecord(StreamPublic):
    """The record as the HTTP routes answer it: with its links and the caller's role."""

    viewer_url: str = Field(description="/watch/<id> (absolute under SESSIONHUB_PUBLIC_URL)")
    streamer_url: str = Field(description="/streams/<id> (absolute under SESSIONHUB_PUBLIC_URL)")
    is_owner: bool = Field(description="the owner, or an admin token acting as the owner")


class StreamCreated(Answer):
    """``POST /api/streams``."""

    session: StreamRecord
    viewer_url: str
    streamer_url: str


class StreamList(Answer):
    """``GET /api/streams``: newest first; each record's ``segments`` is ``[]`` here (not loaded)."""

    sessions: list[StreamRecord]


class StreamView(StreamRecord):
    """``GET /api/streams/{id}``: the record with its segments, its log position, and the access."""

    epoch: str
    offset: int
    orphaned: bool = orphaned_field()
    orphan_days: int = orphan_days_field()


class StateChanged(Answer):
    """``POST /api/streams/{id}/state``: as ``stream_set_state``'s ack, without ``ok``."""

    session_id: str
    state: StreamState
    previous: StreamState
    offset: int


class ClipSubmitted(Answer):
    """``POST /api/streams/{id}/clips``: as ``clip_submit``'s ack, without ``ok``."""

    session_id: str
    clip: ViewerClip | None = Field(description="the clip stored (or stored before); null when it was deleted since")
    created: bool = Field(description="false for a retry with a known submission_id")
    deleted: bool = Field(description="a retry whose clip the owner deleted since")
    offset: int
    cooldown_s: float


class StoredClip(Answer):
    """A clip as its owner changes it: who clicked, by user id."""

    clip_id: str
    segment_index: int
    offset_ms: int
    stream_offset_ms: int
    note: str
    submitted_by: str = Field(description="the viewer's user id")
    viewer_tag: str
    seq: int
    clipped: bool
    created_at: int


class ClipEdited(Answer):
    """``PATCH /api/streams/{id}/clips/{clip_id}``: the clip as it is now."""

    session_id: str
    clip: StoredClip


class ClipDeleted(Answer):
    """``DELETE /api/streams/{id}/clips/{clip_id}``."""

    session_id: str
    clip_id: str
    deleted: Literal[True]


class ViewerCleared(Answer):
    """``DELETE /api/streams/{id}/clips?by=``: the viewer's clips removed, with one event."""

    session_id: str
    user_id: str
    removed: int
    offset: int = Field(description="the clips_cleared event's offset")


class BlockedViewers(Answer):
    """``GET /api/streams/{id}/blocked``."""

    session_id: str
    blocked: list[str] = Field(description="user ids, sorted")


class BlockChanged(Answer):
    """``POST /api/streams/{id}/blocked``, ``DELETE /api/streams/{id}/blocked/{user_id}``."""

    session_id: str
    user_id: str
    blocked: bool
    changed: bool = Field(description="false when the viewer already was (or was not) blocked")


class StreamMoment(Answer):
    """Clips of one segment within ``window_s`` of the moment's first click."""

    segment_index: int
    count: int
    first_offset_ms: int
    median_offset_ms: int
    first_stream_offset_ms: int
    notes: list[str] = Field(description="the non-empty notes in click order (the first ?notes= of them)")
    clip_ids: list[str] = Field(description="the clips, in click order (the first ?ids= of them)")
    clipped: bool = Field(description="any clip of it clipped")
    note_count: int = Field(default=0, description="all its notes: only with ?notes= or ?ids=")


class Moments(Answer):
    """``GET /api/streams/{id}/moments``."""

    session_id: str
    window_s: int
    sort: Literal["count", "time"]
    moments: list[StreamMoment]
    epoch: str
    offset: int


class ExportedClip(OwnerClip):
    """A clip in the JSON export."""

    offset_hms: str
    stream_offset_hms: str


class ExportedMoment(Answer):
    """A moment in the JSON export."""

    segment_index: int
    count: int
    first_offset_ms: int
    median_offset_ms: int
    first_stream_offset_ms: int
    notes: list[str]
    clip_ids: list[str]
    clipped: bool
    offset_hms: str
    median_offset_hms: str


class ClipsExport(Answer):
    """``?format=json`` of clips."""

    session: StreamPublic
    of: Literal["clips"]
    clips: list[ExportedClip]


class MomentsExport(Answer):
    """``?format=json&of=moments``."""

    session: StreamPublic
    of: Literal["moments"]
    window_s: int
    moments: list[ExportedMoment]


class StreamExport(RootModel[ClipsExport | MomentsExport]):
    """``GET /api/streams/{id}/export?format=json``: the clips or the moments, as a file."""
