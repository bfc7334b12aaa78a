"""``Expect: 100-continue`` (curl sends it for bodies over 1 KB): a request the server refuses
from its headers (no token, too large, over the quota) gets its final answer at once and never
a ``100 Continue`` that would have the client send its body for nothing; a request that passes
gets ``100 Continue`` when its body is about to be read, then works (uploads, JSON, long-polls)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from handlers.http_common import deferred_continue
from tests.audio_samples import webm
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.raw_wire import RawPoller, port_of

BOUNDARY = "sessionhub-test-boundary"


def _multipart(session_id: str, audio: bytes) -> bytes:
    """The FAB's chunk form (tests/voice/uploads.chunk_form), written out."""
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in (
            ("session_id", session_id),
            ("start_ms", "1000"),
            ("end_ms", "2000"),
            ("duration_ms", "1000"),
        )
    ]
    file_head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="chunk.webm"\r\n'
        "Content-Type: audio/webm\r\n\r\n"
    )
    return b"".join(parts) + file_head.encode() + audio + f"\r\n--{BOUNDARY}--\r\n".encode()


async def _head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ", 2)[1]), headers


async def _expecting(port: int, method_target: str, headers: dict[str, str], body: bytes) -> tuple[list[int], Any]:
    """Send a request's head with ``Expect: 100-continue`` and its body only once told to
    continue, as curl does; the statuses the server answered, in order, and the final body."""
    head = f"{method_target} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items()) + "\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    statuses: list[int] = []
    try:
        writer.write(head.encode())
        async with asyncio.timeout(20):
            status, answer = await _head(reader)
            statuses.append(status)
            if status == 100:
                writer.write(body)
                status, answer = await _head(reader)
                statuses.append(status)
            payload = await reader.readexactly(int(answer.get("content-length", "0")))
    finally:
        writer.close()
    text = payload.decode()
    return statuses, json.loads(text) if answer.get("content-type", "").startswith("application/json") else text


async def test_a_request_refused_from_its_headers_is_never_told_to_continue(server: ServerUnderTest) -> None:
    port = port_of(server.url)
    session_id = await server.create_session("alice")
    form = _multipart(session_id, webm(3000))
    multipart = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    statuses, body = await _expecting(port, "POST /voicebot/chunks", multipart, form)
    assert (statuses, body["error"]) == ([401], "unauthorized")
    bad = {**multipart, "Authorization": "Bearer not-a-token"}
    statuses, body = await _expecting(port, "POST /voicebot/chunks", bad, form)
    assert (statuses, body["error"]) == ([401], "unauthorized")
    statuses, body = await _expecting(
        port, "POST /voicebot/create_session", {"Content-Type": "application/json"}, b"{}" + b" " * 2000
    )
    assert (statuses, body["error"]) == ([401], "unauthorized")
    alice = {"Authorization": f"Bearer {server.token('alice')}", "Content-Type": "application/json"}
    statuses, body = await _expecting(port, "POST /voicebot/create_session", alice, b"{}" + b" " * 20000)
    assert (statuses, body["error"]) == ([413], "payload_too_large")
    # An unknown Engine.IO session: refused before its body.
    statuses, body = await _expecting(port, "POST /socket.io/?EIO=4&transport=polling&sid=nope", {}, b"x" * 2000)
    assert statuses == [400]


async def test_an_upload_over_the_quota_is_refused_before_its_body(
    redis_process: RedisProcess, redis: object, tmp_path: Path
) -> None:
    server = await start_server(redis_process.url, tmp_path, voice_upload_quota_bytes=2048)
    try:
        session_id = await server.create_session("alice")
        headers = {
            "Authorization": f"Bearer {server.token('alice')}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        }
        form = _multipart(session_id, webm(8000))
        statuses, body = await _expecting(port_of(server.url), "POST /voicebot/chunks", headers, form)
        assert (statuses, body["error"]) == ([403], "quota_exceeded")
    finally:
        await server.stop()


async def test_a_request_that_passes_its_checks_continues_and_works(server: ServerUnderTest) -> None:
    port = port_of(server.url)
    token = server.token("alice")
    session_id = await server.create_session("alice")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    statuses, body = await _expecting(port, "POST /voicebot/chunks", headers, _multipart(session_id, webm(3000)))
    assert statuses == [100, 201] and body["duplicate"] is False and body["chunk"]
    key = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    statuses, body = await _expecting(
        port, "POST /api/sessions", key, json.dumps({"name": "e", "description": "x" * 1500}).encode()
    )
    assert statuses == [100, 201] and body["url"] == f"/s/{body['id']}"
    alice = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    statuses, body = await _expecting(port, "POST /voicebot/create_session", alice, b'{"session_name": "e"}')
    assert statuses == [100, 201] and body["session_id"]
    async with aiohttp.ClientSession() as http:  # a long-polling client's POST
        poller = await RawPoller.open(http, server.url)
        target = "POST " + poller.url.removeprefix(server.url)
        packet = ("40" + json.dumps({"token": token})).encode()
        statuses, body = await _expecting(port, target, {"Content-Type": "text/plain;charset=UTF-8"}, packet)
        assert (statuses, body.lower()) == ([100, 200], "ok")
        assert any(p.startswith("40") for p in await poller.get())  # the connect went through


async def test_every_route_of_the_running_app_defers_its_continue(server: ServerUnderTest) -> None:
    """Routes added after the app was built (on its start) would send 100 Continue at once."""
    routes = list(server.app.router.routes())
    assert len(routes) > 50
    assert [str(r) for r in routes if r.handle_expect_header is not deferred_continue] == []
