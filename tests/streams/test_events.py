"""Stream sessions over Socket.IO: states and segments, clips, offsets, idempotency, races."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from protocol.errors import CodedError
from storage.streams.repository import StreamSessions
from tests.streams.helpers import connect, create_stream, http, started
from tests.helpers import Client, ServerUnderTest

MISSING = "00000000-0000-4000-8000-000000000000"


def events_of(client: Client, name: str) -> list[dict[str, Any]]:
    return [e for e in client.named(name) if isinstance(e, dict)]


async def test_state_flow_opens_and_closes_segments_live(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await create_stream(server)
    owner = await connect(server, clients, "alice")
    viewer = await server.subscriber(clients, session_id, user="viewer-1")

    for action, state in [("start", "active"), ("pause", "paused"), ("resume", "active"), ("end", "ended")]:
        ack = await owner.call("stream_set_state", {"session_id": session_id, "action": action})
        assert ack["ok"] is True and ack["state"] == state, ack

    await viewer.wait_for(lambda: len(events_of(viewer, "stream_state")) == 4)
    states = [e["data"]["state"] for e in events_of(viewer, "stream_state")]
    assert states == ["active", "paused", "active", "ended"]
    opened = [e["data"]["segment"]["index"] for e in events_of(viewer, "segment_opened")]
    closed = [e["data"]["segment"]["index"] for e in events_of(viewer, "segment_closed")]
    assert opened == [1, 2] and closed == [1, 2]
    offsets = viewer.offsets(session_id)
    assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))

    status, record = await http(server, "GET", f"/api/streams/{session_id}", user="viewer-1")
    assert status == 200 and record["state"] == "ended" and record["is_owner"] is False
    assert [s["index"] for s in record["segments"]] == [1, 2]
    assert all(isinstance(s["ended_at"], int) for s in record["segments"])
    assert "owner_id" not in record


async def _state_fields(redis: Any, key: str) -> dict[str, str]:
    """The session's record without ``last_accessed_at``: that is bookkeeping the session
    directory writes in the background after any access (the steps above included), so it may
    land between two reads of a refused transition; it is not the session's state."""
    record: dict[str, str] = await redis.hgetall(key)
    record.pop("last_accessed_at", None)
    return record


@pytest.mark.parametrize(
    "path, action",
    [
        (["start", "end"], "pause"),
        (["start", "end"], "resume"),
        (["start", "end"], "start"),
        ([], "pause"),
        ([], "resume"),
        (["start"], "start"),
        (["start"], "resume"),
        (["start", "pause"], "pause"),
    ],
)
async def test_invalid_transitions_change_nothing(
    server: ServerUnderTest, clients: list[Client], redis: Any, path: list[str], action: str
) -> None:
    session_id = await create_stream(server)
    owner = await connect(server, clients, "alice")
    for step in path:
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": step}))["ok"] is True
    log_before = await redis.xlen(server.services.keys.log(session_id))
    before = await _state_fields(redis, server.services.keys.session(session_id))

    ack = await owner.call("stream_set_state", {"session_id": session_id, "action": action})

    assert ack["ok"] is False and ack["error"] == "invalid_state" and ack["state"] == before["state"]
    assert await _state_fields(redis, server.services.keys.session(session_id)) == before
    assert await redis.xlen(server.services.keys.log(session_id)) == log_before


