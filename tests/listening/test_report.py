"""Listening reports: the seed's rules at their boundaries, with a clock that only tests move."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, Listener, auth, listener

MIN = 60_000


async def sessions(server: ServerUnderTest, user: str = "alice", **query: Any) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/listening/sessions", params=query, headers=auth(server, user)) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
    return list(body["sessions"])


async def test_under_a_second_is_deleted_a_second_is_kept(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    started = await alice.report("book-1", "playing")
    assert started["ok"] and started["action"] == "started"
    clock.shift_ms += 999
    paused = await alice.report("book-1", "paused")
    assert paused["action"] == "deleted"
    assert await sessions(lserver) == []

    await alice.report("book-1", "playing")
    clock.shift_ms += 1000
    paused = await alice.report("book-1", "paused")
    assert paused["action"] == "finalized"
    [kept] = await sessions(lserver)
    assert kept["duration_ms"] == 1000 and kept["open"] is False
    await alice.client.wait_for(lambda: len(alice.log_events()) == 4)
    kinds = [(n, d.get("data", {}).get("action") or d.get("data", {}).get("reason")) for n, d in alice.log_events()]
    assert kinds == [
        ("listening_session", "started"),
        ("listening_removed", "short"),
        ("listening_session", "started"),
        ("listening_session", "finalized"),
    ]


async def test_resume_within_the_window_extends_after_it_starts_anew(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing", position_s=10.0)
    await alice.keep_playing(clock, "book-1", 10 * MIN)
    assert (await alice.report("book-1", "paused", position_s=610.0))["action"] == "finalized"
    clock.shift_ms += 4 * MIN + 59_000
    resumed = await alice.report("book-1", "playing", position_s=610.0)
    assert resumed["action"] == "resumed"
    # Played on as a player does: one move of a whole silence races the sweep, which ends the
    # session at the resume and so undoes it as a tap (a CI run saw 10 minutes here).
    await alice.keep_playing(clock, "book-1", MIN)
    await alice.report("book-1", "paused", position_s=670.0)
    [one] = await sessions(lserver)
    assert one["duration_ms"] == 10 * MIN + 4 * MIN + 59_000 + MIN
    assert (one["start_position_s"], one["end_position_s"]) == (10.0, 670.0)

    clock.shift_ms += 5 * MIN + 1000
    again = await alice.report("book-1", "playing")
    assert again["action"] == "started"
    assert len(await sessions(lserver)) == 2


async def test_playing_reports_are_throttled_per_item(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, redis: Any
) -> None:
    alice = await listener(lserver, clients)
    assert (await alice.report("book-1", "playing"))["action"] == "started"
    clock.shift_ms += 500
    assert (await alice.report("book-1", "playing"))["action"] == "throttled"
    # The first report past the minimum length is written whatever the throttle (a crash now
    # must leave a session, not an accidental tap).
    clock.shift_ms += 500
    assert (await alice.report("book-1", "playing"))["listening"]["duration_ms"] == 1000
    offsets = []
    for _ in range(4):
        clock.shift_ms += 1000
        ack = await alice.report("book-1", "playing")
        offsets.append(ack["offset"])
        assert ack["action"] == "throttled" and ack["changed"] is False
    clock.shift_ms += 1000  # 5 s after the last write
    extended = await alice.report("book-1", "playing", position_s=5.0)
    assert extended["action"] == "extended" and extended["listening"]["duration_ms"] == 6000
    clock.shift_ms += 4999
    assert (await alice.report("book-1", "playing"))["action"] == "throttled"
    clock.shift_ms += 1
    assert (await alice.report("book-1", "playing"))["action"] == "extended"
    # A pause is never throttled: it ends the range where it happens.
    clock.shift_ms += 300
    paused = await alice.report("book-1", "paused")
    assert paused["listening"]["duration_ms"] == 11_300
    # A different item passes at once.
    assert (await alice.report("book-2", "playing"))["action"] == "started"


async def test_switching_items_finalizes_the_previous_first(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing", item={"title": "First book", "artist": "Ann"})
    await alice.keep_playing(clock, "book-1", 2 * MIN)
    switched = await alice.report("book-2", "playing", item={"title": "Second book"})
    assert switched["action"] == "started"
    await alice.keep_playing(clock, "book-2", MIN)
    # Back to the first item within the window: the device played book 2 in between, so the
    # first range is not stretched over it.
    back = await alice.report("book-1", "playing")
    assert back["action"] == "started"
    rows = await sessions(lserver)
    assert [(r["item_id"], r["duration_ms"], r["open"]) for r in rows] == [
        ("book-1", 0, True),
        ("book-2", MIN, False),
        ("book-1", 2 * MIN, False),
    ]
    assert rows[2]["title"] == "First book" and rows[2]["artist"] == "Ann"
    # Three starts, two finalizations, and the extensions of a player reporting as it plays.
    await alice.client.wait_for(lambda: len(alice.log_events()) == 5 + 4 + 2)
    reasons = [d["data"].get("reason") for n, d in alice.log_events() if d["data"].get("action") == "finalized"]
    assert reasons == ["switched", "switched"]


async def test_a_tap_of_another_item_and_straight_back_does_not_split_the_book(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """The tap was deleted as too short, but the book came back as a new session (the resume was
    looked for only with nothing open on the device), one more tap-length play deleted in turn."""
    alice = await listener(lserver, clients)
    await alice.report("book", "playing")
    await alice.keep_playing(clock, "book", 2 * MIN)
    tapped = await alice.report("other", "playing")  # the wrong row, by mistake
    assert tapped["action"] == "started"
    clock.shift_ms += 300
    back = await alice.report("book", "playing")
    assert back["action"] == "resumed", back
    # Played on for the minimum: a shorter play would be a tap on the resume, undone (test_resume.py).
    clock.shift_ms += 1000
    assert (await alice.report("book", "paused"))["action"] == "finalized"
    rows = await sessions(lserver)
    assert [(r["item_id"], r["duration_ms"]) for r in rows] == [("book", 2 * MIN + 1300)], rows


async def test_metadata_a_report_brings_replaces_the_items_whatever_it_does(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """A player that learns the title after it started: only a start or a resume stored it."""
    alice = await listener(lserver, clients)
    await alice.report("track", "playing", item={"title": "Old"})
    clock.shift_ms += 1200
    extended = await alice.report("track", "playing", item={"title": "New"})
    assert extended["action"] == "extended"
    assert [r["title"] for r in await sessions(lserver)] == ["New"]
    clock.shift_ms += 1000
    throttled = await alice.report("track", "playing", item={"title": "Newer"})
    assert throttled["action"] == "throttled"
    clock.shift_ms += 1000
    paused = await alice.report("track", "paused", item={"title": "Newest", "artist": "X"})
    assert paused["action"] == "finalized"
    [row] = await sessions(lserver)
    assert (row["title"], row["artist"]) == ("Newest", "X")


async def test_two_devices_play_at_once_and_a_pause_ends_only_its_own(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    phone = await listener(lserver, clients, device_id="phone")
    laptop = Listener(client=phone.client, history_id=phone.history_id, device_id="laptop")
    await phone.report("book-1", "playing")
    await laptop.report("song-9", "playing")
    clock.shift_ms += 3000
    assert (await laptop.report("song-9", "stopped"))["action"] == "finalized"
    # A pause for an item the device is not playing changes nothing.
    assert (await phone.report("book-7", "paused"))["action"] == "none"
    rows = await sessions(lserver)
    assert {(r["device_id"], r["open"]) for r in rows} == {("phone", True), ("laptop", False)}


async def test_metadata_is_stored_once_and_kept(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    meta = {
        "title": "Dune",
        "artist": "Frank Herbert",
        "album": "Dune",
        "artwork_url": "https://x.example/a.jpg",
        "duration_s": 3600.5,
    }
    await alice.report("dune", "playing", item=meta)
    clock.shift_ms += 5000
    await alice.report("dune", "stopped")  # no metadata this time: the stored one stays
    [row] = await sessions(lserver)
    assert (row["title"], row["artist"], row["album"], row["artwork_url"], row["item_duration_s"]) == (
        "Dune",
        "Frank Herbert",
        "Dune",
        "https://x.example/a.jpg",
        3600.5,
    )


async def test_a_report_with_some_of_the_items_metadata_keeps_the_rest(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """Every ``item`` field is optional: a report or upload that brings only some (a duration
    learnt later) replaced the whole of the stored metadata, and the title and artist went from
    every session of the item, those of other devices too (audit "listenhonest" F3)."""
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    car = {
        "session_id": alice.history_id,
        "item_id": "bk",
        "device_id": "car",
        "client_id": "car-1",
        "started_at": now - 30 * MIN,
        "ended_at": now - 20 * MIN,
        "item": {"title": "Dune", "artist": "Frank Herbert"},
    }
    assert (await alice.client.call("listening_upload", car))["ok"] is True
    ack = await alice.report("bk", "playing", item={"duration_s": 3600})
    assert (ack["listening"]["title"], ack["listening"]["artist"]) == ("Dune", "Frank Herbert")
    clock.shift_ms += 5000
    await alice.report("bk", "paused", item={"artist": "F. Herbert"})  # a field changed: that one only
    later = {**car, "client_id": "car-2", "started_at": now - 10 * MIN, "ended_at": now - 9 * MIN}
    assert (await alice.client.call("listening_upload", {**later, "item": {"album": "Dune I"}}))["ok"] is True
    rows = await sessions(lserver)
    assert len(rows) == 3
    for row in rows:
        assert (row["title"], row["artist"], row["album"], row["item_duration_s"]) == (
            "Dune",
            "F. Herbert",
            "Dune I",
            3600,
        ), row


async def test_a_session_playing_now_shows_its_items_metadata_everywhere(
    lserver: ServerUnderTest, clients: list[Client]
) -> None:
    """The sessions playing now (``open``) carry the item's stored metadata in the history's
    HTTP answer and in a subscriber's snapshot, as in the report's ack and the listings: not the
    item id as title while its title is known."""
    alice = await listener(lserver, clients)
    ack = await alice.report("=1+1", "playing", item={"title": "Meta Title", "artist": "@artist"})
    assert (ack["listening"]["title"], ack["listening"]["artist"]) == ("Meta Title", "@artist")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{lserver.url}/api/listening", headers=auth(lserver)) as r:
            [playing] = (await r.json())["open"]
    assert (playing["item_id"], playing["title"], playing["artist"]) == ("=1+1", "Meta Title", "@artist")
    watcher = Client(lserver.url, lserver.token("alice"))
    clients.append(watcher)
    await watcher.connect()
    assert (await watcher.call("subscribe_on_session", {"session_id": alice.history_id}))["ok"] is True
    [snapshot_playing] = watcher.named("session_snapshot")[-1]["session"]["open"]
    assert (snapshot_playing["title"], snapshot_playing["artist"]) == ("Meta Title", "@artist")


async def test_http_report_is_the_same_action(lserver: ServerUnderTest, clock: FrozenClock) -> None:
    async with aiohttp.ClientSession() as http:
        url = f"{lserver.url}/api/listening/report"
        async with http.post(url, json={"item_id": "b", "status": "playing"}, headers=auth(lserver)) as r:
            assert r.status == 200
            body = await r.json()
            assert body["action"] == "started" and body["listening"]["device_id"] == "default"
        clock.shift_ms += 2000
        async with http.post(url, json={"item_id": "b", "status": "stopped"}, headers=auth(lserver)) as r:
            assert (await r.json())["action"] == "finalized"
    [row] = await sessions(lserver)
    assert row["duration_ms"] == 2000


async def test_a_switch_ends_the_other_item_where_its_play_had_reached(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """A switch reports only the new item's position, and a `playing` within the throttle
    interval is not written: the other item's session kept the place of its last write, up to
    5 s behind, and another device resumed it there (audit "playerhonest"). Its place is now its
    last written one moved on by the time it played since, at most the item's duration."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing", position_s=100.0, item={"title": "A book", "duration_s": 3600})
    clock.shift_ms += 4_000  # written: the first report past the minimum
    assert (await alice.report("book-1", "playing", position_s=104.0))["action"] == "extended"
    clock.shift_ms += 3_500
    assert (await alice.report("book-1", "playing", position_s=107.5))["action"] == "throttled"  # not written
    clock.shift_ms += 1_200
    await alice.report("book-2", "playing", position_s=0.0)
    rows = {r["item_id"]: r for r in await sessions(lserver)}
    assert rows["book-1"]["end_position_s"] == 108.7, rows["book-1"]  # 104 + 4.7 s played
    # Near its end: never past the duration the player said.
    await alice.report("song", "playing", position_s=170.0, item={"title": "A song", "duration_s": 176})
    clock.shift_ms += 4_000
    assert (await alice.report("song", "playing", position_s=174.0))["action"] == "extended"
    clock.shift_ms += 4_000
    await alice.report("book-2", "playing", position_s=5.0)
    rows = {r["item_id"]: r for r in await sessions(lserver)}
    assert rows["song"]["end_position_s"] == 176.0, rows["song"]  # 174 + 4 s, held at its end


