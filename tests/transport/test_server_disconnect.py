"""A disconnect the server decides (a sign-out, a flood cut) does not wait on the client.

On both lanes: the stock lane once closed the Engine.IO session with python-engineio's
``disconnect``, which waits until the client has taken every queued packet, forever for a
poller that polls no more, so the revocation watcher that disconnects a signed-out device's
connections one after another stopped at the first silent one.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from server.app import SIO_KEY
from tests.conftest import start_server
from tests.raw_wire import RawPoller

# A disconnect is a few packets and a close (0.16 s on a quiet machine): this bound tells
# "returns" from "waits". The fast lane waited for the poller's queue until its ping timed out
# (5.5 s at the test settings, longer at the defaults).
DISCONNECT_BOUND_S = 2.5


async def test_disconnecting_a_poller_that_polls_no_more_returns_and_ends_its_session(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path)
    sio = srv.app[SIO_KEY]
    try:
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, srv.url)
            sid = await poller.socketio(srv.token("alice"))
            # From here the poller sends and reads nothing: what the server queues stays queued.
            await asyncio.wait_for(sio.disconnect(sid), DISCONNECT_BOUND_S)
            assert poller.eio_sid not in sio.eio.sockets
            assert (await poller.get())[0] in ("", "HTTP 400", "1")  # its next poll finds it closed
    finally:
        await srv.stop()


async def test_a_poller_waiting_on_its_get_when_disconnected_takes_the_close(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """Not waiting for a poller's queue must not lose what a GET already waiting is owed."""
    srv = await start_server(redis_process.url, tmp_path)
    sio = srv.app[SIO_KEY]
    try:
        async with aiohttp.ClientSession() as http:
            poller = await RawPoller.open(http, srv.url)
            sid = await poller.socketio(srv.token("alice"))
            waiting = asyncio.ensure_future(poller.get())
            # The GET is in the server's hands once the session's queue has a getter.
            socket = sio.eio.sockets[poller.eio_sid]
            for _ in range(200):
                if socket.queue._getters:  # asyncio.Queue's waiting getters (CPython): the GET is in
                    break
                await asyncio.sleep(0.01)
            await asyncio.wait_for(sio.disconnect(sid), DISCONNECT_BOUND_S)
            packets = await asyncio.wait_for(waiting, 5)
            assert "41" in packets or "1" in packets, packets  # Socket.IO's DISCONNECT or Engine.IO's CLOSE
            assert poller.eio_sid not in sio.eio.sockets
    finally:
        await srv.stop()
