"""Moments: the clicks of one segment that fall within a window of the moment's first click.

After a raid of clicks the streamer edits from moments, not from a thousand single clips. A
moment is anchored at its first click, so every pair of its clips lies within the window.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from handlers.streams.seen import shows_anything
from storage.streams.repository import Clip
from storage.streams.slices import SORT_SLICE, sorted_in_slices

MomentSort = Literal["count", "time"]


@dataclass(frozen=True, slots=True)
class Moment:
    """A group of clips of one segment; offsets in ms, notes in click order (empty ones left out)."""

    segment_index: int
    count: int
    first_offset_ms: int
    median_offset_ms: int
    first_stream_offset_ms: int
    notes: tuple[str, ...]
    clip_ids: tuple[str, ...]
    clipped: bool

    def public(self) -> dict[str, Any]:
        """The JSON shape of a moment."""
        return {
            "segment_index": self.segment_index,
            "count": self.count,
            "first_offset_ms": self.first_offset_ms,
            "median_offset_ms": self.median_offset_ms,
            "first_stream_offset_ms": self.first_stream_offset_ms,
            "notes": list(self.notes),
            "clip_ids": list(self.clip_ids),
            "clipped": self.clipped,
        }


def _median(values: list[int]) -> int:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) // 2


def _moment(group: list[Clip]) -> Moment:
    first = group[0]
    return Moment(
        segment_index=first.segment_index,
        count=len(group),
        first_offset_ms=first.offset_ms,
        median_offset_ms=_median([c.offset_ms for c in group]),
        first_stream_offset_ms=first.stream_offset_ms,
        notes=tuple(c.note for c in group if shows_anything(c.note)),
        clip_ids=tuple(c.clip_id for c in group),
        clipped=any(c.clipped for c in group),
    )


def _groups(ordered: list[Clip], window_ms: int) -> Iterator[list[Clip]]:
    """The clips of each moment, ``ordered`` being in :meth:`Clip.sort_key` order."""
    current: list[Clip] = []
    for clip in ordered:
        if (
            current
            and current[0].segment_index == clip.segment_index
            and clip.offset_ms - current[0].offset_ms <= window_ms
        ):
            current.append(clip)
        else:
            if current:
                yield current
            current = [clip]
    if current:
        yield current


def _by_count(moment: Moment) -> int:
    return -moment.count  # a stable sort: equal counts stay in time order


def group_moments(clips: list[Clip], *, window_s: int, sort: MomentSort = "time") -> list[Moment]:
    """Moments of ``clips`` (any order): by time, or by click count (ties by time)."""
    moments = [_moment(group) for group in _groups(sorted(clips, key=Clip.sort_key), window_s * 1000)]
    if sort == "count":
        moments.sort(key=_by_count)
    return moments


async def grouped_moments(ordered: list[Clip], *, window_s: int, sort: MomentSort = "time") -> list[Moment]:
    """:func:`group_moments` of clips already in order (as ``StreamSessions.clips`` gives
    them), the loop getting a turn every ``SORT_SLICE`` clips: a raid of 200,000 clips
    grouped in one go held it for ~0.3 s."""
    moments: list[Moment] = []
    done = 0
    for group in _groups(ordered, window_s * 1000):
        moments.append(_moment(group))
        done += len(group)
        if done >= SORT_SLICE:
            done = 0
            await asyncio.sleep(0)
    return await sorted_in_slices(moments, key=_by_count) if sort == "count" else moments


# Groupings kept per process: a streamer's dashboard or two, each with its own window and sort.
KEPT_GROUPINGS = 16


class KeptMoments:
    """The last grouping of each stream's clips per (window, sort, clipped only), at the log
    position it was made from: the dashboard asks for the same moments every few seconds, and
    while no clip changed (the same position) grouping 200,000 clips again cost ~0.3 s of CPU."""

    def __init__(self, most: int = KEPT_GROUPINGS) -> None:
        self._most = most
        self._kept: OrderedDict[tuple[str, int, str, bool], tuple[tuple[str, int], list[Moment]]] = OrderedDict()

    def get(
        self, session_id: str, position: tuple[str, int], *, window_s: int, sort: str, clipped_only: bool
    ) -> list[Moment] | None:
        """A copy of the grouping made at ``position`` with these parameters, if kept."""
        key = (session_id, window_s, sort, clipped_only)
        found = self._kept.get(key)
        if found is None or found[0] != position:
            return None
        self._kept.move_to_end(key)
        return list(found[1])

    def put(
        self,
        session_id: str,
        position: tuple[str, int],
        moments: list[Moment],
        *,
        window_s: int,
        sort: str,
        clipped_only: bool,
    ) -> None:
        """Keep a copy of ``moments``, grouped at ``position`` (the oldest kept dropped past the bound)."""
        key = (session_id, window_s, sort, clipped_only)
        self._kept[key] = (position, list(moments))
        self._kept.move_to_end(key)
        while len(self._kept) > self._most:
            self._kept.popitem(last=False)
