"""An Idempotency-Key create whose connection is cut right after the request went out (the
client never reads the answer): its resend with the same key is that create, never a second one.

The client sent the whole request and its connection ended (closed, or reset) before the answer
came; the server may be anywhere in the request then. Sent again with the same key (PROTOCOL,
Retries: the pages do so after 0.5 s and 1.5 s), it must be answered the first create's answer
(or 409 while that one still runs), and exactly one session exists per key. Real server, real
redis-server, raw TCP for the cut, aiohttp for the resend.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from typing import Any

import aiohttp
import pytest

from tests.helpers import ServerUnderTest
from tests.raw_wire import port_of

# How long a resend may keep meeting 409 while the first try runs: a bound, not a wait.
RUNNING_BOUND_S = 15.0


def _routes(server: ServerUnderTest, pattern_id: str) -> list[tuple[str, dict[str, Any], bool]]:
    """(path, body, takes a token) of every create that takes an Idempotency-Key and a JSON body."""
    return [
        ("/voicebot/create_session", {"session_name": "cut"}, True),
        ("/api/streams", {"title": "cut"}, True),
        ("/api/sessions", {"name": "cut"}, False),
        (f"/api/sessions/{pattern_id}/remix", {}, False),
        (f"/api/sessions/{pattern_id}/publish", {}, False),
    ]


async def _send_and_cut(
    server: ServerUnderTest, path: str, body: dict[str, Any], key: str, token: str | None, *, reset: bool
) -> None:
    raw = json.dumps(body).encode()
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
        f"Idempotency-Key: {key}\r\nContent-Length: {len(raw)}\r\n\r\n"
    ).encode()
    _, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    writer.write(head + raw)
    await writer.drain()
    if reset:  # an RST, as a dropped mobile link's end may be seen
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _resend(
    http: aiohttp.ClientSession, server: ServerUnderTest, path: str, body: dict[str, Any], key: str, token: str | None
) -> tuple[int, dict[str, Any], str | None]:
    headers = {"Idempotency-Key": key}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RUNNING_BOUND_S
    while True:
        async with http.post(server.url + path, json=body, headers=headers) as answer:
            parsed = await answer.json()
            if answer.status != 409 or loop.time() > deadline:
                return answer.status, parsed, answer.headers.get("Idempotent-Replayed")
        await asyncio.sleep(0.5)  # as the pages retry a 409 (PROTOCOL, Retries)


def _made_id(path: str, body: dict[str, Any]) -> str:
    if path == "/voicebot/create_session":
        return str(body["session_id"])
    if path == "/api/streams":
        return str(body["session"]["session_id"])
    return str(body["id"])


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
async def test_a_create_cut_off_after_sending_is_made_once_and_its_resend_is_answered_with_it(
    server: ServerUnderTest, reset: bool
) -> None:
    token = server.token("alice")
    async with aiohttp.ClientSession() as http:
        async with http.post(server.url + "/api/sessions", json={"name": "parent"}) as made:
            pattern_id = (await made.json())["id"]
        before = set(await server.services.redis.zrange(server.services.keys.all_sessions(), 0, -1))
        made_ids: list[str] = []
        replays: list[bool] = []
        for path, body, needs_token in _routes(server, pattern_id):
            key = f"cut-{uuid.uuid4()}"
            bearer = token if needs_token else None
            await _send_and_cut(server, path, body, key, bearer, reset=reset)
            status, answer, replayed = await _resend(http, server, path, body, key, bearer)
            # The first try ran to its end though nobody read its answer (the resend, 409 while it
            # ran, is its answer replayed), or the server never ran it (the resend runs): either
            # way one session for the key, counted below, and a further resend is that answer.
            assert status == 201 and replayed in ("true", None), (path, status, answer)
            replays.append(replayed == "true")
            made_ids.append(_made_id(path, answer))
            again = await _resend(http, server, path, body, key, bearer)
            assert again[0] == 201 and _made_id(path, again[1]) == made_ids[-1] and again[2] == "true", again
        after = set(await server.services.redis.zrange(server.services.keys.all_sessions(), 0, -1))
    # One session per key (a stream brings its audience session along).
    created = after - before
    streams = sum(1 for path, _, _ in _routes(server, pattern_id) if path == "/api/streams")
    assert len(created) == len(made_ids) + streams, (len(created), len(made_ids), streams)
    assert any(replays), "no first try ran: the cut came before any request was read"
