"""Many clients connecting and subscribing at once: a bounded number of opening steps per loop
turn (issue 20, finding 3, its reconnect half).

Every CONNECT (its JWT verified) and every subscribe (its Redis reads and snapshot) that was
ready ran in the same turn of the event loop: 10,000 clients coming back at once made turns of
hundreds of such steps, and ``/healthz`` went unanswered for 1-2 s. The test counts, per loop
turn, the CONNECTs and subscribes the server starts while CLIENTS connections send theirs in
one burst. The count is of steps, not time, so a loaded machine cannot fail it; before the fix
a burst's steps all ran in one or two turns.
"""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handlers.admission import TurnGate
from server.transport.accept import ACCEPT_PER_TURN, LISTEN_BACKLOG
from tests.conftest import start_server
from tests.helpers import ServerUnderTest, fast_lane_only
from tests.raw_wire import client_frame, port_of, websocket_request

pytestmark = fast_lane_only

CLIENTS = 120
# What a turn may hold of one kind of opening step (the server admits 8; a little slack).
BOUND_PER_TURN = 16


class TurnClock:
    """Numbers the turns of the running loop: a callback that schedules itself for the next."""

    def __init__(self) -> None:
        self.turn = 0
        self._stopped = False
        asyncio.get_running_loop().call_soon(self._tick)

    def _tick(self) -> None:
        self.turn += 1
        if not self._stopped:
            asyncio.get_running_loop().call_soon(self._tick)

    def stop(self) -> None:
        self._stopped = True


def counting(clock: TurnClock, per_turn: collections.Counter[int], call: Callable[..., Any]) -> Callable[..., Any]:
    """``call``, counting its calls per loop turn in ``per_turn``."""

    def counted(*args: Any, **kwargs: Any) -> Any:
        per_turn[clock.turn] += 1
        return call(*args, **kwargs)

    return counted


class Opening:
    """One raw Engine.IO WebSocket, opened and then driven a frame at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Opening:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(websocket_request(port))
        opening = cls(reader, writer)
        await opening.until("0{")
        return opening

    async def until(self, prefix: str, timeout: float = 60) -> str:
        """The next text frame starting with ``prefix`` (the 101's head is skipped first)."""
        async with asyncio.timeout(timeout):
            while True:
                head = await self.reader.readexactly(2)
                if head == b"HT":
                    await self.reader.readuntil(b"\r\n\r\n")
                    continue
                size = head[1] & 0x7F
                if size == 126:
                    size = int.from_bytes(await self.reader.readexactly(2), "big")
                payload = (await self.reader.readexactly(size)).decode()
                if payload == "2":
                    self.writer.write(client_frame(0x1, b"3"))
                elif payload.startswith(prefix):
                    return payload

    def send(self, text: str) -> None:
        self.writer.write(client_frame(0x1, text.encode()))


async def burst(openings: list[Opening], frame: Callable[[int], str], answer: str) -> None:
    """Every connection sends its frame in the same loop step, then every answer is awaited."""
    for index, opening in enumerate(openings):
        opening.send(frame(index))
    await asyncio.gather(*(opening.until(answer) for opening in openings))


async def test_a_burst_of_connects_and_subscribes_is_admitted_a_few_per_loop_turn(
    redis_process: Any, tmp_path: Any
) -> None:
    srv: ServerUnderTest = await start_server(redis_process.url, tmp_path, max_connections_per_address=1000)
    openings: list[Opening] = []
    clock: TurnClock | None = None
    try:
        port = port_of(srv.url)
        session_id = await srv.create_session("alice")
        token = srv.token("alice")
        openings = list(await asyncio.gather(*(Opening.open(port) for _ in range(CLIENTS))))
        connects: collections.Counter[int] = collections.Counter()
        subscribes: collections.Counter[int] = collections.Counter()
        services = srv.services
        clock = TurnClock()
        services.tokens.verify = counting(clock, connects, services.tokens.verify)  # type: ignore[method-assign]
        services.kinds.readable = counting(clock, subscribes, services.kinds.readable)  # type: ignore[method-assign]
        await burst(openings, lambda _: "40" + json.dumps({"token": token}), "40")
        subscribe = json.dumps(["subscribe_on_session", {"session_id": session_id}])
        await burst(openings, lambda i: f"42{i}{subscribe}", "43")
        assert sum(connects.values()) == CLIENTS and sum(subscribes.values()) == CLIENTS
        assert max(connects.values()) <= BOUND_PER_TURN, f"CONNECTs per turn: {sorted(connects.values())[-5:]}"
        assert max(subscribes.values()) <= BOUND_PER_TURN, f"subscribes per turn: {sorted(subscribes.values())[-5:]}"
    finally:
        if clock is not None:
            clock.stop()
        for opening in openings:
            opening.writer.close()
        await srv.stop()


async def test_the_listening_queue_is_deep(redis_process: Any, tmp_path: Any) -> None:
    # A full accept queue drops new connections' SYNs (the client retries after 1 s): thousands
    # connecting at once must find room, a /healthz probe among them. ``ss`` shows a listening
    # socket's backlog as its Send-Q; aiohttp's default was 128.
    srv: ServerUnderTest = await start_server(redis_process.url, tmp_path)
    try:
        port = port_of(srv.url)
        listing = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=True)
        backlogs = [int(line.split()[2]) for line in listing.stdout.splitlines() if line.startswith("LISTEN")]
        somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
        assert backlogs == [min(LISTEN_BACKLOG, somaxconn)], listing.stdout
        assert ACCEPT_PER_TURN <= 128  # asyncio's accepts per turn: the deep queue is not one long turn
    finally:
        await srv.stop()


