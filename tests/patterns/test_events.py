"""Live co-editing of pattern sessions over real Socket.IO clients, on a real Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from auth.claims import GUEST_PERMISSIONS
from storage.patterns.repository import PatternSessions
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.patterns.test_http import full_state, track


async def new_pattern(server: ServerUnderTest, body: Any = None) -> str:
    payload = body if body is not None else {"state": full_state()}
    async with aiohttp.ClientSession(base_url=server.url) as http, http.post("/api/sessions", json=payload) as r:
        assert r.status == 201
        return str((await r.json())["id"])


async def player(server: ServerUnderTest, clients: list[Client], session_id: str, user: str = "guest-1") -> Client:
    client = Client(server.url, server.token(user, perms=GUEST_PERMISSIONS, guest=True))
    clients.append(client)
    await client.connect()
    ack = await client.call("subscribe_on_session", {"session_id": session_id})
    assert ack["ok"] is True, ack
    return client


async def stored_state(server: ServerUnderTest, session_id: str) -> dict[str, Any]:
    # Read as stored, whole or split (storage/patterns/layout.py), without touching the session.
    loaded = await PatternSessions(server.services.store).load(session_id, touch=False)
    assert loaded is not None
    return loaded[0].state


def ops_seen(client: Client) -> list[dict[str, Any]]:
    return [event["data"] for event in client.named("pattern_op")]


async def test_snapshot_then_ops_live_to_every_player_with_the_senders_seq(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    bob = await player(server, clients, session_id, "bob")
    snapshot = alice.named("session_snapshot")[0]
    assert snapshot["kind"] == "pattern" and snapshot["players"] == []
    assert snapshot["session"]["state"]["tracks"][0]["id"] == "t1"

    ack = await alice.call(
        "pattern_op",
        {"session_id": session_id, "seq": 7, "op": {"type": "set_step", "trackId": "t1", "step": 5, "on": True}},
    )
    assert ack["ok"] is True and ack["seq"] == 7 and ack["offset"] == snapshot["offset"] + 1
    for client in (alice, bob):
        await client.wait_for(lambda c=client: len(ops_seen(c)) == 1)  # type: ignore[misc]
        event = client.named("pattern_op")[0]
        assert event["offset"] == ack["offset"]
        assert event["data"]["seq"] == 7 and event["data"]["client"] == alice.sio.get_sid()
        assert event["data"]["op"] == {"type": "set_step", "trackId": "t1", "step": 5, "on": True}
    assert (await stored_state(server, session_id))["tracks"][0]["steps"][5] is True


async def test_every_kind_of_operation_changes_the_stored_state(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    ops: list[dict[str, Any]] = [
        {"type": "add_track", "track": track("t2", name="Bass", sampleId="synth:bass", steps=[False])},
        {"type": "toggle_step", "trackId": "t2", "step": 3},
        {"type": "set_lock", "trackId": "t2", "step": 3, "lock": {"pitch": -5}},
        {"type": "set_tempo", "tempo": 150},
        {"type": "set_swing", "swing": 30},
        {"type": "set_loop_region", "loopRegion": {"start": 0, "end": 15}},
        {"type": "rename_track", "trackId": "t2", "name": "Sub"},
        {"type": "set_track_sample", "trackId": "t2", "sampleId": "synth:lead"},
        {"type": "set_track_volume", "trackId": "t2", "volume": 0.5},
        {"type": "set_track_pan", "trackId": "t2", "pan": -0.25},
        {"type": "set_track_mute", "trackId": "t2", "muted": True},
        {"type": "set_track_solo", "trackId": "t2", "soloed": True},
        {"type": "set_track_transpose", "trackId": "t2", "transpose": -12},
        {"type": "set_track_step_count", "trackId": "t2", "stepCount": 32},
        {"type": "set_track_playback_mode", "trackId": "t2", "playbackMode": "gate"},
        {"type": "clear_track", "trackId": "t1"},
        {"type": "set_name", "name": " Jam "},
    ]
    for seq, op in enumerate(ops):
        ack = await alice.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op})
        assert ack["ok"] is True, (op, ack)
    state = await stored_state(server, session_id)
    t1, t2 = state["tracks"]
    assert t1["steps"] == [False] * 128
    assert t2["steps"][3] is True and t2["parameterLocks"][3] == {"pitch": -5}
    assert (state["tempo"], state["swing"], state["loopRegion"]) == (150, 30, {"start": 0, "end": 15})
    assert (t2["name"], t2["sampleId"], t2["volume"], t2["pan"]) == ("Sub", "synth:lead", 0.5, -0.25)
    assert (t2["muted"], t2["soloed"], t2["transpose"], t2["stepCount"], t2["playbackMode"]) == (
        True,
        True,
        -12,
        32,
        "gate",
    )
    toggled = [e for e in ops_seen(alice) if e["op"]["type"] == "toggle_step"]
    assert toggled[0]["on"] is True
    name = await server.services.redis.hget(server.services.keys.session(session_id), "name")  # type: ignore[misc]
    assert name == "Jam"

    ack = await alice.call(
        "pattern_op", {"session_id": session_id, "seq": 99, "op": {"type": "delete_track", "trackId": "t1"}}
    )
    ack = await alice.call(
        "pattern_op", {"session_id": session_id, "seq": 100, "op": {"type": "delete_track", "trackId": "t2"}}
    )
    assert ack["ok"] is True
    async with aiohttp.ClientSession(base_url=server.url) as http, http.get(f"/api/sessions/{session_id}") as r:
        assert (await r.json())["state"]["tracks"] == []


async def test_setting_a_step_is_idempotent_across_players(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    bob = await player(server, clients, session_id, "bob")
    op = {"type": "set_step", "trackId": "t1", "step": 2, "on": True}
    acks = await asyncio.gather(
        alice.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}),
        bob.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}),
    )
    assert all(a["ok"] for a in acks)
    assert (await stored_state(server, session_id))["tracks"][0]["steps"][2] is True


async def test_refused_operations_change_nothing_and_keep_the_connection(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    before = await stored_state(server, session_id)
    offset_before = (await server.services.log.position(session_id)).offset
    bad: list[tuple[Any, str]] = [
        ({"type": "set_step", "trackId": "gone", "step": 1, "on": True}, "not_found"),
        ({"type": "set_step", "trackId": "t1", "step": 128, "on": True}, "invalid_payload"),
        ({"type": "set_step", "trackId": "t1", "step": 1, "on": 1}, "invalid_payload"),
        ({"type": "set_step", "trackId": "t1", "step": True, "on": True}, "invalid_payload"),
        ({"type": "set_tempo", "tempo": float("inf")}, "invalid_payload"),
        ({"type": "set_tempo"}, "invalid_payload"),
        ({"type": "explode"}, "invalid_payload"),
        ({"type": "rename_track", "trackId": "t1", "name": "<img src=x>"}, "invalid_payload"),
        ({"type": "rename_track", "trackId": "t1", "name": "x" * 33}, "invalid_payload"),
        ({"type": "set_track_step_count", "trackId": "t1", "stepCount": 17}, "invalid_payload"),
        ({"type": "add_track", "track": track("t1")}, "conflict"),
        ({"type": "set_step", "trackId": "t1", "step": 1, "on": True, "extra": 1}, "invalid_payload"),
        ("not an object", "invalid_payload"),
    ]
    for op, code in bad:
        ack = await alice.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op})
        assert (ack["ok"], ack["error"]) == (False, code), (op, ack)
    for payload, code in (
        ({"session_id": session_id, "op": {"type": "set_tempo", "tempo": 100}}, "invalid_payload"),
        ({"session_id": session_id, "seq": -1, "op": {"type": "set_tempo", "tempo": 100}}, "invalid_payload"),
        ({"session_id": "forged", "seq": 1, "op": {"type": "set_tempo", "tempo": 100}}, "invalid_session_id"),
        (
            {"session_id": "00000000-0000-4000-8000-000000000000", "seq": 1, "op": {"type": "set_tempo", "tempo": 100}},
            "session_not_found",
        ),
        (
            {"session_id": session_id, "seq": 1, "op": {"type": "set_tempo", "tempo": 100}, "big": "x" * 20000},
            "payload_too_large",
        ),
    ):
        ack = await alice.call("pattern_op", payload)
        assert (ack["ok"], ack["error"]) == (False, code), (payload.get("seq"), ack)
    assert await stored_state(server, session_id) == before
    assert (await server.services.log.position(session_id)).offset == offset_before
    ack = await alice.call(
        "pattern_op", {"session_id": session_id, "seq": 2, "op": {"type": "set_tempo", "tempo": 100}}
    )
    assert ack["ok"] is True


async def test_an_operation_on_a_deleted_track_is_not_found(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    bob = await player(server, clients, session_id, "bob")
    await alice.call(
        "pattern_op", {"session_id": session_id, "seq": 1, "op": {"type": "delete_track", "trackId": "t1"}}
    )
    ack = await bob.call(
        "pattern_op",
        {"session_id": session_id, "seq": 1, "op": {"type": "set_step", "trackId": "t1", "step": 0, "on": True}},
    )
    assert (ack["ok"], ack["error"], ack["seq"]) == (False, "not_found", 1)
    assert (await stored_state(server, session_id))["tracks"] in ([], {})


async def test_sixteen_tracks_at_most(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server, {"state": {"tracks": [track(f"t{i}") for i in range(16)]}})
    alice = await player(server, clients, session_id)
    ack = await alice.call(
        "pattern_op", {"session_id": session_id, "seq": 1, "op": {"type": "add_track", "track": track("new")}}
    )
    assert ack["error"] == "limit_reached"


async def test_a_published_session_refuses_operations_but_allows_presence(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    source = await new_pattern(server)
    async with aiohttp.ClientSession(base_url=server.url) as http, http.post(f"/api/sessions/{source}/publish") as r:
        published = (await r.json())["id"]
    alice = await player(server, clients, published)
    ack = await alice.call("pattern_op", {"session_id": published, "seq": 1, "op": {"type": "set_tempo", "tempo": 90}})
    assert (ack["ok"], ack["error"]) == (False, "forbidden") and "remix" in ack["message"]
    ack = await alice.call("pattern_join", {"session_id": published, "name": "Ann", "colour": "#ff8800"})
    assert ack["ok"] is True


async def test_rest_put_reaches_players_and_a_stale_if_match_does_not_clobber(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    async with aiohttp.ClientSession(base_url=server.url) as http:
        async with http.get(f"/api/sessions/{session_id}") as r:
            tag = r.headers["ETag"]
        await alice.call(
            "pattern_op",
            {"session_id": session_id, "seq": 1, "op": {"type": "set_step", "trackId": "t1", "step": 9, "on": True}},
        )
        async with http.put(
            f"/api/sessions/{session_id}", json={"state": full_state(tempo=70)}, headers={"If-Match": tag}
        ) as r:
            assert r.status == 412
        assert (await stored_state(server, session_id))["tracks"][0]["steps"][9] is True
        async with http.put(f"/api/sessions/{session_id}", json={"state": full_state(tempo=70)}) as r:
            assert r.status == 200  # no If-Match: last write wins, and every player hears it
    await alice.wait_for(lambda: bool(alice.named("pattern_state")))
    assert alice.named("pattern_state")[0]["data"]["state"]["tempo"] == 70


async def test_presence_join_cursor_leave_and_snapshot(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    ack = await alice.call("pattern_join", {"session_id": session_id, "name": "Alice", "colour": "#112233"})
    assert ack["ok"] is True and ack["present"] == 1
    cursor = {"session_id": session_id, "cursor": {"trackId": "t1", "step": 4}}
    first = await alice.call("pattern_cursor", cursor)
    second = await alice.call("pattern_cursor", cursor)
    assert (first["throttled"], second["throttled"]) == (False, True)
    bob = await player(server, clients, session_id, "bob")
    players = bob.named("session_snapshot")[0]["players"]
    assert [(p["name"], p["colour"], p["cursor"]) for p in players] == [
        ("Alice", "#112233", {"trackId": "t1", "step": 4})
    ]
    await alice.call("pattern_leave", {"session_id": session_id})
    await bob.wait_for(lambda: any(e["data"]["action"] == "leave" for e in bob.named("pattern_presence")))


def _documented_ack_fields(event: str) -> set[str]:
    """The fields of ``event``'s ok ack in docs/PROTOCOL.md's presence table."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "PROTOCOL.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith(f"| `{event}` | "))
    ack = row.split(" | ")[2]
    return set(re.findall(r'"([a-z_]+)"', ack[: ack.index("}")]))


