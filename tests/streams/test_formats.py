"""Export formats against files written by hand from each format's definition.

RFC 4180 (CSV: CRLF records, quotes doubled inside quoted fields), YouTube's chapter rules
(0:00 first, three or more, ascending, 10 s or longer), Premiere Pro's marker list columns,
DaVinci Resolve's marker EDL (one-frame events from 01:00:00:00, ``|C: |M: |D:``) and CMX3600
with ``* LOC:`` locators; SMPTE non-drop-frame timecode.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest

from handlers.streams import formats, timecode
from handlers.streams.formats import Marker
from handlers.streams.moments import group_moments
from protocol.errors import CodedError
from storage.streams.repository import Clip

NEW_YEAR_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def marker(
    segment: int, offset_ms: int, stream_ms: int, label: str, by: str, created_ms: int, clipped: bool, viewer: str = ""
) -> Marker:
    return Marker(segment, offset_ms, stream_ms, label, by, NEW_YEAR_MS + created_ms, 1, clipped, offset_ms, viewer)


ROWS = [
    marker(1, 5_000, 5_000, 'Nice, "clean" shot', "viewer-1", 5_000, False, "Ada, the 1st"),
    marker(1, 72_500, 72_500, "=cmd|' /C calc'!A0", "guest-abc", 72_500, True, "viewer 0a1b2c3d4e5f"),
    marker(2, 3_700_250, 3_795_250, "", "@evil", 3_795_250, False, "=HYPERLINK()"),
]

CLIPS_CSV = (
    "segment_index,offset_hms,note,submitted_by,created_at,viewer\r\n"
    '1,0:00:05,"Nice, ""clean"" shot",viewer-1,2026-01-01T00:00:05.000Z,"Ada, the 1st"\r\n'
    "1,0:01:12,'=cmd|' /C calc'!A0,guest-abc,2026-01-01T00:01:12.500Z,viewer 0a1b2c3d4e5f\r\n"
    "2,1:01:40,,'@evil,2026-01-01T01:03:15.250Z,'=HYPERLINK()\r\n"
)

TEXT = """Raid night

Segment 1
0:00:05 Nice, "clean" shot
0:01:12 =cmd|' /C calc'!A0

Segment 2
1:01:40
"""

# The first row, 5 s in, is too close to 0:00 for a chapter of its own: it names the first one.
YOUTUBE = """0:00 Nice, "clean" shot
1:12 =cmd|' /C calc'!A0
1:03:15 Clip 3
"""

PREMIERE_30 = (
    "Marker Name,Description,In,Out,Duration,Marker Type\r\n"
    '"Nice, ""clean"" shot",segment 1 at 0:00:05,00:00:05:00,00:00:05:00,00:00:00:00,Comment\r\n'
    "'=cmd|' /C calc'!A0,segment 1 at 0:01:12,00:01:12:15,00:01:12:15,00:00:00:00,Comment\r\n"
    "Clip 3,segment 2 at 1:01:40,01:03:15:07,01:03:15:07,00:00:00:00,Comment\r\n"
)

RESOLVE_25 = """TITLE: Raid night
FCM: NON-DROP FRAME

001  001      V     C        01:00:05:00 01:00:05:01 01:00:05:00 01:00:05:01
 |C:ResolveColorBlue |M:Nice, "clean" shot |D:1

002  001      V     C        01:01:12:12 01:01:12:13 01:01:12:12 01:01:12:13
 |C:ResolveColorGreen |M:=cmd/' /C calc'!A0 |D:1

003  001      V     C        02:03:15:06 02:03:15:07 02:03:15:06 02:03:15:07
 |C:ResolveColorBlue |M:Clip 3 |D:1

"""

CMX3600_30 = """TITLE: Raid night
FCM: NON-DROP FRAME

