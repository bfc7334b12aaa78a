"""Silent players, offline uploads and two nodes on one Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.listening.support import FrozenClock, Listener, SweepPasses, auth, listener, start_on_clock
from tests.listening.test_report import sessions

MIN = 60_000


def silent_sweeps(who: Listener) -> int:
    """The silence sweep's finalizations ``who``'s connection has heard so far."""
    return sum(d["data"].get("reason") == "silent" for n, d in who.log_events() if n == "listening_session")


async def played_20_s_then_swept(who: Listener, clock: FrozenClock, item_id: str) -> None:
    """``who`` plays ``item_id`` 20 s (a write at its end), then goes silent until the sweep
    finalizes it at that write."""
    before = silent_sweeps(who)
    await who.report(item_id, "playing")
    clock.shift_ms += 20_000
    await who.report(item_id, "playing")
    clock.shift_ms += 2 * MIN
    await who.client.wait_for(lambda: silent_sweeps(who) > before)


async def test_a_silent_player_is_finalized_at_its_last_update(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, redis: Any, passes: SweepPasses
) -> None:
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    clock.shift_ms += 5000
    await alice.report("book-1", "playing")  # the last update: 5 s in
    clock.shift_ms += 3000
    await alice.report("book-1", "playing")  # throttled: never written
    clock.shift_ms += 56_000  # 59 s after the last write: not silent yet
    await passes.more(2)  # a whole pass on the moved clock
    [row] = await sessions(lserver)
    assert row["open"] is True
    clock.shift_ms += 2000
    await alice.client.wait_for(
        lambda: any(d["data"].get("reason") == "silent" for n, d in alice.log_events() if n == "listening_session")
    )
    [row] = await sessions(lserver)
    assert row["open"] is False and row["duration_ms"] == 5000
    # Nothing is open any more, so the history leaves the due set.
    for _ in range(50):
        if await redis.zscore(lserver.services.keys.listening_due(), alice.history_id) is None:
            break
        await asyncio.sleep(0.05)
    assert await redis.zscore(lserver.services.keys.listening_due(), alice.history_id) is None
    # A silent session shorter than the minimum is an accidental tap: deleted.
    await alice.report("book-2", "playing")
    clock.shift_ms += 2 * MIN
    await alice.client.wait_for(
        lambda: any(d["data"].get("reason") == "short" for n, d in alice.log_events() if n == "listening_removed")
    )
    assert [r["item_id"] for r in await sessions(lserver)] == ["book-1"]


async def test_offline_upload_is_idempotent_and_checked(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    upload = {
        "session_id": alice.history_id,
        "item_id": "pod-3",
        "device_id": "car",
        "client_id": "car-0001",
        "started_at": now - 40 * MIN,
        "ended_at": now - 10 * MIN,
        "item": {"title": "Episode 3"},
    }
    first = await alice.client.call("listening_upload", upload)
    assert first["ok"] and first["action"] == "uploaded" and first["duplicate"] is False
    again = await alice.client.call("listening_upload", upload)
    assert again["ok"] and again["duplicate"] is True and again["offset"] == 0
    assert again["listening"]["id"] == first["listening"]["id"]
    # The HTTP twin answers 200 for the repeat.
    async with aiohttp.ClientSession() as http:
        body = {k: v for k, v in upload.items() if k != "session_id"}
        async with http.post(f"{lserver.url}/api/listening/upload", json=body, headers=auth(lserver)) as r:
            assert r.status == 200 and (await r.json())["duplicate"] is True

    overlapping = {**upload, "client_id": "car-0002", "started_at": now - 20 * MIN, "ended_at": now - 5 * MIN}
    assert (await alice.client.call("listening_upload", overlapping))["error"] == "conflict"
    other_device = {**overlapping, "device_id": "watch"}
    assert (await alice.client.call("listening_upload", other_device))["ok"] is True
    future = {**upload, "client_id": "car-0003", "started_at": now + MIN, "ended_at": now + 2 * MIN}
    assert (await alice.client.call("listening_upload", future))["error"] == "invalid_payload"
    backwards = {**upload, "client_id": "car-0004", "started_at": now - MIN, "ended_at": now - 2 * MIN}
    assert (await alice.client.call("listening_upload", backwards))["error"] == "invalid_payload"
    # An upload overlapping the device's open session (which runs until now) is refused too.
    car = alice.__class__(client=alice.client, history_id=alice.history_id, device_id="car")
    await car.report("pod-4", "playing")
    clock.shift_ms += 10_000
    live_overlap = {**upload, "client_id": "car-0005", "started_at": now + 2000, "ended_at": now + 8000}
    assert (await alice.client.call("listening_upload", live_overlap))["error"] == "conflict"

    rows = await sessions(lserver)
    assert sorted((r["device_id"], r["source"], r["title"]) for r in rows) == [
        ("car", "live", "pod-4"),
        ("car", "upload", "Episode 3"),
        ("watch", "upload", "Episode 3"),
    ]


async def test_an_upload_inside_the_devices_open_session_long_after_it_began_is_refused(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """The open session runs until now; overlaps were looked for among sessions begun within the
    longest span written so far (20 s here) before the upload, and the one playing since 40 s
    earlier was missed: the upload was stored, the open session grew over it, and its seconds
    were counted twice (audit "listenhonest" F1)."""
    alice = await listener(lserver, clients)
    began = clock.now_ms()
    await alice.report("book", "playing")
    clock.shift_ms += 20_000
    assert (await alice.report("book", "playing"))["action"] == "extended"  # written: 20 s long
    clock.shift_ms += 25_000
    inside = {
        "session_id": alice.history_id,
        "item_id": "song",
        "device_id": alice.device_id,
        "client_id": "phone-offline-1",
        "started_at": began + 40_000,
        "ended_at": began + 44_000,
    }
    assert (await alice.client.call("listening_upload", inside))["error"] == "conflict"
    clock.shift_ms += 5_000
    await alice.report("book", "paused")
    rows = await sessions(lserver)
    assert [(r["item_id"], r["duration_ms"]) for r in rows] == [("book", 50_000)]
    # Another device's upload of the same minutes is its own: stored.
    assert (await alice.client.call("listening_upload", {**inside, "device_id": "car"}))["ok"] is True


async def test_an_upload_from_a_device_whose_clock_is_wrong_is_placed_by_when_it_was_sent(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """A phone whose clock ran three minutes ahead had what it had just played offline refused
    ("ended_at is in the future"), and one a day behind filed it a day early: with ``sent_at``
    (its clock as it sends) the server places the session on its own clock."""
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    for client_id, wrong_by in (("ahead", 3 * MIN), ("behind", -24 * 60 * MIN)):
        phone_now = now + wrong_by
        upload = {
            "session_id": alice.history_id,
            "item_id": f"pod-{client_id}",
            "device_id": f"phone-{client_id}",
            "client_id": client_id,
            "started_at": phone_now - 30 * MIN,
            "ended_at": phone_now - 2 * MIN,
            "sent_at": phone_now,
        }
        stored = await alice.client.call("listening_upload", upload)
        assert stored["ok"] and stored["action"] == "uploaded", stored
        assert (stored["listening"]["started_at"], stored["listening"]["ended_at"]) == (now - 30 * MIN, now - 2 * MIN)
        clock.shift_ms += 1_000  # sent again a second later: the first answer stands
        again = await alice.client.call("listening_upload", {**upload, "sent_at": phone_now + 1_000})
        assert again["duplicate"] is True and again["listening"]["id"] == stored["listening"]["id"]
        now = clock.now_ms()
    sent_before_it_ended = {**upload, "client_id": "odd", "sent_at": upload["ended_at"] - 1}
    assert (await alice.client.call("listening_upload", sent_before_it_ended))["error"] == "invalid_payload"
    async with aiohttp.ClientSession() as http:  # the HTTP twin takes it too
        now = clock.now_ms()
        body = {"item_id": "pod-http", "device_id": "watch", "client_id": "h1", "sent_at": now + 10 * MIN}
        body |= {"started_at": now + 5 * MIN, "ended_at": now + 9 * MIN}
        async with http.post(f"{lserver.url}/api/listening/upload", json=body, headers=auth(lserver)) as r:
            answer = await r.json()
            assert r.status == 201, answer
            assert answer["listening"]["ended_at"] == now - MIN, answer


async def test_a_resend_of_a_stored_upload_is_a_repeat_whatever_its_times_are_now(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """An upload stored near the year's limit, its answer lost, sent again later: refused
    "started_at is more than a year ago" where the protocol says a repeat answers duplicate
    (the times were checked before the client_id was looked for)."""
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    year = 366 * 24 * 60 * MIN
    upload = {
        "session_id": alice.history_id,
        "item_id": "pod-old",
        "device_id": "car",
        "client_id": "car-old-1",
        "started_at": now - year + 2 * MIN,
        "ended_at": now - year + 30 * MIN,
    }
    stored = await alice.client.call("listening_upload", upload)
    assert stored["ok"] and stored["action"] == "uploaded", stored
    clock.shift_ms += 5 * MIN
    again = await alice.client.call("listening_upload", upload)
    assert again["ok"] is True and again["duplicate"] is True, again
    assert again["listening"]["id"] == stored["listening"]["id"]
    future = {**upload, "client_id": "car-future", "started_at": now + 10 * MIN, "ended_at": now + 20 * MIN}
    moved = {**upload, "client_id": "car-old-2"}
    for refused, message in ((future, "ended_at is in the future"), (moved, "started_at is more than a year ago")):
        answer = await alice.client.call("listening_upload", refused)
        assert (answer["error"], answer["message"]) == ("invalid_payload", message), answer
    async with aiohttp.ClientSession() as http:  # the HTTP twin: a repeat's 200
        body = {k: v for k, v in upload.items() if k != "session_id"}
        async with http.post(f"{lserver.url}/api/listening/upload", json=body, headers=auth(lserver)) as r:
            assert r.status == 200 and (await r.json())["duplicate"] is True
        async with http.post(
            f"{lserver.url}/api/listening/upload", json={**body, "client_id": "h-old"}, headers=auth(lserver)
        ) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_payload"
    assert [r["client_id"] for r in await sessions(lserver) if r["source"] == "upload"] == ["car-old-1"]


async def test_two_nodes_keep_one_users_reports_atomic_and_ordered(
    lserver: ServerUnderTest,
    clients: list[Client],
    clock: FrozenClock,
    redis_process: RedisProcess,
    tmp_path: Path,
    passes: SweepPasses,
) -> None:
    second = await start_on_clock(redis_process.url, tmp_path / "second", clock)
    try:
        a = await listener(lserver, clients, device_id="phone")
        b = await listener(second, clients, device_id="phone", subscribe=False)
        assert a.history_id == b.history_id
        # Both nodes receive "playing" for the same device and item at the same instant: exactly
        # one session starts, the other report finds it open (and is throttled).
        acks = await asyncio.gather(*(p.report("book-1", "playing") for p in (a, b) for _ in range(5)))
        assert sorted(ack["action"] for ack in acks) == ["started"] + ["throttled"] * 9
        clock.shift_ms += 6000
        acks = await asyncio.gather(a.report("book-1", "playing"), b.report("book-1", "playing"))
        assert sorted(ack["action"] for ack in acks) == ["extended", "throttled"]
        clock.shift_ms += 1000
        acks = await asyncio.gather(a.report("book-1", "paused"), b.report("book-1", "stopped"))
        assert sorted(ack["action"] for ack in acks) == ["finalized", "none"]
        [row] = await sessions(lserver)
        assert row["duration_ms"] == 7000
        # The subscriber on the first node saw every change once, in offset order.
        await a.client.wait_for(lambda: len(a.log_events()) == 3)
        offsets = [d["offset"] for _, d in a.log_events()]
        assert offsets == sorted(offsets) and len(set(offsets)) == 3
        # Both sweepers run on one Redis; a silent session is finalized once.
        await a.report("book-2", "playing")
        clock.shift_ms += 5000
        await b.report("book-2", "playing")
        clock.shift_ms += 2 * MIN
        await a.client.wait_for(
            lambda: any(d["data"].get("reason") == "silent" for n, d in a.log_events() if n == "listening_session")
        )
        await passes.more(4)  # whole passes after the first finalization (two nodes sweep)
        silent = [d for n, d in a.log_events() if n == "listening_session" and d["data"].get("reason") == "silent"]
        assert len(silent) == 1
    finally:
        for client in clients:  # an open WebSocket would hold the server's shutdown
            await client.close()
        await second.stop()


async def test_a_pause_sent_late_ends_the_session_when_it_was_pressed(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """A pause pressed offline and sent 40 s later, once back, ended the session when it arrived:
    40 s that nobody listened to were added to the history."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    clock.shift_ms += 20_000
    await alice.report("book-1", "playing")  # heard: the session reaches 20 s
    clock.shift_ms += 50_000  # offline: pressed 10 s after that report, sent 40 s after the press
    ack = await alice.report("book-1", "paused", ago_ms=40_000)
    assert ack["action"] == "finalized" and ack["listening"]["ended_at"] - ack["listening"]["started_at"] == 30_000
    [row] = await sessions(lserver)
    assert (row["open"], row["duration_ms"]) == (False, 30_000)
    # Pressed before what the player last reported (a clock far off): never before that report.
    await alice.report("book-2", "playing")
    clock.shift_ms += 5000
    await alice.report("book-2", "playing")
    clock.shift_ms += 1000
    ack = await alice.report("book-2", "stopped", ago_ms=3_600_000)
    assert ack["listening"]["ended_at"] - ack["listening"]["started_at"] == 5000


