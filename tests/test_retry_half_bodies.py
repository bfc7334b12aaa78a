"""Half-sent bodies on every write route: nothing is applied, and the connection is let go soon.

A client on an unlucky network sends a write's head and part of its body, then its connection
ends (a Content-Length larger than what came, or a chunked body cut midway, then EOF). Whatever
the route, the server must store nothing of it (the client will retry the whole request, and a
half-applied first try would make that retry a second change), answer or close at once, and
hold nothing of it afterwards. The routes: every POST, PUT and PATCH that reads a JSON body.
Real server, real redis-server, raw TCP.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from handlers import http_common

from tests.helpers import ServerUnderTest
from tests.raw_wire import port_of
from tests.streams.helpers import create_stream, http

# How soon the server must let a cut request's connection go (it answers or closes at once; the
# bound is generous for a loaded machine, never a wait).
LET_GO_BOUND_S = 3.0
# Keys a refused request may write by design: rate-limit windows and per-address counters
# (counted before the body is read), request metrics, and a viewer's clip cooldown (it expires while
# a test waits). Nothing of a session, user or history.
COUNTERS = (":rate:", ":rl:", ":metrics", ":creates:", ":day:", ":budget", ":clip_cooldown:")


async def fingerprint(redis: Redis) -> dict[str, str]:
    """Every key but counters, with a digest of its value (DUMP is the same for the same value)."""
    found: dict[str, str] = {}
    async for raw in redis.scan_iter(count=1000):
        key = raw if isinstance(raw, str) else raw.decode()
        if any(mark in key for mark in COUNTERS):
            continue
        dumped = await redis.dump(key)
        if dumped is not None:
            found[key] = hashlib.sha256(dumped if isinstance(dumped, bytes) else dumped.encode()).hexdigest()
    return found


def _bodies(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, a whole valid body) of every write route that reads a JSON body.

    Not here: the routes that take no body (remix, publish, the DELETEs, logout, link): their
    request is whole at its head and a body sent along is ignored unread (PROTOCOL, Errors), so
    a cut one is a whole request; their retry is the Idempotency-Key's or natural. Multipart
    uploads (chunks, materials) are tests/test_hostile_http.py's."""
    stream, pattern, voice = ids["stream"], ids["pattern"], ids["voice"]
    state = {"tracks": [], "tempo": 99, "swing": 0, "version": 1}
    now = int(time.time() * 1000)
    upload = {"item_id": "b", "device_id": "d", "client_id": "c1", "started_at": now - 9000, "ended_at": now - 2000}
    return [
        ("POST", "/voicebot/create_session", {"session_name": "cut"}),
        ("POST", "/voicebot/activate_session", {"session_id": voice}),
        ("POST", "/api/streams", {"title": "cut short"}),
        ("POST", f"/api/streams/{stream}/state", {"action": "pause"}),
        ("POST", f"/api/streams/{stream}/clips", {"note": "half", "submission_id": "half-sent-0001"}),
        ("POST", f"/api/streams/{stream}/blocked", {"user_id": "bob"}),
        ("POST", "/api/listening/report", {"item_id": "book", "status": "playing", "position_s": 1}),
        ("PATCH", f"/api/streams/{stream}/clips/{ids['clip']}", {"clipped": True, "note": "marked"}),
        ("POST", "/api/listening/upload", upload),
        ("POST", "/api/listening/clear", {"confirm": True, "request_id": "half-clear-0001"}),
        ("POST", "/api/sessions", {"name": "half a pattern"}),
        ("PUT", f"/api/sessions/{pattern}", {"state": state}),
        ("PATCH", f"/api/sessions/{pattern}", {"name": "renamed by half"}),
        ("PATCH", "/api/auth/me", {"name": "Half"}),
    ]


async def _world(server: ServerUnderTest) -> dict[str, str]:
    stream = await create_stream(server)
    assert (await http(server, "POST", f"/api/streams/{stream}/state", json={"action": "start"}))[0] == 200
    status, made = await http(server, "POST", "/api/sessions", user=None, json={"name": "p"})
    assert status == 201, made
    # A history with a session in it, so that a cut clear would show.
    assert (await http(server, "POST", "/api/listening/report", json={"item_id": "x", "status": "playing"}))[0] == 200
    status, clip = await http(server, "POST", f"/api/streams/{stream}/clips", user="bob", json={})
    assert status == 201, clip
    return {
        "stream": stream,
        "clip": clip["clip"]["clip_id"],
        "pattern": made["id"],
        "voice": await server.create_session("alice"),
    }


