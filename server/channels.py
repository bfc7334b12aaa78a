"""The bus's pub/sub link: plain channels on one Redis, sharded channels on Redis Cluster.

On a cluster, session events are published with ``SPUBLISH`` (the channel shares the session's
hash tag, so the script that appends an event publishes it on the shard that owns the session)
and read with ``SSUBSCRIBE`` from each shard; on a single Redis, ``PUBLISH``/``SUBSCRIBE``.
Only the bus's listener task calls these methods (see ``server.bus``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster

# Message types: subscription confirmations and data messages, of both kinds of channel.
CONFIRMATIONS = frozenset({"subscribe", "ssubscribe"})
MESSAGES = frozenset({"message", "smessage"})


class Channels:
    """Subscribe, unsubscribe and read the session channels of one node."""

    def __init__(self, redis: Redis) -> None:
        self.sharded = isinstance(redis, RedisCluster)
        self._pubsub: PubSub | ClusterPubSub
        if isinstance(redis, RedisCluster):
            self._pubsub = redis.pubsub()
        else:
            self._pubsub = PubSub(connection_pool=redis.connection_pool, ignore_subscribe_messages=False)

    async def connect(self) -> None:
        """Open the link now, so that a Redis that does not answer fails the start."""
        if isinstance(self._pubsub, ClusterPubSub):
            return  # a shard's link opens with its first SSUBSCRIBE
        await self._pubsub.connect()

    async def subscribe(self, channel: str) -> None:
        """Ask for a channel; the confirmation arrives through :meth:`get_message`."""
        if isinstance(self._pubsub, ClusterPubSub):
            await self._pubsub.ssubscribe(channel)
        else:
            await self._pubsub.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        """Drop a channel."""
        if isinstance(self._pubsub, ClusterPubSub):
            await self._pubsub.sunsubscribe(channel)
        else:
            await self._pubsub.unsubscribe(channel)

    async def get_message(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message or confirmation, waiting at most about ``timeout_s``."""
        if isinstance(self._pubsub, ClusterPubSub):
            if not self._pubsub.node_pubsub_mapping:
                await asyncio.sleep(timeout_s)  # no shard subscribed yet: nothing to read
                return None
            message: dict[str, Any] | None = await self._pubsub.get_sharded_message(timeout=timeout_s)
            return message
        received: dict[str, Any] | None = await self._pubsub.get_message(timeout=timeout_s)
        return received

    async def aclose(self) -> None:
        """Close the link(s)."""
        await self._pubsub.aclose()
