"""The write deadline (``handlers.write_deadline``) for the stock lane's WebSockets, through public seams.

python-engineio's aiohttp driver serves a WebSocket inside the request's handler: a writer task
takes the session's queue and writes each packet with aiohttp's ``send_str``, which waits for
the connection to drain. A client that stops reading held everything: its packets in the
queue (unbounded), in asyncio's buffer and in the kernel's, its subscriptions, and the handler.
Engine.IO's ping timeout could not tell when the client sent PONGs unasked (each PONG schedules
the next PING, whose answer is never awaited), nor end the connection when it did tell: the
session ended, but the handler waited for its writer, stuck on a drain, for ever, and the
connection with it (or aiohttp closed it later and the kernel kept the bytes as an orphan).
Measured (``bench/stalled_readers.py --transport stock``): the WebSockets that answered pings
were all held for the whole run, their kernel send queues growing.

What is public and enough: the connection is the aiohttp request's ``transport``
(``web.BaseRequest.transport``), whose kernel socket the deadline reads; the lane knows when a
WebSocket begins (its request, and the Engine.IO session it serves), when it queues a packet
for it, when Engine.IO's ping task (started through its documented ``start_background_task``)
has put a PING on the queue, when the session ends (Engine.IO's disconnect event) and when the
request's handler returns. :class:`WebSocketDeadlines` turns those into the deadline's
``watch``, as the fast lane's hooks do (``pause_writing``, ``_ping``): nothing per write, a
look at asyncio's buffer size per queued packet, one ``getsockopt`` per ping interval and one
when the session ends. No private name of a library is used.

A WebSocket that takes nothing for the deadline while bytes wait for it is cut as a slow
client: its Engine.IO session ends with ``reason="slow client"`` (its subscriptions freed) and
its connection is reset.

Left: aiohttp closes the connection itself (a client's close frame, or its own close timeout),
out of the lane's sight. A connection closed so with unsent bytes only in the kernel, before
any of the looks above saw them waiting, is an orphan the kernel keeps while its client's
window stays shut (a watched one is not: the deadline arms the kernel's own timeout at its
first check). The fast lane closes its WebSockets itself and arms it then (``closing``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from handlers.write_deadline import WriteDeadline


class _WebSocket:
    """One WebSocket being served: its connection, and how it is cut."""

    __slots__ = ("cut", "eio_sid", "transport")

    def __init__(self, eio_sid: str, transport: asyncio.BaseTransport, cut: Callable[[str], None]) -> None:
        self.eio_sid = eio_sid
        self.transport = transport
        self.cut = cut

    def on_stall(self) -> None:
        """The deadline passed: the session ends first, so that its disconnect says "slow
        client", not "transport close"; then the connection (the deadline made it a reset)."""
        self.cut(self.eio_sid)
        abort: Callable[[], None] = getattr(self.transport, "abort", self.transport.close)
        abort()


class WebSocketDeadlines:
    """The stock lane's WebSockets under the write deadline (module docstring).

    ``cut(eio_sid)`` ends a session as a slow client, without waiting (the deadline calls it
    from its timer); with ``deadline`` None nothing is watched.
    """

    def __init__(self, deadline: WriteDeadline | None, cut: Callable[[str], None]) -> None:
        self.deadline = deadline
        self.cut = cut
        self.serving: dict[str, _WebSocket] = {}  # Engine.IO sid -> its WebSocket, until its handler returns

    def began(self, eio_sid: str, transport: asyncio.BaseTransport | None) -> None:
        """A WebSocket of session ``eio_sid`` is served on ``transport`` (an opening or an upgrade).

        One already served for it keeps its place: an upgrade request naming a session opened as
        a WebSocket (its own client knows the sid) is refused by Engine.IO, and when it returned
        it took the place away, leaving the real WebSocket unwatched for good."""
        if self.deadline is not None and transport is not None:
            self.serving.setdefault(eio_sid, _WebSocket(eio_sid, transport, self.cut))

    def queued(self, eio_sid: str) -> None:
        """A packet was queued for the session: watch its WebSocket if asyncio holds bytes for it
        (no system call: a client reading at full speed leaves the buffer empty, one that stops
        fills it up to aiohttp's drain mark, where Engine.IO's writer then waits)."""
        ws = self.serving.get(eio_sid)
        deadline = self.deadline
        if ws is None or deadline is None or ws.transport in deadline.watched:
            return
        size: Callable[[], int] | None = getattr(ws.transport, "get_write_buffer_size", None)
        if size is not None and size() > 0:
            deadline.watch(ws.transport, ws.on_stall)

    def pinged(self, eio_sid: str) -> None:
        """Engine.IO queued a PING (once a ping interval): watch the WebSocket if bytes wait for
        its client anywhere, the kernel included. A client that stopped reading but sends PONGs
        unasked looks alive to Engine.IO; what it leaves unread is what tells."""
        self._look(eio_sid)

    def timed_out(self, eio_sid: str) -> bool:
        """Whether the session's WebSocket was ended by the kernel's write timeout (the deadline
        arms it; on a loaded machine it may come before the deadline's own cut)."""
        ws = self.serving.get(eio_sid)
        return ws is not None and self.deadline is not None and self.deadline.timed_out_on(ws.transport)

    def ended(self, eio_sid: str) -> None:
        """The session ended (its disconnect event): what its client has not taken yet gets the
        deadline. Engine.IO's handler waits for its writer, which waits for a drain: without
        this, a client that reads no more held the connection, and the handler, for ever."""
        self._look(eio_sid)

    def returned(self, eio_sid: str | None, transport: asyncio.BaseTransport | None) -> None:
        """The WebSocket's handler returned: it is no longer served. (aiohttp has closed its
        connection by then; bytes still in asyncio's buffer keep it watched, see :meth:`ended`.)"""
        ws = self.serving.get(eio_sid) if eio_sid is not None else None
        if ws is not None and ws.transport is transport:
            del self.serving[ws.eio_sid]

    def _look(self, eio_sid: str) -> None:
        ws = self.serving.get(eio_sid)
        if ws is not None and self.deadline is not None:
            self.deadline.watch_if_waiting(ws.transport, ws.on_stall)
