"""Hostile values at the edge (issue 20, finding 10): numbers beyond a float, names that reorder
or break the text they are shown in."""

from __future__ import annotations

import json

import aiohttp
import pytest
import pytest_asyncio

from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_events import new_pattern, player, stored_state
from tests.patterns.test_http import full_state

HUGE = "1" + "0" * 400  # 10^400: a valid JSON number no float can hold


@pytest_asyncio.fixture
async def server(reading_server: ServerUnderTest) -> ServerUnderTest:
    """One server for the module: every test here is refused, or writes only a pattern it made."""
    return reading_server


async def _raw(
    server: ServerUnderTest, method: str, path: str, body: str, token: str | None = None
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, data=body, headers=headers) as r,
    ):
        return r.status, await r.json()


async def test_a_huge_number_in_a_pattern_put_is_a_validation_failure(server: ServerUnderTest) -> None:
    session_id = await new_pattern(server)
    for field in ("tempo", "swing"):
        state = full_state()
        state[field] = "@@"
        body = '{"state": ' + json.dumps(state).replace('"@@"', HUGE) + "}"
        status, answer = await _raw(server, "PUT", f"/api/sessions/{session_id}", body)
        assert status == 400 and answer["error"] == "Validation failed", answer


async def test_a_huge_number_in_a_live_op_is_invalid_payload(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern(server)
    alice = await player(server, clients, session_id)
    before = await stored_state(server, session_id)
    for op in ({"type": "set_tempo", "tempo": 10**400}, {"type": "set_swing", "swing": -(10**400)}):
        ack = await alice.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op})
        assert (ack["ok"], ack["error"]) == (False, "invalid_payload"), ack
    assert await stored_state(server, session_id) == before


BAD_NAMES = ["a\u202eb", "a\x07b", "a\u2066b", "line\nbreak", "a\u0085b", "\u0085ab", "ab\u2028", "\tab"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_a_voice_session_name_refuses_control_and_bidi_characters(server: ServerUnderTest, name: str) -> None:
    body = json.dumps({"session_name": name})
    status, answer = await _raw(server, "POST", "/voicebot/create_session", body, server.token("alice"))
    assert status == 400 and answer["error"] == "invalid_payload", answer
    assert await server.services.voice.active_id("alice") is None


async def test_a_bot_start_name_refuses_bidi_characters(server: ServerUnderTest) -> None:
    body = json.dumps({"text": "/start evil\u202eeman"})
    status, answer = await _raw(server, "POST", "/voicebot/bot/command", body, server.token("alice"))
    assert status == 400 and answer["error"] == "invalid_payload", answer
    assert await server.services.voice.active_id("alice") is None


@pytest.mark.parametrize("name", ["a\u202eb", "a\u2067b", "a\u202ab"])
async def test_a_pattern_name_refuses_bidi_characters(server: ServerUnderTest, name: str) -> None:
    body = json.dumps({"name": name, "state": full_state()})
    status, answer = await _raw(server, "POST", "/api/sessions", body)
    assert status == 400 and answer["error"] == "Validation failed", answer
