"""The storage guard: near its memory budget Redis takes no new sessions or guests, while the
sessions already there go on being edited (handlers/storage_guard.py).

A private redis-server per test: memory is pushed past the high-water mark with a ballast key,
and the guard's cached figures are made stale by moving the server's clock past their refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from auth.claims import Permission
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest

pytestmark = pytest.mark.timeout(60)

BALLAST_BYTES = 32 << 20
REFRESH_MS = 1000
LONG_TTL_S = 86400  # tokens outlive the clock shifts of these tests


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis-guard")
    process.start()
    yield process
    process.stop()


@pytest_asyncio.fixture
async def admin(own_redis: RedisProcess) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url)
    yield client
    await client.config_set("maxmemory", 0)
    await client.aclose()


async def used_bytes(admin: Redis) -> int:
    return int((await admin.info("memory"))["used_memory"])


async def guarded_server(own_redis: RedisProcess, tmp_path: Path, admin: Redis, **overrides: Any) -> ServerUnderTest:
    """A server whose memory budget leaves room for everything but the ballast: the guard trips
    (at 90%) only while the ballast is stored."""
    budget = await used_bytes(admin) + BALLAST_BYTES
    settings: dict[str, Any] = {"admin_memory_budget_bytes": budget, "storage_guard_refresh_ms": REFRESH_MS}
    return await start_server(own_redis.url, tmp_path, **{**settings, **overrides})


async def ballast(admin: Redis) -> None:
    # Made inside Redis: a SET of that size would leave as much again in the connection's query
    # buffer, counted in used_memory until Redis shrinks it some time later.
    await admin.setrange("ballast", BALLAST_BYTES - 1, "x")


async def fill(admin: Redis, server: ServerUnderTest, *, refresh_ms: int = REFRESH_MS) -> None:
    """Store the ballast and let the guard's figures go stale, so the next request reads them."""
    await ballast(admin)
    server.services.clock.shift_ms += refresh_ms


async def drain(admin: Redis, server: ServerUnderTest, *, refresh_ms: int = REFRESH_MS) -> None:
    await admin.delete("ballast")
    server.services.clock.shift_ms += refresh_ms


async def call(
    server: ServerUnderTest, method: str, path: str, *, token: str | None = None, body: Any = None
) -> tuple[int, Any, Mapping[str, str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, json=body if body is not None else {}, headers=headers) as response,
    ):
        return response.status, await response.json(), response.headers


def token(server: ServerUnderTest, user: str = "alice") -> str:
    return server.token(user, ttl_s=LONG_TTL_S)


def refused(server: ServerUnderTest, what: str) -> float:
    value: float = server.services.metrics.storage_refusals.labels(what)._value.get()
    return value


async def test_creates_are_refused_near_the_budget_and_edits_go_on(
    own_redis: RedisProcess, admin: Redis, tmp_path: Path, clients: list[Client]
) -> None:
    server = await guarded_server(own_redis, tmp_path, admin)
    try:
        status, pattern, _ = await call(server, "POST", "/api/sessions")
        assert status == 201, pattern
        status, stream, _ = await call(server, "POST", "/api/streams", token=token(server), body={"title": "Raid"})
        assert status == 201, stream
        voice_id = await server.create_session("alice")
        voice = Client(server.url, token(server))
        clients.append(voice)
        await voice.connect()
        await fill(admin, server)
        keys_before = set(await admin.keys("*"))

        creates = [
            ("POST", "/api/streams", {"title": "Another"}, "stream_create"),
            ("POST", "/voicebot/create_session", {}, "voice_create"),
            ("POST", "/api/auth/guest", {}, "guest"),
        ]
        for method, path, body, what in creates:
            status, answer, headers = await call(server, method, path, token=token(server), body=body)
            assert status == 503, (path, answer)
            assert (answer["error"], answer["reason"], answer["retry_after_s"]) == ("unavailable", "storage_full", 60)
            assert headers["Retry-After"] == "60"
            assert refused(server, what) == 1
        pattern_routes = [
            ("/api/sessions", "pattern_create"),
            (f"/api/sessions/{pattern['id']}/remix", "pattern_remix"),
            (f"/api/sessions/{pattern['id']}/publish", "pattern_publish"),
        ]
        for path, what in pattern_routes:
            status, answer, headers = await call(server, "POST", path)
            assert status == 503, (path, answer)
            assert (answer["error"], answer["reason"], answer["retryAfter"]) == (
                "Service unavailable",
                "storage_full",
                60,
            )
            assert headers["Retry-After"] == "60"
            assert refused(server, what) == 1
        assert set(await admin.keys("*")) == keys_before  # nothing stored, nothing counted

        # What exists goes on: a pattern edit, a stream's state, a voice session's status.
        status, answer, _ = await call(server, "PATCH", f"/api/sessions/{pattern['id']}", body={"name": "kept"})
        assert (status, answer["name"]) == (200, "kept"), answer
        status, answer, _ = await call(
            server,
            "POST",
            f"/api/streams/{stream['session']['session_id']}/state",
            token=token(server),
            body={"action": "start"},
        )
        assert (status, answer["state"]) == (200, "active"), answer
        ack = await voice.call("set_session_status", {"session_id": voice_id, "status": "recording"})
        assert ack["ok"] is True, ack

        admin_token = server.token("root", perms=(Permission.ADMIN,), ttl_s=LONG_TTL_S)
        status, answer, _ = await call(server, "GET", "/admin/alerts", token=admin_token)
        (memory,) = [alert for alert in answer["alerts"] if alert["alert"] == "memory"]
        assert memory["storage_refusing"] is True and memory["severity"] == "critical", memory
        assert "refused" in memory["message"] and memory["storage_refused"] == 6

        await drain(admin, server)
        assert (await call(server, "POST", "/api/sessions"))[0] == 201
        assert (await call(server, "POST", "/api/auth/guest"))[0] == 201
        status, answer, _ = await call(server, "POST", "/voicebot/create_session", token=token(server))
        assert status == 201, answer
        status, answer, _ = await call(server, "GET", "/admin/alerts", token=admin_token)
        assert not [alert for alert in answer["alerts"] if alert.get("storage_refusing")], answer
    finally:
        await server.stop()


