"""A node's Redis restarted under it: every command after it is back is served first time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.conftest import start_server
from tests.helpers import RedisProcess

CONNECTIONS = 6


async def test_every_pooled_connection_serves_its_next_command_after_a_redis_restart(tmp_path: Path) -> None:
    """redis-py 8.1's pool handed out connections the old Redis had closed while they sat idle:
    each failed its next command (``Connection closed by server``: a write answered
    ``unavailable``, ``/readyz`` a 503) seconds after Redis was back."""
    own = RedisProcess(tmp_path / "redis", appendonly=True)
    own.start()
    node = await start_server(own.url, tmp_path / "node")
    try:
        redis = node.services.redis
        # Commands the single-connection link does not carry go through the pool: several at
        # once leave several of its connections idle.
        await asyncio.gather(*(redis.set(f"before:{i}", i) for i in range(CONNECTIONS)))
        clients = await redis.client_list()
        assert len(clients) > CONNECTIONS, clients
        session_id = await node.create_session("alice")

        reconnects = node.services.metrics.bus_reconnects
        before = reconnects._value.get()
        own.stop()
        own.start()
        async with asyncio.timeout(15):
            while reconnects._value.get() == before:  # its bus's link is back: Redis serves
                await asyncio.sleep(0.02)

        await asyncio.gather(*(redis.set(f"after:{i}", i) for i in range(CONNECTIONS)))
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{node.url}/readyz") as response:
                assert response.status == 200, await response.text()
        assert await node.create_session("alice") != session_id
        stored = await node.services.voice.get(session_id)
        assert stored is not None  # what it had kept before (AOF) is there
    finally:
        await node.stop()
        own.stop()
