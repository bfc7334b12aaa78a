"""What a process checks of its Redis at start (storage/redis_fitness.py), on real redis-servers.

A Redis user whose ACL left out the scripts or pub/sub, or a command renamed away, started a
server that said ready and answered every write `500 internal_error` (audit "redispressure"). A
Redis that evicts keys when full (any maxmemory-policy but noeviction) was taken without a word,
then lost sessions, logs and the records that make retries safe.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from redis.asyncio import Redis

from storage.keys import Keys
from storage.redis_fitness import memory_warning, refused_command
from tests.conftest import start_server
from tests.helpers import CHILD_TEST_TIMEOUT_S, RedisProcess, ServerUnderTest
from tests.test_processes import node_env
from tests.test_redis_version import refused_start


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server of this test's own: its config and ACL users are changed."""
    process = RedisProcess(tmp_path / "redis")
    process.start()
    yield process
    process.stop()


@pytest_asyncio.fixture
async def admin(own_redis: RedisProcess) -> AsyncIterator[Redis]:
    client = Redis.from_url(own_redis.url)
    yield client
    await client.aclose()


async def limited_user(admin: Redis, own_redis: RedisProcess, *rules: str) -> str:
    """The URL of a new ACL user allowed everything but ``rules`` take away."""
    name = f"u{uuid.uuid4().hex[:12]}"
    await admin.execute_command("ACL", "SETUSER", name, "on", ">pw", "~*", "&*", "+@all", *rules)
    return own_redis.url.replace("redis://", f"redis://{name}:pw@")


async def refusal_of(url: str) -> str:
    client = Redis.from_url(url)
    try:
        return await refused_command(client, Keys("sh"))
    finally:
        await client.aclose()


async def test_a_user_refused_the_scripts_or_pub_sub_is_named(admin: Redis, own_redis: RedisProcess) -> None:
    assert await refusal_of(own_redis.url) == ""
    said = await refusal_of(await limited_user(admin, own_redis, "-evalsha"))
    assert said.startswith("Redis refuses SCRIPT LOAD / EVALSHA, which sessionhub needs"), said
    assert "NOPERM" in said or "permission" in said.lower(), said
    said = await refusal_of(await limited_user(admin, own_redis, "-script"))
    assert said.startswith("Redis refuses SCRIPT LOAD / EVALSHA"), said
    said = await refusal_of(await limited_user(admin, own_redis, "-publish"))
    assert said.startswith("Redis refuses PUBLISH"), said
    said = await refusal_of(await limited_user(admin, own_redis, "-subscribe"))
    assert said.startswith("Redis refuses SUBSCRIBE"), said
    # What sessionhub does not need may be refused: the start goes on.
    assert await refusal_of(await limited_user(admin, own_redis, "-flushall", "-keys")) == ""
    # A user limited to the deployment's prefix, keys and channels (a Redis shared with other
    # apps): refused nothing sessionhub does. The probe's channel was outside it (audit verify39).
    name = f"u{uuid.uuid4().hex[:12]}"
    await admin.execute_command("ACL", "SETUSER", name, "on", ">pw", "~sh:*", "&sh:*", "+@all")
    assert await refusal_of(own_redis.url.replace("redis://", f"redis://{name}:pw@")) == ""


@pytest.mark.timeout(CHILD_TEST_TIMEOUT_S)  # a `serve` child starts
async def test_serve_refuses_a_user_without_the_scripts_with_one_line(
    admin: Redis, own_redis: RedisProcess, tmp_path: Path
) -> None:
    url = await limited_user(admin, own_redis, "-evalsha")
    code, lines = await refused_start(node_env(tmp_path / "data", url))
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("sessionhub: Redis refuses SCRIPT LOAD / EVALSHA"), lines
    assert ":pw@" not in lines[0]  # no password in the line


async def test_an_evicting_redis_is_said_at_start_and_in_the_alerts(
    admin: Redis, own_redis: RedisProcess, tmp_path: Path
) -> None:
    assert await memory_warning(admin) == ""  # no maxmemory: nothing is evicted, whatever the policy
    await admin.config_set("maxmemory-policy", "allkeys-lru")
    assert await memory_warning(admin) == ""
    await admin.config_set("maxmemory", str(512 * 1024 * 1024))
    said = await memory_warning(admin)
    assert said.startswith("Redis may delete sessionhub's keys when full: maxmemory-policy allkeys-lru"), said
    assert "set maxmemory-policy noeviction" in said

    server = await start_server(own_redis.url, tmp_path / "node")
    try:
        assert await eviction_alert(server) == {"severity": "critical", "policies": ["allkeys-lru"]}
        await admin.config_set("maxmemory-policy", "volatile-lru")  # TTL'd keys: retry records, devices
        assert await eviction_alert(server) == {"severity": "critical", "policies": ["volatile-lru"]}
        await admin.config_set("maxmemory-policy", "noeviction")
        assert await eviction_alert(server) is None
    finally:
        await server.stop()


async def eviction_alert(server: ServerUnderTest) -> dict[str, object] | None:
    headers = {"Authorization": f"Bearer {server.token('root', perms=('admin',))}"}  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/admin/alerts", headers=headers) as answer:
            assert answer.status == 200, await answer.text()
            alerts = (await answer.json())["alerts"]
    found = [a for a in alerts if a["alert"] == "redis_eviction"]
    return {"severity": found[0]["severity"], "policies": found[0]["policies"]} if found else None


async def test_a_user_refused_info_is_said_at_start_and_in_the_alerts_not_as_unreachable(
    admin: Redis, own_redis: RedisProcess, tmp_path: Path
) -> None:
    """A hardened user (`-@dangerous`) loses INFO: the server started without a word, said
    "Redis did not answer" (redis_unreachable, critical) though Redis had answered, and its
    storage guard admitted every create (audit "operatorday")."""
    url = await limited_user(admin, own_redis, "-info")
    client = Redis.from_url(url)
    try:
        said = await memory_warning(client)
        assert said.startswith("Redis refuses INFO (") and "storage guard admits" in said, said
        assert await refused_command(client, Keys("sh")) == ""  # not a refusal to start
    finally:
        await client.aclose()
    assert await memory_warning(admin) == ""

    server = await start_server(url, tmp_path / "node")
    try:
        headers = {"Authorization": f"Bearer {server.token('root', perms=('admin',))}"}  # type: ignore[arg-type]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{server.url}/admin/alerts", headers=headers) as answer:
                assert answer.status == 200, await answer.text()
                names = {a["alert"]: a["severity"] for a in (await answer.json())["alerts"]}
        assert names.get("redis_info_refused") == "warning" and "redis_unreachable" not in names, names
    finally:
        await server.stop()
