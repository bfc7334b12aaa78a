"""Stream sessions' HTTP routes as documented in /openapi.json (see handlers.openapi_registry).

Every route needs a bearer token; state, review, moments, edits and export need the owner's (a
viewer reads their own clips only).
"""

from __future__ import annotations

from functools import partial

from handlers.streams.answers import (
    BlockChanged,
    BlockedViewers,
    ClipDeleted,
    ClipEdited,
    ClipSubmitted,
    Moments,
    OwnClips,
    Review,
    ReviewPage,
    ReviewSummary,
    StateChanged,
    StreamCreated,
    StreamExport,
    StreamList,
    StreamView,
    ViewerCleared,
)
from handlers.streams.payloads import ClipEdit, ClipRequest, CreateStream, StateRequest, ViewerRef
from handlers.streams.queries import (
    ClearQuery,
    ExportQuery,
    MomentsRouteQuery,
    OwnClipsQuery,
    ReviewPageQuery,
    ReviewQuery,
    ReviewSummaryQuery,
)
from handlers.openapi_registry import CSV, JSON, TEXT, Header, Operation, attachment
from handlers.query import LimitQuery

TAG = "streams"
# The formats that split a long session into files (docs/PROTOCOL.md, export) say how many.
EXPORT_PARTS = Header(
    "X-Export-Parts", "how many parts (?part=1..n) the export has (the formats that split it)", pattern="^[1-9][0-9]*$"
)
OWNER_READ = (400, 403, 404, 503)
WRITE = (400, 403, 404, 409, 413, 429, 503)

_stream = partial(Operation, tag=TAG)

OPERATIONS: tuple[Operation, ...] = (
    _stream(
        "post",
        "/api/streams",
        "Create a stream session owned by the caller (with viewer and streamer links)",
        body=CreateStream,
        statuses=(400, 403, 413, 429, 503),
        ok=(201,),
        idempotent=True,
        response=StreamCreated,
    ),
    _stream(
        "get",
        "/api/streams",
        "The caller's stream sessions, newest first",
        query=LimitQuery,
        statuses=(400, 503),
        response=StreamList,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}",
        "One session with its segments",
        statuses=(400, 404, 503),
        response=StreamView,
    ),
    _stream(
        "post",
        "/api/streams/{session_id}/state",
        "start / pause / resume / end (the owner)",
        body=StateRequest,
        statuses=WRITE,
        response=StateChanged,
    ),
    _stream(
        "post",
        "/api/streams/{session_id}/clips",
        "A viewer's Clip Moment (200 for a retry of the same submission_id)",
        body=ClipRequest,
        body_required=False,
        statuses=WRITE,
        ok=(200, 201),
        response=ClipSubmitted,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}/clips",
        "Every clip by segment, with who clicked: user id and current display name (the owner)",
        query=ReviewQuery,
        statuses=OWNER_READ,
        response=Review,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}/review",
        "The review's first screen on a stream of any size: each segment's clip count, the last clips (the owner)",
        query=ReviewSummaryQuery,
        statuses=OWNER_READ,
        response=ReviewSummary,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}/review/clips",
        "One page of a segment's clips in review order after a cursor, with who clicked (the owner)",
        query=ReviewPageQuery,
        statuses=OWNER_READ,
        response=ReviewPage,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}/clips/mine",
        "The caller's own clips, newest first, as they are now (any token; never another viewer's)",
        query=OwnClipsQuery,
        statuses=(400, 404, 503),
        response=OwnClips,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}/moments",
        "Clips grouped into moments (the owner)",
        query=MomentsRouteQuery,
        statuses=OWNER_READ,
        response=Moments,
    ),
    _stream(
        "patch",
        "/api/streams/{session_id}/clips/{clip_id}",
        "Mark clipped or edit the note (the owner)",
        body=ClipEdit,
        statuses=WRITE,
        response=ClipEdited,
    ),
    _stream(
        "delete",
        "/api/streams/{session_id}/clips/{clip_id}",
        "Delete a clip (the owner)",
        statuses=(400, 403, 404, 409, 503),
        response=ClipDeleted,
    ),
    _stream(
        "delete",
        "/api/streams/{session_id}/clips",
        "Remove every clip of one viewer, ?by=<user_id> (the owner)",
        query=ClearQuery,
        statuses=(400, 403, 404, 503),
        response=ViewerCleared,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}/blocked",
        "The viewers blocked from clipping (the owner)",
        statuses=OWNER_READ,
        response=BlockedViewers,
    ),
    _stream(
        "post",
        "/api/streams/{session_id}/blocked",
        "Block a viewer from clipping (the owner)",
        body=ViewerRef,
        statuses=(400, 403, 404, 409, 413, 503),
        response=BlockChanged,
    ),
    _stream(
        "delete",
        "/api/streams/{session_id}/blocked/{user_id}",
        "Let a blocked viewer clip again (the owner)",
        statuses=(400, 403, 404, 503),
        response=BlockChanged,
    ),
    _stream(
        "get",
        "/api/streams/{session_id}/export",
        "Clips or moments as a file: CSV, JSON, text, YouTube chapters, Premiere, Resolve, CMX 3600",
        query=ExportQuery,
        statuses=(*OWNER_READ, 409, 429),
        ok_types=(CSV, JSON, TEXT),
        response=StreamExport,
        ok_headers=(attachment("<title>-<what>[-part<n>].<suffix>"), EXPORT_PARTS),
    ),
)
