"""Waiting until what was sent to a long-polling client has been taken by its polls.

A long-polling session's packets wait in its Engine.IO queue for the client's next GET, and
ending the session drops what is still there: a connection cut for flooding never saw the acks
of writes the server had applied, nor why it was cut (audit "protoclient"), so its retries
repeated them. A cut first waits, bounded, for the queue to be taken. A WebSocket's packets are
written as they are sent (or by its writer at once): nothing to wait for there.

Reads ``sockets`` (Engine.IO's sessions by id), and of a session its ``closed`` and ``upgraded``
flags and its ``queue``'s ``empty()``: python-engineio's attributes, read by both lanes, named in
``server.transport.fastpath``'s contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

# How often a wait looks at the queue again (a poll takes it at once when one is waiting).
LOOK_S = 0.02


async def polled_out(sockets: Mapping[str, Any], eio_sid: str | None, bound_s: float) -> bool:
    """Return once the long-polling session ``eio_sid`` has no packet waiting for a poll (True),
    or once ``bound_s`` passed (False: a client that polls no more). True at once for a session
    gone, closed or on a WebSocket."""
    if eio_sid is None:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while True:
        socket = sockets.get(eio_sid)
        if socket is None or socket.closed or socket.upgraded or socket.queue.empty():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(LOOK_S)
