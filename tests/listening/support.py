"""Shared parts of the listening tests: a clock that stands still, servers on it, listeners."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio import Redis

from storage.clock import Clock
from storage.listening.repository import ListeningHistories
from tests.helpers import Client, RedisProcess, ServerUnderTest

DAY_MS = 86_400_000
# Tokens outlive every clock move a test makes.
TOKEN_TTL_S = 30 * 86400
# How often a playing player reports in these tests: well under the default 60 s of silence.
PLAYER_STEP_MS = 30_000


@dataclass(slots=True)
class FrozenClock(Clock):
    """A clock that moves only when a test shifts it, so 999 ms means 999 ms."""

    base_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def now_ms(self) -> int:
        return self.base_ms + self.shift_ms

    def now_s(self) -> float:
        return (self.base_ms + self.shift_ms) / 1000


class SweepPasses:
    """Counts the sweep passes every node's sweeper completes (observed, not replaced), so that a
    test can wait for the sweeper to have looked at the clock it set instead of sleeping."""

    def __init__(self) -> None:
        self.done = 0
        self._changed = asyncio.Event()

    def completed(self) -> None:
        self.done += 1
        self._changed.set()

    async def more(self, count: int, timeout_s: float = 10) -> None:
        """Wait for ``count`` more passes to complete (the first may have begun before the call)."""
        want = self.done + count
        async with asyncio.timeout(timeout_s):
            while self.done < want:
                self._changed.clear()
                await self._changed.wait()


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> SweepPasses:
    counter = SweepPasses()
    sweep_due = ListeningHistories.sweep_due

    async def counted(self: ListeningHistories, *, limit: int = 100) -> tuple[int, int]:
        result = await sweep_due(self, limit=limit)
        counter.completed()
        return result

    monkeypatch.setattr(ListeningHistories, "sweep_due", counted)
    return counter


def noon_zone(ms: int) -> str:
    """A time zone in which the instant ``ms`` falls near local noon (``Etc/GMT±N``).

    A browser's page counts listening per *its* local day. A test whose clock starts at the real
    time would see a day change when the suite runs near midnight (a CI run at 23:59:29 UTC saw a
    two-day streak where one was played). Pinning the page's zone so that the test starts at noon
    leaves it half a day before a midnight, and its deliberate day shifts stay whole days.
    """
    utc_hour = (ms // 3_600_000) % 24
    offset = 12 - utc_hour  # local = UTC + offset, within -11..+12
    # The Etc/GMT names carry the sign inverted (POSIX): Etc/GMT-3 is three hours east of UTC.
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


async def start_on_clock(redis_url: str, data_dir: Path, clock: Clock, **overrides: object) -> ServerUnderTest:
    """``tests.conftest.start_server`` with the given clock (several servers may share one), and
    other ``overrides`` of the settings.

    The sweeper looks often, so that a crash sweep shows within a test's patience.
    """
    from tests.conftest import start_server

    return await start_server(redis_url, data_dir, clock=clock, listening_sweep_interval_s=0.05, **overrides)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest_asyncio.fixture
async def lserver(
    redis: Redis, redis_process: RedisProcess, tmp_path: Path, clock: FrozenClock
) -> AsyncIterator[ServerUnderTest]:
    srv = await start_on_clock(redis_process.url, tmp_path, clock)
    yield srv
    await srv.stop()


@dataclass
class Listener:
    """A connected player: its socket, its history session id, a device id."""

    client: Client
    history_id: str
    device_id: str = "phone"

    async def report(self, item_id: str, status: str, **fields: Any) -> dict[str, Any]:
        payload = {"session_id": self.history_id, "item_id": item_id, "status": status, "device_id": self.device_id}
        payload.update(fields)
        ack: dict[str, Any] = await self.client.call("listening_report", payload)
        return ack

    async def keep_playing(self, clock: FrozenClock, item_id: str, ms: int) -> None:
        """Play on for ``ms`` as a player does: a ``playing`` report at least every 30 s.

        One move of the clock past the 60 s of silence with a session open races the sweeper
        (it looks every 50 ms): when it looks before the next report, the session is finalized
        as a crash (a CI run saw a pause after 10 silent minutes answered 'none').
        """
        while ms > 0:
            step = min(ms, PLAYER_STEP_MS)
            clock.shift_ms += step
            ms -= step
            ack = await self.report(item_id, "playing")
            assert ack["action"] in ("extended", "throttled"), ack

    def log_events(self) -> list[tuple[str, Any]]:
        return [(n, d) for n, d in self.client.events if n.startswith("listening_")]


async def listener(
    server: ServerUnderTest,
    clients: list[Client],
    user: str = "alice",
    *,
    device_id: str = "phone",
    subscribe: bool = True,
) -> Listener:
    client = Client(server.url, server.token(user, ttl_s=TOKEN_TTL_S))
    clients.append(client)
    await client.connect()
    ack = await client.call("listening_history", {})
    assert ack["ok"] is True, ack
    if subscribe:
        sub = await client.call("subscribe_on_session", {"session_id": ack["session_id"]})
        assert sub["ok"] is True, sub
    return Listener(client=client, history_id=ack["session_id"], device_id=device_id)


def auth(server: ServerUnderTest, user: str = "alice", **kw: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.token(user, ttl_s=TOKEN_TTL_S, **kw)}"}
