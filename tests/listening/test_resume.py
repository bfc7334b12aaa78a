"""Resuming a paused session: an accidental tap on it changes nothing, a crashed one is not resumed."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, Listener, auth, listener
from tests.listening.test_report import sessions

SILENCE_MS = 60_000


async def stats(server: ServerUnderTest) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/listening/stats", headers=auth(server)) as r:
            assert r.status == 200, await r.text()
            return dict(await r.json())


def totals(body: dict[str, Any]) -> tuple[int, int, list[tuple[str, int]], list[int]]:
    """What a history's stats say of its time: total, count, per item, per day."""
    return (
        body["total_ms"],
        body["count"],
        [(i["item_id"], i["total_ms"]) for i in body["items"]],
        [d["total_ms"] for d in body["days"]],
    )


def silent_events(alice: Listener) -> int:
    return sum(1 for n, d in alice.log_events() if n == "listening_session" and d["data"].get("reason") == "silent")


async def play_20_s_and_pause(alice: Listener, clock: FrozenClock) -> dict[str, Any]:
    await alice.report("book-1", "playing", position_s=100.0)
    clock.shift_ms += 20_000
    await alice.report("book-1", "playing", position_s=120.0)
    paused = await alice.report("book-1", "paused", position_s=120.0)
    assert paused["action"] == "finalized" and paused["listening"]["duration_ms"] == 20_000, paused
    return dict(paused["listening"])


async def end_the_resume(alice: Listener, clock: FrozenClock, how: str) -> dict[str, Any]:
    """End the open session of book-1 the way ``how`` says; the ack of the report that did."""
    if how in ("paused", "stopped"):
        return await alice.report("book-1", how, position_s=400.0)
    if how == "switched":
        return await alice.report("book-2", "playing")
    before = silent_events(alice)
    clock.shift_ms += SILENCE_MS
    await alice.client.wait_for(lambda: silent_events(alice) > before)
    return {}


def finalized(alice: Listener) -> list[dict[str, Any]]:
    return [d["data"] for n, d in alice.log_events() if n == "listening_session" and d["data"]["action"] == "finalized"]


@pytest.mark.parametrize("how", ["paused", "stopped", "switched", "silent"])
async def test_a_tap_within_the_window_leaves_the_paused_session_as_it_was(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, how: str
) -> None:
    alice = await listener(lserver, clients)
    before = await play_20_s_and_pause(alice, clock)
    before_total, before_count, before_items, before_days = totals(await stats(lserver))
    clock.shift_ms += 120_000
    resumed = await alice.report("book-1", "playing", position_s=300.0)
    assert resumed["action"] == "resumed" and resumed["listening"]["id"] == before["id"], resumed
    finalized_so_far = len(finalized(alice))
    clock.shift_ms += 300  # an accidental tap: well under the 1 s minimum
    ended = await end_the_resume(alice, clock, how)
    if how in ("paused", "stopped"):
        assert ended["action"] == "finalized" and ended["listening"] == before, ended
    if how == "switched":
        assert ended["action"] == "started", ended

    assert [r for r in await sessions(lserver) if r["item_id"] == "book-1"] == [before]
    total, count, items, days = totals(await stats(lserver))
    assert (total, dict(items)["book-1"], days) == (before_total, dict(before_items)["book-1"], before_days)
    assert count == before_count + (1 if how == "switched" else 0)  # book-2, open
    # Subscribers are told the session is back as it was, in the events' session shape.
    await alice.client.wait_for(lambda: len(finalized(alice)) > finalized_so_far)
    told = finalized(alice)[-1]
    assert told["reason"] == how and told["session"]["ended_at"] == before["ended_at"], told
    assert told["session"]["end_position_s"] == 120.0 and not {"resume", "resumable"} & set(told["session"])

    # The session stays the device's last, resumable as before (after a switch: past a tap of
    # the other item); a resume that lasts covers the pause.
    clock.shift_ms += 300 if how == "switched" else 5000
    again = await alice.report("book-1", "playing", position_s=120.0)
    assert again["action"] == "resumed" and again["listening"]["id"] == before["id"], again
    clock.shift_ms += 1000
    kept = await alice.report("book-1", "paused", position_s=121.0)
    assert kept["action"] == "finalized" and kept["listening"]["ended_at"] == clock.now_ms(), kept
    assert kept["listening"]["end_position_s"] == 121.0


