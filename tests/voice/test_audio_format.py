"""The container parser: durations read from WebM, Ogg and WAV, and sniffing of other types."""

from __future__ import annotations

import struct

import pytest

from storage.voice.audio_format import probe_bytes
from tests.audio_samples import ogg_opus, wav, webm


@pytest.mark.parametrize("duration_ms", [40, 1000, 2500, 45_000])
def test_webm_live_stream_duration_from_blocks(duration_ms: int) -> None:
    info = probe_bytes(webm(duration_ms))
    assert info is not None and (info.mime, info.parser) == ("audio/webm", "webm")
    assert info.duration_ms == duration_ms


def test_webm_duration_element_wins_when_present() -> None:
    info = probe_bytes(webm(1000, with_duration=1234.0))
    assert info is not None and info.duration_ms == 1234


def test_webm_truncated_still_reads_what_is_there() -> None:
    data = webm(3000)
    info = probe_bytes(data[: len(data) // 2])
    assert info is not None and info.duration_ms is not None and 1000 < info.duration_ms < 2000


def test_ogg_opus_duration_from_granules() -> None:
    info = probe_bytes(ogg_opus(2000))
    assert info is not None and (info.mime, info.parser, info.duration_ms) == ("audio/ogg", "ogg", 2000)


def test_wav_duration() -> None:
    info = probe_bytes(wav(750))
    assert info is not None and (info.mime, info.duration_ms) == ("audio/wav", 750)


@pytest.mark.parametrize("stated", [0, 0xFFFFFFFF])
def test_a_streamed_wav_runs_to_the_end_of_its_file(stated: int) -> None:
    """A recorder that streams cannot seek back to write the data size: it leaves 0 (or the
    largest size), and the audio is what follows. A second of it was stored as 0 ms."""
    data = bytearray(wav(1000))
    struct.pack_into("<I", data, 40, stated)  # the data chunk's size, after the 16-byte fmt
    info = probe_bytes(bytes(data))
    assert info is not None and info.duration_ms == 1000


@pytest.mark.parametrize(
    ("head", "mime"),
    [
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "audio/mp4"),
        (b"ID3\x04\x00" + b"\x00" * 11, "audio/mpeg"),
        (b"\xff\xf1\x50\x80" + b"\x00" * 12, "audio/aac"),
    ],
)
def test_other_audio_is_recognised_without_duration(head: bytes, mime: str) -> None:
    info = probe_bytes(head)
    assert info is not None and (info.mime, info.duration_ms, info.parser) == (mime, None, None)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html><script>alert(1)</script>",
        b"\x1a\x45\xdf\xa3\xff",
        b"OggS" + b"\x00" * 40,
        b"\x7fELF" + b"\x00" * 60,
    ],
)
def test_not_audio_or_broken_is_refused_or_durationless(data: bytes) -> None:
    info = probe_bytes(data)
    assert info is None or info.duration_ms is None
