"""The load generator: N subscribers and one publisher in one asyncio process, on raw sockets.

Run by bench/fanout.py as ``taskset -c 1 python bench/lean_client.py ...``; prints one line
``RESULT {json}`` on stdout. It is lean on purpose, so that the server, not this process, is
what a run measures: each connection is an :class:`asyncio.BufferedProtocol` that parses
WebSocket frames by their headers, and a live ``session_status`` event costs a prefix test,
one ``bytes.find`` for its offset and two list appends; JSON is decoded only for acks. Once
subscribed, the subscribers are read through one nested epoll set (:class:`Reader`) rather
than through asyncio's per-socket machinery.

Phases, each bounded in time: connect and subscribe N clients; saturation (the publisher keeps
``--outstanding`` events in flight, an event leaving the window once it is acked *and* every
subscriber has it, so the backlog cannot grow without bound); fixed rate (one event every
1/``--rate`` s, whatever the acks). Every subscriber must receive every committed offset;
what is missing after a drain is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import gc
import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from procstat import CpuSample, cpu_sample, machine_cpu_sample, own_cpu_sample, rss_kib
from common.wire import (
    EIO_MESSAGE,
    EIO_OPEN,
    EIO_PING,
    SIO_ACK,
    SIO_CONNECT,
    SIO_CONNECT_ERROR,
    SIO_DISCONNECT,
    WS_CLOSE,
    WS_PING,
    WS_PONG,
    client_frame,
    connect_packet,
    emit_packet,
    parse_ack,
    upgrade_request,
)

perf = time.perf_counter

EVENT_PREFIX = b'42["session_status",'
OFFSET_KEY = b'"offset":'
SUBSCRIBE_ACK_ID = 1
STATUSES = ("recording", "paused")  # ready -> recording -> paused -> recording ... all valid
MAX_SKIPPED = 1_000_000  # a jump further than this is not tracked for duplicates (a garbled offset)


def log(message: str) -> None:
    """Progress on stderr (stdout carries the result)."""
    print(f"[gen] {message}", file=sys.stderr, flush=True)


class Tally:
    """What the subscribers received: how many of each offset, and when each arrived."""

    def __init__(self, full: int) -> None:
        self.full = full  # subscribers that must get every offset
        self.counts: dict[int, int] = {}
        self.rx_off: list[int] = []
        self.rx_t: list[float] = []
        self.on_full: Callable[[int], None] = lambda offset: None

    def clear_samples(self) -> None:
        """Forget arrival times (counts stay, for the loss check)."""
        self.rx_off = []
        self.rx_t = []


# One receive buffer for every connection: asyncio calls get_buffer(), recv_into() and
# buffer_updated() back to back for one socket, and buffer_updated() copies out what it keeps.
# (asyncio's plain Protocol path allocates a 256 KiB bytes object for every recv().)
_RECV_BUFFER = bytearray(1 << 16)
_RECV_VIEW = memoryview(_RECV_BUFFER)


class Link(asyncio.BufferedProtocol):
    """One client connection: WebSocket upgrade, Engine.IO/Socket.IO handshake, then frames."""

    def __init__(self, *, host: str, port: int, token: str, tally: Tally, session_id: str | None) -> None:
        self._host, self._port, self._token = host, port, token
        self._tally = tally
        self._subscribe_to = session_id  # None for the publisher
        self._head: bytes | None = b""  # HTTP response bytes until the upgrade is done
        self._buf = b""
        self.transport: asyncio.Transport | None = None
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.on_ack: Callable[[int, Any, float], None] = lambda ack_id, body, t: None
        self.last_offset = -1
        self.gaps = 0  # offsets not one above the previous (a loss or a reordering)
        self.duplicates = 0  # offsets received more than once
        self._base_offset = -1  # the offset the subscription started from
        self._high = -1  # the highest offset received, while replaying (below it)
        self._replaying = False  # the last offset went backwards: later ones may be repeats
        self._skipped: set[int] = set()  # offsets jumped over, not (yet) received
        self.closed = False

    # --- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(upgrade_request(self._host, self._port))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"connection lost: {exc}"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return _RECV_VIEW

    def buffer_updated(self, nbytes: int) -> None:
        data: bytes | bytearray = _RECV_BUFFER[:nbytes]
        if self._head is not None:
            data = self._upgrade(data)
            if not data:
                return
        self.feed(data, perf())

    def feed(self, data: bytes | bytearray, t: float) -> None:
        """Parse every complete frame received at ``t``; keep a partial one for the next read."""
        if self._buf:
            data = self._buf + data
            self._buf = b""
        size = len(data)
        pos = 0
        while size - pos >= 2:
            length = data[pos + 1] & 0x7F
            start = pos + 2
            if length >= 126:
                if length == 126:
                    start = pos + 4
                    if start > size:
                        break
                    length = (data[pos + 2] << 8) | data[pos + 3]
                else:
                    start = pos + 10
                    if start > size:
                        break
                    length = int.from_bytes(data[pos + 2 : pos + 10], "big")
            end = start + length
            if end > size:
                break
            if data.startswith(EVENT_PREFIX, start):
                # the hot path: a live event; only its offset is read
                i = data.find(OFFSET_KEY, start, end) + 9
                offset = int(data[i : data.find(b",", i, end)])
                tally = self._tally
                count = tally.counts.get(offset, 0) + 1
                tally.counts[offset] = count
                tally.rx_off.append(offset)
                tally.rx_t.append(t)
                if self._replaying or (offset != self.last_offset + 1 and self.last_offset >= 0):
                    self._irregular(offset)
                self.last_offset = offset
                if count == tally.full:
                    tally.on_full(offset)
            else:
                self._on_frame(data[pos] & 0x0F, bytes(data[start:end]), t)
            pos = end
        if pos < size:
            self._buf = bytes(data[pos:])

    def _irregular(self, offset: int) -> None:
        """An offset out of sequence: count the gap, and a duplicate when it was already received.

        Off the hot path: in sequence, every offset up to ``last_offset`` has been received.
        Only a jump (whose skipped offsets are remembered) or a step back needs more.
        """
        if offset != self.last_offset + 1 and self.last_offset >= 0:
            self.gaps += 1
        high = self._high if self._replaying else self.last_offset
        if offset > high:
            if offset - high <= MAX_SKIPPED:
                self._skipped.update(range(max(high, self._base_offset) + 1, offset))
            self._high = offset
        elif offset in self._skipped:
            self._skipped.discard(offset)  # late, not lost
            self._high = high
        elif offset > self._base_offset:
            self.duplicates += 1
            self._high = high
        self._replaying = offset < self._high

    # --- handshake and control frames ----------------------------------------------------------
    def _upgrade(self, data: bytes | bytearray) -> bytes:
        assert self._head is not None
        head = self._head + bytes(data)
        end = head.find(b"\r\n\r\n")
        if end < 0:
            self._head = head
            return b""
        self._head = None
        if not head.startswith(b"HTTP/1.1 101"):
            self._fail(f"upgrade refused: {head[:80]!r}")
            return b""
        return head[end + 4 :]

    def _on_frame(self, opcode: int, payload: bytes, t: float) -> None:
        if opcode == WS_PING:
            self.send(payload, WS_PONG)
        elif opcode == WS_CLOSE:
            self.closed = True
        elif payload:
            self._on_text(payload, t)

    def _on_text(self, text: bytes, t: float) -> None:
        kind = text[0]
        if kind == EIO_PING:
            self.send(b"3")
        elif kind == EIO_OPEN:
            self.send(connect_packet(self._token))
        elif kind == EIO_MESSAGE and len(text) > 1:
            self._on_socketio(text, t)

    def _on_socketio(self, text: bytes, t: float) -> None:
        kind = text[1]
        if kind == SIO_ACK:
            ack_id, body = parse_ack(text)
            if self._subscribe_to is not None and ack_id == SUBSCRIBE_ACK_ID:
                self._subscribed(body)
            else:
                self.on_ack(ack_id, body, t)
        elif kind == SIO_CONNECT:
            if self._subscribe_to is None:
                self.ready.set_result(None)
            else:
                data = json.dumps({"session_id": self._subscribe_to})
                self.send(emit_packet(SUBSCRIBE_ACK_ID, "subscribe_on_session", data))
        elif kind == SIO_CONNECT_ERROR:
            self._fail(f"connect refused: {text[:200]!r}")
        elif kind == SIO_DISCONNECT:
            self.closed = True

    def _subscribed(self, body: Any) -> None:
        if isinstance(body, dict) and body.get("ok", True) is not False:
            self.last_offset = int(body.get("offset", 0))
            self._base_offset = self.last_offset
            if not self.ready.done():
                self.ready.set_result(body)
        else:
            self._fail(f"subscribe refused: {body!r}")

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(reason))
        if self.transport is not None:
            self.transport.close()

    # --- sending -------------------------------------------------------------------------
    def send(self, payload: bytes, opcode: int = 0x1) -> None:
        """One masked frame, written now."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(payload, opcode))