001  AX       V     C        01:00:05:00 01:00:05:01 01:00:05:00 01:00:05:01
* LOC: 01:00:05:00 YELLOW  Nice, "clean" shot
002  AX       V     C        01:01:12:15 01:01:12:16 01:01:12:15 01:01:12:16
* LOC: 01:01:12:15 GREEN   =cmd|' /C calc'!A0
003  AX       V     C        02:03:15:07 02:03:15:08 02:03:15:07 02:03:15:08
* LOC: 02:03:15:07 YELLOW  Clip 3
"""


def test_clips_csv() -> None:
    assert formats.clips_csv(ROWS) == CLIPS_CSV


def test_plain_text() -> None:
    assert formats.text("Raid night", ROWS, moments=False) == TEXT


def test_youtube_chapters() -> None:
    assert formats.youtube_chapters(ROWS, total_ms=None, moments=False) == YOUTUBE


def test_youtube_chapters_keep_the_first_moment_at_0_00() -> None:
    """A moment in the first 10 s names the 0:00 chapter (it was lost in an automatic "Start");
    one from 10 s on is a chapter of its own after "Start"; YouTube's rules hold either way."""
    boss = [marker(1, 6_000, 6_000, "🔥🔥 boss down 👑", "v", 0, False), marker(1, 9_000, 9_000, "gg", "v", 0, False)]
    later = [marker(1, ms, ms, f"at {ms // 1000}", "v", 0, False) for ms in (18_000, 31_000)]
    assert formats.youtube_chapters(boss + later, total_ms=None, moments=True) == (
        "0:00 🔥🔥 boss down 👑\n0:18 at 18\n0:31 at 31\n"
    )
    unnamed = [marker(1, 0, 0, "", "v", 0, False), *later]
    assert formats.youtube_chapters(unnamed, total_ms=None, moments=True) == "0:00 Moment 1\n0:18 at 18\n0:31 at 31\n"
    at_ten = [marker(1, 10_000, 10_000, "ten", "v", 0, False), *later[1:]]
    assert formats.youtube_chapters(at_ten, total_ms=None, moments=False) == "0:00 Start\n0:10 ten\n0:31 at 31\n"
    with pytest.raises(CodedError):  # still two chapters: 0:00 (named by the first) and 0:18
        formats.youtube_chapters(boss + later[:1], total_ms=None, moments=True)


def test_youtube_refuses_what_cannot_make_chapters() -> None:
    close = [marker(1, ms, ms, "x", "v", 0, False) for ms in (3_000, 9_000, 15_000)]
    with pytest.raises(CodedError) as refused:
        formats.youtube_chapters(close, total_ms=None, moments=False)
    assert refused.value.code.value == "invalid_state" and refused.value.details["chapters"] == 2
    # A last chapter under 10 s before the end of the VOD is dropped, then there are too few.
    spread = [marker(1, ms, ms, "x", "v", 0, False) for ms in (20_000, 40_000)]
    assert formats.youtube_chapters(spread, total_ms=60_000, moments=False) == "0:00 Start\n0:20 x\n0:40 x\n"
    with pytest.raises(CodedError):
        formats.youtube_chapters(spread, total_ms=45_000, moments=False)


def test_premiere_markers() -> None:
    assert formats.premiere_markers(ROWS, fps="30") == PREMIERE_30


def test_resolve_marker_edl() -> None:
    assert formats.resolve_markers("Raid night", ROWS, fps="25") == RESOLVE_25


def test_cmx3600_with_locators() -> None:
    assert formats.cmx3600("Raid night", ROWS, fps="30") == CMX3600_30


