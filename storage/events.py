"""The per-session event log: atomic appends (through the Lua scripts) and recovery reads.

An event is the JSON object ``{session_id, epoch, offset, id, type, ts, data}``. It is built once,
inside the script that commits it, then stored in the session's capped stream and published
on the session's channel byte for byte, so what a live subscriber receives and what a
recovering one replays are the same text.

Redis can come back with less than it acknowledged (an OS crash under ``appendfsync everysec``,
a failover to a lagging replica): the log's offsets go backwards within one epoch and would be
handed out again for other events. Whoever notices (a resuming client whose offset is ahead of
the log or whose last event id is not the stored one at that offset, a node whose bus saw more
than the log now holds) calls :meth:`EventLog.reset_epoch`, which starts a new epoch, so every
client takes a snapshot instead of a rewritten history.

A client's word alone is no evidence: anyone with a link could otherwise restart a session's
history for everyone, as often as it likes. Each event id carries a seal (the first 16 hex
digits of SHA-1 over a deployment secret, the session, epoch and offset, computed by the
script that appends it); a resuming client's claim restarts the epoch only when the id it names
is sealed for exactly the epoch and offset it claims, i.e. the server issued that event there
and the log no longer holds it. Any other false claim costs only that client a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import json
import logging
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import AskError, NoScriptError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from protocol import order
from protocol.errors import CodedError, ErrorCode
from protocol.events import SESSION_RESYNC
from storage.clock import Clock
from storage.keys import Keys
from storage.lean_redis import LeanRedis, Reply, read_together
from storage.scripts import Explain, Script, checked, plain_script, refused

log = logging.getLogger(__name__)
# A change not confirmed durable is said to the operator at most once a minute per node: every
# write of a shard without a replica is refused so, and the clients only see `unavailable`.
UNCONFIRMED_LOG_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class Event:
    """One committed event, with its JSON text exactly as published."""

    offset: int
    type: str
    raw: str
    id: str = ""

    @classmethod
    def parse(cls, raw: str) -> Event:
        """Read offset, type and id out of an event's JSON text."""
        doc = json.loads(raw)
        return cls(offset=int(doc["offset"]), type=str(doc["type"]), raw=raw, id=str(doc.get("id") or ""))


@dataclass(frozen=True, slots=True)
class Position:
    """Where a session's log stands: its epoch, last offset and the id of the event there."""

    epoch: str
    offset: int
    last_id: str = ""

    @classmethod
    def from_meta(cls, values: list[Any]) -> Position:
        """From the log metadata fields :data:`POSITION_FIELDS`, as HMGET returns them."""
        epoch, offset, last_id = values
        return cls(epoch=str(epoch or ""), offset=int(offset or 0), last_id=str(last_id or ""))


# The log metadata fields a position is read from (HMGET order of Position.from_meta).
POSITION_FIELDS = ("epoch", "offset", "id")


@dataclass(frozen=True, slots=True)
class Recovery:
    """The answer to "what did I miss since (epoch, offset)?"."""

    position: Position
    events: list[Event]
    recovered: bool
    rolled_back: bool = False  # the log holds less than the asker saw: its epoch must be reset


class EpochSource:
    """Epoch labels, unique across processes (a random prefix) and calls (a counter).

    An epoch is offered to every script call but used only when a log starts anew; drawing
    random bytes for each call would cost more than the rest of the call's Python side.
    """

    __slots__ = ("_count", "_prefix")

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(4)
        self._count = itertools.count(1)

    def next(self) -> str:
        """A label no other call of any process has been offered."""
        return f"{self._prefix}{next(self._count):x}"


class Durability(StrEnum):
    """When a change counts as acknowledged (``SESSIONHUB_DURABILITY``)."""

    MEMORY = "memory"  # applied in Redis (and its AOF within a second, under appendfsync everysec)
    AOF = "aof"  # fsynced to the local AOF: WAITAOF 1 0 (Redis 7.2+, appendonly yes)
    REPLICA = "replica"  # received by at least one replica: WAIT 1


