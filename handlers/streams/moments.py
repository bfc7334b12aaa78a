"""Moments: the clicks of one segment that fall within a window of the moment's first click.

After a raid of clicks the streamer edits from moments, not from a thousand single clips. A
moment is anchored at its first click, so every pair of its clips lies within the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from storage.streams.repository import Clip

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
        notes=tuple(c.note for c in group if c.note),
        clip_ids=tuple(c.clip_id for c in group),
        clipped=any(c.clipped for c in group),
    )


def group_moments(clips: list[Clip], *, window_s: int, sort: MomentSort = "time") -> list[Moment]:
    """Moments of ``clips`` (any order): by time, or by click count (ties by time)."""
    window_ms = window_s * 1000
    groups: list[list[Clip]] = []
    for clip in sorted(clips, key=Clip.sort_key):
        current = groups[-1] if groups else None
        if (
            current is not None
            and current[0].segment_index == clip.segment_index
            and clip.offset_ms - current[0].offset_ms <= window_ms
        ):
            current.append(clip)
        else:
            groups.append([clip])
    moments = [_moment(group) for group in groups]
    if sort == "count":
        moments.sort(key=lambda m: -m.count)  # stable: equal counts stay in time order
    return moments
