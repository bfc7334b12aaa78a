"""Writing whole frames to a connection: the socket's ``send`` at once when nothing is queued.

``asyncio.Transport.write`` on the selector loop's socket transport checks its arguments and
state, then, with nothing queued, tries ``socket.send`` at once and queues only what the kernel
did not take. The fan-out writes one round to every member of a room (ten writes for a session
of ten clients) and the acks leave the same way, so that Python step runs several times per
committed event: :func:`write` does asyncio's first step itself and hands everything else to
``transport.write`` -- a transport with bytes queued (the rest goes behind them, in order), a
send that would block or took part of the frame (the rest is queued by asyncio, which then
watches the socket, and its buffer limit cuts a slow client as before), a send that failed
(asyncio sends again and fails the transport its own way), a transport lost, closed with
nothing queued, after ``write_eof`` or during ``sendfile``. What reaches the socket, and in what
order, is what ``transport.write`` alone would send.

Measured (bench/README.md, tenth round): 5-12% less server CPU per event at 1000 sessions x 10
members, where the fan-out's writes are most of the event's work.

Contract -- private names of CPython's ``asyncio.selector_events._SelectorSocketTransport``,
read only, the same on 3.11, 3.12 and 3.13 (:data:`TESTED_PYTHON`; CI runs the suite on the
lowest and the newest): ``_sock`` (the socket), ``_buffer`` (what is queued: empty is falsy),
``_conn_lost`` (non-zero once the connection is lost or closed with nothing queued), ``_eof``
(``write_eof`` was called) and ``_empty_waiter`` (not None during ``sendfile``). The stock path,
``transport.write``, serves every other transport (uvloop's, TLS, the lean WebSocket's gathering
wrapper) and any Python outside :data:`TESTED_PYTHON`; it is about a microsecond slower per
write, and only that.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

# Pythons whose selector socket transport was read for the contract above and tested with it.
TESTED_PYTHON = ((3, 11), (3, 14))  # lowest, first untested


def _socket_transport_type() -> type | None:
    """The transport class :func:`write` sends for directly, or None (stock path only)."""
    low, high = TESTED_PYTHON
    if not low <= sys.version_info[:2] < high:
        return None
    from asyncio import selector_events

    found = getattr(selector_events, "_SelectorSocketTransport", None)
    return found if isinstance(found, type) else None


_DIRECT: type | None = _socket_transport_type()


def direct(transport: asyncio.BaseTransport) -> bool:
    """True when :func:`write` may send to ``transport``'s socket itself (else it calls ``write``)."""
    return _DIRECT is not None and type(transport) is _DIRECT


def write(transport: asyncio.Transport, data: bytes) -> None:
    """Write ``data`` as ``transport.write(data)`` would, sending it at once when nothing is queued."""
    if type(transport) is not _DIRECT:
        transport.write(data)
        return
    own: Any = transport  # the private names of the contract above
    if own._buffer or own._conn_lost or own._eof or own._empty_waiter is not None:
        transport.write(data)
        return
    try:
        sent = own._sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        # Reset, broken pipe...: asyncio's write sends again, meets the failure and fails the
        # transport (connection_lost), as it would have without this step.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])