class NotConfirmed(CodedError):
    """``unavailable`` for a change that was applied but whose durability was not confirmed in
    time: the client is told to retry (a retry is a no-op that confirms), while the server knows
    the change is in place -- e.g. a recording lease it took must be kept (handlers/voice)."""


class Submitted:
    """A commit sent without a task (:meth:`EventLog.submit`): ``future`` is done when its reply
    is in (its callback runs in the read that brings it: ``storage.lean_redis.Reply``), and
    :meth:`result` then says what :meth:`EventLog.run` would have returned or raised."""

    __slots__ = ("_ahead", "_explain", "future")

    def __init__(self, future: Reply, ahead: Reply | None, explain: Explain | None) -> None:
        self.future = future
        self._ahead = ahead
        self._explain = explain

    def result(self) -> list[Any]:
        """The script's checked answer, once ``future`` is done: a refusal's coded error, an
        error reply or a lost connection raised as :meth:`EventLog.run` raises them (the
        script's own error first, then the write sent ahead of it)."""
        ahead_error = _error_of(self._ahead) if self._ahead is not None else None
        (reply,) = self.future.result()
        if isinstance(reply, RedisError):
            raise reply
        if ahead_error is not None:
            raise ahead_error
        return checked(reply, self._explain)


def _error_of(future: Reply) -> BaseException | None:
    """What a sent-ahead write failed with (its error reply, or its connection's loss), if it
    did; its replies come before its script's, so it is done when the script's future is."""
    if not future.done() or future.cancelled():
        return None
    failure = future.exception()
    if failure is not None:
        return failure
    (reply,) = future.result()
    return reply if isinstance(reply, RedisError) else None


def _read_off(future: asyncio.Future[list[Any]]) -> None:
    """Take a sent-ahead write's outcome that nobody waits for any more (its script failed)."""
    if not future.cancelled():
        future.exception()


async def _skip_answer(connection: Any) -> None:
    """Read the wait's answer after the script's error, whatever it says: a node that answered
    MOVED because it became a replica answers the WAIT with an error too ("WAIT cannot be used
    with replica instances"), which must not replace the MOVED the caller acts on."""
    with contextlib.suppress(ResponseError):
        await connection.read_response()


