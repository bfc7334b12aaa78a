"""Work a socket read sets going, run at the end of that read rather than a loop turn later.

A read of the Redis link finishes events (their acks are due); a read of the pub/sub link brings
their fan-out. Each step put off with ``call_soon`` waits for the loop's next turn, behind every
callback made ready meanwhile, and at a steady rate -- each event alone in its reads -- those
turns were most of the time between an event's commit and its delivery: the reply read, a turn
to write the ack, the pub/sub read, a turn for the bus's listener, a turn for the round.

Done inside the read, though, work that the read's many replies share (a connection's acks:
one write for all of them) would be done once per reply. So a read opens a scope
(:func:`begin` / :func:`end`), and :func:`soon` queues a callback for the scope's end, where it
runs once, after everything the read brought was handled; outside a scope, ``soon`` is the
loop's ``call_soon``.

One scope at a time per thread's loop: a scope spans one synchronous ``data_received`` call, so
no other read's callbacks come between its begin and its end. A scope opened inside another
(a callback run at the end of one read that reads again) queues for its own end.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Rounds of callbacks queued by callbacks run at a scope's end, at most (see end).
LEVELS = 4

_queued: list[Callable[[], object]] | None = None


def soon(callback: Callable[[], object], loop: asyncio.AbstractEventLoop) -> None:
    """Run ``callback()`` at the end of the read being handled, else in the loop's next turn."""
    if _queued is not None:
        _queued.append(callback)
    else:
        loop.call_soon(callback)


def begin() -> list[Callable[[], object]] | None:
    """Open a read's scope; hand what it returns to :func:`end`."""
    global _queued
    outer, _queued = _queued, []
    return outer


def end(outer: list[Callable[[], object]] | None) -> None:
    """Close the scope :func:`begin` opened and run what was queued in it, in order.

    What those callbacks queue in turn runs after all of them, and so on (at most
    :data:`LEVELS` times; then in the next loop turn): the acks written at the end of a read
    release the holds of several sessions, and the rounds those releases let go are written
    together once every ack is out. A callback that fails is said and the others still run: the
    read (and its connection) must not die of one caller's bug."""
    global _queued
    queued = _queued
    try:
        for _ in range(LEVELS):
            if not queued:
                return
            _queued = []
            for callback in queued:
                try:
                    callback()
                except Exception:
                    log.exception("a callback at the end of a read failed")
            queued = _queued
    finally:
        _queued = outer
    if queued:  # still more: not a read's work any more, the loop's
        loop = asyncio.get_running_loop()
        for callback in queued:
            loop.call_soon(callback)
