"""Every node keeps its Redis' time, whatever its host's clock says.

A field audit ran three nodes on one Redis with faketime: a node 70 s ahead swept every live
listening session the others wrote as silent (24 s of play became five 2 s sessions), one 10
minutes behind had its plays deleted by the others, and a stream paused through it ended its
segment before it began (a negative length, negative offsets in every export)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from storage.clock import Clock, follow_redis
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.listening.support import TOKEN_TTL_S, FrozenClock, SweepPasses, start_on_clock
from tests.streams.helpers import connect, http, started


@dataclass(slots=True)
class SkewedClock(Clock):
    """A host whose clock is ``skew_ms`` off the true time (as faketime makes one)."""

    skew_ms: int = 0

    def host_s(self) -> float:
        return Clock.host_s(self) + self.skew_ms / 1000


@pytest.mark.parametrize("skew_ms", [70_000, -600_000])
async def test_a_host_clock_off_follows_redis_time(redis: Any, skew_ms: int, caplog: pytest.LogCaptureFixture) -> None:
    true, skewed = Clock(), SkewedClock(skew_ms=skew_ms)
    assert abs(skewed.now_ms() - true.now_ms() - skew_ms) < 50
    with caplog.at_level(logging.WARNING, logger="storage.clock"):
        await follow_redis(skewed, redis)
    assert abs(skewed.now_ms() - true.now_ms()) < 50
    assert "sync the host's clock with NTP" in caplog.text
    # A host within the tolerance is left as it is: no step of a few ms back and forth.
    await follow_redis(true, redis)
    assert true.offset_ms == 0


async def test_a_node_ahead_never_sweeps_what_another_node_writes(
    redis_process: RedisProcess, tmp_path: Path, clients: list[Client], passes: SweepPasses
) -> None:
    """Node A on the true clock takes the reports; node B, 70 s ahead (past the 60 s silence),
    runs its sweeper on the same Redis every 50 ms."""
    a: ServerUnderTest = await start_on_clock(redis_process.url, tmp_path / "a", Clock())
    b: ServerUnderTest = await start_on_clock(redis_process.url, tmp_path / "b", SkewedClock(skew_ms=70_000))
    try:
        assert abs(b.services.clock.now_ms() - a.services.clock.now_ms()) < 50
        alice = Client(a.url, a.token("alice", ttl_s=TOKEN_TTL_S))
        clients.append(alice)
        await alice.connect()
        history = (await alice.call("listening_history", {}))["session_id"]
        await alice.call("subscribe_on_session", {"session_id": history})
        report = {"session_id": history, "item_id": "book-1", "status": "playing", "device_id": "phone"}
        assert (await alice.call("listening_report", report))["action"] == "started"
        await passes.more(6)  # both nodes' sweepers, three whole passes each at least
        ack = await alice.call("listening_report", {**report, "status": "paused"})
        # Still open (a tap under a second is deleted, a longer play finalized): never swept.
        assert ack["action"] in ("deleted", "finalized"), ack
        assert not [d for n, d in alice.events if n == "listening_session" and d["data"].get("reason") == "silent"]
    finally:
        await b.stop()
        await a.stop()


async def test_a_segment_closed_by_a_clock_behind_its_start_never_has_a_negative_length(
    redis_process: RedisProcess, tmp_path: Path, clients: list[Client]
) -> None:
    """Started through one node, paused through another whose clock reads earlier (what a host
    10 minutes behind did before nodes kept Redis' time; a few ms still may between two nodes)."""
    ahead, behind = FrozenClock(), FrozenClock()
    behind.base_ms = ahead.base_ms - 600_000
    a = await start_on_clock(redis_process.url, tmp_path / "a", ahead)
    b = await start_on_clock(redis_process.url, tmp_path / "b", behind)
    try:
        session_id, _ = await started(a, clients)
        owner_b = await connect(b, clients, "alice")
        ack = await owner_b.call("stream_set_state", {"session_id": session_id, "action": "pause"})
        assert ack["ok"] is True, ack
        status, body = await http(a, "GET", f"/api/streams/{session_id}")
        assert status == 200, body
        [segment] = body["segments"]
        assert segment["length_ms"] == 0 and segment["ended_at"] == segment["started_at"], segment
    finally:
        await b.stop()
        await a.stop()


class SlowTime:
    """A Redis whose TIME answers arrive ``delay_s`` late (busy with a script or a fork)."""

    def __init__(self, redis: Any, delay_s: float) -> None:
        self._redis, self._delay_s = redis, delay_s

    async def time(self) -> Any:
        answer = await self._redis.time()
        await asyncio.sleep(self._delay_s)
        return answer


async def test_a_slow_answer_moves_no_clock(redis: Any) -> None:
    """TIME answered 1.5 s late moved the node's clock 0.75 s back (half the round trip), then
    forward again at the next good reading: stored times went backwards (audit "hostile3", 5)."""
    clock = Clock()
    await follow_redis(clock, SlowTime(redis, 1.5))
    assert clock.offset_ms == 0
    skewed = SkewedClock(skew_ms=70_000)
    await follow_redis(skewed, SlowTime(redis, 0.2))  # a real skew, but no reading to trust: kept
    assert skewed.offset_ms == 0
    await follow_redis(skewed, redis)
    assert abs(skewed.now_ms() - clock.now_ms()) < 50
