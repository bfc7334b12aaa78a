"""A HEAD changes nothing: every GET route of the app, asked with HEAD, leaves Redis as it was.

Each GET route answers HEAD with its GET's status and headers and no body, or, where its GET
itself changes something (creates, marks accessed, keeps a device) or streams its body, refuses
it with ``405`` and an ``Allow`` that names GET without HEAD (handlers/head_requests.py). The
routes come from the app's own router, so a route added later is asked too: the world below
must know how to make its GET succeed (a path parameter it cannot fill fails the test rather
than skipping it).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from multidict import CIMultiDict
from redis.asyncio import Redis

from auth.claims import Permission
from handlers.head_requests import NO_HEAD
from server.app import build_app
from server.identity import token_service
from server.services import build_services, connect_redis
from storage.sessions import TOUCH_INTERVAL_MS
from tests import helpers
from tests.audio_samples import webm
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.raw_wire import port_of
from tests.voice.uploads import chunk_form

# The answer headers that differ between any two answers, whatever the method (lower-cased).
PER_ANSWER = {"date", "x-request-id", "content-length", "transfer-encoding", "set-cookie"}
# The routes whose HEAD their own code refuses (Engine.IO's: a poll is a GET or a POST).
REFUSED_BY_THE_ROUTE = {"/socket.io/"}
EXCHANGE_BOUND_S = 10.0


def _get_routes() -> list[str]:
    """Every GET route's path template, from the router of an app built as the server builds it."""
    settings = helpers.test_settings("redis://127.0.0.1:9/0", Path(tempfile.mkdtemp()))
    services = build_services(settings, redis=connect_redis(str(settings.redis_url)), tokens=token_service(settings))
    app = build_app(settings, services=services)
    return sorted({r.resource.canonical for r in app.router.routes() if r.method == "GET" and r.resource is not None})


GET_ROUTES = _get_routes()
# The query a route's GET needs to succeed.
QUERIES = {
    "/socket.io/": "?EIO=4&transport=polling",
    "/api/streams/{session_id}/review/clips": "?segment=1",
}


@dataclass
class World:
    """One of each thing a GET route names, owned by alice (an admin, so every route lets her in)."""

    voice: str
    chunk: str
    audio_url: str
    pattern: str
    stream: str
    admin_token: str
    guest_token: str

    def request(self, template: str) -> tuple[str, dict[str, str]]:
        """The path and headers of a GET of ``template`` that succeeds."""
        token = self.guest_token if template.startswith("/api/auth/") else self.admin_token
        headers = {"Authorization": f"Bearer {token}"}
        if template == "/voicebot/audio/{session_id}/{chunk_id}":
            return self.audio_url, headers
        if template == "/static":
            return "/static/css/app.css", headers
        kinds = {"/voicebot/": self.voice, "/api/sessions/": self.pattern, "/api/streams/": self.stream}
        session = next((sid for prefix, sid in kinds.items() if template.startswith(prefix)), self.voice)
        path = template.replace("{session_id}", session)
        assert "{" not in path, f"{template}: teach this test a value for its path parameter"
        return path + QUERIES.get(template, ""), headers


async def _made(response: aiohttp.ClientResponse) -> Any:
    assert response.status in (200, 201), await response.text()
    return await response.json()


async def _world(server: ServerUnderTest, http: aiohttp.ClientSession) -> World:
    admin = server.token("alice", perms=(Permission.ADMIN,))
    bearer = {"Authorization": f"Bearer {admin}"}
    voice = await server.create_session("alice")
    async with http.post("/voicebot/chunks", data=chunk_form(voice, webm(1000)), headers=bearer) as response:
        chunk = (await _made(response))["chunk"]
    # The listing signs the player's links (its first use makes the signing key: before the look).
    async with http.get(f"/voicebot/sessions/{voice}/chunks", headers=bearer) as response:
        audio_url = (await _made(response))["chunks"][0]["audio_url"]
    async with http.post("/api/sessions", json={"name": "Beat"}) as response:
        pattern = (await _made(response))["id"]
    async with http.post("/api/streams", json={"title": "Live"}, headers=bearer) as response:
        stream = (await _made(response))["session"]["session_id"]
    async with http.post(f"/api/streams/{stream}/state", json={"action": "start"}, headers=bearer) as response:
        await _made(response)  # its first segment, which the review pages name
    async with http.post("/api/auth/guest", json={}) as response:
        guest = (await _made(response))["token"]
    return World(voice, chunk["chunk_id"], audio_url, pattern, stream, admin, guest)


