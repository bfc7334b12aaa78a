"""Pattern sessions at their edges (issue 21): numbers as stored, the size limit for live edits,
retried ops, the 11th player, presence and the ETag, rate-limited acks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from storage.patterns import repository as pattern_repository
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest
from tests.patterns.test_events import new_pattern, ops_seen, player, stored_state
from tests.patterns.test_http import track


async def _get(server: ServerUnderTest, session_id: str) -> tuple[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/sessions/{session_id}") as r:
        assert r.status == 200
        return r.headers["ETag"], await r.json()


async def test_live_numbers_are_stored_as_echoed(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    op = {"type": "set_tempo", "tempo": 100.12345678901235}
    assert (await alice.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True
    volume = {"type": "set_track_volume", "trackId": "t1", "volume": 0.1234567890123456789}
    assert (await alice.call("pattern_op", {"session_id": session_id, "seq": 2, "op": volume}))["ok"] is True
    await alice.wait_for(lambda: len(ops_seen(alice)) == 2)
    echoed = [data["op"] for data in ops_seen(alice)]
    _, body = await _get(server, session_id)
    assert body["state"]["tempo"] == echoed[0]["tempo"]
    assert body["state"]["tracks"][0]["volume"] == echoed[1]["volume"]
    # A PUT keeps the same precision, and the next op's re-encoding of the state keeps it too.
    async with aiohttp.ClientSession() as http:
        state = {**body["state"], "swing": 12.345678901234567}
        async with http.put(f"{server.url}/api/sessions/{session_id}", json={"state": state}) as r:
            assert r.status == 200, await r.text()
    _, before = await _get(server, session_id)
    assert (
        await alice.call("pattern_op", {"session_id": session_id, "seq": 3, "op": {"type": "set_tempo", "tempo": 90}})
    )["ok"]
    _, after = await _get(server, session_id)
    assert after["state"]["swing"] == before["state"]["swing"]


async def test_live_edits_cannot_outgrow_a_save(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    lock = {"pitch": -24, "volume": 0.12345678901234}
    acks = []
    for number in range(16):
        big = track(f"big{number}", steps=[True] * 128, parameterLocks=[lock] * 128, stepCount=128)
        ack = await alice.call(
            "pattern_op", {"session_id": session_id, "seq": number, "op": {"type": "add_track", "track": big}}
        )
        acks.append(ack)
        if not ack["ok"]:
            break
    assert acks[-1]["ok"] is False and acks[-1]["error"] == "payload_too_large" and acks[-1]["seq"] == len(acks) - 1
    _, body = await _get(server, session_id)
    # Sent as a browser's JSON.stringify would: compact.
    compact = json.dumps({"state": body["state"]}, separators=(",", ":"))
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{server.url}/api/sessions/{session_id}", data=compact, headers=headers) as r:
            assert r.status == 200, await r.text()


async def test_a_retried_op_is_applied_once(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    toggle = {
        "session_id": session_id,
        "seq": 7,
        "client_id": "tab-abcdef01",
        "op": {"type": "toggle_step", "trackId": "t1", "step": 1},
    }
    first = await alice.call("pattern_op", toggle)
    again = await alice.call("pattern_op", toggle)
    assert first["ok"] and again["ok"] and (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["offset"] == first["offset"]
    # The same client after a reconnect (a new socket): still answered, not applied.
    reconnected = await player(server, clients, session_id, "alice")
    third = await reconnected.call("pattern_op", toggle)
    assert third["duplicate"] is True and third["offset"] == first["offset"]
    assert (await stored_state(server, session_id))["tracks"][0]["steps"][1] is True
    # Without a client id, a retry on one connection is recognised by the connection.
    plain = {k: v for k, v in toggle.items() if k != "client_id"}
    assert (await alice.call("pattern_op", plain))["duplicate"] is False
    assert (await alice.call("pattern_op", plain))["duplicate"] is True
    assert (await stored_state(server, session_id))["tracks"][0]["steps"][1] is False


async def test_a_connection_uses_a_few_client_ids_not_one_per_op(
    server: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    # Each client_id is an hour-long key in Redis: a new one per op left a key per op.
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    acks = []
    for n in range(6):
        op = {"type": "toggle_step", "trackId": "t1", "step": n}
        acks.append(
            await alice.call("pattern_op", {"session_id": session_id, "seq": 1, "client_id": f"tab-{n:08d}", "op": op})
        )
    assert [a["ok"] for a in acks] == [True] * 4 + [False] * 2, acks
    assert acks[4]["error"] == "invalid_payload" and acks[4]["seq"] == 1
    assert await redis.hlen(server.services.keys.pattern_ops_seen(session_id)) == 4
    # The ids it has used go on working, and so does a connection's own identity.
    op = {"type": "toggle_step", "trackId": "t1", "step": 9}
    assert (
        await alice.call("pattern_op", {"session_id": session_id, "seq": 2, "client_id": "tab-00000000", "op": op})
    )["ok"]
    assert (await alice.call("pattern_op", {"session_id": session_id, "seq": 3, "op": op}))["ok"]


async def test_the_clients_remembered_per_pattern_are_bounded_and_expire(
    server: ServerUnderTest, clients: list[Client], redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop of new connections, each a new client, made an hour-long key each (4,300 a second
    from one address): one hash per session now, bounded, expiring an hour after its last op."""
    monkeypatch.setattr(pattern_repository, "OP_SEEN_MAX_CLIENTS", 3)
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id, "alice")
    for n in range(6):
        op = {"type": "toggle_step", "trackId": "t1", "step": n}
        ack = await alice.call(
            "pattern_op", {"session_id": session_id, "seq": 1, "client_id": f"tab-{n:08d}", "op": op}
        )
        if n == 3:  # a connection's client ids are 4 at most: a new connection for the rest
            alice = await player(server, clients, session_id, "alice")
            ack = await alice.call(
                "pattern_op", {"session_id": session_id, "seq": 1, "client_id": f"tab-{n:08d}", "op": op}
            )
        assert ack["ok"] is True, ack
    seen = server.services.keys.pattern_ops_seen(session_id)
    assert await redis.hlen(seen) == 3
    assert 0 < await redis.pttl(seen) <= pattern_repository.OP_SEEN_TTL_MS
    assert [key async for key in redis.scan_iter(match=f"*{{{session_id}}}:opseen:*")] == []
    # The last client is remembered: its retry is answered, not applied again.
    op = {"type": "toggle_step", "trackId": "t1", "step": 5}
    again = await alice.call("pattern_op", {"session_id": session_id, "seq": 1, "client_id": "tab-00000005", "op": op})
    assert again["duplicate"] is True


