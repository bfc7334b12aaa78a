"""A deadline for every write: a connection whose client takes nothing for a set time is ended.

Nothing in asyncio or aiohttp bounds how long a write may wait for its client. Measured
(``bench/stalled_readers.py``): 200 raw clients that ask ``GET /openapi.json`` and read nothing
each had ~280 KB of it in the kernel's send queue (55 MB), then the process closed them as idle
and the kernel kept them as orphans still trying to send (FIN-WAIT-1, 56 MB), with no end in
sight; a WebSocket that stops reading but sends Engine.IO PONGs unasked kept its subscriptions
and everything sent to it for as long as its unsent bytes stayed under the slow-client limit; a
paced answer (``handlers.paced_bodies``) waits for a drain that never comes, holding its handler.

A :class:`WriteDeadline` watches the connections it is given (every HTTP connection that
answered a request, a WebSocket whose unsent bytes pass a step or that is closed with some
left): while bytes wait for the client -- in the process (the transport's buffer) or in the
kernel (not yet sent, or sent and not acknowledged) -- and the client acknowledges none for
``stall_s``, the connection is aborted: its buffers, kernel queue, descriptor and whatever
waits on it (a handler's drain) are freed at once. A client that keeps taking bytes, however
slowly (a phone on 2G), is never cut by it: progress is the kernel's count of bytes the
client acknowledged (``TCP_INFO``'s ``tcpi_bytes_acked``, Linux), or, where the socket does
not say, the transport's buffer getting smaller.

One timer for all: the watched connections are checked every quarter of ``stall_s`` (nothing
per write, a ``getsockopt`` per watched connection per check), and a connection with nothing
waiting is forgotten at the next check after it was watched, so an idle keep-alive costs one
check.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
import time
import weakref
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)

# struct tcp_info (linux/tcp.h): tcpi_unacked (u32) at 24, tcpi_bytes_acked (u64) at 120,
# tcpi_notsent_bytes (u32) at 144 (Linux 4.6+); a shorter answer has no byte count.
_TCP_INFO = getattr(socket, "TCP_INFO", None)
_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)
_TCP_INFO_BYTES = 152
_UNACKED_AT, _BYTES_ACKED_AT, _NOTSENT_AT = 24, 120, 144
# Checks per deadline: a stalled connection is cut between stall_s and 1.25 * stall_s after
# the last byte its client acknowledged.
CHECKS_PER_DEADLINE = 4
# Watched connections looked at per loop turn within a check.
CHECK_BATCH = 64
# Cuts are logged at most this often (with how many since the last line).
LOG_EVERY_S = 10.0


def kernel_progress(transport: asyncio.BaseTransport) -> tuple[int, bool] | None:
    """(bytes the peer acknowledged so far, whether the kernel still holds bytes for it), or
    None when the connection's socket does not say (not TCP, not Linux, closed)."""
    sock = transport.get_extra_info("socket")
    if _TCP_INFO is None or sock is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_BYTES)
    except (OSError, ValueError):
        return None
    if len(info) < _NOTSENT_AT + 4:
        return None
    (acked,) = struct.unpack_from("=Q", info, _BYTES_ACKED_AT)
    (unacked,) = struct.unpack_from("=I", info, _UNACKED_AT)
    (notsent,) = struct.unpack_from("=I", info, _NOTSENT_AT)
    return acked, bool(unacked or notsent)


def _set_user_timeout(transport: asyncio.BaseTransport, timeout_s: float) -> None:
    """Have the kernel end the connection once what it holds for the client goes unacknowledged
    ``timeout_s`` (0: its default, ~15 minutes of retries; a client that acknowledges nothing
    but keeps its window shut is kept for good then)."""
    sock = transport.get_extra_info("socket")
    if _TCP_USER_TIMEOUT is None or sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT, int(timeout_s * 1000))