def test_cmx3600_is_ascii_as_editors_read_it() -> None:
    """Notes and titles went out in UTF-8 ("Überraschung 配信", "boss down 🔥"): an editor reading
    the EDL as the ASCII it is showed mojibake in every locator."""
    notes = ["Café “clean” shot \u2013 ok…", "boss down 🔥", "🔥🔥", "配信"]
    rows = [dataclasses.replace(ROWS[0], label=note) for note in notes]
    edl = formats.cmx3600("Überraschung 配信", rows, fps="30")
    edl.encode("ascii")  # nothing else in it
    assert edl.splitlines()[0] == "TITLE: Uberraschung"
    located = [line.split(None, 4)[4] for line in edl.splitlines() if line.startswith("* LOC:")]
    assert located == ['Cafe "clean" shot - ok...', "boss down", "Clip 3", "Clip 4"]
    assert formats.cmx3600("配信", rows, fps="30").splitlines()[0] == "TITLE: Stream"
    # A moment's notes each on its own; what has an ASCII spelling keeps its meaning.
    notes = ["🔥", "🔥🔥", "½ time", "score \u22123", "Ærø", "2\u00d7speed", "90°", "€5", "Straße", "Łódź"]
    moment = dataclasses.replace(ROWS[0], label=formats.NOTES_JOINED.join(notes), count=len(notes))
    [located] = [line for line in formats.cmx3600("x", [moment], fps="30").splitlines() if line.startswith("* LOC")]
    assert located.split(None, 4)[4] == ("1/2 time / score -3 / AEro / 2xspeed / 90 deg / EUR5 / Strasse / Lodz"), (
        located
    )
    raid = dataclasses.replace(ROWS[0], label=formats.NOTES_JOINED.join(["🔥"] * 3), count=3)
    assert formats.cmx3600("x", [raid], fps="30").splitlines()[-1].endswith("YELLOW  Clip 1")
    assert "|M:boss down 🔥 |D:1" in formats.resolve_markers("x", rows, fps="30")  # Resolve reads UTF-8


@pytest.mark.parametrize(
    "ms, fps, expected",
    [
        (5_000, "23.976", "00:00:04:23"),  # 119.88 real frames: 23.976 counts at 24 per tc second
        (72_500, "29.97", "00:01:12:12"),
        (3_600_000, "60", "01:00:00:00"),
        (999, "25", "00:00:00:24"),
        (0, "30", "00:00:00:00"),
    ],
)
def test_smpte_non_drop_frame(ms: int, fps: str, expected: str) -> None:
    assert timecode.smpte(timecode.frames(ms, fps), fps) == expected


@pytest.mark.parametrize(
    "frame, fps, expected",
    [
        (1799, "29.97DF", "00:00:59;29"),
        (1800, "29.97DF", "00:01:00;02"),  # ;00 and ;01 are skipped at the start of a minute
        (17982, "29.97DF", "00:10:00;00"),  # but not of every tenth
        (17981, "29.97DF", "00:09:59;29"),
        (3600, "59.94DF", "00:01:00;04"),  # four skipped at 59.94
        (35964, "59.94DF", "00:10:00;00"),
        (3600, "59.94", "00:01:00:00"),
    ],
)
def test_smpte_drop_frame(frame: int, fps: str, expected: str) -> None:
    assert timecode.smpte(frame, fps) == expected


def test_drop_frame_keeps_to_the_clock_where_non_drop_frame_falls_behind() -> None:
    hour = 3_600_000
    assert timecode.smpte(timecode.frames(hour, "29.97DF"), "29.97DF") == "01:00:00;00"
    assert timecode.smpte(timecode.frames(hour, "59.94DF"), "59.94DF") == "01:00:00;00"
    assert timecode.smpte(timecode.frames(hour, "29.97"), "29.97") == "00:59:56:12"  # 3.6 s behind
    assert timecode.smpte(timecode.frames_at_hour(1, "29.97DF"), "29.97DF") == "01:00:00;00"


def test_drop_frame_editor_files_say_so() -> None:
    edl = formats.cmx3600("Raid night", ROWS, fps="29.97DF")
    assert "FCM: DROP FRAME" in edl.splitlines()
    events = [line for line in edl.splitlines() if line[:3].isdigit()]
    assert events[0].split()[4:6] == ["01:00:04;29", "01:00:05;00"]  # 5 s in, then one frame on
    assert all(";" in field for line in events for field in line.split()[4:8])
    assert "FCM: DROP FRAME" in formats.resolve_markers("Raid night", ROWS, fps="59.94DF").splitlines()
    premiere = formats.premiere_markers(ROWS, fps="29.97DF")
    assert all(row.endswith("00:00:00;00,Comment") for row in premiere.splitlines()[1:])


