"""What an uploaded audio file is, and how long it plays, read from the file itself.

Pure Python, no ffprobe (the server must not need one): the type is sniffed from the first
bytes (the client's content type is never trusted, since the file is later served back), and
the duration is read from the container for the formats a browser's MediaRecorder writes:

- WebM / Matroska: the ``Info/Duration`` element when present, else the span of the block
  timestamps (``Cluster/Timecode`` + each ``SimpleBlock``/``Block`` offset) plus one frame.
  MediaRecorder writes live streams (unknown-size segment and clusters, no Duration), hence the
  block scan.
- Ogg (Opus or Vorbis): the last page's granule position (minus Opus's pre-skip) over the rate.
- WAV (PCM): the ``data`` size over the ``fmt`` byte rate (a streamed file's 0: the bytes to its end).

MP4, AAC (ADTS) and MP3 are recognised and stored, but their duration is not read here
(``duration_ms`` None): the uploader's figure stands for them.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

# Matroska element ids (with their length marker, as they appear in the file).
_EBML = 0x1A45DFA3
_DOCTYPE = 0x4282
_SEGMENT = 0x18538067
_INFO = 0x1549A966
_TIMECODE_SCALE = 0x2AD7B1
_DURATION = 0x4489
_CLUSTER = 0x1F43B675
_CLUSTER_TIMECODE = 0xE7
_SIMPLE_BLOCK = 0xA3
_BLOCK_GROUP = 0xA0
_BLOCK = 0xA1
_BLOCKS = frozenset({0xA3, 0xA1})
# Masters whose children are scanned in place (their size may be "unknown" in live streams).
_DESCEND = frozenset({_SEGMENT, _INFO, _CLUSTER, _BLOCK_GROUP})
_MAX_ELEMENTS = 2_000_000  # a hostile file of tiny elements must not spin for long
# No chunk is longer than a day (the upload form's bound too): a container claiming more lies.
MAX_DURATION_MS = 86_400_000


class ImpossibleDuration(ValueError):
    """The container states a duration that is no real length (infinite, NaN, beyond a day)."""


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """The sniffed type, and the duration when the container says it (``parser`` names how)."""

    mime: str
    duration_ms: int | None
    parser: str | None


def probe(path: Path) -> AudioInfo | None:
    """The file's audio type and duration, or None when it is no audio format we accept.

    Raises :class:`ImpossibleDuration` for a container stating a duration no audio has.
    """
    data = path.read_bytes()
    return probe_bytes(data)


def probe_bytes(data: bytes) -> AudioInfo | None:
    """As :func:`probe`, on bytes in memory."""
    head = data[:16]
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return AudioInfo("audio/webm", _webm_duration_ms(data), "webm")
    if head.startswith(b"OggS"):
        return AudioInfo("audio/ogg", _ogg_duration_ms(data), "ogg")
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return AudioInfo("audio/wav", _wav_duration_ms(data), "wav")
    if head[4:8] == b"ftyp":
        return AudioInfo("audio/mp4", None, None)
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE6 in (0xE2, 0xE4, 0xE6)):
        return AudioInfo("audio/mpeg", None, None)
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0:
        return AudioInfo("audio/aac", None, None)
    return None


# --- WebM -------------------------------------------------------------------------------


def _vint(data: bytes, pos: int, *, keep_marker: bool) -> tuple[int, int, bool] | None:
    """(value, length, all_ones) of the EBML variable-size integer at ``pos``."""
    if pos >= len(data):
        return None
    first = data[pos]
    length = 1
    mask = 0x80
    while length <= 8 and not first & mask:
        mask >>= 1
        length += 1
    if length > 8 or pos + length > len(data):
        return None
    value = first if keep_marker else first & (mask - 1)
    for byte in data[pos + 1 : pos + length]:
        value = (value << 8) | byte
    all_ones = not keep_marker and value == (1 << (7 * length)) - 1
    return value, length, all_ones


def _uint(raw: bytes) -> int:
    return int.from_bytes(raw, "big") if raw else 0


class _WebmScan:
    """One pass over the elements, descending into the few masters that matter."""

    def __init__(self) -> None:
        self.doctype = ""
        self.scale_ns = 1_000_000
        self.duration_ticks: float | None = None
        self.cluster_tc = 0
        self.first_tc: int | None = None
        self.last_tc: int | None = None
        self.last_gap = 0

    def block(self, payload: bytes) -> None:
        track = _vint(payload, 0, keep_marker=False)
        if track is None or track[1] + 2 > len(payload):
            return
        (relative,) = struct.unpack(">h", payload[track[1] : track[1] + 2])
        tc = self.cluster_tc + relative
        if self.last_tc is not None and tc > self.last_tc:
            self.last_gap = tc - self.last_tc
        self.first_tc = tc if self.first_tc is None else min(self.first_tc, tc)
        self.last_tc = tc if self.last_tc is None else max(self.last_tc, tc)

    def element(self, element_id: int, payload: bytes) -> None:
        if element_id == _DOCTYPE:
            self.doctype = payload.decode("ascii", "replace")
        elif element_id == _TIMECODE_SCALE:
            self.scale_ns = _uint(payload) or 1_000_000
        elif element_id == _DURATION and len(payload) in (4, 8):
            self.duration_ticks = struct.unpack(">f" if len(payload) == 4 else ">d", payload)[0]
        elif element_id == _CLUSTER_TIMECODE:
            self.cluster_tc = _uint(payload)
        elif element_id in (_SIMPLE_BLOCK, _BLOCK):
            self.block(payload)

    def duration_ms(self) -> int | None:
        stated = self.duration_ticks
        if stated is not None and not math.isfinite(stated):
            raise ImpossibleDuration(f"the WebM Duration ({stated}) is not a finite length")
        ticks: float | None = stated if stated and stated > 0 else None
        if ticks is None and self.first_tc is not None and self.last_tc is not None:
            # The last block plays for about as long as the gap before it (one codec frame).
            ticks = self.last_tc - self.first_tc + self.last_gap
        if ticks is None:
            return None
        # A huge TimecodeScale (up to 2^64 ns a tick) turns any tick count into centuries.
        duration_ms = ticks * self.scale_ns / 1_000_000
        if duration_ms > MAX_DURATION_MS:
            raise ImpossibleDuration(f"the WebM duration ({duration_ms:.3g} ms) is longer than a day")
        return round(duration_ms)


def _webm_duration_ms(data: bytes) -> int | None:
    scan = _WebmScan()
    pos = 0
    for _ in range(_MAX_ELEMENTS):
        found = _vint(data, pos, keep_marker=True)
        size = _vint(data, pos + found[1], keep_marker=False) if found else None
        if found is None or size is None:
            break
        element_id, start = found[0], pos + found[1] + size[1]
        if element_id in _DESCEND or element_id == _EBML:
            pos = start  # scan the children in place; an unknown size needs nothing else
            continue
        if size[2]:
            break  # an unknown-size element we cannot skip
        end = start + size[0]
        # A block's header (track, timecode) is all that is read of it: no copy of the frame.
        scan.element(element_id, data[start : min(end, start + 16)] if element_id in _BLOCKS else data[start:end])
        pos = end
    if scan.doctype not in ("webm", "matroska"):
        return None
    return scan.duration_ms()


# --- Ogg --------------------------------------------------------------------------------

_OGG_HEADER = struct.Struct("<4sBBqIIIB")


def _ogg_pages(data: bytes) -> list[tuple[int, int, bytes]]:
    """(granule, serial, first packet bytes) of every complete page."""
    pages: list[tuple[int, int, bytes]] = []
    pos = 0
    while pos + _OGG_HEADER.size <= len(data) and len(pages) < _MAX_ELEMENTS:
        magic, _, _, granule, serial, _, _, count = _OGG_HEADER.unpack_from(data, pos)
        if magic != b"OggS":
            break
        table = data[pos + _OGG_HEADER.size : pos + _OGG_HEADER.size + count]
        body = pos + _OGG_HEADER.size + count
        end = body + sum(table)
        if len(table) < count or end > len(data):
            break
        pages.append((granule, serial, data[body:end]))
        pos = end
    return pages


def _ogg_duration_ms(data: bytes) -> int | None:
    pages = _ogg_pages(data)
    if not pages:
        return None
    _, serial, first = pages[0]
    if first.startswith(b"OpusHead") and len(first) >= 12:
        rate, skip = 48_000, struct.unpack_from("<H", first, 10)[0]
    elif first.startswith(b"\x01vorbis") and len(first) >= 16:
        rate, skip = struct.unpack_from("<I", first, 12)[0], 0
    else:
        return None
    granules = [g for g, s, _ in pages if s == serial and g >= 0]
    if not granules or rate <= 0:
        return None
    return _at_most_a_day(
        max(0, round((max(granules) - skip) * 1000 / rate)), "Ogg duration (its last granule position)"
    )


# --- WAV --------------------------------------------------------------------------------


# The fewest bytes a second of WAV audio takes: 8 kHz telephony at 8 bits is 8,000; the most
# compressed codecs a WAV carries (G.729 and the like) about 1,000. A header saying fewer (a
# byte rate of 1 made a 100 KB file "27.8 hours") states no real audio.
MIN_WAV_BYTE_RATE = 1000


def _wav_duration_ms(data: bytes) -> int | None:
    """The ``data`` chunk's length over the ``fmt`` byte rate; None when the walk cannot tell (a
    ``data`` before its ``fmt``, an odd chunk written without its pad byte): the uploader's
    duration stands. A bare header with no chunk at all holds no audio anyone can play: it was
    stored with the uploader's duration, a recording of nothing that counted as minutes."""
    if len(data) < 20:
        raise ImpossibleDuration("the WAV duration cannot be read: it has no chunk after its header (no audio)")
    pos = 12
    byte_rate = 0
    while pos + 8 <= len(data):
        chunk_id, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk_id == b"fmt " and size >= 12 and pos + 20 <= len(data):
            byte_rate = struct.unpack_from("<I", data, pos + 16)[0]
        elif chunk_id == b"data":
            if not byte_rate:
                return None
            if byte_rate < MIN_WAV_BYTE_RATE:
                raise ImpossibleDuration(
                    f"the WAV duration cannot be read: its byte rate ({byte_rate} a second) is no real audio's"
                )
            rest = len(data) - pos - 8
            # A writer that streams (a recorder that cannot seek back) leaves the data size at 0,
            # or at 0xFFFFFFFF, and the audio runs to the end of the file: a second of it was
            # stored as 0 ms. A stated size longer than the bytes there is cut to them.
            stated = rest if size == 0 else min(size, rest)
            return _at_most_a_day(round(stated * 1000 / byte_rate), "WAV duration")
        pos += 8 + size + (size & 1)
    return None


def _at_most_a_day(duration_ms: int, what: str) -> int:
    """``duration_ms``, unless it is longer than any chunk (a container that lies about it: a
    160-byte Ogg stated three million years, which overflowed the session's audio total)."""
    if duration_ms > MAX_DURATION_MS:
        raise ImpossibleDuration(f"the {what} ({duration_ms:.3g} ms) is longer than a day")
    return duration_ms
