"""Process-wide tuning of a long-running ``serve``: the garbage collector and descriptor limit.

The cyclic garbage collector walks every tracked object of a generation each time it runs,
and a server holding thousands of connections keeps hundreds of thousands of them alive: with
CPython's default thresholds (a young collection every 700 allocations) a burst of connecting
clients spent a third of its time in collections (3,000 connections took 4.5 s; 2.8 s with a
young collection every 50,000, `bench/connections.py`). What the process built at start-up (modules, the
app, its routes) is frozen out of collection altogether, and young collections run every
``gen0`` allocations. Most of what a connection allocates is freed by reference counting, so
the garbage that only the collector finds stays small (a closed connection leaves none:
``server.transport.fastpath._let_go``).

A collection holds the event loop for its whole length, about 0.5 us per object it examines
on a busy 2-core host (``server.gc_policy`` logs the long ones), and a young collection
examines up to ``gen0 * (GEN1_EVERY + 1)`` objects: with 50,000 and 20, the survivors of a
10,000-client reconnect (~1 M objects) were examined in one collection that held the loop
for hundreds of milliseconds (issue 20, finding 3). With 10,000 and 3 a young collection
examines a few tens of thousands (at most 74,000 and 26 ms of CPU over two waves of 3,000
clients, against 66,000 and 27 ms for the young collections of 50,000 and 20 before their
first collection of the survivors); full collections stay as rare as before (every
``gen0 * GEN1_EVERY * GEN2_EVERY`` ~ 90 M net allocations), since they examine every live
object and reference counting frees almost everything anyway.

The count that triggers a young collection is allocations *minus deallocations*: while old
objects are freed as fast as new ones are made (a reconnect: the last run's connections torn
down while the next one's are built), it stays near zero however many new objects pile up in
the young generation, and the collection that finally comes examines all of them (96-102 ms of
CPU in one go, `bench/soak_mass_disconnect.py` at 10,000 clients). :class:`YoungSweep` bounds
that by time as well: a young collection at least every ``YOUNG_EVERY_S``, of what ~0.1 s of
work allocated (an empty generation costs microseconds).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import resource

log = logging.getLogger(__name__)

# Older generations are collected after this many collections of the younger one.
GEN1_EVERY = 3
GEN2_EVERY = 3000
# A young collection runs at least this often (YoungSweep).
YOUNG_EVERY_S = 0.1


def tune_gc(gen0: int) -> None:
    """Freeze what exists now and collect young objects every ``gen0`` allocations (0: leave)."""
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, GEN1_EVERY, GEN2_EVERY)


class YoungSweep:
    """A young collection every ``every_s`` on the running loop, whatever the count says.

    The collector's own trigger misses young objects made while old ones are freed (module
    docstring); this timer collects them in small steps. It collects the middle generation too
    when the collector would (``GEN1_EVERY`` young collections since its last), so survivors do
    not pile up there instead. A process whose collector is disabled is left alone.
    """

    def __init__(self, every_s: float = YOUNG_EVERY_S) -> None:
        self.every_s = every_s
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> YoungSweep:
        """Start sweeping on the running loop (once)."""
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.every_s, self._tick)
        return self

    def stop(self) -> None:
        """Stop sweeping."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        if gc.isenabled():
            gc.collect(1 if gc.get_count()[1] >= GEN1_EVERY else 0)
        self._handle = asyncio.get_running_loop().call_later(self.every_s, self._tick)


def raise_open_files_limit() -> int:
    """Raise the soft limit of open descriptors to the hard one (one per client); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-files limit from %d: %s", soft, exc)
    return soft
