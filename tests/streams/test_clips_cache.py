"""The kept reads of big streams (storage/streams/clips_cache.py): changes applied one by one or
by ordering again give the order a fresh read gives, and the bound drops the least recently read."""

from __future__ import annotations

import random

from storage.events import Position
from storage.streams.clips_cache import REORDER_AT, CachedClips, ClipsCache
from storage.streams.records import Clip


def _clip(seq: int, rng: random.Random) -> Clip:
    return Clip(
        clip_id=f"c{seq}",
        segment_index=rng.choice((1, 2)),
        offset_ms=rng.randrange(0, 5_000, 250),  # many equal offsets: seq decides
        stream_offset_ms=0,
        note="",
        submitted_by="v",
        viewer_tag="t",
        seq=seq,
        clipped=False,
        created_at=0,
    )


async def _entry(clips: list[Clip]) -> CachedClips:
    ordered = sorted(clips, key=Clip.sort_key)
    return CachedClips(position=Position("e", 1), by_id={c.clip_id: c for c in ordered}, ordered=ordered)


async def test_changes_keep_the_order_of_a_fresh_read() -> None:
    rng = random.Random(7)
    clips = [_clip(seq, rng) for seq in range(1, 6001)]
    for changed in (50, REORDER_AT + 1):  # one by one, then by ordering again
        entry = await _entry(clips)
        changes: dict[str, Clip | None] = {}
        for clip in rng.sample(clips, changed):
            changes[clip.clip_id] = None if rng.random() < 0.5 else _clip(clip.seq, rng)  # gone, or moved
        changes.update({f"c{seq}": _clip(seq, rng) for seq in range(10_000, 10_000 + changed)})  # added
        await entry.apply(changes, Position("e", 9))
        expected = {c.clip_id: c for c in clips}
        for clip_id, clip in changes.items():
            if clip is None:
                expected.pop(clip_id, None)
            else:
                expected[clip_id] = clip
        assert entry.ordered == sorted(expected.values(), key=Clip.sort_key)
        assert entry.by_id == expected and entry.position == Position("e", 9)


async def test_the_least_recently_read_stream_goes_past_the_bound() -> None:
    rng = random.Random(8)
    cache = ClipsCache(max_clips=250)
    for name in ("a", "b"):
        await cache.put(name, await _entry([_clip(seq, rng) for seq in range(100)]))
    a = cache.get("a")  # read again: the most recent once put back
    assert a is not None
    await cache.put("a", a)
    await cache.put("c", await _entry([_clip(seq, rng) for seq in range(100)]))
    assert cache.get("b") is None and cache.get("a") is a and cache.get("c") is not None
    await cache.put("d", await _entry([_clip(seq, rng) for seq in range(300)]))  # over the bound alone
    assert cache.get("d") is None
