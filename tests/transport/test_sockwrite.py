"""server/transport/sockwrite.py: a frame sent at once when nothing is queued, and otherwise
exactly what asyncio's ``transport.write`` does -- checked over real loopback TCP connections."""

from __future__ import annotations

import asyncio
import select
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from server.transport import sockwrite


@dataclass
class Watched(asyncio.Protocol):
    """The writing side's protocol: what asyncio told it."""

    paused: int = 0
    lost: asyncio.Future[Exception | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def pause_writing(self) -> None:
        self.paused += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


@dataclass
class Pair:
    transport: asyncio.Transport
    protocol: Watched
    peer: socket.socket  # the other end, read (or not) by the test
    stock_writes: list[bytes]  # what went through transport.write


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    loop = asyncio.get_running_loop()
    listener = socket.create_server(("127.0.0.1", 0))
    ours = socket.socket()
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)  # fills up quickly
    ours.setblocking(False)
    await loop.sock_connect(ours, listener.getsockname())
    peer, _ = listener.accept()
    listener.close()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    transport, protocol = await loop.create_connection(Watched, sock=ours)
    stock_writes: list[bytes] = []
    write = transport.write

    def counting(data: Any) -> None:  # the transport's own write, counted (an instance attribute)
        stock_writes.append(bytes(data))
        write(data)

    transport.write = counting  # type: ignore[method-assign]
    try:
        yield Pair(transport, protocol, peer, stock_writes)
    finally:
        transport.abort()
        peer.close()


async def _read(peer: socket.socket, size: int) -> bytes:
    """``size`` bytes from the peer (the writer's loop keeps running meanwhile)."""
    loop = asyncio.get_running_loop()
    peer.setblocking(False)
    got = bytearray()
    async with asyncio.timeout(30):
        while len(got) < size:
            chunk = await loop.sock_recv(peer, size - len(got))
            if not chunk:
                break
            got += chunk
    return bytes(got)


async def test_a_frame_goes_to_the_socket_without_the_transports_write(pair: Pair) -> None:
    assert sockwrite.direct(pair.transport)  # this Python is one the contract was read for
    sockwrite.write(pair.transport, b"frame one")
    sockwrite.write(pair.transport, b"frame two")
    assert pair.stock_writes == []  # sent by the direct step, not handed to asyncio
    assert pair.transport.get_write_buffer_size() == 0
    assert await _read(pair.peer, 18) == b"frame oneframe two"


async def test_what_the_kernel_does_not_take_is_queued_and_later_frames_go_behind_it(pair: Pair) -> None:
    # A peer that does not read: the first write fills the socket, its rest is queued by
    # asyncio (which cuts slow clients by its buffer limit: pause_writing), and the frames
    # after it must go behind the queue, not straight to the socket as it drains.
    big = b"".join(struct.pack("!I", n) for n in range(1_000_000))  # 4 MB, every offset unique
    sockwrite.write(pair.transport, big)
    queued = pair.transport.get_write_buffer_size()
    assert 0 < queued < len(big)
    # Only the rest was handed to asyncio (which may send some more of it before queueing).
    assert len(pair.stock_writes) == 1 and big.endswith(pair.stock_writes[0])
    assert queued <= len(pair.stock_writes[0]) < len(big)
    assert pair.protocol.paused == 1
    # The peer reads some (the loop does not run meanwhile, so asyncio's queue stays as it is)
    # until the socket has room again: a send straight to it would now overtake the queue.
    pair.peer.setblocking(True)
    taken = b""
    in_kernel = len(big) - queued  # what the kernel took: the peer can read that much now
    while len(taken) < in_kernel:
        taken += pair.peer.recv(in_kernel - len(taken))
    assert select.select([], [pair.transport.get_extra_info("socket")], [], 10)[1], "the socket never had room"
    assert pair.transport.get_write_buffer_size() == queued
    for n in range(3):
        sockwrite.write(pair.transport, b"tail %d;" % n)
    assert pair.stock_writes[1:] == [b"tail 0;", b"tail 1;", b"tail 2;"]
    assert taken + await _read(pair.peer, len(big) + 21 - len(taken)) == big + b"tail 0;tail 1;tail 2;"


async def test_a_connection_reset_fails_the_transport_as_asyncio_does(pair: Pair) -> None:
    pair.peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pair.peer.close()  # RST
    async with asyncio.timeout(10):
        while True:  # the reset reaches the writing side's socket: a send fails
            sockwrite.write(pair.transport, b"x")
            if pair.protocol.lost.done() or pair.transport.is_closing():
                break
            await asyncio.sleep(0.01)
        error = await pair.protocol.lost
    assert isinstance(error, ConnectionError | BrokenPipeError)
    sockwrite.write(pair.transport, b"after")  # a lost transport takes writes and drops them, as asyncio's
    assert pair.stock_writes[-1] == b"after"


async def test_a_closed_transport_sends_nothing_more(pair: Pair) -> None:
    sockwrite.write(pair.transport, b"last")
    pair.transport.close()
    sockwrite.write(pair.transport, b"too late")  # asyncio drops it (a lost connection's write)
    assert pair.stock_writes == [b"too late"]
    assert await _read(pair.peer, 100) == b"last"  # then the end of the stream


async def test_after_write_eof_a_write_is_refused_as_by_asyncio(pair: Pair) -> None:
    pair.transport.write_eof()
    with pytest.raises(RuntimeError, match="write_eof"):
        sockwrite.write(pair.transport, b"x")


async def test_any_other_transport_gets_its_own_write() -> None:
    class Recording(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.written: list[bytes] = []

        def write(self, data: Any) -> None:
            self.written.append(bytes(data))

    other = Recording()
    assert not sockwrite.direct(other)
    sockwrite.write(other, b"frame")
    assert other.written == [b"frame"]


def test_outside_the_tested_pythons_every_write_is_the_transports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockwrite.sys, "version_info", (3, 99, 0))
    assert sockwrite._socket_transport_type() is None
    monkeypatch.setattr(sockwrite.sys, "version_info", (3, 11, 7))
    assert sockwrite._socket_transport_type() is not None
