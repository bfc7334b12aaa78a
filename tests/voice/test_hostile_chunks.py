"""Hostile chunk uploads (issue 20): lying containers, foreign sessions named before the body."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

import struct

from tests.audio_samples import ogg_opus, wav, webm
from tests.helpers import ServerUnderTest
from tests.raw_wire import port_of
from tests.voice.test_chunks import blob_files
from tests.voice.uploads import chunk_form, upload


def ogg_stating(granule: int) -> bytes:
    """An Ogg/Opus stream of 500 ms whose last page states ``granule`` as its position."""
    data = bytearray(ogg_opus(500))
    last = data.rfind(b"OggS")
    struct.pack_into("<q", data, last + 6, granule)  # the granule position, after magic, version and type
    return bytes(data)


def wav_stating(byte_rate: int) -> bytes:
    """A second of WAV whose header states ``byte_rate`` bytes a second."""
    data = bytearray(wav(1000))
    struct.pack_into("<I", data, 28, byte_rate)  # fmt: format, channels, sample rate, then the byte rate
    return bytes(data)


@pytest.mark.parametrize(
    "audio",
    [
        # A container lying about its length: a 160-byte Ogg stated 3 million years, a WAV of a byte
        # a second 4.4 hours a second of silence; 96 of them overflowed the session's audio total,
        # and every upload after was a 500 (audit "botflow").
        ogg_stating(2**62),
        ogg_stating(48_000 * 90_000_000 // 1000),  # 25 hours of 48 kHz
        wav_stating(1),
        webm(500, with_duration=float("inf")),
        webm(500, with_duration=1e300),
        webm(500, with_duration=float("nan")),
        webm(500, timecode_scale_ns=2**63),
        webm(500, with_duration=5e9),  # 5e9 ticks of 1 ms: 58 days
        # A WAV of no audio, a bare header, was stored with the uploader's duration.
        b"RIFF\x04\x00\x00\x00WAVE",
    ],
    ids=[
        "ogg-2^62",
        "ogg-25-hours",
        "wav-1-byte-a-second",
        "inf",
        "1e300",
        "nan",
        "scale-2^63",
        "58-days",
        "wav-header-only",
    ],
)
async def test_a_container_with_an_impossible_duration_is_a_clear_400(server: ServerUnderTest, audio: bytes) -> None:
    session_id = await server.create_session("alice")
    status, body = await upload(server, server.token("alice"), chunk_form(session_id, audio))
    assert (status, body["error"]) == (400, "invalid_payload"), body
    assert "duration" in body["message"].lower(), body
    record = await server.services.voice.get(session_id)
    assert record is not None and blob_files(server) == []


async def test_a_foreign_session_in_the_query_is_refused_before_the_body(server: ServerUnderTest) -> None:
    foreign = await server.create_session("bob")
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    head = (
        f"POST /voicebot/chunks?session_id={foreign} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.token('alice')}\r\n"
        f"Content-Type: multipart/form-data; boundary=xyz\r\nContent-Length: {5 * 1024 * 1024}\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    try:
        # Not one byte of the body is sent: only a server deciding from the head answers now.
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    assert status_line.startswith(b"HTTP/1.1 403"), status_line


async def test_the_query_session_must_match_the_form(server: ServerUnderTest) -> None:
    mine = await server.create_session("alice")
    other = await server.create_session("alice")
    token = server.token("alice")
    status, body = await upload(server, token, chunk_form(other, webm(500)), params={"session_id": mine})
    assert (status, body["error"]) == (400, "invalid_payload"), body
    status, body = await upload(server, token, chunk_form(mine, webm(500)), params={"session_id": mine})
    assert status == 201, body


async def test_an_empty_upload_is_said_empty_not_over_quota(server: ServerUnderTest) -> None:
    """A POST with no body was refused `403 quota_exceeded`, "the daily upload quota is used up",
    to a user who had uploaded nothing (audit "anonhostile")."""
    headers = {"Authorization": f"Bearer {server.token('alice')}", "Content-Type": "multipart/form-data; boundary=x"}
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/voicebot/chunks", headers=headers) as r:
        body = await r.json()
        assert (r.status, body["error"]) == (400, "invalid_payload"), body
        assert "empty" in body["message"], body
