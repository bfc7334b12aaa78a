"""A full Redis (maxmemory reached, noeviction) reads as `unavailable` with a reason, is counted,
and /readyz says degraded (issue 20, finding 6). A private redis-server: its limit is set low."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from handlers import health
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path / "redis-full")
    process.start()
    yield process
    process.stop()


@pytest_asyncio.fixture
async def full(own_redis: RedisProcess, tmp_path: Path) -> AsyncIterator[tuple[ServerUnderTest, Redis]]:
    # The storage guard off: it would refuse the creates here first (storage_full), and these
    # tests are about what Redis itself refuses (tests/test_storage_guard.py has the guard's).
    srv = await start_server(own_redis.url, tmp_path, storage_guard_ratio=0)
    admin = Redis.from_url(own_redis.url)
    yield srv, admin
    await admin.config_set("maxmemory", 0)
    await admin.aclose()
    await srv.stop()


async def _fill(admin: Redis) -> None:
    await admin.config_set("maxmemory-policy", "noeviction")
    await admin.config_set("maxmemory", 1)  # below what is used already: every write is refused


async def _readyz(server: ServerUnderTest) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as response:
        return response.status, await response.json()


async def test_writes_to_a_full_redis_are_unavailable_with_a_reason(
    full: tuple[ServerUnderTest, Redis], clients: list[Client]
) -> None:
    server, admin = full
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    assert (await _readyz(server))[0] == 200
    await _fill(admin)
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(server.url + "/voicebot/create_session", json={}, headers=headers) as response,
    ):
        status, body = response.status, await response.json()
    assert status == 503 and body["error"] == "unavailable" and body["reason"] == "redis_full", body
    # The pattern API says it in its own shape (it said only "Service unavailable").
    async with aiohttp.ClientSession() as http, http.post(server.url + "/api/sessions", json={}) as response:
        status, body = response.status, await response.json()
    assert (status, body["error"], body.get("reason")) == (503, "Service unavailable", "redis_full"), body
    ack = await client.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert (ack["ok"], ack["error"], ack.get("reason")) == (False, "unavailable", "redis_full"), ack
    counted = server.services.metrics.redis_errors.labels("http", "OutOfMemoryError")._value.get()
    assert counted >= 1
    status, ready = await _readyz(server)
    assert status == 503 and ready["ok"] is False and ready["redis"] is True
    assert str(ready["degraded"]).startswith("redis_full"), ready
    await admin.config_set("maxmemory", 0)
    assert (await _readyz(server))[0] == 200


async def test_readyz_keeps_saying_full_when_a_memory_read_fails(
    full: tuple[ServerUnderTest, Redis], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe whose INFO fails (refused here; on a loaded node, past its 1 s bound) answers with
    the last verdict read in MEMORY_VERDICT_KEPT_S: a full Redis stays 503 instead of flapping to
    200, and an older verdict is not trusted."""
    server, admin = full
    await _fill(admin)
    status, ready = await _readyz(server)
    assert status == 503 and str(ready["degraded"]).startswith("redis_full"), ready
    await admin.execute_command("ACL", "SETUSER", "default", "-info")  # the server's INFO is refused now
    try:
        status, kept = await _readyz(server)
        assert (status, kept["degraded"]) == (503, ready["degraded"]), kept
        monkeypatch.setattr(health, "MEMORY_VERDICT_KEPT_S", 0.0)  # the verdict is now too old
        status, unknown = await _readyz(server)
        assert (status, unknown["degraded"]) == (200, None), unknown
    finally:
        await admin.execute_command("ACL", "SETUSER", "default", "+info")
