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
"""

from __future__ import annotations

import gc
import logging
import resource

log = logging.getLogger(__name__)

# Older generations are collected after this many collections of the younger one.
GEN1_EVERY = 3
GEN2_EVERY = 3000


def tune_gc(gen0: int) -> None:
    """Freeze what exists now and collect young objects every ``gen0`` allocations (0: leave)."""
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, GEN1_EVERY, GEN2_EVERY)


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