async def test_the_eleventh_player_watches_but_cannot_edit(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    players = [await player(server, clients, session_id, f"p{n}") for n in range(11)]
    for n, client in enumerate(players[:10]):
        ack = await client.call("pattern_join", {"session_id": session_id, "name": f"P{n}", "colour": "#112233"})
        assert ack["ok"] is True, ack
    late = players[10]
    assert (await late.call("pattern_join", {"session_id": session_id, "name": "Late", "colour": "#112233"}))[
        "error"
    ] == "session_full"
    op = {"session_id": session_id, "seq": 1, "op": {"type": "set_tempo", "tempo": 99}}
    refused = await late.call("pattern_op", op)
    assert (refused["ok"], refused["error"], refused["seq"]) == (False, "session_full", 1)
    assert (await players[0].call("pattern_op", op))["ok"] is True
    # A seat frees up: the watcher may edit again.
    await players[0].call("pattern_leave", {"session_id": session_id})
    assert (await late.call("pattern_op", {**op, "seq": 2}))["ok"] is True


async def test_presence_and_cursors_leave_the_etag_alone(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    etag, body = await _get(server, session_id)
    movers = [await player(server, clients, session_id, f"m{n}") for n in range(3)]
    for n, mover in enumerate(movers):
        await mover.call("pattern_join", {"session_id": session_id, "name": f"M{n}", "colour": "#112233"})
        await mover.call("pattern_cursor", {"session_id": session_id, "cursor": {"trackId": "t1", "step": n}})
    assert (await _get(server, session_id))[0] == etag
    async with aiohttp.ClientSession() as http:
        headers = {"If-Match": etag}
        state = {**body["state"], "tempo": 130}
        async with http.put(f"{server.url}/api/sessions/{session_id}", json={"state": state}, headers=headers) as r:
            assert r.status == 200, await r.text()
            new_etag = r.headers["ETag"]
        # An edit does move it: the old ETag is stale now.
        async with http.put(f"{server.url}/api/sessions/{session_id}", json={"state": state}, headers=headers) as r:
            assert r.status == 412
    assert (await _get(server, session_id))[0] == new_etag


async def test_rate_limited_acks_carry_the_seq(
    redis_process: RedisProcess, tmp_path: Path, clients: list[Client]
) -> None:
    server = await start_server(redis_process.url, tmp_path, event_burst=3, event_rate_per_s=0.1)
    try:
        session_id = await new_pattern(server)
        alice = await player(server, clients, session_id, "alice")
        acks = [
            await alice.call(
                "pattern_op", {"session_id": session_id, "seq": n, "op": {"type": "set_tempo", "tempo": 100}}
            )
            for n in range(1, 6)
        ]
        limited = [ack for ack in acks if not ack["ok"]]
        assert limited and all(ack["error"] == "rate_limited" for ack in limited)
        assert [ack["seq"] for ack in limited] == [n for n, ack in enumerate(acks, start=1) if not ack["ok"]]
    finally:
        for client in clients:
            await client.close()
        await server.stop()


LONE = "x\ud800y"  # a lone UTF-16 surrogate: JSON can say it ("\ud800"), UTF-8 cannot


async def test_a_name_with_a_lone_surrogate_is_refused_as_any_bad_text(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    """It reached Redis' cjson (or the link's UTF-8 encoding) and came back a 500 and an
    internal_error with a traceback, anonymously; every other text field answered 400."""
    async with aiohttp.ClientSession() as http:
        for body in ({"name": LONE}, {"state": {"tracks": [track(name=LONE)]}}):
            data = json.dumps(body)  # ensure_ascii: the surrogate travels as the escape "\ud800"
            async with http.post(f"{server.url}/api/sessions", data=data, headers=JSON) as r:
                assert r.status == 400, (body, await r.text())
        session_id = await new_pattern(server)
        async with http.patch(
            f"{server.url}/api/sessions/{session_id}", data=json.dumps({"name": LONE}), headers=JSON
        ) as r:
            assert r.status == 400, await r.text()
    alice = await player(server, clients, session_id, "alice")
    for op in ({"type": "set_name", "name": LONE}, {"type": "rename_track", "trackId": "t1", "name": LONE}):
        ack = await alice.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op})
        assert (ack["ok"], ack["error"]) == (False, "invalid_payload"), (op, ack)
    ack = await alice.call("pattern_join", {"session_id": session_id, "name": LONE, "colour": "#ff8800"})
    assert (ack["ok"], ack["error"]) == (False, "invalid_payload"), ack
    join = {"session_id": session_id, "name": "Alice", "colour": "#ff8800"}
    assert (await alice.call("pattern_join", join))["ok"] is True


JSON = {"Content-Type": "application/json"}