class Reader:
    """Reads many subscribed links through one nested epoll set, registered with asyncio once.

    With a thousand sockets each receiving one small frame per event, asyncio's per-socket
    machinery (selector key lookup, a Handle, the transport's read path) costs more than the
    frame itself; here a readable socket costs one ``epoll`` entry, one ``recv_into`` and the
    parse. Links keep their asyncio transport for writing (pongs) and closing.
    """

    rounds = 4

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._socks: dict[int, tuple[socket.socket, Link]] = {}
        asyncio.get_running_loop().add_reader(self._epoll.fileno(), self._on_ready)

    def adopt(self, link: Link) -> None:
        """Stop asyncio reading ``link`` and read it here (on a duplicate of its descriptor)."""
        assert link.transport is not None
        link.transport.pause_reading()
        fd = link.transport.get_extra_info("socket").fileno()
        sock = socket.socket(fileno=os.dup(fd))  # shares the non-blocking open file
        self._socks[sock.fileno()] = (sock, link)
        self._epoll.register(sock.fileno(), select.EPOLLIN)

    def _on_ready(self) -> None:
        socks, view, buffer, epoll = self._socks, _RECV_VIEW, _RECV_BUFFER, self._epoll
        # A server writes one event to its subscribers one after the other: polling again
        # right away picks up the sockets that became readable meanwhile, without a trip
        # through the event loop each time (bounded, so acks and timers are not starved).
        for _ in range(self.rounds):
            ready = epoll.poll(0)
            if not ready:
                return
            for fd, _ in ready:
                sock, link = socks[fd]
                try:
                    nbytes = sock.recv_into(view)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    nbytes = 0
                if nbytes:
                    link.feed(buffer[:nbytes], perf())
                else:
                    self._drop(fd)
                    link.closed = True

    def _drop(self, fd: int) -> None:
        sock, _ = self._socks.pop(fd)
        self._epoll.unregister(fd)
        sock.close()

    def close(self) -> None:
        """Release every duplicate descriptor and the epoll set (the links stay open)."""
        asyncio.get_running_loop().remove_reader(self._epoll.fileno())
        for fd in list(self._socks):
            self._drop(fd)
        self._epoll.close()


