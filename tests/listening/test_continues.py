"""A play that went on while its player could not report: one session, not three.

The page played through its node's outage longer than the silence; the sweep ended the session
at its last report, and the next `playing` started a new one, the page uploading the span between:
three entries for one play (audit "restarts2"). Now the page says which session it continues, and
the script takes it up again over the silence.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, Listener, listener
from tests.listening.test_report import sessions
from tests.listening.test_sweep import MIN, played_20_s_then_swept


def last_session(who: Listener) -> dict[str, Any]:
    return [d["data"] for n, d in who.log_events() if n == "listening_session"][-1]


async def test_a_play_through_an_outage_stays_one_session(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await played_20_s_then_swept(alice, clock, "book")  # 2 min of silence: the sweep ended it at 20 s
    [swept] = await sessions(lserver)
    assert swept["open"] is False
    ack = await alice.report("book", "playing", continues=swept["id"])
    assert ack["action"] == "resumed" and ack["listening"]["id"] == swept["id"], ack
    await alice.client.wait_for(lambda: last_session(alice).get("reason") == "continued")
    clock.shift_ms += 30_000
    assert (await alice.report("book", "paused"))["action"] == "finalized"
    [one] = await sessions(lserver)
    assert one["id"] == swept["id"] and one["duration_ms"] == 20_000 + 2 * MIN + 30_000, one
    # Paused by its person now: a resend of the claim is no continuation (it is a resume's to make).
    clock.shift_ms += 10 * MIN
    ack = await alice.report("book", "playing", continues=swept["id"])
    assert ack["action"] == "started" and ack["listening"]["id"] != swept["id"], ack


async def test_a_continuation_is_refused_where_it_would_count_time_twice_or_is_not_the_last(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    laptop = Listener(client=alice.client, history_id=alice.history_id, device_id="laptop")
    await played_20_s_then_swept(alice, clock, "book")
    [swept] = await sessions(lserver)
    # Another item, another id, a pause: not a continuation (and a pause may not carry one).
    assert (await alice.report("other", "playing", continues=swept["id"]))["action"] == "started"
    clock.shift_ms += 5000
    assert (await alice.report("other", "paused"))["action"] == "finalized"
    ack = await alice.report("book", "paused", continues=swept["id"])
    assert ack["error"] == "invalid_payload", ack
    # "other" is the phone's last session now: the swept one is not continued.
    ack = await alice.report("book", "playing", continues=swept["id"])
    assert ack["action"] == "started" and ack["listening"]["id"] != swept["id"], ack
    clock.shift_ms += 5000
    await alice.report("book", "paused")

    # Swept again, and the laptop played meanwhile: the phone's silence was covered there.
    await played_20_s_then_swept(alice, clock, "book")
    swept = next(s for s in await sessions(lserver) if s["open"] is False and s["duration_ms"] == 20_000)
    assert (await laptop.report("book", "playing"))["action"] == "started"
    ack = await alice.report("book", "playing", continues=swept["id"])
    assert ack["action"] == "started" and ack["listening"]["id"] != swept["id"], ack


async def test_a_continuation_reaches_back_a_day_at_most(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await played_20_s_then_swept(alice, clock, "book")
    [swept] = await sessions(lserver)
    clock.shift_ms += 24 * 60 * MIN
    ack = await alice.report("book", "playing", continues=swept["id"])
    assert ack["action"] == "started" and ack["listening"]["id"] != swept["id"], ack
