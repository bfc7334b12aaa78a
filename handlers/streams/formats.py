"""Export formats of clips and moments: CSV, JSON, text, YouTube chapters, editor markers.

Every function takes :class:`Marker` rows (a clip or a moment, in export order) and returns the
file's text. Each format follows its published definition; the tests hold hand-written files.

Each file is also made as ``*_chunks``: its text in pieces of at most :data:`SLICE` rows (a piece
may be empty), whose concatenation is the file. The export route awaits between pieces, so a
raid's ten thousand clips never hold the event loop for more than one slice's work.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from handlers.streams import timecode
from protocol.errors import CodedError, ErrorCode
from protocol.seen_text import cut_whole

YOUTUBE_MIN_CHAPTERS = 3
YOUTUBE_MIN_CHAPTER_MS = 10_000
# NLE timelines (Resolve's default, and CMX3600 practice) start at one hour.
EDL_START_FRAMES_H = 1
# CMX3600's event number field has three digits: a file holds at most 999 events.
EDL_MAX_EVENTS = 999
# A moment's notes in one label (its clicks' notes, in order).
NOTES_JOINED = " / "
# CMX3600 is ASCII (editors read it as such: UTF-8 shows as mojibake, some refuse the file):
# letters lose their accents (NFKD), what has an ASCII spelling takes it (after NFKD: "½" is then
# 1, U+2044, 2, whose fraction slash would else vanish into "12"; a minus sign, U+2212, would
# vanish), and whatever has none (emoji, other scripts) is left out.
_TO_ASCII = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\u2026": "...",
        "\u2044": "/",
        "\u00d7": "x",
        "\u00b0": " deg",
        "\u20ac": "EUR",
        "\u00a3": "GBP",
        "\u00df": "ss",
        "\u00c6": "AE",
        "\u00e6": "ae",
        "\u0152": "OE",
        "\u0153": "oe",
        "\u00d8": "O",
        "\u00f8": "o",
        "\u0141": "L",
        "\u0142": "l",
        "\u0110": "D",
        "\u0111": "d",
        "\u00de": "Th",
        "\u00fe": "th",
    }
)
# YouTube refuses a description that holds either: look-alike angle quotes keep the meaning.
_YOUTUBE_REFUSED = str.maketrans({"<": "\u2039", ">": "\u203a"})
# Rows rendered per piece of a file: a few ms of work at most between two turns of the loop.
SLICE = 250
# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class Marker:
    """One exported row: a clip, or a moment (``count`` clicks, ``label`` its notes)."""

    segment_index: int
    offset_ms: int
    stream_offset_ms: int
    label: str
    submitted_by: str
    created_at: int
    count: int
    clipped: bool
    median_offset_ms: int
    viewer: str = ""  # a clip's viewer as a person reads it (their display name, else their tag)


def _cell(value: object) -> str:
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(header: list[str], rows: list[list[object]]) -> str:
    return "".join(_csv_chunks(header, iter(rows)))


def _csv_chunks(header: list[str], rows: Iterator[list[object]]) -> Iterator[str]:
    # RFC 4180: CRLF after every record, fields quoted when they hold , " CR or LF.
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(header)
    while True:
        batch = [[_cell(v) for v in row] for _, row in zip(range(SLICE), rows, strict=False)]
        writer.writerows(batch)
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(batch) < SLICE:
            return


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def clips_csv(markers: Sequence[Marker]) -> str:
    """``segment_index,offset_hms,note,submitted_by,created_at,viewer``, one clip per record."""
    return "".join(clips_csv_chunks(markers))


def clips_csv_chunks(markers: Sequence[Marker]) -> Iterator[str]:
    """:func:`clips_csv` in pieces."""
    rows = (
        [m.segment_index, timecode.hms(m.offset_ms), m.label, m.submitted_by, _iso(m.created_at), m.viewer]
        for m in markers
    )
    return _csv_chunks(["segment_index", "offset_hms", "note", "submitted_by", "created_at", "viewer"], rows)


def moments_csv(markers: Sequence[Marker]) -> str:
    """``segment_index,offset_hms,median_offset_hms,count,notes``, one moment per record."""
    return "".join(moments_csv_chunks(markers))


def moments_csv_chunks(markers: Sequence[Marker]) -> Iterator[str]:
    """:func:`moments_csv` in pieces."""
    rows = (
        [m.segment_index, timecode.hms(m.offset_ms), timecode.hms(m.median_offset_ms), m.count, m.label]
        for m in markers
    )
    return _csv_chunks(["segment_index", "offset_hms", "median_offset_hms", "count", "notes"], rows)


def as_json(document: dict[str, Any]) -> str:
    """Pretty JSON, UTF-8 kept as is."""
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def as_json_chunks(head: dict[str, Any], key: str, items: Sequence[dict[str, Any]]) -> Iterator[str]:
    """``as_json({**head, key: items})`` in pieces (``key`` comes last)."""
    if not items:
        yield as_json({**head, key: []})
        return
    # The document with one null in the list: what comes before and after it frames the items.
    framed = json.dumps({**head, key: [None]}, ensure_ascii=False, indent=2)
    cut = framed.rindex("null")
    yield framed[:cut]
    # An item of the list sits two levels deep: each of its lines indented four more spaces
    # (a newline inside a string is escaped, so every raw newline is a line of the layout).
    between = ",\n    "
    for start in range(0, len(items), SLICE):
        pieces = (
            json.dumps(item, ensure_ascii=False, indent=2).replace("\n", "\n    ")
            for item in items[start : start + SLICE]
        )
        yield ("" if start == 0 else between) + between.join(pieces)
    yield framed[cut + len("null") :] + "\n"


def _lines(lines: list[str]) -> str:
    return "".join(line + "\n" for line in lines)


def text(title: str, markers: Sequence[Marker], *, moments: bool) -> str:
    """Plain text to paste anywhere: a heading per segment, one ``H:MM:SS note`` line per row."""
    return "".join(text_chunks(title, markers, moments=moments))


def text_chunks(title: str, markers: Sequence[Marker], *, moments: bool, by_segment: bool = True) -> Iterator[str]:
    """:func:`text` in pieces. Rows not in segment order (moments by their clicks) name their
    segment on their own line: a heading per change read "Segment 1 … Segment 2 … Segment 1"."""
    yield title + "\n"
    segment = None
    for start in range(0, len(markers), SLICE):
        lines: list[str] = [] if by_segment or start else [""]
        for m in markers[start : start + SLICE]:
            if by_segment and m.segment_index != segment:
                segment = m.segment_index
                lines += ["", f"Segment {segment}"]
            count = f" ({m.count} {'click' if m.count == 1 else 'clicks'})" if moments else ""
            where = "" if by_segment else f"Segment {m.segment_index}, "
            lines.append(f"{where}{timecode.hms(m.offset_ms)}{count} {m.label}".rstrip())
        yield _lines(lines)


# A chapter's title at most: a moment of many clicks joins all their notes, and its chapter line
# ran to thousands of characters (three made a file longer than YouTube's 5,000-character
# description; audit exports).
YOUTUBE_TITLE_MAX = 100


def _chapter_title(label: str) -> str:
    title = label.translate(_YOUTUBE_REFUSED)
    # Cut at a whole character: a cut in code points ended in half a flag (a lone regional
    # letter) or a family's first two members and a joiner (audit "localeworld").
    return title if len(title) <= YOUTUBE_TITLE_MAX else cut_whole(title, YOUTUBE_TITLE_MAX - 1).rstrip() + "…"


# A YouTube description holds at most this many characters (counted as JavaScript counts them,
# UTF-16 units): the chapters are spaced out until they fit.
YOUTUBE_DESCRIPTION_MAX = 5000


def youtube_chapters(markers: Sequence[Marker], *, total_ms: int | None, moments: bool) -> str:
    """YouTube chapters on the VOD with the breaks cut out (stream offsets).

    YouTube's rules: the first chapter starts at 0:00, there are at least three, in ascending
    order, each at least 10 seconds long. A row closer than that to the chapter before it joins
    that chapter (the first row within 10 s of 0:00 names the 0:00 chapter, else ``Start``); a
    last chapter shorter than 10 s before the known end is dropped. When fewer
    than three chapters remain, ``invalid_state`` says why. Chapters that together are longer
    than a description holds (``YOUTUBE_DESCRIPTION_MAX``) are spaced further apart, the least
    apart that fits, as 10 s is: a 3-hour stream of 1,882 clips made 696 chapters, 10,567
    characters, pasted into no description (audit "streamreview").
    """
    return "".join(youtube_chapters_chunks(markers, total_ms=total_ms, moments=moments))


def youtube_chapters_chunks(markers: Sequence[Marker], *, total_ms: int | None, moments: bool) -> Iterator[str]:
    """:func:`youtube_chapters` in pieces: empty ones while the rows are read, then the file
    (or ``invalid_state``, before any text)."""
    rows: list[tuple[int, str]] = []
    ordered = sorted(markers, key=lambda m: m.stream_offset_ms)
    for start in range(0, len(ordered), SLICE):
        if start:
            yield ""
        for number, m in enumerate(ordered[start : start + SLICE], start=start + 1):
            label = _chapter_title(m.label) or (f"Moment {number}" if moments else f"Clip {number}")
            rows.append((m.stream_offset_ms // 1000 * 1000, label))
    chapters = _chapters(rows, total_ms, YOUTUBE_MIN_CHAPTER_MS)
    if _description_size(chapters) > YOUTUBE_DESCRIPTION_MAX:
        # The fewest seconds apart that fit (fewer chapters as they grow further apart).
        low_s, high_s = YOUTUBE_MIN_CHAPTER_MS // 1000, max(rows[-1][0] // 1000, YOUTUBE_MIN_CHAPTER_MS // 1000) + 1
        while low_s < high_s:
            yield ""
            mid_s = (low_s + high_s) // 2
            if _description_size(_chapters(rows, total_ms, mid_s * 1000)) <= YOUTUBE_DESCRIPTION_MAX:
                high_s = mid_s
            else:
                low_s = mid_s + 1
        chapters = _chapters(rows, total_ms, low_s * 1000)
    if len(chapters) < YOUTUBE_MIN_CHAPTERS:
        raise CodedError(
            ErrorCode.INVALID_STATE,
            f"YouTube needs at least {YOUTUBE_MIN_CHAPTERS} chapters from 0:00, each at least 10 s long; "
            f"these clips make {len(chapters)} (clips closer than 10 s to the previous chapter are merged into it)",
            reason="too_few_chapters",
            chapters=len(chapters),
        )
    yield _description(chapters)


def _chapters(rows: Sequence[tuple[int, str]], total_ms: int | None, apart_ms: int) -> list[tuple[int, str]]:
    """The chapters of ``rows`` (start, title; in order) at least ``apart_ms`` apart."""
    chapters: list[tuple[int, str]] = [(0, "Start")]
    for number, (start_ms, label) in enumerate(rows, start=1):
        if start_ms - chapters[-1][0] >= apart_ms:
            chapters.append((start_ms, label))
        elif number == 1:
            chapters[0] = (0, label)  # the first moment names the opening chapter it joins
    if total_ms is not None and len(chapters) > 1 and total_ms - chapters[-1][0] < YOUTUBE_MIN_CHAPTER_MS:
        chapters.pop()
    return chapters


def _description(chapters: Sequence[tuple[int, str]]) -> str:
    return "".join(f"{timecode.youtube(at)} {label}\n" for at, label in chapters)


def _description_size(chapters: Sequence[tuple[int, str]]) -> int:
    """Its length as YouTube's page counts it (UTF-16 units: an emoji counts two)."""
    return len(_description(chapters).encode("utf-16-le")) // 2