def test_hms() -> None:
    assert [timecode.hms(ms) for ms in (0, 59_999, 61_000, 3_600_000, 36_000_000 + 61_500)] == [
        "0:00:00",
        "0:00:59",
        "0:01:01",
        "1:00:00",
        "10:01:01",
    ]


def clip(seq: int, segment: int, offset_s: int, note: str = "", clipped: bool = False) -> Clip:
    return Clip(f"id-{seq}", segment, offset_s * 1000, offset_s * 1000, note, f"v{seq}", "tag", seq, clipped, 0)


def test_moments_group_within_the_window_of_their_first_click() -> None:
    clips = [clip(1, 1, 0, "a"), clip(2, 1, 4), clip(3, 1, 9, "b"), clip(4, 1, 11, "c"), clip(5, 2, 1, clipped=True)]
    by_time = group_moments(list(reversed(clips)), window_s=10)
    assert [(m.segment_index, m.count, m.first_offset_ms, m.median_offset_ms) for m in by_time] == [
        (1, 3, 0, 4_000),
        (1, 1, 11_000, 11_000),
        (2, 1, 1_000, 1_000),
    ]
    assert by_time[0].notes == ("a", "b") and by_time[2].clipped and not by_time[0].clipped
    assert [m.first_offset_ms for m in group_moments(clips, window_s=10, sort="count")] == [0, 11_000, 1_000]
    assert [m.count for m in group_moments(clips, window_s=30)] == [4, 1]


def test_moments_csv() -> None:
    moments = group_moments([clip(1, 1, 0, "a, b"), clip(2, 1, 4), clip(3, 1, 9, "-x")], window_s=10)
    rows = [
        formats.Marker(1, m.first_offset_ms, 0, " / ".join(m.notes), "", 0, m.count, False, m.median_offset_ms)
        for m in moments
    ]
    assert formats.moments_csv(rows) == (
        'segment_index,offset_hms,median_offset_hms,count,notes\r\n1,0:00:00,0:00:04,3,"a, b / -x"\r\n'
    )


def test_plain_text_of_moments_counts_one_click_as_one() -> None:
    """A moment of one click read "(1 clicks)"."""
    said = formats.text("Raid night", ROWS[:2], moments=True)
    assert "0:00:05 (1 click) Nice" in said and "(1 clicks)" not in said, said


def test_plain_text_of_moments_by_their_clicks_names_each_rows_segment() -> None:
    """Sorted by count, the segments interleave: a heading at each change read "Segment 1 …
    Segment 2 … Segment 1" (audit exports)."""
    by_count = [ROWS[1], ROWS[2], ROWS[0]]
    said = "".join(formats.text_chunks("Raid night", by_count, moments=True, by_segment=False))
    assert said == (
        "Raid night\n\n"
        "Segment 1, 0:01:12 (1 click) =cmd|' /C calc'!A0\n"
        "Segment 2, 1:01:40 (1 click)\n"
        'Segment 1, 0:00:05 (1 click) Nice, "clean" shot\n'
    ), said


def test_a_chapter_of_a_moment_of_many_notes_keeps_a_titles_length() -> None:
    """A moment of 30 clicks joined every note into its chapter: three such lines made a file longer
    than a YouTube description holds (5,000 characters; audit exports)."""
    notes = formats.NOTES_JOINED.join(f"viewer {n} says " + "x" * 90 for n in range(30))
    rows = [marker(1, ms, ms, notes, "v", 0, False) for ms in (0, 20_000, 40_000)]
    said = formats.youtube_chapters(rows, total_ms=None, moments=True)
    lines = said.splitlines()
    assert len(lines) == 3 and len(said) < 400, said
    assert all(len(line.split(" ", 1)[1]) == formats.YOUTUBE_TITLE_MAX and line.endswith("…") for line in lines)
    assert lines[1].startswith("0:20 viewer 0 says xxx")


