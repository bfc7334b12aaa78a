"""A pause or stop's own id: the same press sent twice ends one play, never the next one."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, Listener, SweepPasses, listener
from tests.listening.test_report import sessions
from tests.listening.test_sweep import played_20_s_then_swept


async def changes_nothing(alice: Listener, status: str, ago_ms: int, pause_id: str) -> None:
    """book-1's press ``pause_id`` sent again ``ago_ms`` late: answered ``none``, nothing changed."""
    late = await alice.report("book-1", status, ago_ms=ago_ms, pause_id=pause_id)
    assert (late["action"], late["changed"]) == ("none", False), late


async def test_a_kept_pause_sent_again_after_the_book_played_again_leaves_the_new_play(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, passes: SweepPasses
) -> None:
    """A tab closed while playing offline keeps its pause; two /player tabs that loaded it both
    send it. The second, arriving after the person played the book again, ended that new play at
    its last report (the next heartbeat then started it anew, in two pieces)."""
    alice = await listener(lserver, clients)
    await played_20_s_then_swept(alice, clock, "book-1")
    # Pressed 30 s after the last report (played on offline), sent 90 s after the press.
    first = await alice.report("book-1", "paused", ago_ms=90_000, pause_id="web-a.1795000000000")
    assert (first["action"], first["changed"]) == ("finalized", True)
    assert first["listening"]["ended_at"] - first["listening"]["started_at"] == 50_000
    again = await alice.report("book-1", "playing")
    assert again["action"] == "started"  # the sweep ended the first: not resumable
    await alice.keep_playing(clock, "book-1", 40_000)
    second = await alice.report("book-1", "paused", ago_ms=90_000 + 40_000, pause_id="web-a.1795000000000")
    assert (second["action"], second["changed"]) == ("finalized", False), second
    assert second["listening"]["id"] == first["listening"]["id"]  # answered as the first send was
    newest, oldest = await sessions(lserver)
    assert (newest["id"], newest["open"]) == (again["listening"]["id"], True), newest
    assert (oldest["duration_ms"], oldest["open"]) == (50_000, False), oldest
    # The new play goes on in one piece, and its own pause ends it.
    await alice.keep_playing(clock, "book-1", 30_000)
    end = await alice.report("book-1", "paused", pause_id="web-a.1795000130000")
    assert (end["action"], end["listening"]["id"]) == ("finalized", again["listening"]["id"])
    assert end["listening"]["ended_at"] - end["listening"]["started_at"] == 70_000


