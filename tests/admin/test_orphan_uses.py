"""Every use of a session is an access (seed 001, issue 21), and the bulk orphan deletion
re-checks each candidate in the step that deletes it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio

from tests.admin.test_http import DAY_MS, LONG_TTL_S, admin_token, call
from tests.helpers import Client, ServerUnderTest


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


def _bearer(server: ServerUnderTest, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, ttl_s=LONG_TTL_S)}"}


async def _delete_orphans(http: aiohttp.ClientSession, token: str) -> dict[str, Any]:
    status, dry = await call(http, "POST", "/admin/orphans/delete", token, {"older_than_days": 90, "dry_run": True})
    assert status == 200, dry
    headers = {"Authorization": f"Bearer {token}"}
    body = {"older_than_days": 90, "confirm_count": dry["count"]}
    async with http.post("/admin/orphans/delete", headers=headers, json=body) as response:
        assert response.status == 200, await response.text()
        lines = [json.loads(line) for line in (await response.text()).splitlines()]
    return {"count": dry["count"], **lines[-1]}


async def _pattern(http: aiohttp.ClientSession) -> str:
    async with http.post("/api/sessions", json={"name": "Beat"}) as response:
        assert response.status == 201, await response.text()
        return str((await response.json())["id"])


async def test_api_and_event_uses_count_as_accesses(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    token = admin_token(server)
    loaded, saved, edited = await _pattern(http), await _pattern(http), await _pattern(http)
    stream, _ = await _stream_and_audience(http, server)
    async with http.get("/api/listening", headers=_bearer(server)) as response:
        history = str((await response.json())["session_id"])
    voice = await server.create_session("alice")
    untouched = await _pattern(http)
    server.services.clock.shift_ms = 100 * DAY_MS  # everything is an orphan now, then used
    try:
        async with http.get(f"/api/sessions/{loaded}") as response:
            assert response.status == 200
        async with http.get(f"/api/sessions/{saved}") as response:
            state = (await response.json())["state"]
        async with http.put(f"/api/sessions/{saved}", json={"state": state}) as response:
            assert response.status == 200, await response.text()
        player = Client(server.url, server.token("bob", ttl_s=LONG_TTL_S))
        clients.append(player)
        await player.connect()
        ack = await player.call(
            "pattern_op", {"session_id": edited, "seq": 1, "op": {"type": "set_tempo", "tempo": 99}}
        )
        assert ack["ok"] is True, ack
        async with http.post(f"/api/streams/{stream}/state", json={"action": "start"}, headers=_bearer(server)) as r:
            assert r.status == 200, await r.text()
        report = {"item_id": "book-1", "status": "playing"}
        async with http.post("/api/listening/report", json=report, headers=_bearer(server)) as response:
            assert response.status == 200, await response.text()
        owner = Client(server.url, server.token("alice", ttl_s=LONG_TTL_S))
        clients.append(owner)
        await owner.connect()
        ack = await owner.call("set_session_status", {"session_id": voice, "status": "recording"})
        assert ack["ok"] is True, ack
        outcome = await _delete_orphans(http, token)
        # The stream's audience session is nobody's to use directly; the untouched pattern goes.
        assert await server.services.sessions.meta(untouched) is None
        for used in (loaded, saved, edited, stream, history, voice):
            assert await server.services.sessions.meta(used) is not None, used
        assert outcome["deleted"] == outcome["count"]
    finally:
        server.services.clock.shift_ms = 0


async def test_the_deletion_rechecks_a_candidate_used_after_the_count(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = admin_token(server)
    pattern = await _pattern(http)
    voice = await server.create_session("alice")
    server.services.clock.shift_ms = 100 * DAY_MS
    try:
        async with http.get(f"/api/sessions/{pattern}") as response:
            assert response.status == 200
        await server.services.sessions.settle()
        # The admin index (another slot) lags the use, as when the count ran a moment before it:
        # the deletion's own step must see the session's access and keep it.
        keys, redis = server.services.keys, server.services.redis
        await redis.zadd(keys.admin_accessed("*"), {pattern: 1})
        outcome = await _delete_orphans(http, token)
        assert outcome["count"] >= 2 and await server.services.sessions.meta(voice) is None
        assert await server.services.sessions.meta(pattern) is not None
        assert outcome["deleted"] == outcome["count"] - 1
    finally:
        server.services.clock.shift_ms = 0


async def _stream_and_audience(http: aiohttp.ClientSession, server: ServerUnderTest) -> tuple[str, str]:
    async with http.post("/api/streams", json={"title": "Live"}, headers=_bearer(server)) as response:
        assert response.status == 201, await response.text()
        session = (await response.json())["session"]
    return str(session["session_id"]), str(session["audience_id"])


async def test_a_stream_and_its_audience_are_used_together(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    """A stream's audience (what viewer pages follow) was used on its own: the audience of a stream
    its owner kept using became an orphan, and deleting orphans took it away, every viewer then
    told "Stream deleted"; a stream its viewers kept watching was an orphan too (audit
    "operator"). Each is used when the other is."""
    token = admin_token(server)
    owned, owned_audience = await _stream_and_audience(http, server)
    watched, watched_audience = await _stream_and_audience(http, server)
    server.services.clock.shift_ms = 100 * DAY_MS
    try:
        async with http.get(f"/api/streams/{owned}", headers=_bearer(server)) as response:
            assert response.status == 200  # its owner looks at it
        viewer = Client(server.url, server.token("bob", ttl_s=LONG_TTL_S))
        clients.append(viewer)
        await viewer.connect()
        ack = await viewer.call("subscribe_on_session", {"session_id": watched_audience})
        assert ack["ok"] is True, ack  # a viewer's page follows the other
        await server.services.sessions.settle()
        outcome = await _delete_orphans(http, token)
        for kept in (owned, owned_audience, watched, watched_audience):
            assert await server.services.sessions.meta(kept) is not None, kept
        assert outcome["deleted"] == outcome["count"]
    finally:
        server.services.clock.shift_ms = 0


async def test_an_abandoned_stream_goes_with_its_audience_as_counted(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    """An abandoned stream and its audience are two orphans; the audience goes with the stream.
    Counted apart, the deletion said 5 of 6 deleted for three streams, all six gone (audit
    "operator"): an operator reads that as one kept, used meanwhile."""
    token = admin_token(server)
    made = [await _stream_and_audience(http, server) for _ in range(3)]
    server.services.clock.shift_ms = 100 * DAY_MS
    try:
        outcome = await _delete_orphans(http, token)
        for stream, audience in made:
            assert await server.services.sessions.meta(stream) is None
            assert await server.services.sessions.meta(audience) is None
        assert outcome["count"] >= 6 and outcome["deleted"] == outcome["count"] == outcome["total"], outcome
    finally:
        server.services.clock.shift_ms = 0
