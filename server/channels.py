"""The bus's pub/sub link: plain channels on one Redis, sharded channels on Redis Cluster.

On a cluster, session events are published with ``SPUBLISH`` (the channel shares the session's
hash tag, so the script that appends an event publishes it on the shard that owns the session)
and read with ``SSUBSCRIBE`` from each shard; on a single Redis, ``PUBLISH``/``SUBSCRIBE``.
Only the bus's listener task calls these methods (see ``server.bus``); on a single Redis the
messages themselves go to the bus from each read of the lean subscriber (:meth:`Channels.push_to`).

A cluster moves (issue 24), and the sharded links follow it here:

- When a slot moves (resharding) or its master steps down, Redis ends the shard channels of
  that slot with an ``sunsubscribe`` nobody asked for. The channel is then *lost*: it is
  subscribed again on the slot's owner after the topology is read anew.
- When a shard's link fails (its master was killed, a ``MOVED`` answer to an ``SSUBSCRIBE``),
  the link is dropped and each of its channels is lost the same way; re-subscribing retries
  every ``RECOVER_RETRY_S`` until the cluster names a master that answers -- after a failover,
  the promoted replica -- while the other shards' links are read as usual.
- A node the map names is asked its ``ROLE`` before a new link to it, and before every
  subscription made from a map read after a change: a replica is refused (see
  :meth:`Channels._check_master`), and so is a node that does not answer it promptly.
- A link that has brought nothing for ``LINK_QUIET_S`` is sent a ``PING``; one that then still
  brings nothing by ``LINK_SILENT_S`` is dropped, its channels lost as above. A master that is
  frozen or cut off by the network fails no read and ends no subscription: its replica was
  promoted, the writes went to it, and the link kept waiting on the old master, delivering
  nothing until it came back (52 s in a real partition), while the node said it was ready.
- The slot map is read anew off the listener (a task of its own, the silent node asked last):
  a node that answers nothing must not hold the reads of the other shards' links.

A new confirmation for a channel whose room is live makes the bus catch up from the log, so
what was published while the channel was lost is delivered, in order, once (``server.bus``).
redis-py's ``ClusterPubSub`` is not used: it reconciles only when the node's *commands* meet
a moved slot (a node that only follows never sends one), from a background task that would
write to links the listener is reading.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, NodesManager, RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from server.transport.shard_link import ShardLink
from storage.lean_redis import LeanSubscriber, lean_subscriber_for

log = logging.getLogger(__name__)

# Message types: subscription confirmations and data messages, of both kinds of channel.
CONFIRMATIONS = frozenset({"subscribe", "ssubscribe"})
MESSAGES = frozenset({"message", "smessage"})
# A subscription that Redis ended without being asked (a sharded channel whose slot moved).
ENDED = frozenset({"sunsubscribe", "unsubscribe"})
# Lost channels whose new owner did not answer are tried again after this pause; meanwhile the
# other shards' links are read as usual (a failing-over shard must not delay the healthy ones).
RECOVER_RETRY_S = 0.1
# A shard link that brought nothing for this long is sent a PING (its answer is a message)...
LINK_QUIET_S = 1.0
# ... and one that brought nothing for this long, the PING's answer neither, is taken for gone.
LINK_SILENT_S = 3.0
# How long a master has to answer ROLE (on loopback or a LAN it takes well under a millisecond;
# the listener waits meanwhile), and how long one that did not is left alone after.
ROLE_TIMEOUT_S = 0.25
UNANSWERED_PAUSE_S = 2.0
# The longest one reading of the slot map may take (each node it asks has the cluster client's
# reply timeout; one that does not answer is skipped for the next).
MAP_READ_TIMEOUT_S = 15.0


class Channels:
    """Subscribe, unsubscribe and read the session channels of one node."""

    def __init__(self, redis: Redis) -> None:
        self.sharded = isinstance(redis, RedisCluster)
        self._redis = redis
        self._pubsub: PubSub | LeanSubscriber | None = None  # single Redis only
        if not self.sharded:
            # The lean reader parses every message of a socket read at once (storage/lean_redis.py);
            # redis-py's PubSub where it declines (TLS, Unix sockets, an untested redis-py).
            self._pubsub = lean_subscriber_for(redis.connection_pool) or PubSub(
                connection_pool=redis.connection_pool, ignore_subscribe_messages=False
            )
        # Sharded only: the link of each master, which master holds each channel, the channels
        # that lost their link (to subscribe again), and the round-robin start of reads.
        self._links: dict[str, ShardLink] = {}
        self._owner: dict[str, str] = {}
        self._lost: set[str] = set()
        self._stale = False  # the slot map may be out of date: read it before subscribing
        self._verify = False  # the map was read after a change: a link it names may be a replica's
        self._changes = 0  # how many times the map went stale (a reading started before is stale too)
        self._reading: tuple[asyncio.Task[None], int] | None = None  # the map's reading, and _changes then
        self._suspect: str | None = None  # the node whose silence or failure made the map stale
        self._heard: dict[str, float] = {}  # monotonic time each link last brought something
        self._pinged: dict[str, float] = {}  # and when it was last sent a PING
        self._unanswered: dict[str, float] = {}  # nodes that did not answer ROLE, until when to skip them
        self._last_silent: str | None = None  # the last node found silent: asked last by every reading
        self._retry_at = 0.0  # monotonic time of the next try for lost channels
        self._turn = 0
        # Both kinds: channels asked for and not yet confirmed, with when they were asked for.
        self._unconfirmed: dict[str, float] = {}
        self._asked: dict[str, str] = {}  # unsubscribed on purpose (channel -> link): sunsubscribe expected

    # --- the bus's calls -------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the link now, so that a Redis that does not answer fails the start."""
        if self._pubsub is None:
            return  # a shard's link opens with its first SSUBSCRIBE
        await self._pubsub.connect()

    async def subscribe(self, *channels: str) -> None:
        """Ask for channels, in one command; the confirmations arrive through :meth:`get_message`."""
        now = time.monotonic()
        for channel in channels:
            self._unconfirmed.setdefault(channel, now)
            self._asked.pop(channel, None)
        if self._pubsub is not None:
            await self._pubsub.subscribe(*channels)
            return
        self._lost.update(channels)  # the listener's next read subscribes them (see _recover)

    async def unsubscribe(self, channel: str) -> None:
        """Drop a channel."""
        self._unconfirmed.pop(channel, None)
        if self._pubsub is not None:
            await self._pubsub.unsubscribe(channel)
            return
        self._lost.discard(channel)
        owner = self._owner.pop(channel, None)
        link = self._links.get(owner) if owner is not None else None
        if owner is not None and link is not None:
            self._asked[channel] = owner
            await link.sunsubscribe(channel)

    async def get_message(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message or confirmation, waiting at most about ``timeout_s``.

        On a cluster, lost channels are subscribed again first; a link that fails is dropped
        (its channels lost) and the error raised, so that the listener backs off and retries.
        """
        if self._pubsub is not None:
            message: dict[str, Any] | None = await self._pubsub.get_message(timeout=timeout_s)
            if message is not None:
                self._note_confirmation(message)
            return message
        if self._lost and time.monotonic() >= self._retry_at:
            try:
                await self._recover()
            except (RedisError, RedisClusterException, OSError) as exc:
                log.info("bus: %d channel(s) wait for their shard: %s", len(self._lost), exc)
                self._retry_at = time.monotonic() + RECOVER_RETRY_S
        await self._watch_links()
        if not self._links:
            await asyncio.sleep(timeout_s)  # no shard subscribed yet: nothing to read
            return None
        # Every link is looked at without waiting, then one (in turn) waits: a message on any
        # shard is read within about ``timeout_s``.
        names = list(self._links)
        self._turn = (self._turn + 1) % len(names)
        order = names[self._turn :] + names[: self._turn]
        for index, name in enumerate(order):
            wait_s = timeout_s if index == len(order) - 1 else 0.0
            message = await self._read(name, wait_s)
            if message is not None:
                return message
        return None

    async def get_messages(self, timeout_s: float) -> list[dict[str, Any]]:
        """:meth:`get_message`, with every message a single Redis's subscriber has read so far
        taken at once (a busy read brings one per event: one call for them all)."""
        pubsub = self._pubsub
        if isinstance(pubsub, LeanSubscriber):
            messages = await pubsub.get_messages(timeout_s)
            for message in messages:
                self._note_confirmation(message)
            return messages
        one = await self.get_message(timeout_s)
        return [] if one is None else [one]

    def push_to(self, taker: Callable[[list[dict[str, Any]]], None]) -> None:
        """Have a single Redis's lean subscriber hand each read's messages to ``taker`` in the
        read itself (``LeanSubscriber.push``); only what came before is then handed out by
        :meth:`get_messages`. Elsewhere (redis-py's ``PubSub``, a cluster's shard links) nothing
        changes: the listener reads them with :meth:`get_messages`."""
        pubsub = self._pubsub
        if not isinstance(pubsub, LeanSubscriber):
            return

        def noted(messages: list[dict[str, Any]]) -> None:
            for message in messages:
                self._note_confirmation(message)
            taker(messages)

        pubsub.push(noted)

    def _note_confirmation(self, message: dict[str, Any]) -> None:
        """A single Redis's message read: a confirmation ends its channel's wait (stalled_for)."""
        if message["type"] in CONFIRMATIONS:
            self._unconfirmed.pop(_text(message["channel"]), None)

    def stalled_for(self) -> float:
        """Seconds the oldest unconfirmed subscription has waited (0 when every one is confirmed)."""
        if not self._unconfirmed:
            return 0.0
        return time.monotonic() - min(self._unconfirmed.values())

    async def aclose(self) -> None:
        """Close the link(s)."""
        if self._reading is not None:
            self._reading[0].cancel()
            await asyncio.gather(self._reading[0], return_exceptions=True)
            self._reading = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
        for name in list(self._links):
            await self._drop_link(name)

    # --- sharded internals -----------------------------------------------------------------
    @property
    def _cluster(self) -> RedisCluster:
        return self._redis  # type: ignore[return-value]

    async def _watch_links(self) -> None:
        """PING the links that have been quiet; drop those that stayed silent (see LINK_SILENT_S)."""
        now = time.monotonic()
        for name in list(self._links):
            quiet_s = now - self._heard.get(name, now)
            if quiet_s >= LINK_SILENT_S:
                log.warning("bus: %s answered nothing for %.1f s; its channels move to their owners", name, quiet_s)
                await self._drop_link(name)
                self._suspect = self._last_silent = name
            elif quiet_s >= LINK_QUIET_S and now - self._pinged.get(name, 0.0) >= LINK_QUIET_S:
                self._pinged[name] = now
                try:
                    async with asyncio.timeout(ROLE_TIMEOUT_S):  # a write: only a full buffer waits
                        await self._links[name].ping()
                except Exception as exc:  # the link is broken: its channels move now
                    log.info("bus: the link to %s failed (%s); its channels move to their owners", name, exc)
                    await self._drop_link(name)
                    self._suspect = name

    async def _subscribe_sharded(self, channel: str, checked: set[str]) -> None:
        node = self._cluster.get_node_from_key(channel)  # SlotNotCoveredError while none holds it
        if node is None:
            raise ConnectionError(f"no master holds the slot of {channel}")
        if self._unanswered.get(node.name, 0.0) > time.monotonic():
            raise ConnectionError(f"{node.name} did not answer lately")  # not asked again yet
        link = self._links.get(node.name)
        if (link is None or self._verify) and node.name not in checked:
            await self._check_master(node)
            checked.add(node.name)
        if link is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            link = self._links[node.name] = ShardLink(connection_pool=pool, ignore_subscribe_messages=False)
            self._heard[node.name] = time.monotonic()
        self._owner[channel] = node.name
        self._lost.discard(channel)
        try:
            await link.ssubscribe(channel)
        except BaseException:
            await self._drop_link(node.name)  # the channel is lost again, with the link's others
            raise

    async def _read(self, name: str, wait_s: float) -> dict[str, Any] | None:
        link = self._links[name]
        try:
            message: dict[str, Any] | None = await link.get_message(timeout=wait_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the node is gone or answers MOVED: move its channels
            log.info("bus: the link to %s failed (%s); its channels move to their owners", name, exc)
            await self._drop_link(name)
            raise
        if message is None:
            return None
        self._heard[name] = time.monotonic()
        if message["type"] == "pong":  # the answer to a quiet link's PING (_watch_links)
            return None
        kind, channel = message["type"], _text(message["channel"])
        if kind in CONFIRMATIONS:
            self._unconfirmed.pop(channel, None)
        elif kind in ENDED:
            if channel in self._asked:
                del self._asked[channel]
            elif self._owner.get(channel) == name:
                # Redis ended it: the slot moved or its master stepped down.
                log.info("bus: %s was moved off %s; subscribing on its new owner", channel, name)
                self._lose(channel)
                self._mark_stale()
                link.shard_channels.pop(channel, None)  # its reconnect must not ask the old node again
            if not link.subscribed:
                await self._drop_link(name)
        return message

    def _lose(self, channel: str) -> None:
        self._owner.pop(channel, None)
        self._lost.add(channel)
        self._unconfirmed.setdefault(channel, time.monotonic())

    async def _drop_link(self, name: str) -> None:
        link = self._links.pop(name, None)
        if link is None:
            return
        self._heard.pop(name, None)
        self._pinged.pop(name, None)
        self._mark_stale()
        for channel in [c for c, owner in self._owner.items() if owner == name]:
            self._lose(channel)
        for channel in [c for c, owner in self._asked.items() if owner == name]:
            del self._asked[channel]  # its confirmation will never come
        try:
            await link.aclose()  # type: ignore[no-untyped-call]  # redis-py PubSub, inherited
            await link.connection_pool.disconnect()
        except Exception as exc:  # a dead link may fail to close; it is gone either way
            log.debug("bus: closing the link to %s: %s", name, exc)

    def _mark_stale(self) -> None:
        self._stale = True
        self._changes += 1

    async def _recover(self) -> None:
        """Subscribe every lost channel on its slot's master, once the topology was read anew
        when something failed or moved since it was last read (a new room's channel needs no
        such round trip). The reading runs in a task of its own: until it is done, the lost
        channels wait and the links are read as usual."""
        if self._stale and not self._map_read():
            return  # the lost channels wait for the map (asked again at the listener's next read)
        checked: set[str] = set()
        try:
            for channel in sorted(self._lost):
                await self._subscribe_sharded(channel, checked)
        except BaseException:
            self._mark_stale()
            raise
        self._verify = False

    def _map_read(self) -> bool:
        """Whether the slot map was read since it last went stale; else start (or wait for) its
        reading. A failed reading raises its error here (the caller retries later)."""
        reading = self._reading
        if reading is not None and reading[0].done():
            self._reading = None
            task, started_at = reading
            error = None if task.cancelled() else task.exception()
            if error is not None:
                raise error
            if not task.cancelled() and started_at == self._changes:
                self._stale = False
                self._suspect = None
                self._verify = True  # the map just read may be a node's view from before a failover
                return True
            reading = None  # stale again meanwhile: read once more
        if reading is None:
            task = asyncio.ensure_future(self._read_map(self._suspect or self._silent_node()))
            self._reading = (task, self._changes)
        return False

    def _silent_node(self) -> str | None:
        """The node left alone for not answering ROLE, if one still is, else the last node found
        silent.

        The map is read again after each refused try while that node stays left alone; redis-py
        asks the nodes in a random order, and a reading that asked the silent node first waited
        on it to its timeout (2.2 s of lag in a CI run), so it keeps being asked last; and once it
        is no longer left alone too (2.7 s of lag in another: the pause ran out before the map
        named the promoted replica). Asking a node that answers last costs nothing."""
        now = time.monotonic()
        waiting = [(until, name) for name, until in self._unanswered.items() if until > now]
        return max(waiting)[1] if waiting else self._last_silent

    async def _read_map(self, suspect: str | None) -> None:
        """The slot map, read anew; ``suspect`` (a silent node) asked last, where redis-py can."""
        manager = self._cluster.nodes_manager
        async with asyncio.timeout(MAP_READ_TIMEOUT_S):
            if suspect is not None and _TAKES_LAST_FAILED:
                await manager.initialize(last_failed_node_name=suspect)
            else:
                await manager.initialize()

    async def _check_master(self, node: ClusterNode) -> None:
        """Refuse ``node`` unless it is a master now.

        Right after a failover, a slot map read from a node that has not heard of it yet still
        names the demoted master, which takes an ``SSUBSCRIBE`` as a replica does -- and gets
        the shard's messages only once it replicates from its new master: what is published
        until then is lost to it, with no sign (seen in 2 of 7 graceful failovers). Refused,
        the channel stays lost and the map is read again in RECOVER_RETRY_S.
        """
        # The node itself, once: not the cluster client's command path, whose retries and
        # topology refreshes would wait on the very failover this is about. Briefly: the
        # listener waits meanwhile, and a node cut off answers nothing (left alone a while).
        try:
            async with asyncio.timeout(ROLE_TIMEOUT_S):
                role = await node.execute_command("ROLE")
        except TimeoutError:
            self._unanswered[node.name] = time.monotonic() + UNANSWERED_PAUSE_S
            self._suspect = self._last_silent = node.name
            raise ConnectionError(f"{node.name} did not answer ROLE within {ROLE_TIMEOUT_S} s") from None
        if _text(role[0]) != "master":
            raise ConnectionError(f"{node.name} is a {_text(role[0])} now: the slot map is out of date")


# redis-py 8.1's NodesManager.initialize takes the node that just failed, to ask it last.
_TAKES_LAST_FAILED = "last_failed_node_name" in inspect.signature(NodesManager.initialize).parameters


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
