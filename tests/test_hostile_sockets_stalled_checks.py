"""The write deadline's checks share the loop: a check looks at CHECK_BATCH watched connections
a turn, so thousands of clients that answered lately (each watched until a check finds nothing
waiting) never hold everything else for the length of one look at all of them."""

from __future__ import annotations

import asyncio
import socket

from handlers.write_deadline import CHECK_BATCH, WriteDeadline

CONNECTIONS = 3 * CHECK_BATCH + 5


async def test_a_check_looks_at_a_batch_a_turn_and_at_all_of_them_in_the_end() -> None:
    loop = asyncio.get_running_loop()
    deadline = WriteDeadline(3600)
    transports: list[asyncio.Transport] = []
    peers: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            ours, theirs = socket.socketpair()
            transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
            assert isinstance(transport, asyncio.Transport)
            transports.append(transport)
            peers.append(theirs)
            deadline.watch(transport)  # an answer just given: watched, nothing waiting
        for _ in range(2):  # the first check keeps them (fresh), the second forgets them
            deadline.check()
            assert len(deadline._checking) == CONNECTIONS - CHECK_BATCH  # one batch this turn
            for _ in range(10):
                await asyncio.sleep(0)
        assert not deadline.watched and not deadline._checking
    finally:
        deadline.stop()
        for transport in transports:
            transport.abort()
        for peer in peers:
            peer.close()
