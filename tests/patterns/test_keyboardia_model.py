"""Keyboardia's data model round-trips: FM params, per-track swing, tied steps, its scales and
delay times, in its own sample sessions (``fixtures/``, copied as data from Keyboardia's
``scripts/``), through create, GET, PUT, remix, publish and live ops; out-of-range values are
refused naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_events import new_pattern, ops_seen, player, stored_state
from tests.patterns.test_http import full_state, track

FIXTURES = Path(__file__).resolve().parent / "fixtures"
STATE_FIELDS = ("tracks", "tempo", "swing", "effects", "scale", "loopRegion", "version")
TRACK_DEFAULTS = {"muted": False, "soloed": False, "transpose": 0, "stepCount": 16}


def sample(name: str) -> dict[str, Any]:
    """One of Keyboardia's sample sessions, as its scripts post it (direct format)."""
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return loaded


def state_of(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if k in STATE_FIELDS}


def stored_shape(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` as sessionhub stores it: track defaults filled, steps and locks padded to 128."""
    out = copy.deepcopy(state)
    for number, given in enumerate(out["tracks"]):
        filled = {**TRACK_DEFAULTS, **given}
        filled["steps"] = given["steps"] + [False] * (128 - len(given["steps"]))
        filled["parameterLocks"] = given["parameterLocks"] + [None] * (128 - len(given["parameterLocks"]))
        out["tracks"][number] = filled
    return out


async def get_session(server: ServerUnderTest, session_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/sessions/{session_id}") as r:
        assert r.status == 200, await r.text()
        body: dict[str, Any] = await r.json()
        return body


async def send(server: ServerUnderTest, method: str, path: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path, json=body) as r:
        return r.status, await r.json() if r.status != 204 else None


@pytest.mark.parametrize("name", ["advanced-features-showcase.json", "303-slide.json"])
async def test_keyboardias_samples_round_trip_through_every_copy(server: ServerUnderTest, name: str) -> None:
    state = {"version": 1, **state_of(sample(name))}
    expected = stored_shape(state)
    session_id = await new_pattern(server, {"name": sample(name)["name"], "state": state})
    got = (await get_session(server, session_id))["state"]
    assert {k: got[k] for k in expected} == expected
    tracks = got["tracks"]
    if name == "303-slide.json":
        assert tracks[0]["parameterLocks"][1] == {"tie": True}
    else:
        assert (tracks[0]["fmParams"], tracks[0]["swing"]) == ({"harmonicity": 2.5, "modulationIndex": 8}, 15)

    # A PUT of the state as read stores it unchanged; remix and publish copy it whole.
    status, _ = await send(server, "PUT", f"/api/sessions/{session_id}", {"state": got})
    assert status == 200
    assert (await get_session(server, session_id))["state"] == got
    for route in ("remix", "publish"):
        status, made = await send(server, "POST", f"/api/sessions/{session_id}/{route}", {})
        assert status == 201, made
        assert (await get_session(server, made["id"]))["state"] == got, route


async def test_live_ops_carry_the_new_fields(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    fm = track("fm", sampleId="tone:fm-bass", fmParams={"harmonicity": 0.5, "modulationIndex": 20}, swing=100)
    ops: list[dict[str, Any]] = [
        {"type": "add_track", "track": fm},
        {"type": "set_lock", "trackId": "fm", "step": 1, "lock": {"tie": True}},
        {"type": "set_lock", "trackId": "t1", "step": 2, "lock": {"pitch": 3, "tie": False}},
        {"type": "set_scale", "scale": {"root": "D", "scaleId": "natural-minor", "locked": True}},
    ]
    for seq, op in enumerate(ops):
        ack = await alice.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op})
        assert ack["ok"] is True, (op, ack)
    await alice.wait_for(lambda: len(ops_seen(alice)) == len(ops))
    echoed = [data["op"] for data in ops_seen(alice)]
    assert echoed[0]["track"]["fmParams"] == fm["fmParams"] and echoed[0]["track"]["swing"] == 100
    assert echoed[1]["lock"] == {"tie": True}
    state = await stored_state(server, session_id)
    added = state["tracks"][1]
    assert (added["fmParams"], added["swing"], added["parameterLocks"][1]) == (fm["fmParams"], 100, {"tie": True})
    assert state["tracks"][0]["parameterLocks"][2] == {"pitch": 3, "tie": False}
    assert state["scale"]["scaleId"] == "natural-minor"
    # A later op on the track keeps what it does not change.
    op = {"type": "set_track_volume", "trackId": "fm", "volume": 0.5}
    assert (await alice.call("pattern_op", {"session_id": session_id, "seq": 10, "op": op}))["ok"] is True
    assert (await stored_state(server, session_id))["tracks"][1]["fmParams"] == fm["fmParams"]


def effects_with(time: str) -> dict[str, Any]:
    return {
        "reverb": {"decay": 2, "wet": 0},
        "delay": {"time": time, "feedback": 0.3, "wet": 0},
        "chorus": {"frequency": 1.5, "depth": 0.5, "wet": 0},
        "distortion": {"amount": 0.4, "wet": 0},
    }


async def test_keyboardias_delay_times_are_accepted_beside_the_old_ones(server: ServerUnderTest) -> None:
    # Its bars (1m, 2m, 4m) as well as the times stored patterns may hold (dotted ones included).
    for time in ("1m", "2m", "4m", "4n.", "32n", "8t"):
        session_id = await new_pattern(server, {"state": full_state(effects=effects_with(time))})
        assert (await get_session(server, session_id))["state"]["effects"]["delay"]["time"] == time
    status, answer = await send(server, "POST", "/api/sessions", {"state": full_state(effects=effects_with("3m"))})
    assert status == 400 and any(d.startswith("state.effects.delay.time:") for d in answer["details"]), answer


async def test_keyboardias_scales_are_accepted_beside_the_old_ones(server: ServerUnderTest) -> None:
    for scale_id in ("natural-minor", "minor", "minor-pentatonic", "whole-tone"):
        scale = {"root": "A", "scaleId": scale_id, "locked": False}
        session_id = await new_pattern(server, {"state": full_state(scale=scale)})
        assert (await get_session(server, session_id))["state"]["scale"] == scale
    for scale_id in ("toString", "__proto__", "natural_minor"):
        scale = {"root": "C", "scaleId": scale_id, "locked": False}
        status, answer = await send(server, "POST", "/api/sessions", {"state": full_state(scale=scale)})
        assert status == 400 and any(d.startswith("state.scale.scaleId:") for d in answer["details"]), answer


@pytest.mark.parametrize(
    ("fields", "lock", "refusal"),
    [
        ({"fmParams": {"harmonicity": 0.4, "modulationIndex": 1}}, None, "fmParams.harmonicity: must be between"),
        ({"fmParams": {"harmonicity": 10.5, "modulationIndex": 1}}, None, "fmParams.harmonicity: must be between"),
        ({"fmParams": {"harmonicity": 1, "modulationIndex": 20.5}}, None, "fmParams.modulationIndex: must be between"),
        ({"fmParams": {"harmonicity": 1, "modulationIndex": -1}}, None, "fmParams.modulationIndex: must be between"),
        ({"fmParams": {"harmonicity": 1}}, None, "fmParams.modulationIndex: Field required"),
        ({"fmParams": {"harmonicity": 1, "modulationIndex": 1, "carrier": 2}}, None, "fmParams.carrier: Extra inputs"),
        ({"fmParams": {"harmonicity": "2", "modulationIndex": 1}}, None, "fmParams.harmonicity: must be a number"),
        ({"fmParams": [1, 2]}, None, "fmParams: Input should be"),
        ({"swing": 101}, None, "swing: must be between"),
        ({"swing": -1}, None, "swing: must be between"),
        ({"swing": "10"}, None, "swing: must be a number"),
        ({"swing": True}, None, "swing: must be a number"),
        ({}, {"tie": "yes"}, "parameterLocks.0.tie: Input should be a valid boolean"),
        ({}, {"tie": 1}, "parameterLocks.0.tie: Input should be a valid boolean"),
    ],
)
async def test_out_of_range_new_fields_are_refused_naming_them(
    server: ServerUnderTest, fields: dict[str, Any], lock: dict[str, Any] | None, refusal: str
) -> None:
    bad = track(**fields, parameterLocks=[lock] if lock else [None])
    session_id = await new_pattern(server)
    before = await stored_state(server, session_id)
    for method, target in (("POST", "/api/sessions"), ("PUT", f"/api/sessions/{session_id}")):
        status, answer = await send(server, method, target, {"state": full_state(tracks=[bad])})
        assert status == 400 and answer["error"] == "Validation failed", (method, answer)
        assert any(detail.startswith(f"state.tracks.0.{refusal}") for detail in answer["details"]), answer
    assert await stored_state(server, session_id) == before
