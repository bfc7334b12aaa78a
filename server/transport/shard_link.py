"""A pub/sub link to one Redis Cluster master (``server.channels`` keeps one per master).

The contract, i.e. what it relies on beyond redis-py's documented API: ``PubSub`` re-subscribes
its sharded channels after a reconnect through ``_resubscribe_shard_channels`` (redis-py 8.x, the
range ``pyproject.toml`` allows). redis-py sends one ``SSUBSCRIBE`` for all of them,
which a cluster refuses with ``CROSSSLOT`` when they span slots: this link sends one per channel
instead. Should a later redis-py stop calling it, a reconnecting link would lose its channels to
that refusal, and ``server.channels`` would re-subscribe them as lost channels (slower, not
silent): the bus's recovery does not depend on it.
"""

from __future__ import annotations

from redis.asyncio.client import PubSub


class ShardLink(PubSub):
    """The link to one master. Its channels span slots: a reconnect re-subscribes them one by one
    (one ``SSUBSCRIBE`` for channels of several slots is refused with ``CROSSSLOT``)."""

    async def _resubscribe_shard_channels(self) -> None:
        for channel in list(self.shard_channels):
            await self.ssubscribe(channel)