async def _cut(
    server: ServerUnderTest, method: str, path: str, body: bytes, *, chunked: bool, silent: bool = False
) -> float:
    """Send the head and the first half of ``body``, then end the connection's sending side (or,
    ``silent``, send nothing more and keep it open); return how long the server took to answer
    or close it."""
    return (await _cut_answered(server, method, path, body, chunked=chunked, silent=silent))[0]


async def _cut_answered(
    server: ServerUnderTest, method: str, path: str, body: bytes, *, chunked: bool, silent: bool = False
) -> tuple[float, bytes]:
    """:func:`_cut`'s time, and every byte the server sent before it closed."""
    token = server.token("alice")
    half = body[: len(body) // 2]
    if chunked:
        framing = "Transfer-Encoding: chunked"
        # One whole chunk of the first half, then a chunk announced at full size cut midway.
        sent = f"{len(half):x}\r\n".encode() + half + b"\r\n" + f"{len(body):x}\r\n".encode() + body[:3]
    else:
        framing = f"Content-Length: {len(body) + 100}"
        sent = half
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nX-Sessionhub-Client: retry-test\r\n{framing}\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(server.url))
    try:
        writer.write(head + sent)
        await writer.drain()
        if not silent:
            writer.write_eof()
        began = time.monotonic()
        answer = await asyncio.wait_for(reader.read(-1), LET_GO_BOUND_S * 3)
        return time.monotonic() - began, answer
    finally:
        writer.close()


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
async def test_a_write_whose_body_is_cut_midway_applies_nothing_and_is_let_go(
    server: ServerUnderTest, redis: Redis, chunked: bool
) -> None:
    ids = await _world(server)
    before = await fingerprint(redis)
    slow: list[tuple[str, float]] = []
    for method, path, body in _bodies(ids):
        took = await _cut(server, method, path, json.dumps(body).encode(), chunked=chunked)
        if took > LET_GO_BOUND_S:
            slow.append((f"{method} {path}", took))
        after = await fingerprint(redis)
        changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
        assert changed == [], (method, path, changed)
    assert slow == [], slow
    # The same requests sent whole do change things (the probe would prove nothing otherwise).
    status, _ = await http(server, "PATCH", "/api/auth/me", json={"name": "Whole"})
    assert status == 200
    assert await fingerprint(redis) != before


async def test_nothing_of_a_cut_request_is_held_after_it(server: ServerUnderTest, redis: Redis) -> None:
    """A hundred cut writes leave the server with no open request and no connection of theirs."""
    ids = await _world(server)
    routes = _bodies(ids)
    await asyncio.gather(
        *(
            _cut(server, method, path, json.dumps(body).encode(), chunked=n % 2 == 1)
            for n, (method, path, body) in enumerate(routes * 8)
        )
    )
    # Every connection the server had for them is closed on its side too: a whole request on a
    # fresh connection is answered at once.
    began = time.monotonic()
    status, _ = await http(server, "PATCH", "/api/auth/me", json={"name": "After"})
    assert status == 200 and time.monotonic() - began < LET_GO_BOUND_S


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
async def test_a_write_whose_client_goes_silent_midway_is_refused_at_the_read_deadline(
    server: ServerUnderTest, redis: Redis, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    """The client sends half its body and then nothing, its connection open (a link gone quiet):
    every route answers at the body's read deadline (here 0.3 s) and applies nothing.

    What each route answered is the proof that the deadline let it go (the answer names it), not
    how long it took: a CI machine that stalled this process for 3 s made every answer late by that
    much (a stalled process delays the deadline's timer too). Without the deadline, no answer
    comes at all, and the client's own wait ends the test."""
    monkeypatch.setattr(http_common, "BODY_READ_TIMEOUT_S", 0.3)
    ids = await _world(server)
    before = await fingerprint(redis)
    routes = _bodies(ids)
    answers = await asyncio.gather(
        *(_cut_answered(server, m, p, json.dumps(b).encode(), chunked=chunked, silent=True) for m, p, b in routes)
    )
    # The read deadline's refusal in each API's words (the pattern API's, Keyboardia's shape).
    deadline_said = (b"the body did not arrive within 0.3 s", b"Request body did not arrive in time")
    unlike = [
        (f"{m} {p}", a[-120:])
        for (m, p, _), (_, a) in zip(routes, answers, strict=True)
        if not any(said in a for said in deadline_said)
    ]
    assert unlike == [], unlike
    assert all(a.startswith(b"HTTP/1.1 400 ") for _, a in answers), answers
    assert await fingerprint(redis) == before
