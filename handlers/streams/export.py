"""``GET /api/streams/{id}/export``: clips or moments as a file download (the owner only).

A raid leaves ten thousand clips: the rows, the names and the file are made in slices
(handlers.streams.slices), so one export never holds the event loop for more than a few ms,
and a user runs at most ``EXPORTS_PER_USER`` at once on a process.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import chain
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, get_args
from urllib.parse import quote

from aiohttp import web

from auth.claims import Claims
from handlers.streams import formats, timecode
from handlers.streams.attribution import attributed, viewer_label, viewer_names
from handlers.streams.actions import owned
from handlers.streams.formats import Marker
from handlers.streams.seen import seen_or_empty
from handlers.streams.moments import Moment, grouped_moments
from handlers.streams.queries import ExportFormat, ExportQuery
from handlers.streams.settings import ClipSettings
from handlers.streams.slices import encoded, filtered, mapped, released, sent, sorted_in_slices
from handlers.context import Services
from handlers.per_user_slots import PerUserSlots
from handlers.http_common import bearer_claims, guarded, unless_client_leaves
from handlers.ids import parse_session_id
from handlers.query import parse_query
from protocol.errors import CodedError, ErrorCode
from storage.streams.repository import Clip, StreamSession, StreamSessions

# Exports one user may run at once on one server process (another is refused with 429): each
# reads and renders a whole stream, and a script holding the owner's token could start hundreds.
EXPORTS_PER_USER = 2
EXPORT_RETRY_AFTER_S = 5


@dataclass(frozen=True, slots=True)
class Export:
    """What one request asks for."""

    session: StreamSession
    markers: list[Marker]
    moments: bool
    clipped_only: bool
    fps: str
    # The JSON format's document: ``head`` then the rows (``clips`` or ``moments``), made only for it.
    head: dict[str, object] = field(default_factory=dict)
    items: list[dict[str, Any]] = field(default_factory=list)
    timeline_kept: bool = False
    part: int = 1
    parts: int = 1
    # Moments sorted by their clicks, not in time: the segments interleave (no heading per segment).
    by_count: bool = False

    @property
    def title(self) -> str:
        """The session's title, naming the part when an EDL is split over several files."""
        title = self.session.title
        return f"{title} (part {self.part} of {self.parts})" if self.parts > 1 else title


@dataclass(frozen=True, slots=True)
class Format:
    """A file format: its name suffix, media type and renderer (the file in pieces)."""

    suffix: str
    content_type: str
    render: Callable[[Export], Iterator[str]]
    csv: bool = False  # gets a UTF-8 BOM with ?bom=1
    # Rows on the VOD timeline (by stream offset), as editors' markers and chapters are.
    timeline: bool = False
    # CMX3600's event number has three digits: past 999 events the rows go to several files.
    events_per_file: int | None = None


def _stream_offset(marker: Marker) -> int:
    return marker.stream_offset_ms


def _timeline(export: Export) -> list[Marker]:
    # Editors' markers and chapters follow the VOD timeline: ExportRoutes.export puts the
    # rows of such a format in that order (in slices) before it renders them.
    return export.markers


FORMATS: dict[ExportFormat, Format] = {
    "csv": Format(
        ".csv",
        "text/csv",
        lambda e: formats.moments_csv_chunks(e.markers) if e.moments else formats.clips_csv_chunks(e.markers),
        csv=True,
    ),
    "json": Format(
        ".json",
        "application/json",
        lambda e: formats.as_json_chunks(e.head, "moments" if e.moments else "clips", e.items),
    ),
    "txt": Format(
        ".txt",
        "text/plain",
        lambda e: formats.text_chunks(e.session.title, e.markers, moments=e.moments, by_segment=not e.by_count),
    ),
    "youtube": Format(
        "-youtube-chapters.txt",
        "text/plain",
        lambda e: formats.youtube_chapters_chunks(_timeline(e), total_ms=_total_ms(e), moments=e.moments),
        timeline=True,
    ),
    "premiere": Format(
        "-premiere-markers.csv",
        "text/csv",
        lambda e: formats.premiere_markers_chunks(_timeline(e), fps=e.fps),
        csv=True,
        timeline=True,
    ),
    "resolve": Format(
        "-resolve-markers.edl",
        "text/plain",
        lambda e: formats.resolve_markers_chunks(e.title, _timeline(e), fps=e.fps),
        events_per_file=formats.EDL_MAX_EVENTS,
        timeline=True,
    ),
    "edl": Format(
        "-cmx3600.edl",
        "text/plain",
        lambda e: formats.cmx3600_chunks(e.title, _timeline(e), fps=e.fps),
        events_per_file=formats.EDL_MAX_EVENTS,
        timeline=True,
    ),
}