async def test_a_seek_is_written_at_once_and_a_switch_counts_from_the_last_place_reported(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """A seek back within the throttle interval was not written, and a switch then moved the
    stale place on: the book ended 80 s ahead of the listener. A report without a place restarted
    the switch's count and left the place behind (audit "verify49")."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing", position_s=100.0)
    clock.shift_ms += 4_000
    assert (await alice.report("book-1", "playing", position_s=104.0))["action"] == "extended"
    clock.shift_ms += 1_000
    sought = await alice.report("book-1", "playing", position_s=20.0)  # a seek back, 1 s after a write
    assert sought["action"] == "extended", sought
    clock.shift_ms += 2_000
    assert (await alice.report("book-1", "playing", position_s=22.0))["action"] == "throttled"  # as played
    clock.shift_ms += 1_500
    await alice.report("book-2", "playing", position_s=0.0)
    rows = {r["item_id"]: r for r in await sessions(lserver)}
    assert rows["book-1"]["end_position_s"] == 23.5, rows["book-1"]  # 20 + 3.5 s played since

    # A player that says its place only now and then: a report without one moves the range, not
    # the place's clock.
    await alice.report("book-3", "playing", position_s=50.0)
    clock.shift_ms += 6_000
    assert (await alice.report("book-3", "playing"))["action"] == "extended"  # no place said
    clock.shift_ms += 2_000
    await alice.report("book-2", "playing")
    rows = {r["item_id"]: r for r in await sessions(lserver)}
    assert rows["book-3"]["end_position_s"] == 58.0, rows["book-3"]  # 50 + 8 s, not 50 + 2 s
    assert "position_at" not in rows["book-3"]  # the scripts' own


async def test_a_resumed_session_plays_on_from_where_it_was_paused(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing", position_s=10.0)
    clock.shift_ms += 5_000
    await alice.report("book-1", "paused", position_s=15.0)
    clock.shift_ms += 60_000  # a minute's pause, within the window
    assert (await alice.report("book-1", "playing"))["action"] == "resumed"
    clock.shift_ms += 4_000
    await alice.report("book-2", "playing")
    rows = {r["item_id"]: r for r in await sessions(lserver)}
    assert rows["book-1"]["end_position_s"] == 19.0, rows["book-1"]  # 15 + 4 s, the pause not counted