async def test_the_figures_are_read_once_per_refresh_and_once_at_a_time(
    own_redis: RedisProcess, admin: Redis, tmp_path: Path
) -> None:
    refresh_ms = 60_000  # the longest: only the clock's moves make the guard read again
    server = await guarded_server(own_redis, tmp_path, admin, storage_guard_refresh_ms=refresh_ms)
    try:
        guard = server.services.storage_guard
        await guard.admit("pattern_create")  # the first read: under the mark
        await ballast(admin)
        await guard.admit("pattern_create")  # the cached figures stand until the refresh is due
        server.services.clock.shift_ms += refresh_ms
        await admin.config_resetstat()
        outcomes = await asyncio.gather(*(guard.admit("pattern_create") for _ in range(20)), return_exceptions=True)
        assert all(getattr(outcome, "details", {}).get("reason") == "storage_full" for outcome in outcomes), outcomes
        stats = await admin.info("commandstats")
        assert stats["cmdstat_info"]["calls"] - 1 <= 1  # the guard's one read (plus, maybe, this INFO)
        assert (await guard.state()).refusing is True
        await drain(admin, server, refresh_ms=refresh_ms)
        await guard.admit("pattern_create")
        assert (await guard.state()).refusing is False
    finally:
        await server.stop()


async def test_redis_maxmemory_is_the_budget_when_none_is_set_and_zero_turns_the_guard_off(
    own_redis: RedisProcess, admin: Redis, tmp_path: Path
) -> None:
    server = await start_server(own_redis.url, tmp_path, storage_guard_refresh_ms=REFRESH_MS)
    try:
        status, pattern, _ = await call(server, "POST", "/api/sessions")
        assert status == 201, pattern
        await fill(admin, server)
        await admin.config_set("maxmemory-policy", "noeviction")
        await admin.config_set("maxmemory", int(await used_bytes(admin) / 0.95))  # over 90%, under 100%
        status, answer, _ = await call(server, "POST", "/api/sessions")
        assert (status, answer.get("reason")) == (503, "storage_full"), answer
        status, answer, _ = await call(server, "PATCH", f"/api/sessions/{pattern['id']}", body={"name": "kept"})
        assert status == 200, answer  # below maxmemory itself: edits are stored
        await admin.config_set("maxmemory", 0)  # no budget at all: no guard
        server.services.clock.shift_ms += REFRESH_MS
        assert (await call(server, "POST", "/api/sessions"))[0] == 201
    finally:
        await server.stop()

    off = await start_server(own_redis.url, tmp_path, storage_guard_ratio=0, admin_memory_budget_bytes=1)
    try:
        assert (await call(off, "POST", "/api/sessions"))[0] == 201  # far over its budget: the guard is off
    finally:
        await off.stop()


async def test_a_read_that_never_ends_does_not_keep_the_next_one_from_starting() -> None:
    """A Redis whose connection hangs without a word (a peer gone, a primary stopped): the read
    is given up after its bound, and the next one starts; without the bound the first one held
    the guard's only read, and no figures were ever read again."""
    from handlers.metrics import Metrics
    from handlers.storage_guard import StorageGuard
    from storage.clock import Clock

    held: list[asyncio.StreamWriter] = []

    async def never_answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    redis = Redis(host="127.0.0.1", port=port)
    guard = StorageGuard(
        redis=redis, clock=Clock(), metrics=Metrics(), ratio=0.9, budget_bytes=1 << 40, refresh_ms=0, read_bound_s=0.3
    )
    loop = asyncio.get_running_loop()
    try:
        await guard.admit("test")  # no figures yet: admitted, while its read hangs
        deadline = loop.time() + 10
        while guard.reading:
            assert loop.time() < deadline, "the hung read was never given up"
            await asyncio.sleep(0.02)
        await guard.admit("test")  # the next read starts: a connection of its own
        while len(held) < 2:
            assert loop.time() < deadline, "no new read started"
            await asyncio.sleep(0.02)
    finally:
        for writer in held:
            writer.close()
        silent.close()
        await silent.wait_closed()
        await redis.aclose()
