"""Query strings of the stream routes: one model per route, checked at the edge (handlers.query)."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from auth.claims import USER_ID_PATTERN
from handlers.streams.settings import ClipSettings
from handlers.streams.timecode import DEFAULT_FPS, FRAME_RATES
from handlers.query import QueryModel

MAX_WINDOW_S = 600
ExportFormat = Literal["csv", "json", "txt", "youtube", "premiere", "resolve", "edl"]
FrameRate = Literal["23.976", "25", "29.97", "29.97DF", "30", "59.94", "59.94DF", "60"]
# The literal above is what the document lists; the table is what the timecodes use.
assert set(get_args(FrameRate)) == set(FRAME_RATES), "FrameRate must list timecode.FRAME_RATES"


class ReviewQuery(QueryModel):
    """``GET /api/streams/{id}/clips``: ``?only=clipped`` keeps the clips marked clipped."""

    only: Literal["all", "clipped"] = "all"

    @property
    def clipped_only(self) -> bool:
        """Only the clips the streamer marked clipped."""
        return self.only == "clipped"


class OwnClipsQuery(QueryModel):
    """``GET /api/streams/{id}/clips/mine``: the caller's newest ``limit`` clips (checked with
    :func:`handlers.query.at_most` against SESSIONHUB_LIST_LIMIT, which is also the default)."""

    limit: int | None = Field(default=None, ge=1, description="default and most: SESSIONHUB_LIST_LIMIT (200)")


class ClearQuery(QueryModel):
    """``DELETE /api/streams/{id}/clips``: ``?by=`` names the viewer whose clips go (required)."""

    by: str = Field(pattern=USER_ID_PATTERN, description="the viewer's user id (a clip's submitted_by)")


class MomentsQuery(ReviewQuery):
    """``GET /api/streams/{id}/moments``: clips grouped within ``window_s``, sorted."""

    window_s: int | None = Field(default=None, ge=1, le=MAX_WINDOW_S, description="default from the settings")
    sort: Literal["time", "count"] = "time"

    def window(self, settings: ClipSettings) -> int:
        """The grouping window: the query's, else the configured default."""
        return self.window_s if self.window_s is not None else settings.moment_window_s


class MomentsRouteQuery(MomentsQuery):
    """``GET /api/streams/{id}/moments``: also how many notes and clip ids each moment carries
    (a raid's one moment may hold thousands of each; its ``count`` and ``note_count`` say all)."""

    notes: int | None = Field(default=None, ge=0, description="most notes per moment (its first ones); default all")
    ids: int | None = Field(default=None, ge=0, description="most clip ids per moment (its first ones); default all")


class ExportQuery(MomentsQuery):
    """``GET /api/streams/{id}/export``: the file format, of clips or moments, and frame rate."""

    format: ExportFormat = "csv"
    of: Literal["clips", "moments"] = "clips"
    fps: FrameRate = DEFAULT_FPS  # type: ignore[assignment]
    timeline: Literal["cut", "kept"] = Field(
        default="cut", description="editor formats and chapters: breaks cut out (cut) or kept, as recorded (kept)"
    )
    bom: Literal["0", "1"] = Field(default="0", description="1: CSV files start with a UTF-8 BOM (for Excel)")
    part: int = Field(default=1, ge=1, description="EDL formats: which file of at most 999 events")


# Clips in one page of the paged review by default: a screenful or a few, never a raid's worth
# (at most SESSIONHUB_LIST_LIMIT, checked with handlers.query.at_most, as every listing's limit).
REVIEW_PAGE_DEFAULT = 100
# Where the last page of a segment ended: '<offset_ms>.<clip_id>', as the previous page's `next`.
REVIEW_CURSOR_PATTERN = r"^[0-9]{1,15}\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class ReviewSummaryQuery(QueryModel):
    """``GET /api/streams/{id}/review``: ``?last=`` how many of the last clips on the timeline."""

    last: int = Field(default=50, ge=0, le=200, description="the last clips on the timeline answered (the live feed)")


class ReviewPageQuery(QueryModel):
    """``GET /api/streams/{id}/review/clips``: one segment's clips after a cursor, in order."""

    segment: int = Field(ge=0, description="the segment's index")
    after: str | None = Field(
        default=None,
        pattern=REVIEW_CURSOR_PATTERN,
        description="the previous page's `next` (none: the segment's first page)",
    )
    limit: int | None = Field(
        default=None, ge=1, description="most clips in the page: default 100, at most SESSIONHUB_LIST_LIMIT (200)"
    )

    @property
    def cursor(self) -> tuple[int, str] | None:
        """The cursor as (offset ms, clip id), None for the first page."""
        if self.after is None:
            return None
        offset_ms, _, clip_id = self.after.partition(".")
        return int(offset_ms), clip_id
