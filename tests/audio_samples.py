"""Audio files built byte by byte, as MediaRecorder and libopus write them (no encoder needed).

The frames carry no real audio (the server never decodes it); the containers are exact:
EBML with an unknown-size segment and clusters (a live MediaRecorder stream), Ogg pages with
their CRC, a PCM WAV header.
"""

from __future__ import annotations

import struct


def _size(n: int) -> bytes:
    """An 8-byte EBML size."""
    return bytes([0x01]) + n.to_bytes(7, "big")


def _el(element_id: int, payload: bytes) -> bytes:
    raw_id = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return raw_id + _size(len(payload)) + payload


UNKNOWN = bytes([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])


def webm(
    duration_ms: int,
    *,
    frame_ms: int = 20,
    with_duration: float | None = None,
    cluster_ms: int = 10_000,
    timecode_scale_ns: int = 1_000_000,
) -> bytes:
    """A live-style WebM/Opus stream of ``duration_ms`` in ``frame_ms`` blocks."""
    header = _el(0x1A45DFA3, _el(0x4286, b"\x01") + _el(0x4282, b"webm") + _el(0x4287, b"\x04"))
    info_body = _el(0x2AD7B1, timecode_scale_ns.to_bytes(max(3, (timecode_scale_ns.bit_length() + 7) // 8), "big"))
    if with_duration is not None:
        info_body += _el(0x4489, struct.pack(">d", with_duration))
    tracks = _el(0x1654AE6B, _el(0xAE, _el(0xD7, b"\x01") + _el(0x86, b"A_OPUS")))
    clusters = b""
    for cluster_start in range(0, duration_ms, cluster_ms):
        blocks = b""
        for t in range(cluster_start, min(cluster_start + cluster_ms, duration_ms), frame_ms):
            blocks += _el(0xA3, b"\x81" + struct.pack(">h", t - cluster_start) + b"\x80" + b"\xfc" * 40)
        clusters += bytes.fromhex("1F43B675") + UNKNOWN + _el(0xE7, cluster_start.to_bytes(4, "big")) + blocks
    return header + bytes.fromhex("18538067") + UNKNOWN + _el(0x1549A966, info_body) + tracks + clusters


def _crc(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc


def _page(packet: bytes, granule: int, seq: int, flags: int) -> bytes:
    lacing = b""
    rest = len(packet)
    while rest >= 255:
        lacing += b"\xff"
        rest -= 255
    lacing += bytes([rest])
    head = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule, 0x5E55, seq, 0, len(lacing)) + lacing
    page = head + packet
    return page[:22] + struct.pack("<I", _crc(page)) + page[26:]


def ogg_opus(duration_ms: int, *, pre_skip: int = 312) -> bytes:
    """An Ogg/Opus stream of ``duration_ms`` (48 kHz granules, 20 ms per page)."""
    head = b"OpusHead" + bytes([1, 1]) + struct.pack("<H", pre_skip) + struct.pack("<I", 48000) + b"\x00\x00\x00"
    pages = [_page(head, 0, 0, 2), _page(b"OpusTags" + b"\x00" * 8, 0, 1, 0)]
    for i, t in enumerate(range(20, duration_ms + 1, 20)):
        pages.append(_page(b"\xfc" * 30, pre_skip + t * 48, i + 2, 0))
    return b"".join(pages)


def wav(duration_ms: int, *, rate: int = 8000) -> bytes:
    """A mono 16-bit PCM WAV of silence."""
    data = b"\x00\x00" * (rate * duration_ms // 1000)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body