def premiere_markers(markers: Sequence[Marker], *, fps: str) -> str:
    """Premiere Pro's marker list (File > Export > Markers, CSV), on the sequence from 00:00:00:00."""
    return "".join(premiere_markers_chunks(markers, fps=fps))


def premiere_markers_chunks(markers: Sequence[Marker], *, fps: str) -> Iterator[str]:
    """:func:`premiere_markers` in pieces."""
    rows = (_premiere_row(number, m, fps) for number, m in enumerate(markers, start=1))
    return _csv_chunks(["Marker Name", "Description", "In", "Out", "Duration", "Marker Type"], rows)


def _premiere_row(number: int, m: Marker, fps: str) -> list[object]:
    at = timecode.smpte(timecode.frames(m.stream_offset_ms, fps), fps)
    return [
        m.label or f"Clip {number}",  # as in the other editor formats (where it is is in Description)
        _describe(m),
        at,
        at,
        timecode.smpte(0, fps),  # a marker lasts no frame
        "Comment",
    ]


def _describe(m: Marker) -> str:
    clicks = f", {m.count} clicks" if m.count > 1 else ""
    return f"segment {m.segment_index} at {timecode.hms(m.offset_ms)}{clicks}"


def _ascii(text: str) -> str:
    """``text`` as CMX3600 can hold it (``_TO_ASCII``), spaces collapsed; empty when nothing of it
    can be written. A moment's notes each on their own: one of emoji alone is left out, not
    written as its separator (a raid's "🔥 / 🔥 / 🔥" was "/ /")."""
    notes = []
    for note in text.split(NOTES_JOINED):
        decomposed = unicodedata.normalize("NFKD", note).translate(_TO_ASCII)
        if written := " ".join(decomposed.encode("ascii", "ignore").decode("ascii").split()):
            notes.append(written)
    return NOTES_JOINED.join(notes)


