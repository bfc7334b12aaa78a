"""A process's last whole read of each big stream's clips, brought forward by the log.

The streamer's dashboard reads every clip again every few seconds while clips come (its
moments); reading, parsing and ordering 200,000 clips each time cost 2-3 s of this process's
CPU. A read kept here at its log position is brought forward by the events after it: a refresh
costs what changed (one log read and one settling step when nothing did), not the stream.
``StreamSessions.clips`` decides when an entry is still good (its log position, its count).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass

from storage.events import Position
from storage.streams.records import Clip
from storage.streams.slices import released, sorted_in_slices

# Clips kept over every stream, per process, by default (SESSIONHUB_CLIPS_CACHED): about one
# 200,000-clip stream and a smaller one (~540 bytes a parsed clip, measured: ~108 MB per
# 200,000). The least recently read stream goes first.
CACHED_CLIPS = 250_000

# More changes than this are applied by ordering every clip again (in slices), not one by one.
REORDER_AT = 4096


@dataclass(slots=True)
class CachedClips:
    """One stream's clips at ``position``: by id, and in order (``Clip.sort_key``)."""

    position: Position
    by_id: dict[str, Clip]
    ordered: list[Clip]

    async def apply(self, changes: dict[str, Clip | None], position: Position) -> None:
        """The clips as ``changes`` leave them (None: gone), at ``position``."""
        if len(changes) > REORDER_AT:
            for clip_id, clip in changes.items():
                if clip is None:
                    self.by_id.pop(clip_id, None)
                else:
                    self.by_id[clip_id] = clip
            self.ordered = await sorted_in_slices(list(self.by_id.values()), key=Clip.sort_key)
        else:
            for clip_id, clip in changes.items():
                old = self.by_id.pop(clip_id, None)
                if old is not None:
                    self._remove(old)
                if clip is not None:
                    self.by_id[clip_id] = clip
                    bisect.insort_right(self.ordered, clip, key=Clip.sort_key)
        self.position = position

    def _remove(self, clip: Clip) -> None:
        key = clip.sort_key()
        at = bisect.bisect_left(self.ordered, key, key=Clip.sort_key)
        while at < len(self.ordered) and self.ordered[at].sort_key() == key:
            if self.ordered[at] is clip:
                del self.ordered[at]
                return
            at += 1


class ClipsCache:
    """The last whole read of the most recently read big streams, at most ``max_clips`` clips."""

    def __init__(self, max_clips: int = CACHED_CLIPS) -> None:
        self._max_clips = max_clips
        self._entries: OrderedDict[str, CachedClips] = OrderedDict()
        self._held = 0

    def get(self, session_id: str) -> CachedClips | None:
        """The stream's entry (taken out: the caller puts it back once brought forward)."""
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            self._held -= len(entry.ordered)
        return entry

    async def put(self, session_id: str, entry: CachedClips) -> None:
        """Keep ``entry`` as the stream's newest, dropping the least recently read over the bound
        (freed a slice per turn of the loop: 200,000 clips freed at once held it 30-60 ms)."""
        dropped = [old for old in (self.get(session_id),) if old is not None and old is not entry]
        if len(entry.ordered) > self._max_clips:
            dropped.append(entry)
        else:
            self._entries[session_id] = entry
            self._held += len(entry.ordered)
        while self._held > self._max_clips:
            _, old = self._entries.popitem(last=False)
            self._held -= len(old.ordered)
            dropped.append(old)
        for old in dropped:
            await released(old.by_id)
            await released(old.ordered)