async def test_a_resume_of_the_minimum_or_more_covers_the_pause(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    before = await play_20_s_and_pause(alice, clock)
    clock.shift_ms += 120_000
    assert (await alice.report("book-1", "playing"))["action"] == "resumed"
    clock.shift_ms += 1000
    paused = await alice.report("book-1", "paused")
    assert paused["action"] == "finalized" and paused["listening"]["id"] == before["id"]
    assert paused["listening"]["duration_ms"] == 20_000 + 120_000 + 1000
    assert (await stats(lserver))["total_ms"] == 141_000


async def test_a_session_ended_by_the_silence_sweep_is_never_resumed(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    clock.shift_ms += 20_000
    await alice.report("book-1", "playing")  # the last write: 20 s in
    clock.shift_ms += SILENCE_MS  # the tab was closed
    await alice.client.wait_for(lambda: silent_events(alice) == 1)
    [crashed] = await sessions(lserver)
    assert (crashed["duration_ms"], crashed["open"]) == (20_000, False)

    clock.shift_ms += 120_000  # reopened 3 minutes after the last write: within the window
    again = await alice.report("book-1", "playing")
    assert again["action"] == "started" and again["listening"]["id"] != crashed["id"], again
    clock.shift_ms += 10_000
    await alice.report("book-1", "paused")
    rows = await sessions(lserver)
    assert [(r["id"], r["duration_ms"]) for r in rows] == [(again["listening"]["id"], 10_000), (crashed["id"], 20_000)]
    assert (await stats(lserver))["total_ms"] == 30_000
    # No older session resumes in its place: the crashed one stays the device's last.
    clock.shift_ms += 10 * 60_000
    await alice.report("book-1", "playing")
    clock.shift_ms += 20_000
    await alice.report("book-1", "playing")
    clock.shift_ms += SILENCE_MS
    await alice.client.wait_for(lambda: silent_events(alice) == 2)
    clock.shift_ms += 1000
    third = await alice.report("book-1", "playing")
    assert third["action"] == "started", third


async def test_an_upload_after_a_crash_becomes_the_devices_last_and_resumes(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """The documented rule for uploads stays: the device's latest finished session resumes,
    and an upload's end is the player's own pause, not a crash."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    clock.shift_ms += 20_000
    crashed = await alice.report("book-1", "playing")
    clock.shift_ms += SILENCE_MS
    await alice.client.wait_for(lambda: silent_events(alice) == 1)
    end = crashed["listening"]["ended_at"]
    body = {
        "item_id": "book-1",
        "device_id": alice.device_id,
        "client_id": "off-1",
        "started_at": end,
        "ended_at": end + 30_000,
    }
    uploaded = await alice.client.call("listening_upload", {"session_id": alice.history_id, **body})
    assert uploaded["action"] == "uploaded", uploaded
    resumed = await alice.report("book-1", "playing")
    assert resumed["action"] == "resumed" and resumed["listening"]["id"] == uploaded["listening"]["id"], resumed


@pytest.mark.parametrize("laptop_still_playing", [False, True])
async def test_a_pause_another_device_played_through_is_not_covered_by_a_resume(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, laptop_still_playing: bool
) -> None:
    """The phone paused the book, the laptop played it for 12 s, the phone resumed within the
    window: the phone's session covered its pause, the laptop's 12 s were counted twice (74 s of
    history for 47 s played)."""
    phone = await listener(lserver, clients, device_id="phone")
    laptop = Listener(client=phone.client, history_id=phone.history_id, device_id="laptop")
    await play_20_s_and_pause(phone, clock)
    clock.shift_ms += 5000
    await laptop.report("book-1", "playing", position_s=120.0)
    clock.shift_ms += 12_000
    await laptop.report("book-1", "playing", position_s=132.0)
    if not laptop_still_playing:
        await laptop.report("book-1", "paused", position_s=132.0)
    clock.shift_ms += 5000
    resumed = await phone.report("book-1", "playing", position_s=132.0)
    assert resumed["action"] == "started", resumed
    clock.shift_ms += 10_000
    await phone.report("book-1", "paused", position_s=142.0)
    if laptop_still_playing:
        await laptop.report("book-1", "paused", position_s=147.0)
    played = 20_000 + 12_000 + 10_000 + (15_000 if laptop_still_playing else 0)
    assert (await stats(lserver))["total_ms"] == played
    # Alone, a pause is still covered by a resume within the window (seed 003).
    clock.shift_ms += 60_000
    assert (await phone.report("book-1", "playing", position_s=142.0))["action"] == "resumed"
