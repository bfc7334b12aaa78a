"""The event loop of ``serve`` handles a bounded batch of ready descriptors per turn (issue 20)."""

from __future__ import annotations

import asyncio
import selectors
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from server.cli import _serve_loop
from server.loop import IO_PER_TURN, CappedEpollSelector, serve_loop


@contextmanager
def ready_pairs(count: int) -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """``count`` connected pairs, each with a byte waiting on its first socket."""
    pairs = [socket.socketpair() for _ in range(count)]
    try:
        for ours, theirs in pairs:
            ours.setblocking(False)
            theirs.send(b"x")
        yield pairs
    finally:
        for ours, theirs in pairs:
            ours.close()
            theirs.close()


def test_select_returns_at_most_the_cap_and_every_ready_descriptor_in_turn() -> None:
    selector = CappedEpollSelector(cap=16)
    with ready_pairs(100) as pairs:
        for ours, _ in pairs:
            selector.register(ours, selectors.EVENT_READ)
        taken: list[int] = []
        while len(taken) < len(pairs):
            batch = selector.select(0)
            assert 0 < len(batch) <= 16
            for key, mask in batch:
                assert mask == selectors.EVENT_READ
                key.fileobj.recv(1)  # type: ignore[union-attr]  # consumed: no longer ready
                taken.append(key.fd)
        assert sorted(taken) == sorted(ours.fileno() for ours, _ in pairs)  # each once
        assert selector.select(0) == []
        for ours, _ in pairs[:10]:
            selector.unregister(ours)
        pairs[0][1].send(b"y")  # ready again, but no longer registered
        assert selector.select(0) == []
    selector.close()


def order_of_a_callback_scheduled_by_the_first_read(loop: asyncio.AbstractEventLoop, count: int) -> int:
    """How many ready descriptors' callbacks run before a callback that the first of them
    scheduled (a handler's next step, woken by what was read)."""
    order: list[str] = []

    def reader(sock: socket.socket, first: list[bool]) -> Callable[[], None]:
        def read() -> None:
            sock.recv(1)
            loop.remove_reader(sock)
            order.append("read")
            if first:
                first.clear()
                loop.call_soon(order.append, "next step")

        return read

    with ready_pairs(count) as pairs:
        first = [True]
        for ours, _ in pairs:
            loop.add_reader(ours, reader(ours, first))

        async def until_all_read() -> None:
            while order.count("read") < count:
                await asyncio.sleep(0)

        loop.run_until_complete(until_all_read())
    loop.close()
    return order.index("next step")


def test_a_step_woken_by_one_read_waits_for_one_batch_not_for_every_ready_descriptor() -> None:
    # asyncio's own selector hands every ready descriptor to one turn: the woken step waits
    # for all of them (a /healthz handler behind thousands of closing connections).
    assert order_of_a_callback_scheduled_by_the_first_read(asyncio.SelectorEventLoop(selectors.EpollSelector()), 300) == 300
    waited = order_of_a_callback_scheduled_by_the_first_read(asyncio.SelectorEventLoop(CappedEpollSelector(cap=32)), 300)
    assert waited <= 2 * 32


def test_serve_runs_on_the_capped_loop() -> None:
    assert _serve_loop() is serve_loop
    count = IO_PER_TURN + 44  # 600 descriptors: within any open-files limit
    assert order_of_a_callback_scheduled_by_the_first_read(serve_loop(), count) <= IO_PER_TURN