class Publisher:
    """Sends ``set_session_status`` events and tracks each one until every subscriber has it."""

    def __init__(self, link: Link, *, session_id: str, tally: Tally, stall_s: float) -> None:
        self._link = link
        self._session_id = session_id
        self._tally = tally
        self._stall_s = stall_s
        self.seq = 0
        self.sent_t: dict[int, float] = {}  # ack id -> send time
        self.acks: list[tuple[float, float]] = []  # (send time, ack latency s)
        self.offset_sent_t: dict[int, float] = {}  # committed offset -> send time
        self.committed: list[int] = []  # offsets, in ack order
        self.open: dict[int, float] = {}  # ack id -> send time, until acked and fully delivered
        self._pending: dict[int, int] = {}  # offset acked, not yet everywhere -> ack id
        self.noop = 0
        self.errors: list[Any] = []
        self.stalled = 0
        # Per-connection order: acks in send order, and a change sent later commits later.
        self.last_ack_id = 0
        self.last_changed_offset = 0
        self.acks_out_of_order = 0
        self.offsets_out_of_order = 0
        self.on_slot: Callable[[], None] | None = None
        link.on_ack = self._on_ack
        tally.on_full = self._on_full

    def send(self) -> None:
        """Emit the next status change."""
        self.seq += 1
        status = STATUSES[(self.seq - 1) % 2]
        data = f'{{"session_id":"{self._session_id}","status":"{status}"}}'
        now = perf()
        self.sent_t[self.seq] = now
        self.open[self.seq] = now
        self._link.send(emit_packet(self.seq, "set_session_status", data))

    def _on_ack(self, ack_id: int, body: Any, t: float) -> None:
        sent = self.sent_t.get(ack_id)
        if sent is None:
            return
        if ack_id < self.last_ack_id:
            self.acks_out_of_order += 1
        else:
            self.last_ack_id = ack_id
        self.acks.append((sent, t - sent))
        if not isinstance(body, dict) or not body.get("ok"):
            self.errors.append(body)
            self._close(ack_id)
        elif not body.get("changed"):
            self.noop += 1  # "recording" and "paused" alternate: a no-op means two requests swapped
            self._close(ack_id)
        else:
            offset = int(body["offset"])
            if offset <= self.last_changed_offset:
                self.offsets_out_of_order += 1
            else:
                self.last_changed_offset = offset
            self.offset_sent_t[offset] = sent
            self.committed.append(offset)
            if self._tally.counts.get(offset, 0) >= self._tally.full:
                self._close(ack_id)
            else:
                self._pending[offset] = ack_id

    def _on_full(self, offset: int) -> None:
        ack_id = self._pending.pop(offset, None)
        if ack_id is not None:
            self._close(ack_id)

    def _close(self, ack_id: int) -> None:
        if self.open.pop(ack_id, None) is not None and self.on_slot is not None:
            self.on_slot()

    def expire(self, now: float) -> None:
        """Give up on events older than the stall limit, so a lost delivery cannot jam the window."""
        for ack_id, sent in list(self.open.items()):
            if now - sent > self._stall_s:
                self.stalled += 1
                self._close(ack_id)

    def missing_since(self, first_index: int) -> int:
        """Deliveries still missing for the offsets committed from ``committed[first_index]`` on."""
        counts, full = self._tally.counts, self._tally.full
        return sum(max(0, full - counts.get(offset, 0)) for offset in self.committed[first_index:])


