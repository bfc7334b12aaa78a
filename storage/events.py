"""The per-session event log: atomic appends (through the Lua scripts) and recovery reads.

An event is the JSON object ``{session_id, epoch, offset, type, ts, data}``. It is built once,
inside the script that commits it, then stored in the session's capped stream and published
on the session's channel byte for byte, so what a live subscriber receives and what a
recovering one replays are the same text.
"""

from __future__ import annotations

import itertools
import json
import secrets
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from protocol.errors import CodedError
from storage.clock import Clock
from storage.keys import Keys


@dataclass(frozen=True, slots=True)
class Event:
    """One committed event, with its JSON text exactly as published."""

    offset: int
    type: str
    raw: str

    @classmethod
    def parse(cls, raw: str) -> Event:
        """Read offset and type out of an event's JSON text."""
        doc = json.loads(raw)
        return cls(offset=int(doc["offset"]), type=str(doc["type"]), raw=raw)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a session's log stands: its epoch and last offset."""

    epoch: str
    offset: int


@dataclass(frozen=True, slots=True)
class Recovery:
    """The answer to "what did I miss since (epoch, offset)?"."""

    position: Position
    events: list[Event]
    recovered: bool


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


class EventLog:
    """Runs session-changing scripts with the common event arguments and reads the log.

    Expects a Redis client built with ``decode_responses=True``.
    """

    def __init__(self, *, redis: Redis, keys: Keys, clock: Clock, maxlen: int) -> None:
        self._redis = redis
        self._keys = keys
        self._clock = clock
        self._maxlen = maxlen
        self._epochs = EpochSource()

    async def run(
        self,
        script: AsyncScript,
        session_id: str,
        *,
        keys: list[str] | None = None,
        args: list[Any] | None = None,
        now_ms: int | None = None,
    ) -> list[Any]:
        """Run an event-appending script; raise the coded error of a refusal it returns."""
        now = self._clock.now_ms() if now_ms is None else now_ms
        all_keys = [self._keys.log(session_id), self._keys.log_meta(session_id), *(keys or [])]
        all_args = [
            self._keys.channel(session_id),
            session_id,
            self._epochs.next(),
            now,
            self._maxlen,
            *(args or []),
        ]
        result = await script(keys=all_keys, args=all_args)
        if result and result[0] is None:
            raise CodedError.from_wire(str(result[1]))
        return list(result)

    async def append(self, script: AsyncScript, session_id: str, etype: str, data: dict[str, Any]) -> int:
        """Append one state-less event (``append.lua``) to an existing session."""
        result = await self.run(
            script,
            session_id,
            keys=[self._keys.session(session_id)],
            args=[etype, json.dumps(data, separators=(",", ":"))],
        )
        return int(result[0])

    async def position(self, session_id: str) -> Position:
        """The log's current epoch and offset (``("", 0)`` for a log that never started)."""
        epoch, offset = await self._redis.hmget(self._keys.log_meta(session_id), "epoch", "offset")
        return Position(epoch=str(epoch or ""), offset=int(offset or 0))

    async def read_after(self, session_id: str, epoch: str, offset: int) -> Recovery:
        """Events after ``offset`` of ``epoch``, or ``recovered=False`` when they are gone."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self._keys.log_meta(session_id), "epoch", "offset")
            pipe.xrange(self._keys.log(session_id), min=f"{offset + 1}-0", max="+", count=self._maxlen * 2)
            (meta_epoch, meta_offset), entries = await pipe.execute()
        position = Position(epoch=str(meta_epoch or ""), offset=int(meta_offset or 0))
        events = [Event.parse(fields["e"]) for _, fields in entries]
        complete = (
            position.epoch == epoch
            and offset <= position.offset
            and (not events or events[0].offset == offset + 1)
            and (events[-1].offset if events else offset) == position.offset
        )
        return Recovery(position=position, events=events if complete else [], recovered=complete)