def test_a_long_titles_file_name_is_cut_without_a_dangling_dash() -> None:
    from handlers.streams.export import filename

    assert filename("a" * 59 + " b", "clips", ".csv") == "a" * 59 + "-clips.csv"  # was "…a--clips.csv"
    assert filename("Über ✨ night", "clips", ".csv") == "uber-night-clips.csv"


def test_chapters_of_a_long_busy_stream_are_spaced_out_to_fit_a_description() -> None:
    """A 3-hour stream of 1,882 clips made 696 chapters, 10,567 characters: no YouTube description
    holds it (5,000). They are spaced out, the least that fits, and still keep YouTube's rules."""
    rows = [marker(1, ms, ms, f"clip {ms // 1000} 🔥", "v", 0, False) for ms in range(0, 3 * 3_600_000, 5_740)]
    assert len(rows) == 1_882
    said = formats.youtube_chapters(rows, total_ms=3 * 3_600_000, moments=False)
    assert len(said.encode("utf-16-le")) // 2 <= formats.YOUTUBE_DESCRIPTION_MAX, len(said)
    starts = [timecode_s(line.split(" ", 1)[0]) for line in said.splitlines()]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert starts[0] == 0 and min(gaps) >= 10 and len(starts) >= 3, said
    # The least spacing that fits: one second less does not.
    apart_ms = min(gaps) * 1000
    tighter = formats._chapters(
        [(m.stream_offset_ms // 1000 * 1000, m.label) for m in rows], 3 * 3_600_000, apart_ms - 1000
    )
    assert len(formats._description(tighter).encode("utf-16-le")) // 2 > formats.YOUTUBE_DESCRIPTION_MAX
    # A stream whose chapters fit is as before: 10 s apart.
    few = rows[::40]
    assert formats.youtube_chapters(few, total_ms=None, moments=False).count("\n") == len(few)


def timecode_s(text: str) -> int:
    """Seconds of a YouTube timestamp ("1:02:03", "2:03")."""
    seconds = 0
    for part in text.split(":"):
        seconds = seconds * 60 + int(part)
    return seconds


def test_a_note_of_invisible_characters_alone_is_no_note() -> None:
    """Notes of a zero-width space, a left-to-right mark, a byte-order mark or an Arabic letter mark
    alone were stored and exported as chapters and markers with no visible title (audit
    "streamreview"). Such a note is taken as none; one stored before is exported as none."""
    from pydantic import ValidationError

    from handlers.streams.export import clip_marker
    from handlers.streams.payloads import ClipRequest, CreateStream

    for unseen in ("\u200b", "\u200e", "\ufeff", "\u061c", "\u200b \u3164"):
        assert ClipRequest.model_validate({"note": unseen}).note == ""
        with pytest.raises(ValidationError, match="a title needs a character that shows"):
            CreateStream.model_validate({"title": unseen})
    assert ClipRequest.model_validate({"note": "\u200bgg"}).note == "\u200bgg"  # something shows
    stored = Clip(
        clip_id="c", segment_index=1, offset_ms=20_000, stream_offset_ms=20_000, note="\u200b",
        submitted_by="v", viewer_tag="t", seq=1, clipped=False, created_at=NEW_YEAR_MS,
    )  # fmt: skip
    rows = [clip_marker(stored, {}), marker(1, 40_000, 40_000, "b", "v", 0, False)]
    assert formats.youtube_chapters(rows, total_ms=None, moments=False) == "0:00 Start\n0:20 Clip 1\n0:40 b\n"
    [moment] = group_moments([stored], window_s=10)
    assert moment.notes == ()
