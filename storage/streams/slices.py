"""Sorting and dropping a raid's worth of items without holding the event loop.

``sorted(items, key=...)`` of 200,000 clips (SESSIONHUB_CLIPS_MAX_PER_SESSION may be up to a
million) is one step of ~100 ms or more: every client of the node waits for it. Here runs of
``size`` items are sorted one per turn of the loop, then merged a slice per turn. Dropping the
last reference to such a list frees every item in one step too (30-60 ms for 200,000 clips,
more for their rows as dicts): :func:`released` frees them a slice per turn.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Items sorted, or merged, per turn of the loop: a few ms of work.
SORT_SLICE = 2000


async def sorted_in_slices(items: Sequence[T], *, key: Callable[[T], Any], size: int = SORT_SLICE) -> list[T]:
    """``sorted(items, key=key)``, the same list (stable: equal keys keep their order), made
    a slice of ``size`` items per turn of the loop."""
    if len(items) <= size:
        return sorted(items, key=key)
    runs: list[list[T]] = []
    for start in range(0, len(items), size):
        if start:
            await asyncio.sleep(0)
        runs.append(sorted(items[start : start + size], key=key))
    # heapq.merge breaks ties by the order of its inputs: runs in the items' order keep it stable.
    merged = heapq.merge(*runs, key=key)
    out: list[T] = []
    while True:
        await asyncio.sleep(0)
        before = len(out)
        out.extend(item for _, item in zip(range(size), merged, strict=False))
        if len(out) - before < size:
            return out


async def released(items: list[Any] | dict[Any, Any], *, size: int = SORT_SLICE) -> None:
    """Empty ``items``, a slice per turn of the loop: what only it held is freed a slice at a
    time. For a list or dict no longer needed whose items are held by nothing else."""
    while items:
        if isinstance(items, list):
            del items[-size:]
        else:
            for _ in range(min(size, len(items))):
                items.popitem()
        await asyncio.sleep(0)