async def test_a_pause_whose_answer_was_lost_is_answered_the_same_and_a_resume_keeps_playing(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    await alice.keep_playing(clock, "book-1", 30_000)
    clock.shift_ms += 5000
    paused = await alice.report("book-1", "paused", pause_id="web-a.1")
    assert paused["action"] == "finalized" and paused["listening"]["ended_at"] == clock.now_ms()
    # Its answer lost, the page sends it again, late: the same answer, nothing more changed.
    clock.shift_ms += 4000
    resent = await alice.report("book-1", "paused", ago_ms=4000, pause_id="web-a.1")
    assert (resent["action"], resent["changed"]) == ("finalized", False)
    assert resent["listening"] == paused["listening"]
    # Played again within the resume window: the paused session goes on. The old pause, sent again
    # by another tab, no longer stands: it changes nothing (it ended the resumed play before).
    resumed = await alice.report("book-1", "playing")
    assert resumed["action"] == "resumed" and resumed["listening"]["id"] == paused["listening"]["id"]
    await alice.keep_playing(clock, "book-1", 30_000)
    await changes_nothing(alice, "stopped", 40_000, "web-a.1")
    [row] = await sessions(lserver)
    assert row["open"] is True and row["ended_at"] == clock.now_ms(), row
    # Another press ends it, and is remembered too.
    clock.shift_ms += 2000
    stopped = await alice.report("book-1", "stopped", pause_id="web-a.2")
    assert stopped["action"] == "finalized" and stopped["listening"]["ended_at"] == clock.now_ms()
    [row] = await sessions(lserver)
    assert "paused_by" not in row and not row["open"]
    assert (await alice.report("book-1", "stopped", ago_ms=1, pause_id="web-a.2"))["listening"] == stopped["listening"]
    # The first pause, resumed past and followed by another, no longer stands (audit contract3).
    await changes_nothing(alice, "paused", 50_000, "web-a.1")


async def test_a_pause_id_is_a_pauses_own_and_checked_at_the_edge(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    bad: list[dict[str, Any]] = [
        {"status": "playing", "pause_id": "web-a.1"},
        {"status": "paused", "pause_id": ""},
        {"status": "paused", "pause_id": "has space"},
        {"status": "paused", "pause_id": "x" * 129},
        {"status": "paused", "pause_id": 7},
    ]
    for fields in bad:
        status = fields.pop("status")
        ack = await alice.client.call(
            "listening_report",
            {"session_id": alice.history_id, "item_id": "book-1", "status": status, "device_id": "d", **fields},
        )
        assert ack.get("error") == "invalid_payload", (fields, ack)
    assert await sessions(lserver) == []
    # One id on two items is two presses: each ends its own item's play.
    await alice.report("book-1", "playing")
    clock.shift_ms += 5000
    assert (await alice.report("book-1", "paused", pause_id="web-a.9"))["action"] == "finalized"
    await alice.report("song-2", "playing")
    clock.shift_ms += 5000
    assert (await alice.report("song-2", "paused", pause_id="web-a.9"))["action"] == "finalized"
    assert [row["open"] for row in await sessions(lserver)] == [False, False]


async def _deleted(alice: Listener, session_id: str) -> None:
    ack = await alice.client.call("listening_delete", {"session_id": alice.history_id, "id": session_id})
    assert ack["ok"] is True, ack


async def _cleared(alice: Listener, session_id: str) -> None:
    ack = await alice.client.call("listening_clear", {"session_id": alice.history_id, "confirm": True})
    assert ack["ok"] is True, ack


@pytest.mark.parametrize("between", ["another item", "the session deleted", "the history cleared"])
async def test_a_pause_sent_again_after_anything_leaves_the_next_play(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock, between: str
) -> None:
    """The id kept on the session alone was lost with it, or not looked for where the session no
    longer was the device's last of the item: the same press sent again then ended the next play
    of the item at its last report (audit verify38)."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    await alice.keep_playing(clock, "book-1", 20_000)
    first = await alice.report("book-1", "paused", pause_id="web-a.1")
    assert first["action"] == "finalized"
    if between == "another item":
        await alice.report("song-2", "playing")
        await alice.keep_playing(clock, "song-2", 5000)
    elif between == "the session deleted":
        await _deleted(alice, first["listening"]["id"])
    else:
        await _cleared(alice, first["listening"]["id"])
    clock.shift_ms += 11 * 60_000  # past the resume window: a new play
    again = await alice.report("book-1", "playing")
    assert again["action"] == "started", again
    await alice.keep_playing(clock, "book-1", 40_000)
    await changes_nothing(alice, "paused", 12 * 60_000, "web-a.1")
    [playing] = [row for row in await sessions(lserver) if row["id"] == again["listening"]["id"]]
    assert playing["open"] and playing["duration_ms"] == 40_000, playing


async def test_a_pause_whose_first_send_changed_nothing_changes_nothing_again(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """A play under the minimum (deleted by its pause) and a pause answered `none` kept no id: sent
    again by another tab once the book played again, each ended that play (audit verify38)."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    clock.shift_ms += 500
    assert (await alice.report("book-1", "paused", pause_id="web-a.tap"))["action"] == "deleted"
    assert (await alice.report("book-1", "paused", ago_ms=1000, pause_id="web-a.none"))["action"] == "none"
    again = await alice.report("book-1", "playing")
    await alice.keep_playing(clock, "book-1", 30_000)
    for pause_id in ("web-a.tap", "web-a.none"):
        late = await alice.report("book-1", "paused", ago_ms=31_000, pause_id=pause_id)
        assert (late["action"], late["changed"]) == ("none", False), (pause_id, late)
    [row] = await sessions(lserver)
    assert (row["id"], row["open"]) == (again["listening"]["id"], True), row


async def test_a_pause_resumed_past_is_none_however_the_play_ended(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """Resumed, then ended by another item (not by a pause): the old pause sent again was answered
    `finalized` as if it stood (audit verify38)."""
    alice = await listener(lserver, clients)
    await alice.report("book-1", "playing")
    await alice.keep_playing(clock, "book-1", 20_000)
    assert (await alice.report("book-1", "paused", pause_id="web-a.1"))["action"] == "finalized"
    clock.shift_ms += 5000
    assert (await alice.report("book-1", "playing"))["action"] == "resumed"
    await alice.keep_playing(clock, "book-1", 30_000)
    await alice.report("song-2", "playing")  # the book switched off
    await changes_nothing(alice, "paused", 40_000, "web-a.1")


async def test_the_pauses_heard_are_bounded(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    for n in range(1010):
        await alice.report("book-1", "paused", pause_id=f"web-a.{n}")
    key = lserver.services.keys.listening_pauses(alice.history_id)
    redis = lserver.services.redis
    assert await redis.zcard(key) == 1000
    assert 0 < await redis.pttl(key) <= 86_400_000
    # The oldest went first: its press is heard again as new (and changes nothing: nothing plays).
    assert await redis.zscore(key, f"{alice.device_id}\0book-1\0web-a.0") is None
    assert await redis.zscore(key, f"{alice.device_id}\0book-1\0web-a.1009") is not None
