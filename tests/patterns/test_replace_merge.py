"""A PUT or PATCH that leaves out effects, scale or loopRegion keeps the stored ones, as
Keyboardia's ``mergeStateReplacement`` does: its own client saves ``{tracks, tempo, swing,
version}`` only. The merge happens in the write's own Lua step, in either storage form, and the
logged ``pattern_state`` event, the ETag and the size kept by deltas all follow the merged state."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest

from storage.patterns import layout
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_events import new_pattern, player, stored_state
from tests.patterns.test_http import full_state
from tests.patterns.test_state_layout import fields_of, old_form_state

EFFECTS = {
    "bypass": True,
    "reverb": {"decay": 4.5, "wet": 0.5},
    "delay": {"time": "4n", "feedback": 0.2, "wet": 0.3},
    "chorus": {"frequency": 2, "depth": 0.4, "wet": 0.1},
    "distortion": {"amount": 0.25, "wet": 0.3},
}
SCALE = {"root": "F#", "scaleId": "dorian", "locked": False}
LOOP = {"start": 2, "end": 9}


async def write(server: ServerUnderTest, method: str, session_id: str, body: Any) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.url}/api/sessions/{session_id}", json=body) as r,
    ):
        return r.status, r.headers.get("ETag", "")


async def read(server: ServerUnderTest, session_id: str) -> tuple[dict[str, Any], str]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/sessions/{session_id}") as r:
        assert r.status == 200
        return (await r.json())["state"], r.headers["ETag"]


def state_events(client: Client) -> list[dict[str, Any]]:
    return [event for event in client.named("pattern_state") if "state" in event["data"]]


async def assert_size_exact(server: ServerUnderTest, session_id: str) -> None:
    fields = await fields_of(server, session_id)
    assert layout.is_split(fields) and "state" not in fields
    assert int(fields[layout.BYTES]) == layout.compact_size(await stored_state(server, session_id))


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
async def test_a_save_of_the_origin_apps_four_fields_keeps_the_live_ones(
    server: ServerUnderTest, clients: list[Client], method: str
) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    # Set live, the way the origin app sets them (never by its REST saves).
    for seq, op in enumerate(
        (
            {"type": "set_effects", "effects": EFFECTS},
            {"type": "set_scale", "scale": SCALE},
            {"type": "set_loop_region", "loopRegion": LOOP},
        )
    ):
        assert (await alice.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op}))["ok"] is True

    saved = full_state(tempo=133)  # {tracks, tempo, swing, version}
    status, etag = await write(server, method, session_id, {"state": saved})
    assert status == 200
    state, read_etag = await read(server, session_id)
    assert (state["effects"], state["scale"], state["loopRegion"], state["tempo"]) == (EFFECTS, SCALE, LOOP, 133)
    assert read_etag == etag
    await assert_size_exact(server, session_id)
    # The players were told the merged state, at the ETag's offset.
    await alice.wait_for(lambda: len(state_events(alice)) == 1)
    event = state_events(alice)[0]
    assert event["data"]["state"] == state and etag == f'"{event["epoch"]}:{event["offset"]}"'


async def test_given_fields_win_a_null_loop_clears_and_null_effects_are_refused(server: ServerUnderTest) -> None:
    session_id = await new_pattern(server, {"state": full_state(effects=EFFECTS, scale=SCALE, loopRegion=LOOP)})
    other = {"root": "C", "scaleId": "natural-minor", "locked": True}
    status, _ = await write(server, "PUT", session_id, {"state": full_state(scale=other, loopRegion=None)})
    assert status == 200
    state, _ = await read(server, session_id)
    assert (state["effects"], state["scale"], state["loopRegion"]) == (EFFECTS, other, None)
    await assert_size_exact(server, session_id)
    # The cleared loop is a stored null: the next save without it keeps it cleared.
    assert (await write(server, "PATCH", session_id, {"state": full_state()}))[0] == 200
    assert (await read(server, session_id))[0]["loopRegion"] is None
    # Null is no way to keep effects or scale: refused, as the origin app's API refuses it.
    before = await fields_of(server, session_id)
    for field in ("effects", "scale"):
        for method in ("PUT", "PATCH"):
            status, _ = await write(server, method, session_id, {"state": full_state(**{field: None})})
            assert status == 400, (field, method)
    assert await fields_of(server, session_id) == before


async def test_a_pattern_stored_whole_keeps_its_fields_too(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    key = server.services.keys.session(session_id)
    split = [name for name in await fields_of(server, session_id) if name.startswith(layout.PREFIX)]
    await server.services.redis.hdel(key, *split)  # type: ignore[misc]
    old = old_form_state()
    await server.services.redis.hset(key, "state", json.dumps(old, separators=(",", ":")))  # type: ignore[misc]
    alice = await player(server, clients, session_id)

    assert (await write(server, "PUT", session_id, {"state": full_state(tempo=61)}))[0] == 200
    state, _ = await read(server, session_id)
    assert (state["effects"], state["scale"], state["loopRegion"]) == (
        old["effects"],
        old["scale"],
        old["loopRegion"],
    )
    await assert_size_exact(server, session_id)
    await alice.wait_for(lambda: len(state_events(alice)) == 1)
    assert state_events(alice)[0]["data"]["state"] == state
    # A live op after it edits the merged state exactly.
    op = {"type": "set_tempo", "tempo": 62}
    assert (await alice.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True
    await assert_size_exact(server, session_id)
