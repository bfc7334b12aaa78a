"""Redis's memory as a whole: on a cluster, every primary's, since a write lands on any slot."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster

from storage.cluster_map import fresh_map

# The longest a read of the memory figures may take. A cluster client waits for a primary that
# hangs (stopped, partitioned, failing over) up to its socket timeout, then tries again: a read
# of every primary with one stopped took 55 s before it failed, and a connection whose peer is
# gone without a word may never end. Whatever waits for it (the storage guard's next read,
# /admin/alerts) would wait as long.
READ_BOUND_S = 10.0


@dataclass(frozen=True, slots=True)
class MemoryFigures:
    """Bytes used and the budget they are held to (0: none) on the fullest node."""

    used_bytes: int
    budget_bytes: int

    @property
    def share(self) -> float:
        """Used over budget (0.0 without a budget)."""
        return self.used_bytes / self.budget_bytes if self.budget_bytes else 0.0


async def memory_infos(redis: Redis, bound_s: float = READ_BOUND_S) -> list[dict[str, Any]]:
    """``INFO memory`` of the one Redis, or of every primary of a cluster (a cluster client
    asks one node for INFO by default, so a full shard went unseen beside an empty one).

    ``TimeoutError`` when the answers take longer than ``bound_s`` (see :data:`READ_BOUND_S`).
    """
    return await primaries_info(redis, "memory", "used_memory", bound_s)


async def replication_infos(redis: Redis, bound_s: float = READ_BOUND_S) -> list[dict[str, Any]]:
    """``INFO replication`` of the one Redis, or of every primary of a cluster (each shard's
    writes wait for a replica of its own under ``SESSIONHUB_DURABILITY=replica``)."""
    return await primaries_info(redis, "replication", "role", bound_s)


async def primaries_info(redis: Redis, section: str, field: str, bound_s: float) -> list[dict[str, Any]]:
    """``INFO section`` of each primary; ``field``, always in a node's answer, tells one node's
    answer from a cluster client's answer of every node (a dict of them)."""
    if isinstance(redis, RedisCluster):
        info = await asyncio.wait_for(_every_primary(redis, section), bound_s)
    else:
        info = await asyncio.wait_for(redis.info(section), bound_s)
    if field in info:  # one node's answer
        return [info]
    return [part for part in info.values() if isinstance(part, dict)]


async def _every_primary(redis: RedisCluster, section: str) -> Any:
    # The primaries as the cluster has them now: a node that wrote nothing to a slot moved to a
    # new primary, or since a node left, knew the old ones (storage/cluster_map.py).
    await fresh_map(redis)
    return await redis.info(section, target_nodes=RedisCluster.PRIMARIES)


async def silent_primaries(redis: Redis, bound_s: float = READ_BOUND_S) -> list[str]:
    """The primaries of a cluster (``host:port``, as the client's map has them) that do not answer
    a ``PING`` within ``bound_s``; none on a single Redis, which is the one that does not answer.
    What an operator looks for first when a read of every primary failed: which one."""
    if not isinstance(redis, RedisCluster):
        return []
    primaries = redis.get_primaries()

    async def answers(node: ClusterNode) -> bool:
        # A connection of its own, bounded by its socket's timeouts: the cluster client's PING,
        # cut short by a timer, was retried by the client inside the cancellation, and a frozen
        # master held the request for as long as that took (20 s and more).
        bounded = {**node.connection_kwargs, "socket_timeout": bound_s, "socket_connect_timeout": bound_s}
        connection = node.connection_class(**bounded)
        try:
            await connection.send_command("PING")
            await connection.read_response()
        except Exception:  # down, frozen, refusing: not answering, whatever its words
            return False
        finally:
            await connection.disconnect()
        return True

    answered = await asyncio.gather(*(answers(node) for node in primaries))
    return sorted(node.name for node, ok in zip(primaries, answered, strict=True) if not ok)


def without_replica(primaries: list[dict[str, Any]]) -> int:
    """How many of ``primaries`` (:func:`replication_infos`) have no replica in sync: under
    ``SESSIONHUB_DURABILITY=replica`` each change of their slots is applied but not confirmed."""
    return sum(1 for info in primaries if replicas_online(info) == 0)


def replicas_online(info: dict[str, Any]) -> int:
    """How many replicas a primary's ``INFO replication`` shows connected and in sync."""
    online = 0
    for name, value in info.items():
        # redis-py parses "slave0:ip=…,port=…,state=online,…" into a dict.
        if name.startswith("slave") and name[5:].isdigit() and isinstance(value, dict):
            online += value.get("state") == "online"
    return online


def evicting_policies(nodes: list[dict[str, Any]]) -> list[str]:
    """The ``maxmemory-policy`` of each of ``nodes`` (:func:`memory_infos`) that may delete keys
    of its own accord: a ``maxmemory`` set, under any policy but ``noeviction``. Such a Redis,
    once full, deletes sessions, logs, devices and the records that make retries safe (a retried
    pattern op applied twice, a session left without its log), where ``noeviction`` refuses the
    write (the storage guard and ``redis_full`` say so first)."""
    found = []
    for info in nodes:
        policy = str(info.get("maxmemory_policy", "noeviction"))
        try:
            limit = int(info.get("maxmemory") or 0)
        except (TypeError, ValueError):
            continue
        if limit > 0 and policy != "noeviction":
            found.append(policy)
    return found


async def memory_figures(redis: Redis, budget_bytes: int = 0, bound_s: float = READ_BOUND_S) -> MemoryFigures:
    """The memory figures of the fullest node (:func:`memory_infos`, bounded by ``bound_s``).

    ``budget_bytes`` is a configured budget per node; 0 takes each node's own ``maxmemory``.
    The answer is the node whose share of its budget is the largest.
    """
    return fullest(await memory_infos(redis, bound_s), budget_bytes)


def fullest(nodes: list[dict[str, Any]], budget_bytes: int = 0) -> MemoryFigures:
    """The figures of the node of ``nodes`` (:func:`memory_infos`) whose share of its budget is
    the largest (``budget_bytes`` per node; 0 takes each node's own ``maxmemory``)."""
    figures = [
        MemoryFigures(int(info["used_memory"]), budget_bytes or int(info.get("maxmemory") or 0)) for info in nodes
    ]
    return max(figures, key=lambda each: each.share, default=MemoryFigures(0, 0))
