"""Events of one connection are applied in the order sent; an ack leaves before its fan-out."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

from tests.helpers import Client, ServerUnderTest, emit_all

CHANGES = 50


def pipeline(client: Client, event: str, payloads: list[dict[str, Any]]) -> asyncio.Future[list[Any]]:
    """Emit every payload at once (no waiting for acks); the future gets the acks in arrival order."""
    return emit_all(client, [(event, payload) for payload in payloads], record=True)


def statuses(count: int) -> list[str]:
    return ["recording" if i % 2 == 0 else "paused" for i in range(count)]


async def test_pipelined_changes_end_in_the_last_state_with_acks_in_order(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await server.create_session("alice")
    alice = await server.subscriber(clients, session_id)
    wanted = statuses(CHANGES)
    payloads = [{"session_id": session_id, "status": status} for status in wanted]

    acks = await asyncio.wait_for(pipeline(alice, "set_session_status", payloads), 10)

    assert [index for index, _ in acks] == list(range(CHANGES))  # acks in send order
    assert all(ack["ok"] and ack["changed"] for _, ack in acks), [a for _, a in acks if not a.get("changed")][:3]
    offsets = [ack["offset"] for _, ack in acks]
    assert offsets == list(range(2, 2 + CHANGES))  # each applied once, in order
    assert [ack["status"] for _, ack in acks] == wanted
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == wanted[-1]


async def test_the_ack_arrives_before_the_change_is_seen_live(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    alice = await server.subscriber(clients, session_id)
    # The race this guards against (the pub/sub copy overtaking the script's reply) is rare per
    # change, so many changes are sent: without the hold most runs see a few late acks.
    count = 300
    payloads = [{"session_id": session_id, "status": status} for status in statuses(count)]

    await asyncio.wait_for(pipeline(alice, "set_session_status", payloads), 20)
    await alice.wait_for(lambda: len(alice.named("session_status")) == count)

    seen_at: dict[int, int] = {}
    acked_at: dict[int, int] = {}
    for position, (name, data) in enumerate(alice.events):
        if name == "ack":
            acked_at[data["offset"]] = position
        elif name == "session_status":
            seen_at[data["offset"]] = position
    late = [offset for offset in seen_at if acked_at[offset] > seen_at[offset]]
    assert late == [], f"{len(late)} of {count} changes were delivered before their ack"


async def test_two_tabs_racing_leave_state_and_log_in_agreement(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    session_id = await server.create_session("alice")
    tabs = [await server.subscriber(clients, session_id) for _ in range(2)]
    rng = random.Random(7)
    choices = ["recording", "paused", "cutting", "ready", "error"]
    plans = [[{"session_id": session_id, "status": rng.choice(choices)} for _ in range(40)] for _ in tabs]

    results = await asyncio.wait_for(
        asyncio.gather(*(pipeline(tab, "set_session_status", plan) for tab, plan in zip(tabs, plans, strict=True))), 10
    )

    committed = {
        ack["offset"]: ack["status"] for acks in results for _, ack in acks if ack.get("ok") and ack["changed"]
    }
    refused = [ack["error"] for acks in results for _, ack in acks if not ack.get("ok")]
    assert set(refused) <= {"invalid_state"}
    entries = await redis.xrange(server.services.keys.log(session_id))
    logged = {
        e["offset"]: e["data"]["status"]
        for e in (json.loads(f["e"]) for _, f in entries)
        if e["type"] == "session_status"
    }
    assert logged == committed  # every acknowledged change is in the log, and nothing else
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == logged[max(logged)]


async def test_reserved_event_names_are_refused(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    alice = await server.subscriber(clients, session_id)
    for name in ("connect", "disconnect"):
        ack = await alice.call(name, {"token": server.token("mallory")})
        assert ack == {"ok": False, "error": "unknown_event", "message": f"{name!r} is reserved"}
    # Still connected, still subscribed, still alice.
    ack = await alice.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["ok"] is True
    await alice.wait_for(lambda: len(alice.named("session_status")) == 1)


async def test_unknown_and_reserved_event_refusals_echo_the_seq(server: ServerUnderTest, clients: list[Client]) -> None:
    """Every error ack echoes a whole-number seq of its payload (PROTOCOL.md), these two too: the
    router answers a name it does not know, the transport one Socket.IO reserves."""
    alice = await server.subscriber(clients, await server.create_session("alice"))
    for name, seq in (("no_such_event", 7), ("connect", 8), ("disconnect", 0), ("connect_error", 2**53)):
        ack = await alice.call(name, {"seq": seq})
        assert ack["error"] == "unknown_event" and ack["seq"] == seq, (name, ack)
    # Only a whole number in range is echoed, as for every other refusal.
    for seq in (True, -1, 2**53 + 1, "7", 1.5):
        for name in ("no_such_event", "disconnect"):
            ack = await alice.call(name, {"seq": seq})
            assert ack["error"] == "unknown_event" and "seq" not in ack, (name, seq, ack)
    for name in ("no_such_event", "connect"):
        assert "seq" not in await alice.call(name, [1])  # a payload that is no object has none


async def test_a_client_sent_connect_does_not_reset_the_rate_budget(
    redis_process: Any, redis: Any, tmp_path: Any
) -> None:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, event_rate_per_s=1.0, event_burst=3)
    client = Client(srv.url, srv.token("alice"))
    try:
        await client.connect()
        session_id = await srv.create_session("alice")
        ref = {"session_id": session_id}
        answers = [await client.call("unsubscribe_from_session", ref) for _ in range(4)]
        assert [a["ok"] for a in answers] == [True, True, True, False] and answers[3]["error"] == "rate_limited"
        assert (await client.call("connect", {"token": srv.token("alice")}))["error"] == "unknown_event"
        # Before the fix, a client-sent "connect" ran the connect handler and refilled the budget.
        assert (await client.call("unsubscribe_from_session", ref))["error"] == "rate_limited"
    finally:
        await client.close()
        await srv.stop()