async def test_the_gate_admits_its_count_per_turn_in_order_and_skips_the_cancelled() -> None:
    gate = TurnGate(2)
    clock = TurnClock()
    entered: list[tuple[int, int]] = []  # (who, turn)

    async def enter(who: int) -> None:
        await gate.enter()
        entered.append((who, clock.turn))

    try:
        tasks = [asyncio.ensure_future(enter(who)) for who in range(7)]
        await asyncio.sleep(0)  # every task has entered or queued
        tasks[3].cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        clock.stop()
    assert [who for who, _ in entered] == [0, 1, 2, 4, 5, 6]
    per_turn = collections.Counter(turn for _, turn in entered)
    assert max(per_turn.values()) <= 2 and gate.peak <= 2 and gate.waiting() == 0


async def test_a_burst_of_follows_is_admitted_a_few_per_loop_turn(redis_process: Any, tmp_path: Any) -> None:
    """Every page with the FAB follows its user's active session on each connect: clients of
    CLIENTS users coming back at once follow at once, and each follow opens a feed (a SUBSCRIBE)
    and reads the pointer. They start a few per turn, as subscribes do; ungated, a burst's
    follows all started in one or two turns (5,000 held /healthz 0.2-0.3 s)."""
    srv: ServerUnderTest = await start_server(redis_process.url, tmp_path, max_connections_per_address=1000)
    openings: list[Opening] = []
    clock: TurnClock | None = None
    try:
        port = port_of(srv.url)
        openings = list(await asyncio.gather(*(Opening.open(port) for _ in range(CLIENTS))))
        await burst(openings, lambda i: "40" + json.dumps({"token": srv.token(f"user-{i}")}), "40")
        follows: collections.Counter[int] = collections.Counter()
        bus = srv.services.bus
        clock = TurnClock()
        bus.follow_user = counting(clock, follows, bus.follow_user)  # type: ignore[method-assign]
        follow = json.dumps(["follow_active_session", {}])
        await burst(openings, lambda i: f"42{i}{follow}", "43")
        assert sum(follows.values()) == CLIENTS
        assert max(follows.values()) <= BOUND_PER_TURN, f"follows per turn: {sorted(follows.values())[-5:]}"
    finally:
        if clock is not None:
            clock.stop()
        for opening in openings:
            opening.writer.close()
        await srv.stop()
