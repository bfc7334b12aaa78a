"""The write deadline where the socket gives no count of acknowledged bytes (a Unix socket here;
any non-Linux host): progress is the transport's buffer going down. Real asyncio transports
over a socket pair whose far end reads nothing, or reads slowly."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from handlers.write_deadline import WriteDeadline, kernel_progress

DEADLINE_S = 0.4
ANSWER = b"x" * (2 << 20)  # more than the kernel's buffers of a Unix socket pair take


class _Lost(asyncio.Protocol):
    def __init__(self) -> None:
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)


async def writer_and_reader() -> tuple[asyncio.Transport, _Lost, socket.socket]:
    """A transport that has written :data:`ANSWER` to a peer socket that has read none of it."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    protocol = _Lost()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, ours)
    assert isinstance(transport, asyncio.Transport)
    transport.write(ANSWER)
    return transport, protocol, theirs


async def test_a_peer_that_reads_nothing_is_cut_by_the_buffer_that_never_goes_down() -> None:
    deadline = WriteDeadline(DEADLINE_S)
    transport, protocol, peer = await writer_and_reader()
    try:
        assert kernel_progress(transport) is None  # no TCP_INFO: the fallback is what is tested
        assert transport.get_write_buffer_size() > 0
        deadline.watch(transport)
        await asyncio.wait_for(protocol.lost, DEADLINE_S * 2 + 5)
        assert deadline.cuts == 1 and transport.is_closing() and not deadline.watched
    finally:
        transport.abort()
        peer.close()
        deadline.stop()


async def test_a_peer_that_reads_slowly_is_not_cut() -> None:
    """It takes 64 KiB every 50 ms, far below what the pair could carry: the buffer goes down
    between checks, so the deadline (0.4 s) never passes, and every byte arrives."""
    deadline = WriteDeadline(DEADLINE_S)
    transport, protocol, peer = await writer_and_reader()
    loop = asyncio.get_running_loop()
    got = 0
    try:
        deadline.watch(transport)
        limit = loop.time() + 30
        while got < len(ANSWER):
            assert loop.time() < limit and not protocol.lost.done(), f"cut after {got} bytes"
            await asyncio.sleep(0.05)
            with contextlib.suppress(BlockingIOError):
                got += len(peer.recv(65536))
        assert deadline.cuts == 0
    finally:
        transport.abort()
        peer.close()
        deadline.stop()
