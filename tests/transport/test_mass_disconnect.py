"""A mass disconnect costs O(1) per client, not O(clients) (issue 20, finding 3), on both lanes.

python-socketio's manager scanned every room of the namespace (and every client has a room of
its own) for each client leaving, and kept pending disconnects in a list: 10,000 clients
leaving at once held the event loop for ~40 s. The fast lane's ``RoomIndex``
(server/transport/fastpath.py) and the stock lane's (server/transport/rooms.py, which must hold
on every python-socketio pyproject.toml allows) index each client's rooms. The work is measured
as a scaling ratio, not an absolute time, so a loaded machine cannot fail it: the cost per
disconnect among 8x the clients must stay near the cost among fewer (it was ~8x and more
before the fix).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import socketio

from server.app import SIO_KEY
from server.transport import build_server
from server.transport.rooms import RoomIndex, client_manager, works
from tests.conftest import start_server
from tests.helpers import RedisProcess, fast_lane_only
from tests.raw_wire import RawWebSocket, port_of

LANES = [pytest.param("fast", marks=fast_lane_only), "stock"]


def room_index(lane: str) -> Any:
    """The manager of a fresh server of ``lane`` (both lanes use the room index)."""
    server = build_server(lane, max_payload_bytes=1 << 16, slow_limit_bytes=1 << 20)  # type: ignore[arg-type]
    manager = server.manager  # type: ignore[attr-defined]
    assert isinstance(manager, RoomIndex)
    return manager


async def seconds_per_disconnect(lane: str, clients: int) -> float:
    """Connect ``clients`` to namespace "/" of a fresh server of ``lane``, then disconnect them
    all the way a mass disconnect does (every one pending first, then each cleaned up)."""
    manager = room_index(lane)
    sids = [await manager.connect(f"eio{i}", "/") for i in range(clients)]
    for sid in sids[::7]:  # a few clients in a shared room too
        await manager.enter_room(sid, "/", "shared")
    started = time.perf_counter()
    for sid in sids:
        manager.pre_disconnect(sid, "/")
    for sid in sids:
        assert not manager.is_connected(sid, "/")
        await manager.disconnect(sid, "/")
    elapsed = time.perf_counter() - started
    assert manager.rooms == {} and manager.rooms_of == {}  # nothing left behind
    assert not manager.pending_disconnect and not manager.pending_connect
    return elapsed / clients


@pytest.mark.parametrize("lane", LANES)
async def test_disconnect_cost_does_not_grow_with_the_number_of_clients(lane: str) -> None:
    # Taken in turns, so that a busy spell of the machine falls on both sizes (one run of the
    # whole suite beside other work failed it with the small ones all measured first); a cost
    # growing with the clients (O(N^2): 8x) is over the bound in every pair. 4x, not 3x: one
    # run beside other work measured 3.1x (the large runs' garbage collections costing more).
    small, large = float("inf"), float("inf")
    for _ in range(4):
        small = min(small, await seconds_per_disconnect(lane, 1_000))
        large = min(large, await seconds_per_disconnect(lane, 8_000))
    assert large < 4 * small, f"{large * 1e6:.1f} us per disconnect among 8,000 vs {small * 1e6:.1f} us among 1,000"


@pytest.mark.parametrize("lane", LANES)
async def test_rooms_are_listed_and_left_per_client(lane: str) -> None:
    manager = room_index(lane)
    a = await manager.connect("eio-a", "/")
    b = await manager.connect("eio-b", "/")
    await manager.enter_room(a, "/", "r1")
    await manager.enter_room(b, "/", "r1")
    assert sorted(manager.get_rooms(a, "/")) == sorted([a, "r1"])
    await manager.leave_room(a, "/", "r1")
    assert manager.get_rooms(a, "/") == [a]
    assert [sid for sid, _ in manager.get_participants("/", "r1")] == [b]
    await manager.disconnect(a, "/")
    assert manager.eio_sid_from_sid(a, "/") is None and manager.eio_sid_from_sid(b, "/") == "eio-b"
    await manager.close_room("r1", "/")
    assert manager.get_rooms(b, "/") == [b]


def test_the_stock_lanes_index_checks_itself_on_the_installed_python_socketio(caplog: pytest.LogCaptureFixture) -> None:
    # On every version `make test-versions` installs, the index works and is used.
    assert works(RoomIndex())
    with caplog.at_level(logging.WARNING):
        assert isinstance(client_manager(), RoomIndex)
    assert not caplog.records


class Misfiled(RoomIndex):
    """An index that lost track of a client's rooms, as it would if python-socketio stopped
    joining rooms through basic_enter_room."""

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return []


def test_an_index_that_does_not_work_gives_way_to_python_socketios_manager(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    assert not works(Misfiled())
    monkeypatch.setattr("server.transport.rooms.RoomIndex", Misfiled)
    with caplog.at_level(logging.WARNING):
        manager = client_manager()
    assert type(manager) is socketio.AsyncManager
    assert "O(N^2)" in caplog.text


def ping_tasks_of(engine: Any) -> list[asyncio.Task[Any]]:
    """The stock lane's ping tasks (python-engineio's, a sleeping task per socket) of ``engine``."""
    tasks = []
    for task in asyncio.all_tasks():
        coro = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        owner = frame.f_locals.get("self") if frame is not None else None
        if getattr(coro, "__qualname__", "") == "AsyncSocket._send_ping" and getattr(owner, "server", None) is engine:
            tasks.append(task)
    return tasks


async def test_the_sessions_of_a_mass_disconnect_leave_no_task_behind(
    redis_process: RedisProcess, redis: object, tmp_path: Path
) -> None:
    # On the stock lane every session that ended left python-engineio's ping task sleeping out
    # its ping interval (25 s), holding its socket: 30 dropped connections, 30 tasks (10,000
    # after a mass disconnect), past the server's stop too. The fast lane pings from timers.
    server = await start_server(redis_process.url, tmp_path, transport="stock")
    sio = server.app[SIO_KEY]
    token = server.token("alice")
    held: list[RawWebSocket] = []
    try:
        held = [(await RawWebSocket.socketio(port_of(server.url), token))[0] for _ in range(30)]
        assert len(ping_tasks_of(sio.eio)) == 30
        for ws in held:  # dropped at once, with a reset: no close handshake
            ws.writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            ws.writer.transport.abort()
        async with asyncio.timeout(15):
            while sio.eio.sockets:
                await asyncio.sleep(0.02)
        await asyncio.sleep(0)  # a cancelled task ends at its next step
        assert ping_tasks_of(sio.eio) == [] and sio.timers == {}
        held.append((await RawWebSocket.socketio(port_of(server.url), token))[0])  # open at the stop
    finally:
        await server.stop()
        for ws in held:
            ws.close()
    await asyncio.sleep(0)
    assert ping_tasks_of(sio.eio) == []
