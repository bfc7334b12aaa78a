"""The paged review: a bounded summary, then each segment's clips a page at a time after a cursor.

Before, the dashboard's first load was every clip of the stream (``GET …/clips``): on a stream
of 200,000 clips tens of MB and seconds of server CPU. Pages here never repeat or skip a clip,
while viewers clip, the streamer deletes and clears, and a page merged with the live events after
its offset (as the dashboard does) ends exactly as the stream is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from storage.streams.review import BUILD_TTL_MS, ReviewIndex
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, create_stream, http, started, store_clips, stored_clip

SessionEvent = dict[str, Any]


def _key(clip: dict[str, Any]) -> tuple[int, str]:
    return (int(clip["offset_ms"]), str(clip["clip_id"]))


def _events(client: Client) -> list[SessionEvent]:
    kinds = ("clip_added", "clip_removed", "clips_cleared")
    return [data for name, data in client.events if name in kinds and isinstance(data, dict)]


class SegmentView:
    """What the dashboard holds of one segment: the clips paged in, and the live events applied
    to the part of the segment already paged (a clip past the last page comes with a later page)."""

    def __init__(self, segment: int) -> None:
        self.segment = segment
        self.clips: dict[str, tuple[int, str]] = {}
        self.frontier: tuple[int, str] | None = None
        self.complete = False

    def covers(self, key: tuple[int, str]) -> bool:
        return self.complete or (self.frontier is not None and key <= self.frontier)

    def apply(self, event: SessionEvent) -> None:
        data = event["data"]
        if event["type"] == "clip_added" and data["segment_index"] == self.segment:
            key = _key(data)
            if self.covers(key):
                self.clips[data["clip_id"]] = key
        elif event["type"] == "clip_removed":
            self.clips.pop(data["clip_id"], None)
        elif event["type"] == "clips_cleared":
            for clip_id in data["clip_ids"]:
                self.clips.pop(clip_id, None)

    def add_page(self, body: dict[str, Any]) -> None:
        for clip in body["clips"]:
            assert clip["clip_id"] not in self.clips, "a page repeated a clip"
            self.clips[clip["clip_id"]] = _key(clip)
        if body["next"] is None:
            self.complete = True
        else:
            offset_ms, _, clip_id = body["next"].partition(".")
            self.frontier = (int(offset_ms), clip_id)


async def _page(server: ServerUnderTest, session_id: str, **query: Any) -> dict[str, Any]:
    status, body = await http(server, "GET", f"/api/streams/{session_id}/review/clips", params=query)
    assert status == 200, body
    return dict(body)


async def test_the_pages_of_a_stream_hold_each_clip_once_in_order(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, owner = await started(server, clients)
    for action in ("pause", "resume"):
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": action}))["ok"]
    # Many clips at one ms: ties are ordered by clip id, and a cursor inside them splits them right.
    clips = [
        stored_clip(n, segment_index=1 + n % 2, offset_ms=(n // 7) * 10, note=f"n{n}", clipped=False)
        for n in range(2500)
    ]
    await store_clips(server, session_id, clips)

    status, summary = await http(server, "GET", f"/api/streams/{session_id}/review", params={"last": "5"})
    assert status == 200, summary
    assert summary["clip_count"] == 2500
    assert [(s["index"], s["clip_count"]) for s in summary["segments"]] == [(1, 1250), (2, 1250)]
    last_two = sorted((c for c in clips if c["segment_index"] == 2), key=_key)[-5:][::-1]
    assert [c["clip_id"] for c in summary["last"]] == [c["clip_id"] for c in last_two]

    for segment in (1, 2):
        expected = sorted((c for c in clips if c["segment_index"] == segment), key=_key)
        seen: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            body = await _page(server, session_id, segment=segment, limit=97, **({"after": after} if after else {}))
            assert len(body["clips"]) <= 97 and body["segment_clip_count"] == 1250 - (segment == 1 and bool(seen))
            seen.extend(body["clips"])
            after = body["next"]
            if after is None:
                break
            if segment == 1 and len(seen) == 97:  # the clip the cursor names is deleted: the cursor still holds
                at_cursor = seen.pop()
                status, _ = await http(server, "DELETE", f"/api/streams/{session_id}/clips/{at_cursor['clip_id']}")
                assert status == 200
                expected.remove(next(c for c in expected if c["clip_id"] == at_cursor["clip_id"]))
        assert [c["clip_id"] for c in seen] == [c["clip_id"] for c in expected]
        assert seen[0]["viewer_name"] is None and seen[0]["submitted_by"] == expected[0]["submitted_by"]


async def test_paging_while_viewers_clip_and_the_streamer_deletes_ends_as_the_stream_is(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    dashboard = await server.subscriber(clients, session_id, user="alice")
    # Stored clips spread over the segment's first seconds: live clicks land among them (before
    # the pages read so far: applied live) and after them (read by a later page).
    stored = [stored_clip(n, segment_index=1, offset_ms=n * 3, note="", clipped=False) for n in range(1200)]
    await store_clips(server, session_id, stored)
    # One viewer a round: a viewer's second click would wait out the clip cooldown.
    viewers = await asyncio.gather(*(connect(server, clients, f"viewer-{n}") for n in range(20)))
    view = SegmentView(1)
    deleted: set[str] = set()
    consumed = 0

    def received() -> list[SessionEvent]:
        nonlocal consumed
        events = _events(dashboard)
        new, consumed = events[consumed:], len(events)
        return new

    after: str | None = None
    round_ = 0
    while not view.complete:
        for event in received():  # live, up to the request
            view.apply(event)
        # A click while the page is asked for.
        click = viewers[round_].call("clip_submit", {"session_id": session_id})
        page = _page(server, session_id, segment=1, limit=100, **({"after": after} if after else {}))
        ack, body = await asyncio.gather(click, page)
        assert ack["ok"], ack
        # Events received while the page was on its way: applied, then the page, then again
        # those after the page's offset (as the dashboard does).
        early = received()
        for event in early:
            view.apply(event)
        view.add_page(body)
        for event in early:
            if event["offset"] > body["offset"]:
                view.apply(event)
        after = body["next"]
        if round_ == 3:  # one clip already paged, one not yet
            for victim in (next(iter(view.clips)), str(stored[-1]["clip_id"])):
                status, _ = await http(server, "DELETE", f"/api/streams/{session_id}/clips/{victim}")
                assert status == 200
                deleted.add(victim)
        if round_ == 5:  # one viewer's clips cleared at once
            status, cleared = await http(
                server, "DELETE", f"/api/streams/{session_id}/clips", params={"by": "viewer-1"}
            )
            assert status == 200 and cleared["removed"] >= 1, cleared
        round_ += 1

    _, final = await http(server, "GET", f"/api/streams/{session_id}")
    await dashboard.wait_for(lambda: max(dashboard.offsets(session_id), default=0) >= final["offset"])
    for event in received():
        view.apply(event)
    stored_now = await server.services.store.redis.hgetall(server.services.keys.stream_clips(session_id))
    assert set(view.clips) == set(stored_now)
    assert len(stored_now) == 1200 + round_ - 2 - cleared["removed"]
    assert not deleted & set(view.clips)


async def test_moments_can_carry_their_first_notes_and_ids_with_their_counts(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    # One moment of 300 clicks with notes, one of a single click without.
    clips = [stored_clip(n, segment_index=1, offset_ms=n, note=f"n{n}", clipped=False) for n in range(300)]
    clips.append(stored_clip(300, segment_index=1, offset_ms=60_000, note="", clipped=False))
    await store_clips(server, session_id, clips)
    path = f"/api/streams/{session_id}/moments"
    status, capped = await http(server, "GET", path, params={"window_s": "10", "notes": "5", "ids": "1"})
    assert status == 200, capped
    giant, single = capped["moments"]
    assert (giant["count"], giant["note_count"], giant["notes"]) == (300, 300, [f"n{n}" for n in range(5)])
    assert giant["clip_ids"] == [clips[0]["clip_id"]]
    assert (single["count"], single["note_count"], single["notes"]) == (1, 0, [])
    _, whole = await http(server, "GET", path, params={"window_s": "10"})
    assert len(whole["moments"][0]["notes"]) == 300 and "note_count" not in whole["moments"][0]
    for bad in ({"notes": "-1"}, {"ids": "x"}, {"notes": "1", "ids": "1.5"}):
        status, refused = await http(server, "GET", path, params=bad)
        assert (status, refused["error"]) == (400, "invalid_payload"), (bad, refused)


async def test_bad_review_queries_are_refused_and_a_missing_segment_is_not_found(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    path = f"/api/streams/{session_id}/review/clips"
    for bad in (
        {},
        {"segment": "-1"},
        {"segment": "1", "after": "12.not-a-clip"},
        {"segment": "1", "limit": "0"},
        {"segment": "1", "limit": "201"},  # past SESSIONHUB_LIST_LIMIT
    ):
        status, refused = await http(server, "GET", path, params=bad)
        assert (status, refused["error"]) == (400, "invalid_payload"), (bad, refused)
    status, refused = await http(server, "GET", path, params={"segment": "7"})
    assert (status, refused["error"]) == (404, "not_found"), refused
    status, refused = await http(server, "GET", path, params={"segment": "1"}, user="mallory")
    assert (status, refused["error"]) == (403, "forbidden"), refused
    status, refused = await http(server, "GET", f"/api/streams/{session_id}/review", params={"last": "201"})
    assert (status, refused["error"]) == (400, "invalid_payload"), refused


async def test_the_review_index_lives_a_day_unread_and_is_built_again_after(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    await store_clips(
        server, session_id, [stored_clip(n, segment_index=1, offset_ms=n, note="", clipped=False) for n in range(30)]
    )
    redis, keys = server.services.store.redis, server.services.keys
    index = keys.stream_review_index(session_id)
    _, summary = await http(server, "GET", f"/api/streams/{session_id}/review")
    assert summary["clip_count"] == 30
    # Built in pages under a short-lived key (renamed with its TTL): the read gives it a day.
    for key in (index, keys.stream_review_meta(session_id)):
        assert 86_000_000 < await redis.pttl(key) <= 86_400_000, key
    await redis.delete(index)  # as when it expires unread
    body = await _page(server, session_id, segment=1, limit=50)
    assert len(body["clips"]) == 30 and body["next"] is None and await redis.zcard(index) == 30


async def test_a_build_whose_reader_goes_before_catching_up_leaves_no_key_for_good(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    # A build is followed by its reader's catch-up, which gives the index and its position a day;
    # a reader whose process goes in between (or a build racing the stream's deletion) must leave
    # both to expire with the build, the position hash too.
    redis = server.services.store.redis
    review = ReviewIndex(server.services.store)
    with_clips, _ = await started(server, clients)
    await store_clips(
        server, with_clips, [stored_clip(n, segment_index=1, offset_ms=n, note="", clipped=False) for n in range(30)]
    )
    without_clips = await create_stream(server)
    for session_id in (with_clips, without_clips):
        await review.rebuild(session_id)
        index, meta = review.keys(session_id)
        assert await redis.hgetall(meta), session_id  # built: its position is stored
        assert 0 < await redis.pttl(meta) <= BUILD_TTL_MS, session_id
    index, _ = review.keys(with_clips)
    assert await redis.zcard(index) == 30 and 0 < await redis.pttl(index) <= BUILD_TTL_MS
    assert not await redis.exists(review.keys(without_clips)[0])  # no clips: no index


async def _zrange_calls(server: ServerUnderTest) -> int:
    """How many ZRANGE commands Redis has run (a script's own included)."""
    stats: Any = await server.services.redis.info("commandstats")
    return int(stats.get("cmdstat_zrange", {}).get("calls", 0))


async def test_a_page_deep_in_20000_clips_at_one_ms_reads_no_more_than_the_first(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A raid's clips at one ms are ordered by clip id; a page used to walk every one of them
    before its cursor (ZRANGE a chunk at a time), so the last page of 20,000 read them all. Its
    cursor's rank is looked up now (ZRANK, or a bisection of the ties when that clip is gone):
    every clip once across the pages, in order, and the deep pages as cheap as the first."""
    session_id, _ = await started(server, clients)
    clips = [stored_clip(n, segment_index=1, offset_ms=5000, note="", clipped=False) for n in range(20_000)]
    await store_clips(server, session_id, clips)
    expected = sorted(str(c["clip_id"]) for c in clips)

    seen: list[str] = []
    after: str | None = None
    costs: list[int] = []  # the ZRANGEs of each page
    while True:
        calls_before = await _zrange_calls(server)
        body = await _page(server, session_id, segment=1, limit=200, **({"after": after} if after else {}))
        costs.append(await _zrange_calls(server) - calls_before)
        seen.extend(str(c["clip_id"]) for c in body["clips"])
        after = body["next"]
        if after is None:
            break
        if len(seen) == 19_000:  # the clip the cursor names is deleted: the ties are bisected
            deleted = seen.pop()
            status, _ = await http(server, "DELETE", f"/api/streams/{session_id}/clips/{deleted}")
            assert status == 200
            expected.remove(deleted)
    assert seen == expected  # each once, in order (ties by clip id)
    # The last page's cursor names a clip still there: one ZRANGE (the page), as the first page;
    # the one after the deleted cursor bisects 20,000 ties: about log2(20,000) = 15 more. Before,
    # the last page walked 19,800 ties 216 at a time: 94 ZRANGEs, 89 after the deleted cursor
    # (measured). Other work of the server may add a few of its own meanwhile: hence the room.
    assert costs[-1] <= 5, costs
    assert costs[95] <= 25, costs
