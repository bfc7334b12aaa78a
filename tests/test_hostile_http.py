"""Hostile HTTP clients over raw TCP: split bodies, deep nesting."""

from __future__ import annotations

import asyncio
import json

import pytest

from handlers import http_common

from tests.helpers import ServerUnderTest
from tests.raw_wire import http_exchange, port_of


def post_head(path: str, token: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()


async def test_a_body_split_over_two_segments_is_read_whole(server: ServerUnderTest) -> None:
    body = json.dumps({"session_name": "split in two"}).encode()
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
        try:
            writer.write(post_head("/voicebot/create_session", server.token("alice"), len(body)) + body[:9])
            await writer.drain()
            await asyncio.sleep(0.15)  # the rest arrives later, in a second segment
            writer.write(body[9:])
            raw = await asyncio.wait_for(reader.read(-1), 5)
        finally:
            writer.close()
        head, _, answer = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 201"), raw[:300]
        assert json.loads(answer)["session_name"] == "split in two"


async def test_a_body_over_the_cap_is_still_refused(server: ServerUnderTest) -> None:
    body = json.dumps({"session_name": "x" * 20_000}).encode()
    status, answer = await http_exchange(
        port_of(server.url), post_head("/voicebot/create_session", server.token("alice"), len(body)) + body
    )
    assert status == 413 and json.loads(answer)["error"] == "payload_too_large"


async def test_deeply_nested_json_is_400_not_500(server: ServerUnderTest) -> None:
    body = b"[" * 5000 + b"]" * 5000
    status, answer = await http_exchange(
        port_of(server.url), post_head("/voicebot/create_session", server.token("alice"), len(body)) + body
    )
    assert status == 400 and json.loads(answer)["error"] == "invalid_payload", answer


async def test_a_trickled_body_is_refused_after_the_deadline(
    server: ServerUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_common, "BODY_READ_TIMEOUT_S", 0.3, raising=False)
    body = json.dumps({"session_name": "never finished"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    try:
        writer.write(post_head("/voicebot/create_session", server.token("alice"), len(body)) + body[:5])
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # the rest never comes
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        answer = await asyncio.wait_for(reader.readexactly(length), 5)
    finally:
        writer.close()
    assert head.startswith(b"HTTP/1.1 400") and json.loads(answer)["error"] == "invalid_payload", head
