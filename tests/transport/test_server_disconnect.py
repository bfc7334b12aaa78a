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

# A disconnect is a few packets and a close: this bound only tells "returns" from "waits".
DISCONNECT_BOUND_S = 10.0


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