async def test_a_pause_heard_after_the_sweep_ends_the_session_at_the_press_once(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, passes: SweepPasses
) -> None:
    """The player played on offline for 2 minutes, then its person pressed pause; the silence
    sweep had ended the session at the last report, and the pause, sent once back, was answered
    `none`: the two minutes were in no session."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    clock.shift_ms += 20_000
    await alice.report("book-1", "playing")
    clock.shift_ms += 5 * MIN
    await alice.client.wait_for(
        lambda: any(d["data"].get("reason") == "silent" for n, d in alice.log_events() if n == "listening_session")
    )
    [row] = await sessions(lserver)
    assert (row["open"], row["duration_ms"]) == (False, 20_000)
    # Pressed 2 min after the last report, 3 min ago.
    ack = await alice.report("book-1", "paused", ago_ms=3 * MIN, position_s=140.0)
    assert ack["action"] == "finalized" and ack["changed"] is True
    [row] = await sessions(lserver)
    assert (row["open"], row["duration_ms"], row["end_position_s"]) == (False, 20_000 + 2 * MIN, 140.0)
    assert "heard_late" not in row and "resumable" not in row
    # The same pause sent again (its answer lost) changes nothing more.
    clock.shift_ms += 1000
    again = await alice.report("book-1", "paused", ago_ms=3 * MIN + 1000)
    assert (again["action"], again["changed"]) == ("none", False)
    [row] = await sessions(lserver)
    assert row["duration_ms"] == 20_000 + 2 * MIN
    # Still not resumable: the time until the player came back was no pause.
    assert (await alice.report("book-1", "playing"))["action"] == "started"


async def test_a_late_pause_never_reaches_into_what_the_device_plays_since(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, passes: SweepPasses
) -> None:
    alice = await listener(lserver, clients)
    await played_20_s_then_swept(alice, clock, "book-1")
    started = (await alice.report("song-2", "playing"))["listening"]["started_at"]
    clock.shift_ms += 10_000
    # A pause of book-1 pressed 5 s ago, after song-2 began: book-1 ends where song-2 began.
    ack = await alice.report("book-1", "paused", ago_ms=5000)
    assert ack["listening"]["ended_at"] == started
    # A playing report never says ago_ms, and a refused one changes nothing.
    refused = await alice.report("song-2", "playing", ago_ms=1000)
    assert (refused["ok"], refused["error"]) == (False, "invalid_payload"), refused
    newest = (await sessions(lserver))[0]
    assert (newest["item_id"], newest["open"]) == ("song-2", True)


async def test_a_late_pause_never_covers_another_devices_play_nor_more_than_a_day(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, passes: SweepPasses
) -> None:
    """The phone's session, swept, then the laptop played the book 4 s, then the phone's late
    pause: the phone's session was stretched over the laptop's (the same minutes twice); and a
    late pause three days after the last report stretched it 72 h (audit "hostile3", 2 and 3)."""
    phone = await listener(lserver, clients, device_id="phone")
    laptop = Listener(client=phone.client, history_id=phone.history_id, device_id="laptop")
    await played_20_s_then_swept(phone, clock, "book")
    laptop_start = (await laptop.report("book", "playing"))["listening"]["started_at"]
    clock.shift_ms += 4000
    await laptop.report("book", "paused")
    ack = await phone.report("book", "paused", ago_ms=1)
    assert ack["listening"]["ended_at"] == laptop_start, ack  # up to the laptop's play, not over it
    # Another device playing now (since before the sweep): the late pause adds nothing.
    tablet = Listener(client=phone.client, history_id=phone.history_id, device_id="tablet")
    other = Listener(client=phone.client, history_id=phone.history_id, device_id="watch")
    await tablet.report("song", "playing")
    await other.report("book", "playing")
    clock.shift_ms += 20_000
    await other.report("book", "playing")
    clock.shift_ms += 30_000
    await tablet.report("song", "playing")  # the tablet keeps playing; the watch goes silent
    clock.shift_ms += 40_000
    await other.client.wait_for(
        lambda: sum(d["data"].get("reason") == "silent" for n, d in other.log_events() if n == "listening_session") >= 2
    )
    ended = await other.report("book", "paused", ago_ms=1)
    assert ended["action"] == "none", ended
    # Three days on, a late pause reaches no further than a day past the last report.
    await tablet.report("song", "paused")
    days = Listener(client=phone.client, history_id=phone.history_id, device_id="car")
    await days.report("podcast", "playing")
    clock.shift_ms += 10_000
    last = (await days.report("podcast", "playing"))["listening"]["ended_at"]
    clock.shift_ms += 3 * 86_400_000
    await days.client.wait_for(
        lambda: any(
            d["data"].get("reason") == "silent" and d["data"]["session"]["device_id"] == "car"
            for n, d in days.log_events()
            if n == "listening_session"
        )
    )
    late = await days.report("podcast", "paused", ago_ms=1)
    assert late["listening"]["ended_at"] == last + 86_400_000, late