def _edl_title(title: str, fps: str) -> list[str]:
    return [f"TITLE: {title}", "FCM: DROP FRAME" if timecode.is_drop_frame(fps) else "FCM: NON-DROP FRAME", ""]


def _record_in(m: Marker, fps: str) -> int:
    return timecode.frames_at_hour(EDL_START_FRAMES_H, fps) + timecode.frames(m.stream_offset_ms, fps)


def _edl_event(number: int, reel: str, start: int, fps: str) -> str:
    # CMX3600 columns: event, reel (8), track, transition, source in/out, record in/out.
    tc_in, tc_out = timecode.smpte(start, fps), timecode.smpte(start + 1, fps)
    return f"{number:03d}  {reel:<8} V     C        {tc_in} {tc_out} {tc_in} {tc_out}"


def resolve_markers(title: str, markers: Sequence[Marker], *, fps: str) -> str:
    """DaVinci Resolve's timeline-marker EDL: one-frame events from 01:00:00:00, ``|C: |M: |D:``."""
    return "".join(resolve_markers_chunks(title, markers, fps=fps))


def resolve_markers_chunks(title: str, markers: Sequence[Marker], *, fps: str) -> Iterator[str]:
    """:func:`resolve_markers` in pieces."""
    yield _lines(_edl_title(title, fps))
    for start in range(0, len(markers), SLICE):
        lines: list[str] = []
        for number, m in enumerate(markers[start : start + SLICE], start=start + 1):
            color = "ResolveColorGreen" if m.clipped else "ResolveColorBlue"
            name = (m.label or f"Clip {number}").replace("|", "/")
            lines += [_edl_event(number, "001", _record_in(m, fps), fps), f" |C:{color} |M:{name} |D:1", ""]
        yield _lines(lines)


def cmx3600(title: str, markers: Sequence[Marker], *, fps: str) -> str:
    """A CMX3600 EDL with one one-frame event per row and its ``* LOC:`` locator."""
    return "".join(cmx3600_chunks(title, markers, fps=fps))


def cmx3600_chunks(title: str, markers: Sequence[Marker], *, fps: str) -> Iterator[str]:
    """:func:`cmx3600` in pieces."""
    yield _lines(_edl_title(_ascii(title) or "Stream", fps))
    for start in range(0, len(markers), SLICE):
        lines: list[str] = []
        for number, m in enumerate(markers[start : start + SLICE], start=start + 1):
            at = _record_in(m, fps)
            color = "GREEN" if m.clipped else "YELLOW"
            label = _ascii(m.label) or f"Clip {number}"
            lines += [_edl_event(number, "AX", at, fps), f"* LOC: {timecode.smpte(at, fps)} {color:<7} {label}"]
        yield _lines(lines)