async def _contents(redis: Redis, server: ServerUnderTest) -> dict[bytes, bytes | None]:
    """Every key with its serialized value, once the server's background records of uses are done."""
    await server.services.sessions.settle()
    return {key: await redis.dump(key) async for key in redis.scan_iter(count=1000)}


async def _raw_head(url: str, path: str, headers: Mapping[str, str]) -> tuple[int, CIMultiDict[str], bytes]:
    """A HEAD over a connection of its own, read to its close: the status, the headers and
    whatever came after them (a HEAD's answer has no body: anything there is a body sent anyway)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port_of(url))
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{lines}Connection: close\r\n\r\n".encode())
    try:
        async with asyncio.timeout(EXCHANGE_BOUND_S):
            head = await reader.readuntil(b"\r\n\r\n")
            after = await reader.read()
    finally:
        writer.close()
    status_line, *header_lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
    parsed: CIMultiDict[str] = CIMultiDict()
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed.add(name.strip(), value.strip())
    return int(status_line.split(" ")[1]), parsed, after


def _lasting(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower() not in PER_ANSWER and k.lower() != "connection"}


@pytest_asyncio.fixture
async def server(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    # No heartbeat of the node's own during the test (its first is written at the start): the
    # comparison sees the HEAD's writes only.
    srv = await start_server(redis_process.url, tmp_path, admin_node_heartbeat_s=300)
    yield srv
    await srv.stop()


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


@pytest.mark.parametrize("template", GET_ROUTES)
async def test_a_head_changes_nothing(
    server: ServerUnderTest, redis: Redis, http: aiohttp.ClientSession, template: str
) -> None:
    world = await _world(server, http)
    # Past the node's throttle of uses: a use the HEAD made would be recorded, not skipped as
    # one the world's setup just made.
    server.services.clock.shift_ms += TOUCH_INTERVAL_MS
    path, headers = world.request(template)
    before = await _contents(redis, server)
    # With the Accept-Encoding aiohttp's client sends with the GET below: the same coding compared.
    status, head_headers, after_head = await _raw_head(
        server.url, path, {**headers, "Accept-Encoding": "gzip, deflate"}
    )
    after = await _contents(redis, server)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], f"HEAD {template} changed {changed}"
    assert after_head == b"", f"HEAD {template} was sent a body"
    async with http.get(path, headers=headers) as get:
        assert get.status < 400, f"GET {template}: {get.status} {await get.text()}"
        if template in REFUSED_BY_THE_ROUTE:
            assert status >= 400, template
        elif template in NO_HEAD:
            assert status == 405, template
            allowed = [m.strip() for m in head_headers["Allow"].split(",")]
            assert "GET" in allowed and "HEAD" not in allowed, allowed
        else:
            assert status == get.status, template
            assert _lasting(head_headers) == _lasting(get.headers), template


async def test_every_listed_route_is_a_get_route() -> None:
    """A route renamed or gone leaves no stale entry behind in the list."""
    assert set(NO_HEAD) <= set(GET_ROUTES)


async def test_a_refused_heads_route_does_not_offer_head(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    """The ``Allow`` of another method's 405 on such a route does not name HEAD either; on the
    other routes it does (they take it)."""
    async with http.post("/api/listening") as refused:
        assert refused.status == 405
        assert refused.headers["Allow"] == "GET"
        assert (await refused.json())["allowed"] == ["GET"]
    async with http.post("/api/listening/sessions") as refused:
        assert refused.status == 405
        assert refused.headers["Allow"] == "GET, HEAD"
