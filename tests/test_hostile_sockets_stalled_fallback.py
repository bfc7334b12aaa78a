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
    between checks, so the deadline (0.4 s) never passes, and every byte arrives.

    The reader shares the test's loop: on a starved machine one of its 50 ms naps can last past
    the deadline, and then it did read nothing for that long (a cut is right). Such an attempt
    proves nothing either way and is made again; a cut while every nap stayed well under the
    deadline fails at once."""
    for _ in range(3):
        cut, longest_nap = await read_slowly()
        if not cut:
            return
        assert longest_nap >= DEADLINE_S / 2, f"cut though the reader never paused over {longest_nap:.3f} s"
    raise AssertionError(f"the machine paused the reader past the deadline in every attempt ({longest_nap:.3f} s)")


async def read_slowly() -> tuple[bool, float]:
    """Read the answer 64 KiB every 50 ms; whether the deadline cut it, and the longest nap."""
    deadline = WriteDeadline(DEADLINE_S)
    transport, protocol, peer = await writer_and_reader()
    loop = asyncio.get_running_loop()
    got, longest_nap = 0, 0.0
    try:
        deadline.watch(transport)
        limit = loop.time() + 30
        while got < len(ANSWER):
            if protocol.lost.done():
                return True, longest_nap
            assert loop.time() < limit, f"not all read in 30 s ({got} bytes)"
            before = loop.time()
            await asyncio.sleep(0.05)
            longest_nap = max(longest_nap, loop.time() - before)
            with contextlib.suppress(BlockingIOError):
                got += len(peer.recv(65536))
        assert deadline.cuts == 0
        return False, longest_nap
    finally:
        transport.abort()
        peer.close()
        deadline.stop()
