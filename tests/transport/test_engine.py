"""The lighter Engine.IO pieces: the list-based queue and timer-driven pings."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from engineio.packet import MESSAGE, Packet

from server.transport.engine import LightQueue
from tests.conftest import start_server
from tests.helpers import OWNER, Client, serving_lane
from tests.raw_wire import RawWebSocket, port_of


async def test_queue_is_fifo_and_get_waits() -> None:
    queue = LightQueue()
    assert queue.empty() and queue.qsize() == 0
    with pytest.raises(asyncio.QueueEmpty):
        queue.get_nowait()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert not getter.done()
    queue.put_nowait("a")
    await queue.put("b")
    assert await asyncio.wait_for(getter, 1) == "a"
    assert queue.get_nowait() == "b" and queue.empty()


async def test_a_cancelled_get_loses_no_item() -> None:
    queue = LightQueue()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.01)
    # Woken but cancelled before it ran: the item must still be there for the next getter.
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("kept")
    getter.cancel()
    await asyncio.gather(getter, return_exceptions=True)
    assert getter.cancelled() or getter.result() == "kept"
    if getter.cancelled():
        assert await asyncio.wait_for(queue.get(), 1) == "kept"


async def test_join_waits_for_task_done() -> None:
    queue = LightQueue()
    await queue.join()  # nothing outstanding
    queue.put_nowait(1)
    queue.put_nowait(2)
    joiner = asyncio.create_task(queue.join())
    queue.get_nowait()
    queue.task_done()
    await asyncio.sleep(0)
    assert not joiner.done()
    queue.get_nowait()
    queue.task_done()
    await asyncio.wait_for(joiner, 1)
    with pytest.raises(ValueError):
        queue.task_done()


async def test_timer_pings_keep_live_clients_and_events_flowing(redis_process: Any, redis: Any, tmp_path: Path) -> None:
    srv = await start_server(redis_process.url, tmp_path, ping_interval_s=0.2, ping_timeout_s=0.5)
    client = Client(srv.url, srv.token("alice"))
    pongs: list[float] = []
    try:
        await client.connect()
        original = client.sio.eio._receive_packet

        async def spy(pkt: Any) -> None:
            if pkt.packet_type == 2:  # PING from the server
                pongs.append(asyncio.get_running_loop().time())
            await original(pkt)

        client.sio.eio._receive_packet = spy  # type: ignore[method-assign]
        session_id = await srv.create_session("alice")
        await client.call("subscribe_on_session", {"session_id": session_id})
        await asyncio.sleep(1.5)  # three times the ping timeout
        assert client.sio.connected and len(pongs) >= 4
        await srv.services.voice.set_status(session_id, "recording", OWNER)
        await client.wait_for(lambda: client.offsets(session_id) == [2])
    finally:
        await client.close()
        await srv.stop()


async def test_an_overflowing_queue_calls_back_once_and_drops_what_waits() -> None:
    from engineio import packet as eio_packet

    queue = LightQueue(limit_bytes=100)
    cuts: list[int] = []
    queue.on_overflow = lambda: cuts.append(queue.qsize())
    queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data="x" * 60))
    assert queue.pending_bytes() == 60 and cuts == []
    queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data="y" * 60))
    assert cuts == [0] and queue.qsize() == 0 and queue.pending_bytes() == 0
    queue.put_nowait(eio_packet.Packet(eio_packet.MESSAGE, data="z"))  # dropped: the socket is being cut
    queue.put_nowait(None)  # the end marker still gets through
    assert cuts == [0] and queue.qsize() == 1
    assert await queue.get() is None
    queue.task_done()
    await asyncio.wait_for(queue.join(), 1)  # nothing dropped is waited for


async def test_nothing_after_the_end_marker_is_waited_for() -> None:
    from engineio import packet as eio_packet

    queue = LightQueue()
    queue.put_nowait(None)  # a poll will return at it: what follows is never written
    queue.put_nowait(eio_packet.Packet(eio_packet.CLOSE))
    assert queue.qsize() == 1 and queue.idle()
    await asyncio.wait_for(queue.join(), 1)  # the marker is not waited for either
    assert await queue.get() is None
    queue.task_done()
    with pytest.raises(ValueError):
        queue.task_done()


async def test_join_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import server.transport.engine

    monkeypatch.setattr(server.transport.engine, "JOIN_TIMEOUT_S", 0.05)
    queue = LightQueue()
    queue.put_nowait("never taken")
    await asyncio.wait_for(queue.join(), 1)


def test_a_mark_passed_is_told_and_a_cut_there_keeps_nothing() -> None:
    """The queue tells its bytes once they pass ``mark`` (the outbound budget's step); a budget
    that cuts this very queue then leaves nothing in it, the packet being put included."""
    queue = LightQueue(limit_bytes=1000)
    queue.mark = 100
    told: list[int] = []
    cut: list[bool] = []
    queue.on_overflow = lambda: cut.append(True)

    def passed(held: int) -> None:
        told.append(held)
        queue.mark = 200 if len(told) == 1 else 1000
        if len(told) == 2:
            queue.cut()

    queue.on_mark = passed
    queue.put_nowait(Packet(MESSAGE, data="x" * 80))
    queue.put_nowait(Packet(MESSAGE, data="x" * 80))  # 160: past 100
    assert told == [160] and queue.qsize() == 2 and queue.pending_bytes() == 160
    queue.put_nowait(Packet(MESSAGE, data="x" * 80))  # 240: past 200, and cut
    assert told == [160, 240] and cut == [True]
    assert queue.qsize() == 0 and queue.pending_bytes() == 0 and queue.idle()


@pytest.mark.skipif(
    serving_lane() == "stock",
    reason="the stock lane's pings are python-engineio's own, checked by its sweep once per ping timeout",
)
async def test_clients_that_stop_answering_pings_are_closed_when_their_pong_is_due(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Engine.IO's sweep visits each socket once per ping timeout: 10,000 clients gone without a
    FIN were held 65-75 s, not the 45 s of the interval and the timeout (an audit's SIGSTOPped
    clients), and a recording one held showed "recording" as long."""
    interval_s, timeout_s = 0.5, 4.0
    srv = await start_server(redis_process.url, tmp_path, ping_interval_s=interval_s, ping_timeout_s=timeout_s)
    silent: list[RawWebSocket] = []
    try:
        loop = asyncio.get_running_loop()
        for _ in range(20):  # clients that never answer a PING
            ws, _sid = await RawWebSocket.socketio(port_of(srv.url), srv.token("alice"))
            silent.append(ws)
        joined = loop.time()
        closed = await asyncio.gather(*(ws.closed(interval_s + 3 * timeout_s) for ws in silent))
        took = loop.time() - joined
        assert all(closed)
        # Due at the interval plus the timeout; the sweep added up to another timeout.
        assert took < interval_s + timeout_s + 2.0, took
    finally:
        for ws in silent:
            ws.close()
        await srv.stop()