async def test_only_the_owner_changes_state(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id = await create_stream(server)
    mallory = await connect(server, clients, "mallory")
    ack = await mallory.call("stream_set_state", {"session_id": session_id, "action": "start"})
    assert ack["error"] == "forbidden"
    status, body = await http(
        server, "POST", f"/api/streams/{session_id}/state", user="mallory", json={"action": "start"}
    )
    assert (status, body["error"]) == (403, "forbidden")
    assert (await redis.hget(server.services.keys.session(session_id), "state")) == "created"
    # The refused connection is still usable: it may subscribe (it holds the link).
    assert (await mallory.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True


async def test_two_tabs_pausing_at_once_close_one_segment(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await started(server, clients)
    tabs = [await connect(server, clients, "alice") for _ in range(4)]
    acks = await asyncio.gather(
        *(t.call("stream_set_state", {"session_id": session_id, "action": "pause"}) for t in tabs)
    )
    assert sorted(a["ok"] for a in acks) == [False, False, False, True]
    assert {a["error"] for a in acks if not a["ok"]} == {"invalid_state"}
    session = await server.services.kinds.get("stream").snapshot(session_id)  # type: ignore[union-attr]
    assert session is not None
    segments = session.session["segments"]
    assert len(segments) == 1 and segments[0]["ended_at"] is not None


async def test_clip_offsets_follow_the_server_clock(server: ServerUnderTest, clients: list[Client]) -> None:
    clock = server.services.clock
    session_id, owner = await started(server, clients, viewer_delay_s=5)
    viewer = await connect(server, clients, "viewer-1")
    try:
        clock.shift_ms = 2_000  # 2 s in, 5 s delay: the viewer has not seen the start yet
        early = await viewer.call("clip_submit", {"session_id": session_id})
        clock.shift_ms = 65_000
        late = await viewer.call("clip_submit", {"session_id": session_id, "note": "  what a play  "})
        clock.shift_ms = 95_000
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": "pause"}))["ok"]
        clock.shift_ms = 500_000  # the break is not part of the VOD
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": "resume"}))["ok"]
        clock.shift_ms = 520_000
        second = await viewer.call("clip_submit", {"session_id": session_id})
    finally:
        clock.shift_ms = 0
    assert early["clip"]["offset_ms"] == 0
    assert late["clip"]["note"] == "what a play"
    assert abs(late["clip"]["offset_ms"] - 60_000) < 1_000
    assert second["clip"]["segment_index"] == 2
    assert abs(second["clip"]["offset_ms"] - 15_000) < 1_000
    assert abs(second["clip"]["stream_offset_ms"] - (95_000 + 15_000)) < 2_000
    assert "submitted_by" not in late["clip"]


async def test_a_click_sent_late_is_placed_when_it_was_pressed(server: ServerUnderTest, clients: list[Client]) -> None:
    """A click held while the viewer's connection was down was stored where it arrived (12 s
    late in the audit), and one pressed before a Pause but arriving after it was refused: the
    client says how long ago it was pressed (a minute at most), and the clip goes there."""
    clock = server.services.clock
    session_id, owner = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    other = await connect(server, clients, "viewer-2")
    try:
        clock.shift_ms = 30_000
        held = await viewer.call("clip_submit", {"session_id": session_id, "pressed_ago_ms": 12_000})
        for wrong in (-1, 60_001, "12000", 1.5, True):
            refused = await other.call("clip_submit", {"session_id": session_id, "pressed_ago_ms": wrong})
            assert refused["error"] == "invalid_payload", (wrong, refused)
        clock.shift_ms = 40_000
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": "pause"}))["ok"]
        clock.shift_ms = 45_000  # pressed at 38 s, while live; arrives in the break
        before_pause = await other.call("clip_submit", {"session_id": session_id, "pressed_ago_ms": 7_000})
        clock.shift_ms = 50_000  # pressed at 45 s, in the break: still refused
        in_break = await viewer.call("clip_submit", {"session_id": session_id, "pressed_ago_ms": 5_000})
        status, over_http = await http(
            server, "POST", f"/api/streams/{session_id}/clips", user="viewer-3", json={"pressed_ago_ms": 12_000}
        )
    finally:
        clock.shift_ms = 0
    assert abs(held["clip"]["offset_ms"] - 18_000) < 1_000, held
    assert before_pause["ok"] is True and before_pause["clip"]["segment_index"] == 1, before_pause
    assert abs(before_pause["clip"]["offset_ms"] - 38_000) < 1_000, before_pause
    assert in_break["error"] == "invalid_state", in_break
    assert status == 201 and abs(over_http["clip"]["offset_ms"] - 38_000) < 1_000, over_http


async def test_clip_event_hides_who_clicked(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await started(server, clients)
    watcher = await server.subscriber(clients, session_id, user="viewer-2")
    viewer = await connect(server, clients, "viewer-1")
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": "gg"})
    await watcher.wait_for(lambda: len(events_of(watcher, "clip_added")) == 1)
    event = events_of(watcher, "clip_added")[0]
    assert "viewer-1" not in str(event)
    assert event["data"]["viewer_tag"] == ack["clip"]["viewer_tag"] and len(ack["clip"]["viewer_tag"]) == 12
    assert event["data"]["count"] == 1 and event["data"]["note"] == "gg"
    # The owner sees who clicked over the owner-only review route.
    status, review = await http(server, "GET", f"/api/streams/{session_id}/clips")
    assert status == 200 and review["segments"][0]["clips"][0]["submitted_by"] == "viewer-1"
    status, body = await http(server, "GET", f"/api/streams/{session_id}/clips", user="viewer-1")
    assert (status, body["error"]) == (403, "forbidden")


async def test_submission_id_makes_a_retry_return_the_same_clip(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    session_id, _ = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    other = await connect(server, clients, "viewer-2")
    payload = {"session_id": session_id, "submission_id": "tab-1-click-0001", "note": "first"}
    first = await viewer.call("clip_submit", payload)
    again = await viewer.call("clip_submit", {**payload, "note": "changed"})
    over_http = await http(
        server, "POST", f"/api/streams/{session_id}/clips", user="viewer-1", json={"submission_id": "tab-1-click-0001"}
    )
    theirs = await other.call("clip_submit", payload)  # another viewer's ids are their own
    assert first["created"] is True and again["created"] is False
    assert again["clip"] == first["clip"] and over_http[0] == 200 and over_http[1]["clip"] == first["clip"]
    assert theirs["created"] is True and theirs["clip"]["clip_id"] != first["clip"]["clip_id"]
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 2


async def test_cooldown_per_viewer(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id, _ = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    assert (await viewer.call("clip_submit", {"session_id": session_id}))["ok"] is True
    refused = await viewer.call("clip_submit", {"session_id": session_id})
    assert refused["error"] == "rate_limited" and 0 < refused["retry_after_s"] <= 2
    # Said to a person in whole seconds, rounded up (it read "wait 1.957 s": audit "retries3").
    assert refused["message"] == f"wait {math.ceil(refused['retry_after_s'])} s before clipping again", refused
    server.services.clock.shift_ms = 2_001
    try:
        assert (await viewer.call("clip_submit", {"session_id": session_id}))["ok"] is True
    finally:
        server.services.clock.shift_ms = 0
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 2


async def test_cap_answers_limit_reached(redis: Any, redis_process: Any, tmp_path: Any) -> None:
    from tests.conftest import start_server

    server = await start_server(redis_process.url, tmp_path, clips_max_per_session=3, clips_cooldown_s=0)
    made: list[Client] = []
    try:
        session_id, _ = await started(server, made)
        viewer = await connect(server, made, "viewer-1")
        acks = [await viewer.call("clip_submit", {"session_id": session_id}) for _ in range(5)]
        assert [a["ok"] for a in acks] == [True, True, True, False, False]
        assert acks[3]["error"] == "limit_reached" and acks[3]["limit"] == 3
        assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 3
    finally:
        for client in made:
            await client.close()
        await server.stop()


@pytest.mark.parametrize("steps, state", [([], "created"), (["pause"], "paused"), (["end"], "ended")])
async def test_clips_only_while_active(
    server: ServerUnderTest, clients: list[Client], redis: Any, steps: list[str], state: str
) -> None:
    session_id = await create_stream(server)
    owner = await connect(server, clients, "alice")
    if steps:
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": "start"}))["ok"]
    for step in steps:
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": step}))["ok"]
    viewer = await connect(server, clients, "viewer-1")
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": "late"})
    assert (ack["error"], ack["state"]) == ("invalid_state", state)
    status, body = await http(server, "POST", f"/api/streams/{session_id}/clips", user="viewer-1", json={})
    assert (status, body["error"], body["state"]) == (409, "invalid_state", state)
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 0


async def test_a_raid_of_clicks_is_stored_once_each(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id, _ = await started(server, clients)
    dashboard = await server.subscriber(clients, session_id, user="alice")
    viewers = [await connect(server, clients, f"viewer-{n}") for n in range(40)]
    acks = await asyncio.gather(
        *(
            v.call("clip_submit", {"session_id": session_id, "submission_id": f"raid-click-{n:04d}"})
            for n, v in enumerate(viewers)
        )
    )
    assert all(a["ok"] and a["created"] for a in acks)
    await dashboard.wait_for(lambda: len(events_of(dashboard, "clip_added")) == 40)
    counts = sorted(e["data"]["count"] for e in events_of(dashboard, "clip_added"))
    assert counts == list(range(1, 41))
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 40


async def test_review_actions_are_events(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id, owner = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    watcher = await server.subscriber(clients, session_id, user="viewer-2")
    clip_id = (await viewer.call("clip_submit", {"session_id": session_id, "note": "one"}))["clip"]["clip_id"]

    marked = await owner.call(
        "clip_update", {"session_id": session_id, "clip_id": clip_id, "clipped": True, "note": "edited"}
    )
    assert marked["clip"]["clipped"] is True and marked["clip"]["note"] == "edited"
    for event, extra in [("clip_update", {"clipped": False}), ("clip_delete", {})]:
        refused = await viewer.call(event, {"session_id": session_id, "clip_id": clip_id, **extra})
        assert refused["error"] == "forbidden"
    status, _ = await http(server, "PATCH", f"/api/streams/{session_id}/clips/{clip_id}", json={"clipped": False})
    assert status == 200
    status, _ = await http(server, "DELETE", f"/api/streams/{session_id}/clips/{clip_id}")
    assert status == 200
    again = await owner.call("clip_delete", {"session_id": session_id, "clip_id": clip_id})
    assert again["error"] == "not_found"

    await watcher.wait_for(lambda: len(events_of(watcher, "clip_removed")) == 1)
    updates = [e["data"] for e in events_of(watcher, "clip_updated")]
    assert [(u["clipped"], u["note"], u["clipped_count"]) for u in updates] == [
        (True, "edited", 1),
        (False, "edited", 0),
    ]
    assert events_of(watcher, "clip_removed")[0]["data"] == {
        "clip_id": clip_id,
        "segment_index": 1,
        "count": 0,
        "clipped_count": 0,
    }
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 0


async def test_missed_clip_events_are_replayed_by_offset(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, owner = await started(server, clients)
    viewer = await server.subscriber(clients, session_id, user="viewer-2")
    await viewer.wait_for(lambda: len(viewer.named("session_snapshot")) == 1)
    snapshot = viewer.named("session_snapshot")[0]
    assert snapshot["session"]["state"] == "active" and snapshot["kind"] == "stream"
    epoch, offset = snapshot["epoch"], snapshot["offset"]
    await viewer.close()

    clicker = await connect(server, clients, "viewer-1")
    await clicker.call("clip_submit", {"session_id": session_id, "note": "missed"})
    await owner.call("stream_set_state", {"session_id": session_id, "action": "pause"})

    back = await connect(server, clients, "viewer-2")
    ack = await back.call("subscribe_on_session", {"session_id": session_id, "epoch": epoch, "offset": offset})
    assert ack["recovered"] is True and ack["missed"] == 3
    assert [name for name, _ in back.events] == ["clip_added", "segment_closed", "stream_state"]


async def test_segments_are_capped(server: ServerUnderTest, redis: Any) -> None:
    services = server.services
    streams = StreamSessions(services.store, max_segments=2)
    session_id = await create_stream(server)
    for action in ("start", "pause", "resume", "pause"):
        await streams.transition(session_id, action, "alice")
    with pytest.raises(CodedError) as refused:
        await streams.transition(session_id, "resume", "alice")
    assert refused.value.code.value == "limit_reached" and refused.value.details["limit"] == 2
    assert await redis.hget(services.keys.session(session_id), "state") == "paused"
    assert await redis.llen(services.keys.stream_segments(session_id)) == 2
    await streams.transition(session_id, "end", "alice")


async def test_a_raid_past_the_log_gives_a_snapshot_with_the_counts(
    redis: Any, redis_process: Any, tmp_path: Any
) -> None:
    from tests.conftest import start_server

    server = await start_server(redis_process.url, tmp_path, stream_maxlen=10, clips_cooldown_s=0)
    made: list[Client] = []
    try:
        session_id, _ = await started(server, made)
        away = await server.subscriber(made, session_id, user="dashboard-tab")
        snapshot = away.named("session_snapshot")[0]
        await away.close()
        viewer = await connect(server, made, "viewer-1")
        for _ in range(60):  # far more than the log keeps
            assert (await viewer.call("clip_submit", {"session_id": session_id}))["ok"] is True

        back = await connect(server, made, "dashboard-tab")
        ack = await back.call(
            "subscribe_on_session", {"session_id": session_id, "epoch": snapshot["epoch"], "offset": snapshot["offset"]}
        )
        assert ack["recovered"] is False
        fresh = back.named("session_snapshot")[0]["session"]
        assert fresh["clip_count"] == 60 and fresh["state"] == "active"
        assert set(fresh) == {
            "session_id", "kind", "title", "game", "viewer_delay_s", "state", "clip_count", "clipped_count",
            "created_at", "updated_at", "ended_at", "segments", "viewer_url", "audience_id",
        }  # fmt: skip
    finally:
        for client in made:
            await client.close()
        await server.stop()


async def audience_of(server: ServerUnderTest, session_id: str) -> str:
    status, record = await http(server, "GET", f"/api/streams/{session_id}", user="viewer-1")
    assert status == 200
    return str(record["audience_id"])


async def test_the_audience_follows_the_state_but_gets_no_clips(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id, owner = await started(server, clients)
    audience_id = await audience_of(server, session_id)
    viewer = await server.subscriber(clients, audience_id, user="viewer-1")
    snapshot = viewer.named("session_snapshot")[0]
    assert snapshot["kind"] == "stream_audience"
    assert snapshot["session"] == {
        "session_id": audience_id, "stream_id": session_id, "title": "Raid night", "game": "",
        "viewer_delay_s": 0, "state": "active", "segment_index": 1,
    }  # fmt: skip
    clicker = await connect(server, clients, "viewer-2")
    assert (await clicker.call("clip_submit", {"session_id": session_id, "note": "x"}))["ok"] is True
    for action in ("pause", "resume", "end"):
        assert (await owner.call("stream_set_state", {"session_id": session_id, "action": action}))["ok"] is True
    await viewer.wait_for(lambda: len(viewer.named("stream_state")) == 3)
    assert [name for name, _ in viewer.events] == ["session_snapshot", "stream_state", "stream_state", "stream_state"]
    changes = [e["data"] for e in viewer.named("stream_state")]
    assert [(c["state"], c["previous"], c["segment_index"]) for c in changes] == [
        ("paused", "active", 0),
        ("active", "paused", 2),
        ("ended", "active", 0),
    ]
    # Nothing is written to it from outside.
    for event, extra in [("clip_submit", {}), ("stream_set_state", {"action": "start"})]:
        ack = await viewer.call(event, {"session_id": audience_id, **extra})
        assert ack["error"] == "session_not_found"


async def test_the_audience_hears_of_the_owners_changes_to_a_viewers_clips_by_tag_only(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A viewer page learns live that the streamer edited, deleted or cleared its clips, or blocked
    it: the audience log names the viewer by tag, and carries no note or clip of anybody's."""
    session_id, owner = await started(server, clients)
    audience_id = await audience_of(server, session_id)
    viewer = await server.subscriber(clients, audience_id, user="viewer-1")
    status, own = await http(server, "GET", f"/api/streams/{session_id}/clips/mine", user="viewer-1")
    assert status == 200 and own["clips"] == [] and own["blocked"] is False
    tag = own["viewer_tag"]  # known before the viewer's first clip
    clicker = await connect(server, clients, "viewer-1")
    ack = await clicker.call("clip_submit", {"session_id": session_id, "note": "secret note"})
    clip_id = ack["clip"]["clip_id"]
    assert ack["clip"]["viewer_tag"] == tag

    def hint(name: str, data: dict[str, Any]) -> Any:
        return owner.call(name, {"session_id": session_id, **data})

    assert (await hint("clip_update", {"clip_id": clip_id, "note": "edited by the owner"}))["ok"] is True
    assert (await hint("clip_delete", {"clip_id": clip_id}))["ok"] is True
    assert (await hint("clip_clear_viewer", {"user_id": "viewer-1"}))["removed"] == 0  # nothing left: no event
    server.services.clock.shift_ms = 60_000  # past the viewer's cooldown
    try:
        again = await clicker.call("clip_submit", {"session_id": session_id, "note": "again"})
        assert again["ok"] is True, again
    finally:
        server.services.clock.shift_ms = 0
    assert (await hint("clip_clear_viewer", {"user_id": "viewer-1"}))["removed"] == 1
    assert (await hint("stream_block_viewer", {"user_id": "viewer-1", "blocked": True}))["ok"] is True
    await viewer.wait_for(lambda: len(viewer.named("viewer_blocked")) == 1)
    changes = [(name, envelope["data"]) for name, envelope in viewer.events if name != "session_snapshot"]
    assert changes == [
        ("clips_changed", {"viewer_tag": tag, "change": "updated", "clip_ids": [clip_id]}),
        ("clips_changed", {"viewer_tag": tag, "change": "removed", "clip_ids": [clip_id]}),
        # A clear names no clip but the seq it reached: the page drops a late own_clip up to it.
        ("clips_changed", {"viewer_tag": tag, "change": "cleared", "clip_ids": [], "up_to_seq": again["clip"]["seq"]}),
        ("viewer_blocked", {"viewer_tag": tag, "blocked": True}),
    ]
    assert "note" not in str(changes)  # neither the viewer's note nor the owner's edit
    status, own = await http(server, "GET", f"/api/streams/{session_id}/clips/mine", user="viewer-1")
    assert own["blocked"] is True and own["viewer_tag"] == tag


async def test_the_audience_ends_on_the_streams_state_whatever_the_order(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    session_id, _ = await started(server, clients)
    audience_id = await audience_of(server, session_id)
    tabs = [await connect(server, clients, "alice") for _ in range(6)]
    actions = ["pause", "resume", "pause", "end", "resume", "pause"]
    for _ in range(3):
        await asyncio.gather(
            *(
                t.call("stream_set_state", {"session_id": session_id, "action": a})
                for t, a in zip(tabs, actions, strict=True)
            )
        )
    state = await redis.hget(server.services.keys.session(session_id), "state")
    assert await redis.hget(server.services.keys.session(audience_id), "state") == state
    # A late copy of an older change is dropped, without an event.
    audiences = StreamSessions(server.services.store).audiences
    offset = await audiences.mirror(
        audience_id, seq=1, state="active", previous="created", action="start", segment_index=1
    )
    assert offset == 0 and await redis.hget(server.services.keys.session(audience_id), "state") == state


async def test_a_lost_audience_copy_heals_through_the_snapshot(
    server: ServerUnderTest, clients: list[Client], redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = server.services
    streams = StreamSessions(services.store)
    session_id = await create_stream(server)
    audience_id = await audience_of(server, session_id)

    async def crash(*args: Any, **kwargs: Any) -> int:
        raise ConnectionError("the process died between the two steps")

    monkeypatch.setattr(streams.audiences, "mirror", crash)
    change = await streams.transition(session_id, "start", "alice")  # the streamer's request succeeds
    assert change.state == "active"
    assert await redis.hget(services.keys.session(audience_id), "state") == "created"  # the copy was lost
    viewer = await server.subscriber(clients, audience_id, user="viewer-1")
    assert viewer.named("session_snapshot")[0]["session"]["state"] == "active"


async def test_two_tabs_sending_one_submission_at_once_store_one_clip(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    session_id, _ = await started(server, clients)
    tabs = [await connect(server, clients, "viewer-1") for _ in range(5)]
    payload = {"session_id": session_id, "submission_id": "same-click-0001", "note": "once"}
    acks = await asyncio.gather(*(t.call("clip_submit", payload) for t in tabs))
    assert sorted(a["created"] for a in acks) == [False, False, False, False, True]
    assert len({a["clip"]["clip_id"] for a in acks}) == 1
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 1
