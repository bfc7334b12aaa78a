"""Listening history at its edges (issue 21): short uploads, resuming an uploaded session, a
crash before the first throttled write, the metadata in acks, clocks that are a little ahead."""

from __future__ import annotations

import csv
import io
from typing import Any

import aiohttp

from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, auth, listener
from tests.listening.test_report import sessions

MIN = 60_000


def _upload(history_id: str, client_id: str, started_at: int, ended_at: int, **extra: Any) -> dict[str, Any]:
    return {
        "session_id": history_id,
        "item_id": "book-1",
        "device_id": "phone",
        "client_id": client_id,
        "started_at": started_at,
        "ended_at": ended_at,
        **extra,
    }


async def test_an_upload_under_a_second_is_dropped_like_a_tap(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    ack = await alice.client.call("listening_upload", _upload(alice.history_id, "tap-1", now - 5000, now - 4001))
    assert ack["ok"] is True and (ack["action"], ack["listening"], ack["changed"]) == ("deleted", None, False), ack
    async with aiohttp.ClientSession() as http:
        body = {
            k: v for k, v in _upload(alice.history_id, "tap-2", now - 5000, now - 4001).items() if k != "session_id"
        }
        async with http.post(f"{lserver.url}/api/listening/upload", json=body, headers=auth(lserver)) as r:
            assert r.status == 200 and (await r.json())["action"] == "deleted"
    assert await sessions(lserver) == []
    ack = await alice.client.call("listening_upload", _upload(alice.history_id, "ok-1", now - 5000, now - 4000))
    assert ack["action"] == "uploaded"


async def test_a_live_play_resumes_an_uploaded_session_within_the_window(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    uploaded = await alice.client.call(
        "listening_upload", _upload(alice.history_id, "off-1", now - 10 * MIN, now - MIN)
    )
    assert uploaded["action"] == "uploaded"
    ack = await alice.report("book-1", "playing")
    assert ack["action"] == "resumed" and ack["listening"]["id"] == uploaded["listening"]["id"], ack
    [row] = await sessions(lserver)
    assert (row["started_at"], row["ended_at"], row["open"]) == (now - 10 * MIN, now, True)
    # The CSV export says so too: its duration is the play so far, not a finished session's.
    [exported] = await exported_csv(lserver)
    assert (exported["id"], exported["open"], exported["duration_ms"]) == (row["id"], "true", str(row["duration_ms"]))
    await alice.keep_playing(clock, "book-1", MIN)  # a whole silence in one move races the sweep
    assert (await alice.report("book-1", "paused"))["action"] == "finalized"
    [exported] = await exported_csv(lserver)
    assert (exported["open"], exported["duration_ms"]) == ("false", str(row["duration_ms"] + MIN))


async def exported_csv(lserver: ServerUnderTest) -> list[dict[str, str]]:
    async with aiohttp.ClientSession() as http:
        url = f"{lserver.url}/api/listening/export"
        async with http.get(url, params={"format": "csv"}, headers=auth(lserver)) as r:
            assert r.status == 200
            return list(csv.DictReader(io.StringIO(await r.text())))


async def test_a_crash_within_the_first_throttle_interval_keeps_the_session(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    assert (await alice.report("book-1", "playing"))["action"] == "started"
    clock.shift_ms += 1500  # within the 5 s throttle interval, past the 1 s minimum
    assert (await alice.report("book-1", "playing"))["action"] == "extended"
    clock.shift_ms += 1000
    assert (await alice.report("book-1", "playing"))["action"] == "throttled"
    clock.shift_ms += 2 * MIN  # the player crashed: the sweep finalizes at the last write
    await alice.client.wait_for(
        lambda: any(d["data"].get("reason") == "silent" for n, d in alice.log_events() if n == "listening_session")
    )
    [row] = await sessions(lserver)
    assert (row["open"], row["duration_ms"]) == (False, 1500)


async def test_acks_without_item_carry_the_stored_metadata(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    ack = await alice.report("book-m", "playing", item={"title": "Dune", "artist": "Frank Herbert"})
    assert (ack["listening"]["title"], ack["listening"]["artist"]) == ("Dune", "Frank Herbert")
    clock.shift_ms += 6000
    for status in ("playing", "paused"):
        ack = await alice.report("book-m", status)
        assert (ack["listening"]["title"], ack["listening"]["artist"]) == ("Dune", "Frank Herbert"), ack
        clock.shift_ms += 500
    upload = _upload(alice.history_id, "off-m", clock.now_ms() - 10 * MIN, clock.now_ms() - 9 * MIN, item_id="book-m")
    ack = await alice.client.call("listening_upload", upload)
    assert ack["listening"]["title"] == "Dune", ack


async def test_upload_clock_skew_is_clamped_and_1970_refused(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    now = clock.now_ms()
    ack = await alice.client.call("listening_upload", _upload(alice.history_id, "skew-1", now - MIN, now + 1500))
    assert ack["ok"] is True and ack["listening"]["ended_at"] == now, ack
    ack = await alice.client.call("listening_upload", _upload(alice.history_id, "skew-2", now + 1000, now + 1500))
    assert (ack["ok"], ack["error"]) == (False, "invalid_payload")
    ack = await alice.client.call("listening_upload", _upload(alice.history_id, "far-1", now + MIN, now + 2 * MIN))
    assert (ack["ok"], ack["error"]) == (False, "invalid_payload")
    ack = await alice.client.call("listening_upload", _upload(alice.history_id, "epoch-1", 1000, 61_000))
    assert (ack["ok"], ack["error"]) == (False, "invalid_payload")
    assert [r["client_id"] for r in await sessions(lserver)] == ["skew-1"]
