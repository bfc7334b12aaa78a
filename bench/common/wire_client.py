"""The one raw Socket.IO client of the Python benchmarks: Engine.IO v4 / Socket.IO v5 text
packets over one aiohttp WebSocket.

python-socketio's client decodes every packet into objects and runs a handler task per event;
a hundred viewers of it would cost the load generator more than the server. This one reads
each frame once: pings are answered, acks resolve their call, an event is counted and decoded
only when someone listens (:attr:`WireClient.on_event`). The packets it sends are built by
:mod:`common.wire`. (The compiled generator and bench/lean_client.py speak the same protocol on
plain sockets, for fan-outs of thousands.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from common.wire import connect_packet, emit_packet

# (event name, its data, perf_counter when the frame was read)
EventHandler = Callable[[str, Any, float], None]


class WireClient:
    """One Socket.IO connection: connect with a token, calls with an ack, events to a callback."""

    def __init__(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        self._http = http
        self._url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self._token = token
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._acks: dict[int, asyncio.Future[tuple[float, Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None
        self.on_event: EventHandler | None = None
        self.events_seen = 0  # events counted without decoding when nobody listens

    async def connect(self) -> None:
        """Open the WebSocket, connect to namespace ``/`` with the token; raise when refused."""
        timeout = aiohttp.ClientWSTimeout(ws_close=5)
        self._ws = await self._http.ws_connect(self._url, autoping=False, max_msg_size=0, timeout=timeout)
        opened = await self._ws.receive_str(timeout=10)
        if not opened.startswith("0"):
            raise RuntimeError(f"unexpected Engine.IO open {opened[:60]!r}")
        await self._ws.send_str(connect_packet(self._token).decode())
        answer = await self._ws.receive_str(timeout=10)
        if not answer.startswith("40"):
            raise RuntimeError(f"Socket.IO connect refused: {answer[:120]!r}")
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._ws is not None
        async for message in self._ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                continue
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            text: str = message.data
            now = time.perf_counter()
            if text == "2":  # Engine.IO ping: the server closes a client that does not answer
                await self._ws.send_str("3")
            elif text.startswith("43"):
                bracket = text.index("[")
                future = self._acks.pop(int(text[2:bracket]), None)
                if future is not None and not future.done():
                    future.set_result((now, json.loads(text[bracket:])[0]))
            elif text.startswith("42"):
                self.events_seen += 1
                if self.on_event is not None:
                    name, data = json.loads(text[2:])
                    self.on_event(name, data, now)
        for future in self._acks.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    async def timed_call(self, event: str, data: dict[str, Any], timeout_s: float = 10) -> tuple[float, float, Any]:
        """Emit with an ack; returns (sent at, ack read at, ack) in perf_counter seconds."""
        assert self._ws is not None
        self._next_id += 1
        ack_id = self._next_id
        future: asyncio.Future[tuple[float, Any]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = future
        sent = time.perf_counter()
        await self._ws.send_str(emit_packet(ack_id, event, json.dumps(data, separators=(",", ":"))).decode())
        read_at, ack = await asyncio.wait_for(future, timeout_s)
        return sent, read_at, ack

    async def call(self, event: str, data: dict[str, Any], timeout_s: float = 10) -> Any:
        """Emit with an ack; the ack."""
        return (await self.timed_call(event, data, timeout_s))[2]

    async def close(self) -> None:
        """Close the WebSocket and stop reading."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
