"""Connections cut mid-write by a real ``CLIENT KILL`` (issue 20, finding 5): what is answered
"failed" is not applied, and what is applied is answered — so a client's retry never doubles it.

A killer cuts every normal connection of the server every few milliseconds while a client
creates streams, remixes a pattern and sends materials; afterwards the stored state must agree
with the answers. Bounded in count and time.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis
from redis.exceptions import ConnectionError

from tests.helpers import RedisProcess, ServerUnderTest


class Killer:
    """Cuts every normal connection but its own, every few milliseconds, between start and stop."""

    def __init__(self, url: str) -> None:
        self.raw = Redis.from_url(url)
        self.pause_s = (0.040, 0.120)  # between kills: long enough for a step run again to pass
        self.kills = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        rng = random.Random(20)
        while not self._stop.is_set():
            await asyncio.sleep(rng.uniform(*self.pause_s))
            self.kills += await self.raw.client_kill_filter(_type="normal", skipme=True)

    async def stop(self) -> int:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.kills


@pytest_asyncio.fixture
async def killer(redis_process: RedisProcess) -> AsyncIterator[Killer]:
    kill = Killer(redis_process.url)
    yield kill
    await kill.stop()
    await kill.raw.aclose()


async def _settle(server: ServerUnderTest) -> None:
    """Let the pool replace the connections killed last (each fails once)."""
    for _ in range(100):
        try:
            await server.services.redis.ping()
            return
        except ConnectionError:
            continue


async def _post(http: aiohttp.ClientSession, url: str, body: Any, token: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with asyncio.timeout(10), http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_streams_created_under_kills_always_have_their_audience(server: ServerUnderTest, killer: Killer) -> None:
    token = server.token("alice")
    answered: list[tuple[int, Any]] = []
    killer.start()
    async with aiohttp.ClientSession() as http:

        async def creator(first: int) -> None:
            for n in range(first, first + 50):
                answered.append(await _post(http, f"{server.url}/api/streams", {"title": f"s{n}"}, token))

        await asyncio.gather(*(creator(50 * k) for k in range(4)))
    assert await killer.stop() > 0
    assert {status for status, _ in answered} <= {201, 503}, answered
    await _settle(server)
    redis = server.services.redis
    keys = server.services.keys
    created = [str(s) for s in await redis.zrange(keys.user_streams("alice"), 0, -1)]
    for stream_id in created:
        audience_id = await redis.hget(keys.session(stream_id), "audience_id")  # type: ignore[misc]
        if audience_id is not None:  # the stream exists: so does its audience
            mine = [
                a
                for a in answered
                if a[0] == 201 and a[1]["session"].get("session_id", a[1]["session"].get("id")) == stream_id
            ]
            assert await redis.exists(keys.session(audience_id)), (
                stream_id,
                mine,
                [a for a in answered if a[0] != 201],
            )
    for status, body in answered:
        if status == 201:
            assert await redis.exists(keys.session(body["session"]["audience_id"]))


async def test_a_remix_answered_failed_is_not_counted(server: ServerUnderTest, killer: Killer) -> None:
    async with aiohttp.ClientSession() as http:
        status, parent = await _post(http, f"{server.url}/api/sessions", {})
        assert status == 201
        killer.pause_s = (0.015, 0.050)
        killer.start()
        answered = [await _post(http, f"{server.url}/api/sessions/{parent['id']}/remix", None) for _ in range(50)]
        assert await killer.stop() > 0
        async with http.get(f"{server.url}/api/sessions/{parent['id']}") as response:
            count = (await response.json())["remixCount"]
    assert {status for status, _ in answered} <= {201, 429, 503}, answered  # 429: creations per address
    assert count == sum(status == 201 for status, _ in answered)


async def test_a_material_answered_failed_is_not_stored(server: ServerUnderTest, killer: Killer) -> None:
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    token = server.token("alice")
    killer.pause_s = (0.005, 0.030)
    killer.start()
    async with aiohttp.ClientSession() as http:
        answered = [
            await _post(http, f"{server.url}/voicebot/materials", {"kind": "text", "text": f"m{n}"}, token)
            for n in range(80)
        ]
    assert await killer.stop() > 0
    # 429: materials per user a minute (SESSIONHUB_VOICE_MATERIALS_PER_MIN); refused, nothing stored.
    assert {status for status, _ in answered} <= {201, 429, 503}, answered
    await _settle(server)
    sessions = [str(s) for s in await server.services.redis.zrange(server.services.keys.user_sessions("alice"), 0, -1)]
    stored = [m for s in sessions for m in await server.services.voice.materials(s, limit=1000)]
    assert len(stored) == sum(status == 201 for status, _ in answered)
    assert len({m["material_id"] for m in stored}) == len(stored)