async def test_presence_acks_are_the_documented_fields(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    ref = {"session_id": session_id}
    acks = {
        "pattern_join": await alice.call("pattern_join", {**ref, "name": "Alice", "colour": "#112233"}),
        "pattern_cursor": await alice.call("pattern_cursor", {**ref, "cursor": None}),
        "pattern_heartbeat": await alice.call("pattern_heartbeat", ref),
        "pattern_leave": await alice.call("pattern_leave", ref),
    }
    for event, ack in acks.items():
        assert ack["ok"] is True and ack["session_id"] == session_id, (event, ack)
        assert set(ack) == _documented_ack_fields(event), event


async def test_bad_presence_payloads(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    for payload in (
        {"session_id": session_id, "name": "A", "colour": "red"},
        {"session_id": session_id, "name": "<b>", "colour": "#112233"},
        {"session_id": session_id, "name": "A\u2028B", "colour": "#112233"},
        {"session_id": session_id, "colour": "#112233"},
    ):
        ack = await alice.call("pattern_join", payload)
        assert ack["error"] == "invalid_payload", payload
    ack = await alice.call("pattern_cursor", {"session_id": session_id, "cursor": None})
    assert ack["error"] == "not_found"  # not joined
    ack = await alice.call("pattern_cursor", {"session_id": session_id, "cursor": {"trackId": "t1", "step": 999}})
    assert ack["error"] == "invalid_payload"


async def test_the_eleventh_player_is_refused_and_may_still_watch(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await new_pattern(server)
    players = [await player(server, clients, session_id, f"u{i}") for i in range(11)]
    acks = [
        await p.call("pattern_join", {"session_id": session_id, "name": f"P{i}", "colour": "#000000"})
        for i, p in enumerate(players)
    ]
    assert [a["ok"] for a in acks] == [True] * 10 + [False]
    assert acks[10]["error"] == "session_full"
    # When a place may free: the first player's presence runs out unless it beats again.
    ttl_s = 30  # SESSIONHUB_PATTERNS_PRESENCE_TTL_S, its default
    assert 0 < acks[10]["retry_after_s"] <= ttl_s, acks[10]
    server.services.clock.shift_ms += 20_000  # the other ten beat; the first went silent
    for p in players[1:10]:
        assert (await p.call("pattern_heartbeat", {"session_id": session_id}))["ok"] is True
    later = await players[10].call("pattern_join", {"session_id": session_id, "name": "P10", "colour": "#000000"})
    assert later["error"] == "session_full" and later["retry_after_s"] <= ttl_s - 20, later
    await players[0].call("pattern_op", {"session_id": session_id, "seq": 1, "op": {"type": "set_tempo", "tempo": 111}})
    await players[10].wait_for(lambda: bool(ops_seen(players[10])))


async def test_players_who_vanish_expire(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    bob = await player(server, clients, session_id, "bob")
    await bob.call("pattern_join", {"session_id": session_id, "name": "Bob", "colour": "#445566"})
    # A player of a node that crashed: nobody saw its socket close, so only the TTL ends it.
    expires_at = server.services.clock.now_ms() + 30_000
    ghost = {"id": "ghost", "user": "alice", "name": "Alice", "colour": "#112233", "cursor": None}
    await server.services.redis.hset(
        server.services.keys.pattern_players(session_id),
        "ghost",
        json.dumps({**ghost, "expires_at": expires_at, "cursor_at": 0}),
    )  # type: ignore[misc]
    server.services.clock.shift_ms = 20_000
    try:
        ack = await bob.call("pattern_heartbeat", {"session_id": session_id})
        assert ack["present"] == 2
        server.services.clock.shift_ms = 31_000
        await bob.call("pattern_heartbeat", {"session_id": session_id})
        ack = await bob.call("pattern_heartbeat", {"session_id": session_id})
    finally:
        server.services.clock.shift_ms = 0
    assert ack["present"] == 1

    def leaves() -> list[Any]:
        return [e["data"] for e in bob.named("pattern_presence") if e["data"]["action"] == "leave"]

    await bob.wait_for(lambda: bool(leaves()))  # the leave is fanned out after the ack, not before it
    assert leaves()[0]["reason"] == "timeout"


async def test_a_player_whose_socket_closed_leaves_at_once(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    bob = await player(server, clients, session_id, "bob")
    joined = await alice.call("pattern_join", {"session_id": session_id, "name": "Alice", "colour": "#112233"})
    await bob.call("pattern_join", {"session_id": session_id, "name": "Bob", "colour": "#445566"})
    await alice.sio.disconnect()  # no leave sent: the server sees the socket close
    await bob.wait_for(
        lambda: any(
            e["data"] == {"action": "leave", "player_id": joined["player_id"], "reason": "left"}
            for e in bob.named("pattern_presence")
        )
    )
    assert (await bob.call("pattern_heartbeat", {"session_id": session_id}))["present"] == 1


async def test_a_reconnecting_player_replays_missed_operations(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    snap = alice.named("session_snapshot")[0]
    writer = await player(server, clients, session_id, "writer")
    for step in range(3):
        await writer.call(
            "pattern_op",
            {
                "session_id": session_id,
                "seq": step,
                "op": {"type": "set_step", "trackId": "t1", "step": step + 20, "on": True},
            },
        )
    late = Client(server.url, server.token("late", perms=GUEST_PERMISSIONS))
    clients.append(late)
    await late.connect()
    ack = await late.call(
        "subscribe_on_session", {"session_id": session_id, "epoch": snap["epoch"], "offset": snap["offset"]}
    )
    assert ack["recovered"] is True and ack["missed"] == 3
    assert [e["data"]["op"]["step"] for e in late.named("pattern_op")] == [20, 21, 22]


async def test_two_nodes_editing_one_session_converge(
    redis_process: RedisProcess, redis: Any, tmp_path: Path, clients: list[Client]
) -> None:
    one = await start_server(redis_process.url, tmp_path / "one")
    two = await start_server(redis_process.url, tmp_path / "two")
    try:
        session_id = await new_pattern(one, {"state": {"tracks": [track("t1", steps=[False] * 128)]}})
        a = await player(one, clients, session_id, "a")
        b = await player(two, clients, session_id, "b")

        async def edit(client: Client, steps: range) -> None:
            for step in steps:
                op = {"type": "set_step", "trackId": "t1", "step": step, "on": True}
                ack = await client.call("pattern_op", {"session_id": session_id, "seq": step, "op": op})
                assert ack["ok"] is True

        await asyncio.gather(edit(a, range(0, 64)), edit(b, range(64, 128)))
        for client in (a, b):
            await client.wait_for(lambda c=client: len(ops_seen(c)) == 128)  # type: ignore[misc]
        assert (await stored_state(one, session_id))["tracks"][0]["steps"] == [True] * 128
        assert [e["offset"] for e in a.named("pattern_op")] == [e["offset"] for e in b.named("pattern_op")]
    finally:
        for client in clients:  # a server stops only once its WebSockets are gone
            await client.close()
        await one.stop()
        await two.stop()


@pytest.mark.parametrize(
    "event", ["pattern_op", "pattern_join", "pattern_cursor", "pattern_heartbeat", "pattern_leave"]
)
async def test_events_on_a_voice_session_are_session_not_found(
    server: ServerUnderTest, clients: list[Client], event: str
) -> None:
    voice_id = await server.create_session("alice")
    client = await player(server, clients, await new_pattern(server))
    payloads = {
        "pattern_op": {"seq": 1, "op": {"type": "set_tempo", "tempo": 100}},
        "pattern_join": {"name": "A", "colour": "#000000"},
        "pattern_cursor": {"cursor": None},
    }
    ack = await client.call(event, {"session_id": voice_id, **payloads.get(event, {})})
    assert ack["error"] == "session_not_found"


async def test_a_flood_is_rate_limited_and_the_connection_stays_usable(
    redis_process: RedisProcess, redis: Any, tmp_path: Path, clients: list[Client]
) -> None:
    server = await start_server(redis_process.url, tmp_path, event_rate_per_s=5.0, event_burst=5)
    try:
        session_id = await new_pattern(server, {"state": {"tracks": [track("t1", steps=[False] * 16)]}})
        flooder = await player(server, clients, session_id)
        acks = [
            await flooder.call(
                "pattern_op",
                {
                    "session_id": session_id,
                    "seq": i,
                    "op": {"type": "set_step", "trackId": "t1", "step": i, "on": True},
                },
            )
            for i in range(12)
        ]
        accepted = [i for i, ack in enumerate(acks) if ack["ok"]]
        assert len(accepted) < 12 and {a["error"] for a in acks if not a["ok"]} == {"rate_limited"}
        steps = (await stored_state(server, session_id))["tracks"][0]["steps"]
        assert [i for i in range(12) if steps[i]] == accepted
        # Each refusal says when the next token comes (at 5/s, within 0.2 s); after that wait
        # (the server's word, not a guess) the connection is served again.
        waits = [ack["retry_after_s"] for ack in acks if not ack["ok"]]
        assert all(0 < wait_s <= 0.2 for wait_s in waits), waits
        await asyncio.sleep(waits[-1])
        ack = await flooder.call(
            "pattern_op", {"session_id": session_id, "seq": 99, "op": {"type": "set_tempo", "tempo": 99}}
        )
        assert ack["ok"] is True
    finally:
        for client in clients:
            await client.close()
        await server.stop()


async def test_a_reconnecting_player_replaces_only_its_own_old_entry(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    mallory = await player(server, clients, session_id, "mallory")
    first = await alice.call("pattern_join", {"session_id": session_id, "name": "Alice", "colour": "#112233"})
    old_id = first["player_id"]
    ack = await mallory.call(
        "pattern_join", {"session_id": session_id, "name": "M", "colour": "#000000", "replaces": old_id}
    )
    assert ack["present"] == 2  # another user's entry is not hers to drop
    again = await player(server, clients, session_id, "alice")
    ack = await again.call(
        "pattern_join", {"session_id": session_id, "name": "Alice", "colour": "#112233", "replaces": old_id}
    )
    assert ack["present"] == 2
    players = await server.services.redis.hkeys(server.services.keys.pattern_players(session_id))  # type: ignore[misc]
    assert old_id not in players and ack["player_id"] in players


async def test_one_connection_is_present_in_at_most_max_subscriptions_patterns(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    # Each presence is a player in Redis, a join in the log and a leave to run when the socket
    # closes: one connection joined as many sessions as it named (150 in a probe).
    srv = await start_server(redis_process.url, tmp_path, max_subscriptions=2)
    clients: list[Client] = []
    try:
        ids = [await new_pattern(srv) for _ in range(3)]
        mallory = Client(srv.url, srv.token("mallory", perms=GUEST_PERMISSIONS, guest=True))
        clients.append(mallory)
        await mallory.connect()

        async def join(session_id: str) -> dict[str, Any]:
            ack: dict[str, Any] = await mallory.call(
                "pattern_join", {"session_id": session_id, "name": "M", "colour": "#000000"}
            )
            return ack

        assert [(await join(i))["ok"] for i in ids[:2]] == [True, True]
        refused = await join(ids[2])
        assert refused.get("error") == "limit_reached" and refused["limit"] == 2, refused
        assert (await join(ids[1]))["ok"] is True  # joining again where it is present is no new place
        left = await mallory.call("pattern_leave", {"session_id": ids[0]})
        assert left["was_present"] is True
        assert (await join(ids[2]))["ok"] is True  # a place given back
    finally:
        for client in clients:
            await client.close()
        await srv.stop()


async def test_another_users_client_id_cannot_make_ones_ops_look_retried(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """Retries were recognised by `client_id` alone: another player sending a victim page's id
    with a seq ahead of it made the page's next ops "duplicate", answered ok and never applied."""
    session_id = await new_pattern(server)
    victim = await player(server, clients, session_id, "guest-1")
    other = await player(server, clients, session_id, "guest-2")

    def swing(seq: int, value: int) -> dict[str, Any]:
        op = {"type": "set_swing", "swing": value}
        return {"session_id": session_id, "client_id": "page-of-guest-1", "seq": seq, "op": op}

    forged = await other.call("pattern_op", swing(1_000_000, 10))
    assert forged["ok"] is True and forged["duplicate"] is False, forged
    ack = await victim.call("pattern_op", swing(4, 40))
    assert ack["ok"] is True and ack["duplicate"] is False, ack
    assert (await stored_state(server, session_id))["swing"] == 40
    again = await victim.call("pattern_op", swing(4, 40))  # its own retry still is one
    assert again["duplicate"] is True and again["offset"] == ack["offset"], again


async def test_a_retried_op_whose_log_is_gone_is_answered_with_no_epoch_not_none(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """A Redis that lost the log's metadata and kept the rest (an evicting Redis, a partial
    restore): the retry's ack said `"epoch": "None"`, a position a client then resumed from. The
    log gone is the empty epoch, as `session_resync` says it; so is the ETag."""
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "guest-1")
    swing = {"type": "set_swing", "swing": 30}
    op = {"session_id": session_id, "client_id": "page-of-guest-1", "seq": 1, "op": swing}
    ack = await alice.call("pattern_op", op)
    assert ack["ok"] and ack["epoch"], ack
    await server.services.redis.delete(server.services.keys.log_meta(session_id))
    again = await alice.call("pattern_op", op)
    assert again["duplicate"] is True and again["epoch"] == "" and again["offset"] == ack["offset"], again
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/sessions/{session_id}") as answer:
            assert answer.status == 200 and "None" not in answer.headers["ETag"], answer.headers["ETag"]


async def test_a_player_leaving_a_pattern_deleted_meanwhile_logs_no_failure(
    server: ServerUnderTest, clients: list[Client], caplog: pytest.LogCaptureFixture
) -> None:
    """The page of a pattern an operator had just deleted closed: its presence's farewell met
    `session_not_found`, an expected case, and logged a warning with a traceback (audit
    "operatorday"). Nothing is left to undo, and nothing is said."""
    caplog.set_level(logging.DEBUG, logger="handlers.connection_events")
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "guest-1")
    joined = await alice.call("pattern_join", {"session_id": session_id, "name": "Ann", "colour": "#336699"})
    assert joined["ok"], joined
    await server.services.redis.delete(server.services.keys.session(session_id))  # deleted meanwhile
    await alice.close()
    said: list[logging.LogRecord] = []
    for _ in range(500):  # until the farewell has run and said what it met (bounded)
        said = [r for r in caplog.records if "farewell" in r.getMessage()]
        if said:
            break
        await asyncio.sleep(0.02)
    assert [(r.levelno, "session_not_found" in r.getMessage()) for r in said] == [(logging.DEBUG, True)], said


async def test_one_user_holds_at_most_three_places_and_leaves_the_rest_to_others(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """One guest token's ten connections took every place of a pattern, and nobody else could
    join or edit (audit "anonhostile"). A user holds SESSIONHUB_PATTERNS_PLACES_PER_USER (3):
    their fourth tab watches, and joins once one of the others has left."""
    session_id = await new_pattern(server)
    mine = [await player(server, clients, session_id, "squatter") for _ in range(10)]
    join = {"session_id": session_id, "name": "S", "colour": "#000000"}
    acks = [await p.call("pattern_join", join) for p in mine]
    assert [a["ok"] for a in acks] == [True] * 3 + [False] * 7, acks
    assert {(a["error"], a["limit"]) for a in acks[3:]} == {("limit_reached", 3)}, acks[3]
    assert "3 tabs or devices" in acks[3]["message"]
    # Everyone else can still play and edit.
    others = [await player(server, clients, session_id, f"u{i}") for i in range(7)]
    for i, p in enumerate(others):
        assert (await p.call("pattern_join", {**join, "name": f"P{i}"}))["ok"] is True
    ack = await others[0].call(
        "pattern_op", {"session_id": session_id, "seq": 1, "op": {"type": "set_tempo", "tempo": 99}}
    )
    assert ack["ok"] is True, ack
    # A reconnect that replaces one of the user's own places is no fourth one.
    again = await mine[3].call("pattern_join", {**join, "replaces": acks[0]["player_id"]})
    assert again["ok"] is True, again
    # One of theirs leaves: another of theirs takes its place.
    await mine[1].call("pattern_leave", {"session_id": session_id})
    assert (await mine[4].call("pattern_join", join))["ok"] is True
    assert (await mine[5].call("pattern_join", join))["error"] == "limit_reached"
