"""Reads that ask every primary (or every node) of a Redis Cluster read the slot map first.

redis-py's cluster client reads its slot map -- which node serves which slots, and so which nodes
are the primaries -- when it starts, and again only when one of its own commands meets a redirect
(``MOVED``, ``ASK``) or a lost connection. A node that sent nothing to a slot that moved kept the
old map: after a primary was added and given slots, its ``/readyz`` and ``/admin/alerts`` did not
count that primary (without a replica, every change of its slots was answered ``unavailable`` under
``SESSIONHUB_DURABILITY=replica`` while the node said it was ready) and an operator's recalculation
did not scan it (its sessions were not put back, and nothing said so); after a node was removed
from the cluster (``redis-cli --cluster del-node`` resets it and it runs on), healthy nodes counted
it as a primary without a replica and answered ``503`` until some command of theirs met a
redirect (audit "cluster2").

So such a read first asks one node for the map (``CLUSTER SLOTS``) when this process last did more
than :data:`FRESH_S` ago, shared by every read that waits meanwhile, and only when that names
other primaries than the client knows, twice in a row (a recalculation: once), reads the map anew through
redis-py's ``NodesManager.initialize`` (its public ``nodes_manager``, as ``server/channels.py``
and ``storage/events.py`` call it): redis-py 8.1 marks every connection of every node for a
reconnect at each such reading, which every 2 s would cost every command path a reconnect. A
reading that fails leaves the map as it was: the read that follows goes on with it and answers,
or fails, on its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

log = logging.getLogger(__name__)

# How old a map may be for a read of every primary: /readyz is probed every few seconds by a load
# balancer, and one CLUSTER SLOTS per node every 2 s is nothing beside it.
FRESH_S = 2.0
# A reading's bound: a seed node that hangs is asked with the client's own timeouts, one by one.
READ_TIMEOUT_S = 5.0


class _Reading:
    """When the map was last checked (monotonic s) by this module, the check under way, and
    whether the last check found other primaries than the client knows."""

    __slots__ = ("at", "differed", "task")

    def __init__(self) -> None:
        self.at = -math.inf
        self.differed = False
        self.task: asyncio.Task[None] | None = None


_readings: weakref.WeakKeyDictionary[RedisCluster, _Reading] = weakref.WeakKeyDictionary()


async def fresh_map(redis: object, max_age_s: float = FRESH_S) -> None:
    """Check ``redis``'s slot map unless this process did within ``max_age_s`` (0: now, and read
    it again at the first difference); nothing for a client of one Redis. A caller cancelled
    meanwhile leaves the check to finish for the others."""
    if not isinstance(redis, RedisCluster):
        return
    reading = _readings.get(redis)
    if reading is None:
        reading = _readings[redis] = _Reading()
    at_once = max_age_s <= 0
    for _ in range(2):  # a check under way may be one that leaves a first difference for later
        if reading.task is None:
            if time.monotonic() - reading.at < max_age_s:
                return
            reading.task = asyncio.ensure_future(_read(redis, reading, at_once=at_once))
        await asyncio.shield(reading.task)
        if not (at_once and reading.differed):
            return


async def _read(redis: RedisCluster, reading: _Reading, *, at_once: bool) -> None:
    """Read the whole map again when the primaries differ twice in a row (or once, ``at_once``):
    in a failover, redis-py and the bus read it themselves as their commands fail, and a reading
    of ours then (every connection marked for a reconnect) cut the bus's new shard link once more
    (a follower 2 s behind the other in a fresh-clone run). A check that gets no answer changes
    nothing: the read that follows fails, and redis-py reads the map on its own."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_S):
            same = await _same_primaries(redis)
            if same is False and (at_once or reading.differed):
                await redis.nodes_manager.initialize()
                same = True
            reading.differed = same is False
    except (RedisError, RedisClusterException, OSError, TimeoutError) as exc:
        log.debug("the cluster's slot map could not be read again (%s): the one known stays", exc)
    finally:
        reading.at = time.monotonic()
        reading.task = None


async def _same_primaries(redis: RedisCluster) -> bool | None:
    """Whether one node's ``CLUSTER SLOTS`` names the primaries ``redis`` knows (None when it does
    not answer, or the client closed its nodes). Names as redis-py makes them (``host:port``,
    remapped), from the reply's shape that ``NodesManager.initialize`` reads."""
    node = redis.get_default_node()
    if node is None:  # the client closed its nodes (every one gone)
        return None
    try:
        sections: Any = await node.execute_command("CLUSTER SLOTS")
    except (RedisError, OSError):
        return None
    named = set()
    for section in sections:
        host, port = _text(section[2][0]) or node.host, int(section[2][1])
        host, port = redis.nodes_manager.remap_host_port(host, port)
        named.add(f"{host}:{port}")
    return named == {primary.name for primary in redis.get_primaries()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