def percentiles_ms(values_s: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of durations in seconds, as milliseconds."""
    if not values_s:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values_s)
    last = len(ordered) - 1

    def pick(q: float) -> float:
        return round(1000.0 * ordered[min(last, int(q * len(ordered)))], 3)

    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": round(1000.0 * ordered[last], 3)}


class Run:
    """One generator run against one server: connect, saturation, fixed rate."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tally = Tally(args.n)
        self.links: list[Link] = []
        self.publisher: Publisher | None = None
        self.reader: Reader | None = None

    # --- setup ---------------------------------------------------------------------------
    async def _open(self, session_id: str | None) -> Link:
        loop = asyncio.get_running_loop()
        args = self.args
        link = Link(host=args.host, port=args.port, token=args.token, tally=self.tally, session_id=session_id)
        await loop.create_connection(lambda: link, args.host, args.port)
        await asyncio.wait_for(link.ready, args.handshake_timeout_s)
        return link

    async def connect(self) -> dict[str, Any]:
        """Connect the publisher, then N subscribers (``--concurrency`` handshakes at a time)."""
        args = self.args
        pub_link = await self._open(None)
        self.publisher = Publisher(pub_link, session_id=args.session, tally=self.tally, stall_s=args.stall_s)
        await asyncio.sleep(0.5)
        rss_before = rss_kib(args.server_pid)
        gate = asyncio.Semaphore(args.concurrency)

        async def one() -> Link:
            async with gate:
                return await self._open(args.session)

        started = perf()
        results = await asyncio.gather(*(one() for _ in range(args.n)), return_exceptions=True)
        connect_s = perf() - started
        self.links = [r for r in results if isinstance(r, Link)]
        self.tally.full = len(self.links)  # "every subscriber" is every one that subscribed
        failures = [repr(r) for r in results if not isinstance(r, Link)]
        if not args.plain_asyncio:
            self.reader = Reader()
            for link in self.links:
                self.reader.adopt(link)
        await asyncio.sleep(0.2)
        rss_after = rss_kib(args.server_pid)
        log(f"{len(self.links)}/{args.n} subscribed in {connect_s:.3f} s; server RSS {rss_before} -> {rss_after} KiB")
        return {
            "connect_s": round(connect_s, 3),
            "subscribed": len(self.links),
            "failures": failures[:5],
            "failed": len(failures),
            "rss_before_kib": rss_before,
            "rss_after_kib": rss_after,
            "rss_per_client_kib": round((rss_after - rss_before) / max(1, len(self.links)), 2),
        }

    # --- measuring -----------------------------------------------------------------------
    def _cpu(self, now: float) -> dict[str, CpuSample]:
        samples = {"gen": own_cpu_sample(now), "server": cpu_sample(self.args.server_pid, now)}
        if self.args.redis_pid:
            samples["redis"] = cpu_sample(self.args.redis_pid, now)
        samples["machine"] = machine_cpu_sample(now)
        return samples

    async def _watch_stalls(self, until: float) -> None:
        assert self.publisher is not None
        while perf() < until:
            await asyncio.sleep(0.25)
            self.publisher.expire(perf())

    async def _drain(self) -> dict[str, Any]:
        """Stop sending; wait until every sent event is acked and delivered, or deliveries stop.

        Bounded by ``--drain-s``; ``--idle-s`` without a single delivery ends it early (what is
        missing then is lost, not late). ``drain_cut`` says the bound ended it while deliveries
        were still arriving (a server far behind its backlog: missing means late, not lost).
        """
        pub = self.publisher
        assert pub is not None
        pub.on_slot = None
        started = perf()
        deadline = started + self.args.drain_s
        seen, seen_at = len(self.tally.rx_t), started
        while pub.open and perf() < deadline:
            await asyncio.sleep(0.05)
            if len(self.tally.rx_t) != seen:
                seen, seen_at = len(self.tally.rx_t), perf()
            elif perf() - seen_at > self.args.idle_s:
                break
        unfinished = len(pub.open)
        pub.open.clear()
        return {
            "drain_s": round(perf() - started, 2),
            "unfinished_events": unfinished,
            "drain_cut": bool(unfinished) and perf() >= deadline,
        }

    def _figures(self, t0: float, t1: float, cpu0: dict[str, CpuSample], cpu1: dict[str, CpuSample]) -> dict[str, Any]:
        """Deliveries in [t0, t1); latencies of the events *sent* in [t0, t1)."""
        pub, tally = self.publisher, self.tally
        assert pub is not None
        rx_t, rx_off = tally.rx_t, tally.rx_off
        first, last = bisect.bisect_left(rx_t, t0), bisect.bisect_left(rx_t, t1)
        window_s = t1 - t0
        sent_in = {off: s for off, s in pub.offset_sent_t.items() if t0 <= s < t1}
        delivery = [rt - sent_in[off] for off, rt in zip(rx_off, rx_t, strict=True) if off in sent_in]
        acks = [lat for sent, lat in pub.acks if t0 <= sent < t1]
        figures: dict[str, Any] = {
            "window_s": round(window_s, 3),
            "deliveries": last - first,
            "deliveries_per_s": round((last - first) / window_s, 1),
            "events": len(sent_in),
            "events_per_s": round(len(sent_in) / window_s, 1),
            "ack": percentiles_ms(acks),
            "delivery": percentiles_ms(delivery),
        }
        for name in cpu1:
            figures[f"{name}_cpu_pct"] = round(cpu1[name].percent_since(cpu0[name]), 1)
        return figures

    def marks(self) -> tuple[int, ...]:
        """The publisher's counters at the start of a phase (``_loss`` reports their growth)."""
        pub = self.publisher
        assert pub is not None
        return (len(pub.committed), pub.noop, len(pub.errors), pub.stalled, pub.acks_out_of_order,
                pub.offsets_out_of_order)  # fmt: skip

    def _loss(
        self, first_committed: int, noop0: int, errors0: int, stalled0: int, acks_ooo0: int, offsets_ooo0: int
    ) -> dict[str, Any]:
        pub = self.publisher
        assert pub is not None
        return {
            "committed": len(pub.committed) - first_committed,
            "missing": pub.missing_since(first_committed),
            "gaps": sum(link.gaps for link in self.links),
            "duplicates": sum(link.duplicates for link in self.links),
            "closed_subscribers": sum(1 for link in self.links if link.closed),
            "noop_acks": pub.noop - noop0,
            "error_acks": len(pub.errors) - errors0,
            "first_errors": [repr(e)[:200] for e in pub.errors[errors0 : errors0 + 3]],
            "stalled": pub.stalled - stalled0,
            "acks_out_of_order": pub.acks_out_of_order - acks_ooo0,
            "offsets_out_of_order": pub.offsets_out_of_order - offsets_ooo0,
        }

    # --- phases --------------------------------------------------------------------------
    async def _prime(self) -> None:
        """Send the first status change alone: "paused" is refused while the session is "ready".

        Later, a server that ran one connection's requests out of order would swap two of them:
        a no-op ack, never an error, because "recording" and "paused" may each follow the other.
        """
        pub = self.publisher
        assert pub is not None
        if pub.seq == 0:
            pub.send()
            deadline = perf() + self.args.stall_s
            while pub.open and perf() < deadline:
                await asyncio.sleep(0.01)

    async def saturation(self) -> dict[str, Any]:
        """Keep ``--outstanding`` events in flight for warm-up + window; figures over the window."""
        args, pub = self.args, self.publisher
        assert pub is not None
        marks = self.marks()
        self.tally.clear_samples()
        await self._prime()
        end = perf() + args.warmup_s + args.sat_s

        def fill() -> None:
            while len(pub.open) < args.outstanding and perf() < end:
                pub.send()

        pub.on_slot = fill
        watcher = asyncio.create_task(self._watch_stalls(end))
        fill()
        await asyncio.sleep(args.warmup_s)
        t0 = perf()
        cpu0 = self._cpu(t0)
        await asyncio.sleep(args.sat_s)
        t1 = perf()
        cpu1 = self._cpu(t1)
        watcher.cancel()
        drained = await self._drain()
        figures = self._figures(t0, t1, cpu0, cpu1)
        figures.update(outstanding=args.outstanding, **self._loss(*marks), **drained)
        log(f"saturation: {figures['deliveries_per_s']:.0f} deliveries/s, gen CPU {figures['gen_cpu_pct']}%")
        return figures

    async def fixed_rate(self) -> dict[str, Any]:
        """One event every 1/``--rate`` s for ``--fixed-s`` s, on an absolute schedule."""
        args, pub = self.args, self.publisher
        assert pub is not None
        marks = self.marks()
        self.tally.clear_samples()
        total = int(args.rate * args.fixed_s)
        t0 = perf() + 0.05
        cpu0 = self._cpu(perf())
        slip_max = 0.0
        for k in range(total):
            target = t0 + k / args.rate
            delay = target - perf()
            if delay > 0:
                await asyncio.sleep(delay)
            slip_max = max(slip_max, perf() - target)
            pub.send()
        await asyncio.sleep(max(0.0, t0 + args.fixed_s - perf()))
        t1 = perf()
        cpu1 = self._cpu(t1)
        drained = await self._drain()
        figures = self._figures(t0, t1, cpu0, cpu1)
        figures.update(rate=args.rate, sent=total, send_slip_max_ms=round(1000 * slip_max, 2))
        figures.update(**self._loss(*marks), **drained)
        log(f"fixed {args.rate}/s: delivery p99 {figures['delivery']['p99_ms']} ms, gen CPU {figures['gen_cpu_pct']}%")
        return figures

    async def close(self) -> None:
        """Close every connection (bounded wait)."""
        if self.reader is not None:
            self.reader.close()
        pub_link = self.publisher._link if self.publisher else None
        for link in [*self.links, *([pub_link] if pub_link else [])]:
            if link.transport is not None:
                link.transport.close()
        await asyncio.sleep(0.2)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """All phases, each bounded; the result as one dict."""
    run = Run(args)
    result: dict[str, Any] = {"n": args.n}
    try:
        result["connect"] = await run.connect()
        gc.collect()
        gc.freeze()
        gc.disable()  # nothing here builds reference cycles; no pauses in the windows
        if args.hold_s > 0:  # connections held open (bench/connections.py reads memory meanwhile)
            await asyncio.sleep(args.hold_s)
        if args.sat_s > 0:
            result["saturation"] = await run.saturation()
            await asyncio.sleep(0.5)
        if args.fixed_s > 0:
            result["fixed"] = await run.fixed_rate()
        if run.publisher is not None and run.publisher.seq:
            result["last_status_sent"] = STATUSES[(run.publisher.seq - 1) % 2]
    finally:
        await run.close()
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (fanout.py passes all of them)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--session", required=True)
    p.add_argument("--server-pid", type=int, required=True)
    p.add_argument("--redis-pid", type=int, default=0)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=64, help="handshakes in flight while connecting")
    p.add_argument("--outstanding", type=int, default=8, help="events in flight at saturation")
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--sat-s", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=50.0)
    p.add_argument("--fixed-s", type=float, default=10.0)
    p.add_argument("--stall-s", type=float, default=3.0, help="an undelivered event leaves the window after")
    p.add_argument("--drain-s", type=float, default=20.0, help="longest wait for late deliveries after a phase")
    p.add_argument("--idle-s", type=float, default=2.0, help="a drain ends after this long without a delivery")
    p.add_argument("--handshake-timeout-s", type=float, default=20.0)
    p.add_argument("--plain-asyncio", action="store_true", help="read subscribers through asyncio transports")
    p.add_argument("--deadline-s", type=float, default=120.0, help="hard limit on the whole run")
    p.add_argument("--hold-s", type=float, default=0.0, help="after connecting, keep every connection open this long")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run, print ``RESULT {json}``; exit 1 when the run failed or overran its deadline."""
    args = parse_args(argv)

    async def bounded() -> dict[str, Any]:
        return await asyncio.wait_for(main_async(args), args.deadline_s)

    try:
        result = asyncio.run(bounded())
    except (TimeoutError, OSError, ConnectionError) as exc:
        print("RESULT " + json.dumps({"n": args.n, "error": repr(exc)}), flush=True)
        return 1
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