assert set(FORMATS) == set(get_args(ExportFormat)), "ExportFormat must list FORMATS"


def _total_ms(export: Export) -> int | None:
    """The VOD's length once the stream has ended: its segments' summed lengths, or with the
    breaks kept, from the first segment's start to the last one's end."""
    session = export.session
    if session.state != "ended":
        return None
    if export.timeline_kept and session.segments:
        return int(session.segments[-1].get("ended_at") or 0) - int(session.segments[0]["started_at"])
    return sum(int(s.get("length_ms") or 0) for s in session.segments)


async def keep_breaks(session: StreamSession, markers: list[Marker]) -> list[Marker]:
    """The markers on the timeline as recorded (breaks kept): offsets from the first segment's
    start, so a VOD that still holds its pauses gets markers at the right places."""
    if not session.segments:
        return markers
    origin = int(session.segments[0]["started_at"])
    starts = {int(s["index"]): int(s["started_at"]) - origin for s in session.segments}
    return await mapped(lambda m: replace(m, stream_offset_ms=starts.get(m.segment_index, 0) + m.offset_ms), markers)


def one_part(export: Export, fmt: Format, part: int) -> Export:
    """The rows of file ``part`` of a format that holds at most ``events_per_file`` rows."""
    per_file = fmt.events_per_file
    if per_file is None:
        return export
    rows = _timeline(export)
    parts = max(1, -(-len(rows) // per_file))
    if part > parts:
        raise CodedError(ErrorCode.INVALID_PAYLOAD, f"part must be 1..{parts}", parts=parts)
    chosen = rows[(part - 1) * per_file : part * per_file]
    return replace(export, markers=chosen, part=part, parts=parts)


def clip_marker(clip: Clip, names: dict[str, str]) -> Marker:
    """A clip as an export row (the viewer by name, see handlers.streams.attribution)."""
    return Marker(
        viewer=viewer_label(clip, names),
        segment_index=clip.segment_index,
        offset_ms=clip.offset_ms,
        stream_offset_ms=clip.stream_offset_ms,
        label=seen_or_empty(clip.note),  # one stored before such notes were taken as none
        submitted_by=clip.submitted_by,
        created_at=clip.created_at,
        count=1,
        clipped=clip.clipped,
        median_offset_ms=clip.offset_ms,
    )


def moment_marker(moment: Moment, created_at: int) -> Marker:
    """A moment as an export row (its notes joined with `` / ``)."""
    return Marker(
        segment_index=moment.segment_index,
        offset_ms=moment.first_offset_ms,
        stream_offset_ms=moment.first_stream_offset_ms,
        label=formats.NOTES_JOINED.join(moment.notes),
        submitted_by="",
        created_at=created_at,
        count=moment.count,
        clipped=moment.clipped,
        median_offset_ms=moment.median_offset_ms,
    )


def filename(title: str, what: str, suffix: str) -> str:
    """An ASCII file name from the title: ``my-stream-clips.csv`` (``Über`` gives ``uber``)."""
    plain = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    # Cut, then trimmed: a cut that ends on a dash left "…a--clips.csv" (audit exports).
    slug = re.sub(r"[^A-Za-z0-9]+", "-", plain).strip("-").lower()[:60].rstrip("-") or "stream"
    return f"{slug}-{what}{suffix}"


def disposition(title: str, what: str, suffix: str) -> str:
    """The download's ``Content-Disposition``: the ASCII name, and the title's own letters in
    ``filename*`` (RFC 6266) when it has others (``Ünïcode`` or ``配信``): browsers save the file
    under that name, where the ASCII one lost them (``配信`` became ``stream``)."""
    ascii_name = filename(title, what, suffix)
    slug = "-".join(re.findall(r"[^\W_]+", unicodedata.normalize("NFC", title))).lower()[:60]
    if not slug or slug.isascii():
        return f'attachment; filename="{ascii_name}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(f'{slug}-{what}{suffix}', safe='')}"


class ExportRoutes:
    """File downloads of the owner's clips and moments."""

    def __init__(self, services: Services, streams: StreamSessions, settings: ClipSettings) -> None:
        self._s = services
        self._streams = streams
        self._settings = settings
        self._slots = PerUserSlots("exports", EXPORTS_PER_USER, EXPORT_RETRY_AFTER_S)

    def register(self, app: web.Application) -> None:
        """Attach the route to ``app``."""
        app.router.add_get("/api/streams/{session_id}/export", guarded(self.export))

    def _claims(self, request: web.Request) -> Claims:
        return bearer_claims(request, self._s.tokens, self._s.clock)

    async def export(self, request: web.Request) -> web.StreamResponse:
        """``?format=csv|json|txt|youtube|premiere|resolve|edl&of=clips|moments&only=all|clipped&fps=``."""
        session_id = parse_session_id(request.match_info["session_id"])
        claims = self._claims(request)
        # Every parameter (an unknown format too) is checked before anything is read.
        query = parse_query(ExportQuery, request)
        fmt = FORMATS[query.format]
        with self._slots.slot(claims.sub):
            # Given up (and its slot freed) as soon as its client has gone: a Cancel on the page.
            collected, export, body = await unless_client_leaves(request, self._prepare(query, session_id, claims))
            what = ("clipped-" if export.clipped_only else "") + ("moments" if export.moments else "clips")
            if export.parts > 1:
                what += f"-part{export.part}"
            headers = {
                "Content-Disposition": disposition(export.session.title, what, fmt.suffix),
                "Cache-Control": "no-store",
            }
            if fmt.events_per_file is not None:
                headers["X-Export-Parts"] = str(export.parts)
            # Sent in pieces within the user's slot: the slot bounds the bodies held at once.
            response = await sent(request, body, content_type=fmt.content_type, headers=headers)
            # The rows freed a slice per turn: each list here is the last to hold some of them.
            await released(export.items)
            await released(export.markers)
            await released(collected.markers)
            return response

    async def _prepare(self, query: ExportQuery, session_id: str, claims: Claims) -> tuple[Export, Export, list[bytes]]:
        """The rows collected, the export of them as the file holds them, and the file's bytes."""
        fmt = FORMATS[query.format]
        collected = export = await self._collect(query, session_id, claims)
        if fmt.timeline:  # a stable sort, as sorted() was: equal offsets keep their order
            export = replace(export, markers=await sorted_in_slices(export.markers, key=_stream_offset))
        export = one_part(export, fmt, query.part)
        # Excel reads a CSV without the BOM (?bom=1) in the machine's legacy code page.
        bom = ["\ufeff"] if fmt.csv and query.bom == "1" else []
        return collected, export, await encoded(chain(bom, fmt.render(export)))

    async def _collect(self, query: ExportQuery, session_id: str, claims: Claims) -> Export:
        await owned(self._streams, claims, session_id)
        moments_wanted = query.of == "moments"
        clipped_only = query.clipped_only
        fps = query.fps
        window_s = query.window(self._settings)
        sort = query.sort
        session, clips, _ = await self._streams.clips(session_id)
        if session is None:
            raise CodedError(ErrorCode.SESSION_NOT_FOUND, "no such session")
        if clipped_only:
            every = clips
            clips = await filtered(_clipped, every)
            await released(every)
        of = "moments" if moments_wanted else "clips"
        head: dict[str, object] = {"session": session.public(), "of": of}
        json_wanted = query.format == "json"
        items: list[dict[str, Any]] = []
        if moments_wanted:
            moments = await grouped_moments(clips, window_s=window_s, sort=sort)
            firsts = set(await mapped(_first_clip_id, moments))
            created = {c.clip_id: c.created_at for c in await filtered(lambda c: c.clip_id in firsts, clips)}
            markers = await mapped(lambda m: moment_marker(m, created[m.clip_ids[0]]), moments)
            head["window_s"] = window_s
            if json_wanted:
                items = await mapped(_moment_item, moments)
        else:
            names = await viewer_names(self._s.identities, clips)
            markers = await mapped(lambda c: clip_marker(c, names), clips)
            if json_wanted:
                items = await mapped(lambda c: _clip_item(c, names), clips)
        await released(clips)  # the rows hold what they need of them
        kept = query.timeline == "kept"
        if kept:
            moved = await keep_breaks(session, markers)
            await released(markers)
            markers = moved
        return Export(
            session=session,
            markers=markers,
            moments=moments_wanted,
            clipped_only=clipped_only,
            fps=fps,
            head=head,
            items=items,
            timeline_kept=kept,
            by_count=moments_wanted and sort == "count",
        )


def _clipped(clip: Clip) -> bool:
    return clip.clipped


def _first_clip_id(moment: Moment) -> str:
    return moment.clip_ids[0]


def _moment_item(m: Moment) -> dict[str, Any]:
    return {
        **m.public(),
        "offset_hms": timecode.hms(m.first_offset_ms),
        "median_offset_hms": timecode.hms(m.median_offset_ms),
    }


def _clip_item(c: Clip, names: dict[str, str]) -> dict[str, Any]:
    return {
        **attributed(c, names),
        "offset_hms": timecode.hms(c.offset_ms),
        "stream_offset_hms": timecode.hms(c.stream_offset_ms),
    }
