"""The oldest Redis sessionhub runs on, checked once when a process connects.

The scripts and commands need Redis 6.2 (``GETDEL``, ``ZADD GT``/``LT``, ``ZRANGE ... REV``/
``BYSCORE``, ``COPY``, ``XADD NOMKSTREAM``), and a cluster 7.0 on every node:
the bus publishes and subscribes with sharded pub/sub (``SPUBLISH``/``SSUBSCRIBE``), which is
7.0's. An older server accepts the connection and answers ``PING``, then refuses those commands
one request at a time: on a 6.2 cluster every event script failed ("Unknown Redis command called
from Lua script": its ``SPUBLISH``), so not even a session could be created. A process refuses to
start instead, saying why.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

OLDEST = (6, 2)
OLDEST_CLUSTER = (7, 0)  # sharded pub/sub
# The check is skipped (the process starts) when INFO does not answer within this: a cluster
# node failing over at start-up must not keep a node down (server.commands._connected).
READ_BOUND_S = 5.0


def parse(version: str) -> tuple[int, int] | None:
    """``"7.0.15"`` as ``(7, 0)``; None for what is not a version (a compatible server's own)."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else None


def refusal(versions: dict[str, str], *, cluster: bool) -> str:
    """Why these nodes (name -> ``redis_version``) are too old ("" when none is)."""
    oldest = OLDEST_CLUSTER if cluster else OLDEST
    old = {name: v for name, v in versions.items() if (parsed := parse(v)) is not None and parsed < oldest}
    if not old:
        return ""
    listed = ", ".join(f"{name} is {version}" for name, version in sorted(old.items()))
    needs = "sharded pub/sub: SPUBLISH/SSUBSCRIBE" if cluster else "GETDEL, ZADD GT/LT, COPY, XADD NOMKSTREAM"
    what = "Redis Cluster" if cluster else "Redis"
    return f"{what} {oldest[0]}.{oldest[1]}+ is needed ({needs}): {listed}"


async def versions(redis: Redis, bound_s: float = READ_BOUND_S) -> dict[str, str]:
    """Each node's ``redis_version`` (every node of a cluster); empty when INFO did not answer
    within ``bound_s`` or failed (the check is then skipped, not the start)."""
    try:
        if isinstance(redis, RedisCluster):
            found: Any = await asyncio.wait_for(redis.info("server", target_nodes=RedisCluster.ALL_NODES), bound_s)
            return {name: str(info.get("redis_version", "")) for name, info in found.items() if isinstance(info, dict)}
        info: Any = await asyncio.wait_for(redis.info("server"), bound_s)
    except (RedisError, RedisClusterException, OSError, TimeoutError):
        return {}
    return {"Redis": str(info.get("redis_version", ""))}


async def too_old(redis: Redis) -> str:
    """Why ``redis`` is too old for sessionhub ("" when it is not, or cannot be told)."""
    return refusal(await versions(redis), cluster=isinstance(redis, RedisCluster))