class EventLog:
    """Runs session-changing scripts with the common event arguments and reads the log.

    Expects a Redis client built with ``decode_responses=True``.
    """

    def __init__(
        self,
        *,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        maxlen: int,
        durability: Durability = Durability.MEMORY,
        durability_timeout_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._maxlen = maxlen
        self._epochs = EpochSource()
        self._reset = plain_script(redis, "core/log_reset.lua")
        self._id_key: str | None = None  # the deployment's id-sealing secret, read once
        self._durability = durability
        self._durability_timeout_ms = durability_timeout_ms
        self._unconfirmed_said_at = -UNCONFIRMED_LOG_EVERY_S  # when a change not confirmed was last said
        self._unconfirmed_unsaid = 0

    @property
    def durability(self) -> Durability:
        """When a change counts as acknowledged (``SESSIONHUB_DURABILITY``)."""
        return self._durability

    async def check_durability(self) -> None:
        """Raise ``unavailable`` at start-up when the Redis cannot give the configured durability."""
        if self._durability is Durability.AOF:
            try:
                await self._redis.execute_command("WAITAOF", 1, 0, 1)
            except RedisError as exc:
                raise CodedError(
                    ErrorCode.UNAVAILABLE, f"SESSIONHUB_DURABILITY=aof needs Redis 7.2+ with appendonly yes: {exc}"
                ) from exc

    async def run(
        self,
        script: Script,
        session_id: str,
        *,
        keys: list[str] | None = None,
        args: list[Any] | None = None,
        now_ms: int | None = None,
        explain: Explain | None = None,
        ahead: tuple[Any, ...] | None = None,
    ) -> list[Any]:
        """Run an event-appending script; raise the coded error of a refusal it returns.

        ``explain`` words a refusal from its detail (:func:`storage.scripts.checked`). ``ahead``
        is a write Redis must run before the script (a recording's sweep entry, in another slot):
        over a lean link it leaves in the script's write, just ahead of it, and its reply is read
        with the script's (one round trip instead of two); otherwise it is awaited first. Its
        error is raised after the script ran.
        """
        now = self._clock.now_ms() if now_ms is None else now_ms
        id_key = self._id_key if self._id_key is not None else await self._load_id_key()
        all_keys, all_args = self._call(session_id, keys, args, now, id_key)
        memory = self._durability is Durability.MEMORY
        turn = order.current()
        if turn is not None:
            if turn.issued:  # a second commit could land behind the next event's: not pipelinable
                raise RuntimeError("a pipelined event commits once (protocol.order)")
            # A pipelined event (protocol.order): its commit follows the one of the event
            # before it -- right behind it over the ordered link, else once that event is done.
            ordered = memory and self._in_order(script, all_keys, all_args)
            wait = turn.issue_wait() if ordered else turn.finish_wait()
            if wait is not None:
                await wait
        sent = self._send_ahead(ahead, script) if ahead is not None and memory else None
        if ahead is not None and sent is None:
            await self._redis.execute_command(*ahead)
        if turn is not None:
            turn.mark_issued()  # nothing yields between this and the script's request
        if not memory:
            return checked(await self._run_durably(script, all_keys, all_args), explain)
        try:
            result = await script(keys=all_keys, args=all_args)
        except BaseException:
            if sent is not None:
                sent.add_done_callback(_read_off)
            raise
        finally:
            if turn is not None and (wait := turn.finish_wait()) is not None:
                await wait  # what this event does next comes after the event before it
        if sent is not None:
            (reply,) = await sent
            if isinstance(reply, RedisError):
                raise reply
        return checked(result, explain)

    def submit(
        self,
        script: Script,
        session_id: str,
        *,
        keys: list[str] | None = None,
        args: list[Any] | None = None,
        explain: Explain | None = None,
        ahead: tuple[Any, ...] | None = None,
    ) -> Submitted | None:
        """:meth:`run`'s commit sent now, without a task or a coroutine: what it is waited on by
        (:class:`Submitted`), or None, having sent nothing, when it cannot go so -- a durable
        mode (its WAIT needs a pipeline), the deployment's id key not read yet, a call that
        does not go over the ordered lean link (``LeanRedis.submit_in_order``): then await
        :meth:`run`.

        The caller keeps a connection's order (``protocol.order``, rule 1): it submits only
        once the commit of the event before it has left, which the lean link then runs first.
        """
        id_key = self._id_key
        if self._durability is not Durability.MEMORY or id_key is None:
            return None
        redis = self._redis
        if not isinstance(redis, LeanRedis) or script.registered_client is not redis:
            return None
        all_keys, all_args = self._call(session_id, keys, args, self._clock.now_ms(), id_key)
        script.check(all_keys, all_args)
        sent = redis.submit_in_order(script.sha, all_keys, all_args, ahead)
        return None if sent is None else Submitted(sent[0], sent[1], explain)

    def _call(
        self, session_id: str, keys: list[str] | None, args: list[Any] | None, now: int, id_key: str
    ) -> tuple[list[str], list[Any]]:
        """The keys and arguments of an event-appending script's call: the common ones first."""
        all_keys = [self._keys.log(session_id), self._keys.log_meta(session_id), *(keys or [])]
        all_args = [
            self._keys.channel(session_id),
            session_id,
            f"{self._epochs.next()}|{id_key}",
            now,
            self._maxlen,
            *(args or []),
        ]
        return all_keys, all_args

    def _in_order(self, script: Script, keys: list[str], args: list[Any]) -> bool:
        """Whether the script's call goes over the lean link, where Redis runs it after every
        request made on the link before it (and before every request made after it)."""
        redis = self._redis
        return (
            isinstance(redis, LeanRedis)
            and script.registered_client is redis
            and redis.keeps_order("EVALSHA", script.sha, len(keys), *keys, *args)
        )

    def _send_ahead(self, ahead: tuple[Any, ...], script: Script) -> asyncio.Future[list[Any]] | None:
        """``ahead`` sent now over the lean link the script's call takes next, or None.

        Only when the script goes over that same link (its registered client is this one, called
        without a pipeline): Redis answers one connection's commands in the order they arrive, so
        the write runs first, as when it was awaited on its own.
        """
        redis = self._redis
        if not isinstance(redis, LeanRedis) or script.registered_client is not redis:
            return None
        return redis.send_ahead(*ahead)

    async def _load_id_key(self) -> str:
        """The secret every node seals event ids with: made by the first node, kept in Redis."""
        key = self._keys.log_id_key()
        await self._redis.set(key, secrets.token_hex(16), nx=True)
        found = await self._redis.get(key)
        self._id_key = str(found or "")
        return self._id_key

    @property
    def id_key_held(self) -> bool:
        """Whether this node holds the id-sealing secret (read at a write, or by the watch)."""
        return bool(self._id_key)

    async def id_key_gone(self) -> bool:
        """Whether Redis no longer holds the id-sealing secret this log read: emptied under a link
        that stayed up (``FLUSHALL``, ``FLUSHDB``, keys evicted), which no reconnect announces.
        Gone, or another: a node that wrote first after the loss made a new one, and a look for
        the key alone missed the loss on every other node (audit verify39). A node that has not
        read it yet (one that only served subscribers: it writes no event) takes the one Redis
        holds now as the one to watch; without it such a node never noticed a flush, and its
        subscribers went on showing a session that was gone (audit "tlsredis"). False then, and
        while Redis holds none."""
        if not self._id_key:
            found = await self._redis.get(self._keys.log_id_key())
            if found and not self._id_key:  # a write may have read it meanwhile: the same key
                self._id_key = str(found)
            return False
        held = self._id_key
        found = await self._redis.get(self._keys.log_id_key())
        # Forgotten meanwhile (the bus's reconnect): the next write reads the key again.
        return self._id_key == held and str(found or "") != held

    def forget_id_key(self) -> None:
        """Read the id-sealing secret again before the next event: a Redis that came back empty
        lost it, the next node to write made another, and a node sealing with the old one issued
        ids no other node takes as evidence (nor it theirs)."""
        self._id_key = None

    def sealed(self, session_id: str, epoch: str, offset: int, event_id: str) -> bool:
        """True when ``event_id`` is an id this deployment issued at ``(epoch, offset)``."""
        seal = event_id.rpartition(".")[2]
        if not self._id_key or len(seal) != 16 or event_id.count(".") != 2:
            return False
        text = f"{self._id_key}|{session_id}|{epoch}|{offset}".encode()
        # SHA-1 of secret and text: what a Lua script can compute (redis.sha1hex). The text ends
        # with the offset in digits, so no length extension of it names another offset.
        return hmac.compare_digest(hashlib.sha1(text).hexdigest()[:16], seal)

    async def _run_durably(self, script: Script, keys: list[str], args: list[Any]) -> Any:
        # WAIT / WAITAOF count the writes of their own connection: the script and the wait go
        # in one pipeline, which holds one connection for both.
        wait: tuple[Any, ...] = (
            ("WAITAOF", 1, 0, self._durability_timeout_ms)
            if self._durability is Durability.AOF
            else ("WAIT", 1, self._durability_timeout_ms)
        )
        if isinstance(self._redis, RedisCluster):
            result, confirmed = await self._run_on_owner(self._redis, script, keys, args, wait)
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                await script(keys=keys, args=args, client=pipe)
                pipe.execute_command(*wait)
                result, confirmed = await pipe.execute()
        count = confirmed[0] if isinstance(confirmed, list) else confirmed
        if not refused(result) and int(count) < 1:
            self._say_unconfirmed(keys[0])
            raise NotConfirmed(
                ErrorCode.UNAVAILABLE,
                f"the change was applied but not confirmed {self._durability.value}-durable within "
                f"{self._durability_timeout_ms} ms",
            )
        return result

    def _say_unconfirmed(self, key: str) -> None:
        """A WARNING, at most once a minute: an operator who added a master without a replica, or
        whose replica lags, saw every write of its slots refused with nothing in the log above
        INFO (an audit's reshard onto a new master: 40 s of refused uploads)."""
        now = time.monotonic()
        if now - self._unconfirmed_said_at < UNCONFIRMED_LOG_EVERY_S:
            self._unconfirmed_unsaid += 1
            return
        where = ""
        if isinstance(self._redis, RedisCluster):
            node = self._redis.get_node_from_key(key)
            where = f" on {node.name}" if node is not None else ""
        until = (
            "its append-only file is fsynced in time"
            if self._durability is Durability.AOF
            else "the master has a replica that keeps up"
        )
        log.warning(
            "a change was applied%s but not confirmed %s-durable within %d ms (SESSIONHUB_DURABILITY): "
            "such changes are answered unavailable until %s (%d more since the last line)",
            where,
            self._durability.value,
            self._durability_timeout_ms,
            until,
            self._unconfirmed_unsaid,
        )
        self._unconfirmed_said_at, self._unconfirmed_unsaid = now, 0

    @staticmethod
    async def _run_on_owner(
        cluster: RedisCluster, script: Script, keys: list[str], args: list[Any], wait: tuple[Any, ...]
    ) -> tuple[Any, Any]:
        """The script and the wait on one connection to the master of the session's slot.

        A cluster pipeline refuses scripts, and a wait sent on another connection would count
        nothing (issue 24, item 5). A slot that moved answers ``MOVED``/``ASK`` (the script did
        not run): the slot map is read anew and the error raised -- ``unavailable``, retryable.
        """
        # Raw commands, checked against the script's header like every other call.
        calls = script.commands(keys, args)
        node = cluster.get_node_from_key(keys[0])
        if node is None:
            raise RedisClusterException("no master holds the session's slot")
        connection = node.acquire_connection()
        try:
            for call in calls:
                await connection.send_packed_command(connection.pack_commands([call, wait]))
                try:
                    result = await connection.read_response()
                except NoScriptError:
                    await _skip_answer(connection)  # the wait's answer, about nothing: load it
                    continue
                except ResponseError:
                    await _skip_answer(connection)  # keeps the connection in step
                    raise
                return result, await connection.read_response()
            raise ResponseError("the script could not be loaded")
        except (AskError, RedisConnectionError, RedisTimeoutError, OSError):
            await connection.disconnect()
            with contextlib.suppress(RedisError, RedisClusterException, OSError):
                await cluster.nodes_manager.initialize()
            raise
        finally:
            node.release(connection)

    async def append(self, script: Script, session_id: str, etype: str, data: dict[str, Any]) -> int:
        """Append one state-less event (``append.lua``) to an existing session."""
        result = await self.run(
            script,
            session_id,
            keys=[self._keys.session(session_id)],
            args=[etype, json.dumps(data, separators=(",", ":"))],
        )
        return int(result[0])

    async def append_kept(
        self,
        script: Script,
        session_id: str,
        etype: str,
        data: dict[str, Any],
        *,
        field: str,
        kind: str,
        unless_job: str = "",
        retried_at_ms: int | None = None,
    ) -> int:
        """Append one state-less event (``append_kept.lua``), and keep ``data`` with its time
        (``at``) in ``field`` of the session's record when the session is of ``kind``: the latest
        of its sort, for a reader that comes after the event. ``unless_job``: neither when the
        field keeps a step or outcome of that job already (0 is returned), but for its failure
        kept before ``retried_at_ms`` (a dead letter queued again then)."""
        kept = json.dumps({**data, "at": self._clock.now_ms()}, separators=(",", ":"))
        result = await self.run(
            script,
            session_id,
            keys=[self._keys.session(session_id)],
            args=[
                etype,
                json.dumps(data, separators=(",", ":")),
                field,
                kept,
                kind,
                unless_job,
                "" if retried_at_ms is None else retried_at_ms,
            ],
        )
        return int(result[0])

    async def position(self, session_id: str) -> Position:
        """The log's current position (``("", 0)`` for a log that never started)."""
        return Position.from_meta(await self._redis.hmget(self._keys.log_meta(session_id), *POSITION_FIELDS))

    async def read_after(
        self, session_id: str, epoch: str, offset: int, last_id: str | None = None, *, claimed: bool = False
    ) -> Recovery:
        """Events after ``offset`` of ``epoch``, or ``recovered=False`` when they are gone.

        ``last_id``, when given, is the id of the event the asker saw at ``offset``; a stored
        event with another id there (or a log behind ``offset``) means the history was
        rewritten: ``rolled_back`` is then True. When the asker is a client (``claimed``), only
        an id sealed for exactly ``(epoch, offset)`` counts as evidence (module docstring).
        """
        meta, entries = await read_together(
            self._redis,
            ("HMGET", self._keys.log_meta(session_id), *POSITION_FIELDS),
            # From `offset` itself (when still stored): its id is checked against `last_id`.
            ("XRANGE", self._keys.log(session_id), f"{offset}-0", "+", "COUNT", self._maxlen * 2 + 1),
        )
        position = Position.from_meta(meta)
        try:
            events = [Event.parse(fields["e"]) for _, fields in entries]
        except (ValueError, KeyError, TypeError):
            # A malformed entry cannot be replayed: the asker takes a snapshot instead of stalling.
            return Recovery(position=position, events=[], recovered=False)
        at_offset = events[0] if events and events[0].offset == offset else None
        after = events[1:] if at_offset is not None else events
        contradicted = position.epoch == epoch and _rewritten(position, offset, last_id, at_offset)
        rolled_back = contradicted
        if contradicted and claimed:
            # Unproven, the contradiction still denies this asker a replay (it takes a snapshot).
            if self._id_key is None:
                await self._load_id_key()
            rolled_back = last_id is not None and self.sealed(session_id, epoch, offset, last_id)
        complete = (
            position.epoch == epoch
            and not contradicted
            and offset <= position.offset
            and (not after or after[0].offset == offset + 1)
            and (after[-1].offset if after else offset) == position.offset
        )
        events = after if complete else []
        return Recovery(position=position, events=events, recovered=complete, rolled_back=rolled_back)

    async def reset_epoch(self, session_id: str, rewritten_epoch: str) -> Position:
        """Start a new epoch if the log is still in ``rewritten_epoch`` (see the module docstring)."""
        epoch, offset = await self._reset(
            keys=[self._keys.log(session_id), self._keys.log_meta(session_id)],
            args=[self._keys.channel(session_id), session_id, rewritten_epoch, self._epochs.next(), SESSION_RESYNC],
        )
        return Position(epoch=str(epoch), offset=int(offset))


def _rewritten(position: Position, offset: int, last_id: str | None, at_offset: Event | None) -> bool:
    """True when the log of the same epoch contradicts what the asker saw."""
    if offset > position.offset:
        return True  # the asker saw offsets the log no longer has
    if not last_id or offset == 0:
        return False  # nothing to compare (a client that does not send ids)
    if at_offset is not None:
        return at_offset.id != last_id
    return offset == position.offset and position.last_id not in ("", last_id)