def _reset(transport: asyncio.BaseTransport) -> None:
    """Make the connection's close a reset: the bytes the kernel holds for it are dropped with it
    (a plain close, asyncio's ``abort`` included, leaves them to the kernel, which goes on trying
    to send them, for ever to a client that keeps its window shut)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class _Watched:
    """One watched connection: what to do when it stalls, and its last progress."""

    __slots__ = ("armed", "fresh", "marker", "on_stall", "progress_s")

    def __init__(self, on_stall: Callable[[], None], now_s: float) -> None:
        self.on_stall = on_stall
        self.marker: int | None = None  # grows with progress (see _progress); None: not read yet
        self.progress_s = now_s
        self.fresh = True  # watched since the last check: kept even with nothing waiting yet
        self.armed = False  # the kernel's own timeout set (see WriteDeadline.check)


class WriteDeadline:
    """Ends connections whose client has taken nothing for ``stall_s`` while bytes wait for it."""

    def __init__(self, stall_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_s = stall_s
        self.clock = clock
        self.watched: dict[asyncio.BaseTransport, _Watched] = {}
        self.cuts = 0  # for tests and logs
        # Connections the kernel's write timeout ended (see lost), while anything holds them.
        self.timed_out: weakref.WeakSet[asyncio.BaseTransport] = weakref.WeakSet()
        self._timer: asyncio.Handle | None = None  # the next check, or the rest of this one
        self._checking: list[tuple[asyncio.BaseTransport, _Watched]] = []
        self._checked_s = 0.0
        self._logged_s = -LOG_EVERY_S
        self._logged_cuts = 0

    def watch(self, transport: asyncio.BaseTransport | None, on_stall: Callable[[], None] | None = None) -> None:
        """Watch ``transport`` from now (again: it stays watched for one more check at least).

        ``on_stall`` ends it (default: ``transport.abort()``); the deadline counts from the
        last progress seen, or from now when it was not watched.
        """
        if transport is None or (transport.is_closing() and not _buffered(transport)):
            return
        watched = self.watched.get(transport)
        if watched is None:
            stall = on_stall if on_stall is not None else _aborter(transport)
            self.watched[transport] = _Watched(stall, self.clock())
        else:
            watched.fresh = True
            if on_stall is not None:
                watched.on_stall = on_stall
        if self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.stall_s / CHECKS_PER_DEADLINE, self.check)

    def watch_if_waiting(
        self, transport: asyncio.BaseTransport | None, on_stall: Callable[[], None] | None = None
    ) -> None:
        """:meth:`watch` ``transport`` if bytes wait for its client now (a look at the socket)."""
        if transport is not None and transport not in self.watched and _progress(transport)[0]:
            self.watch(transport, on_stall)

    def lost(self, transport: asyncio.BaseTransport | None, exc: BaseException | None) -> bool:
        """``transport``'s connection was lost with ``exc``: True, counted as one of this
        watch's cuts, when the kernel's write timeout ended it (``ETIMEDOUT``: its client had
        taken nothing for that long), for the lanes to say "slow client" as for their own cuts.

        The timeout this watch arms (see :meth:`_stalled`) counts from the kernel's first probe
        into the client's shut window, which may be long before this watch began (a 4 MiB send
        queue filling first): on a loaded machine whose loop was held, the kernel ended such a
        connection before this watch's own cut, and the lanes said "transport close".
        """
        if transport is None or not (isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT):
            return False
        self.watched.pop(transport, None)
        self.timed_out.add(transport)
        self._said(1)
        return True

    def timed_out_on(self, transport: asyncio.BaseTransport | None) -> bool:
        """Whether ``transport``'s connection was ended by the kernel's write timeout (:meth:`lost`)."""
        return transport is not None and transport in self.timed_out

    def closing(self, transport: asyncio.BaseTransport | None) -> None:
        """``transport`` was just closed by the server (asyncio lets go of its socket once its own
        buffer is written, so this is called in the same step): what its client has not taken yet
        still gets only the deadline (asyncio waits for its own buffer for ever, the kernel for
        what it holds), then the connection is reset."""
        if transport is None:
            return
        kernel = kernel_progress(transport)
        if kernel is not None and kernel[1]:
            _set_user_timeout(transport, self.stall_s)  # for what is left with the kernel
        if _buffered(transport):
            self.watch(transport)  # for what asyncio still holds

    def check(self) -> None:
        """Cut what stalled past the deadline; forget what has nothing waiting (one timer).

        :data:`CHECK_BATCH` connections a loop turn: a look costs a ``getsockopt`` (~5-20 us),
        and every connection that answered within the last two checks is looked at."""
        self._checking = list(self.watched.items())
        self._checked_s = self.clock()
        self._timer = None
        self._check_batch()

    def _check_batch(self) -> None:
        batch = self._checking[-CHECK_BATCH:]
        del self._checking[-CHECK_BATCH:]
        stalled: list[tuple[asyncio.BaseTransport, _Watched]] = []
        for transport, watched in batch:
            if self.watched.get(transport) is watched and self._stalled(transport, watched):
                del self.watched[transport]
                stalled.append((transport, watched))
        for transport, watched in stalled:
            _reset(transport)
            watched.on_stall()
        if stalled:
            self._said(len(stalled))
        loop = asyncio.get_running_loop()
        if self._checking:
            self._timer = loop.call_soon(self._check_batch)  # the rest in the next turns
        elif self.watched:
            self._timer = loop.call_later(self.stall_s / CHECKS_PER_DEADLINE, self.check)
        else:
            self._timer = None

    def _stalled(self, transport: asyncio.BaseTransport, watched: _Watched) -> bool:
        """Whether ``transport`` passed its deadline; forgets it when nothing waits."""
        waiting, marker = _progress(transport)
        if not waiting:
            if watched.fresh and not transport.is_closing():
                watched.fresh = False
            else:
                del self.watched[transport]
            return False
        watched.fresh = False
        previous = watched.marker
        first = previous is None
        moved = previous is None or marker > previous
        watched.marker = marker
        if not moved and self._checked_s - watched.progress_s >= self.stall_s:
            return True
        if moved and not first:
            watched.progress_s = self._checked_s
            if watched.armed:
                _set_user_timeout(transport, 0)
                watched.armed = False
        elif not watched.armed:
            # Bytes wait and no progress is known: should the server close the connection
            # meanwhile (aiohttp's idle close, a ping timeout), the kernel keeps what it holds
            # as an orphan and sends it on its own, out of this watch's sight; armed, it ends
            # that orphan after the deadline. The kernel measures from its first probe into a
            # shut window, progress or not, so this is unset as soon as a check sees progress;
            # and it is a check later than this watch's own cut, so while the process has the
            # socket the cut is this watch's (counted, on_stall).
            _set_user_timeout(transport, self.stall_s * (1 + 1 / CHECKS_PER_DEADLINE) + 1)
            watched.armed = True
        return False

    def stop(self) -> None:
        """Stop checking (the server is stopping); what is watched is forgotten."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.watched.clear()
        self._checking.clear()

    def _said(self, cut: int) -> None:
        self.cuts += cut
        now = self.clock()
        if now - self._logged_s >= LOG_EVERY_S:
            log.warning(
                "write deadline: %d connections whose clients took nothing for %.0f s closed",
                self.cuts - self._logged_cuts, self.stall_s,
            )  # fmt: skip
            self._logged_s, self._logged_cuts = now, self.cuts


def _buffered(transport: asyncio.BaseTransport) -> int:
    size: Callable[[], int] | None = getattr(transport, "get_write_buffer_size", None)
    return size() if size is not None else 0


def _progress(transport: asyncio.BaseTransport) -> tuple[bool, int]:
    """(whether bytes wait for the client, a marker that grows when it takes some)."""
    buffered = _buffered(transport)
    kernel = kernel_progress(transport) if not transport.is_closing() or buffered else None
    if kernel is not None:
        acked, held = kernel
        return bool(buffered or held), acked
    # No count from the kernel: the buffer going down is progress (new writes may hide some,
    # but a buffer that only grows for the whole deadline belongs to a client falling behind).
    return buffered > 0, -buffered


def _aborter(transport: asyncio.BaseTransport) -> Callable[[], None]:
    abort: Callable[[], None] = getattr(transport, "abort", transport.close)
    return abort


WRITE_DEADLINE_KEY = web.AppKey("write_deadline", WriteDeadline)
