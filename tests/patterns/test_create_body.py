"""The bodies a create takes as Keyboardia does: ``name`` beside a wrapped or a direct-format
state, other top-level keys ignored (never stored); and a PUT that sends ``name`` along."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest_asyncio

from tests.helpers import ServerUnderTest
from tests.patterns.test_http import full_state, track
from tests.patterns.test_keyboardia_model import sample, stored_shape


@pytest_asyncio.fixture
async def server(reading_server: ServerUnderTest) -> ServerUnderTest:
    """One server for the module: every test creates its own sessions."""
    return reading_server


async def post(server: ServerUnderTest, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(f"{server.url}/api/sessions", json=body) as r:
        return r.status, await r.json()


async def session(server: ServerUnderTest, session_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/sessions/{session_id}") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def stored_text(server: ServerUnderTest, session_id: str) -> str:
    fields = await server.services.redis.hgetall(server.services.keys.session(session_id))  # type: ignore[misc]
    return repr(fields)


async def test_a_name_beside_direct_fields_names_the_session(server: ServerUnderTest) -> None:
    status, created = await post(server, {"name": "Direct", "tempo": 140})
    assert status == 201, created
    body = await session(server, created["id"])
    assert (body["name"], body["state"]["tempo"], body["state"]["tracks"]) == ("Direct", 140, [])


async def test_keyboardias_sample_posts_as_is_and_its_extra_keys_are_ignored(server: ServerUnderTest) -> None:
    showcase = sample("advanced-features-showcase.json")  # has a "description" beside the state
    status, created = await post(server, {**showcase, "padding": "x" * 4000, "__proto__": {"admin": True}})
    assert status == 201, created
    body = await session(server, created["id"])
    assert body["name"] == "Advanced Features Showcase"
    state = stored_shape({k: v for k, v in showcase.items() if k not in ("name", "description")})
    assert {k: body["state"][k] for k in state} == state
    assert set(body) >= {"id", "state"} and "description" not in body and "description" not in body["state"]
    stored = await stored_text(server, created["id"])
    assert "Demonstrates" not in stored and "xxxx" not in stored and "admin" not in stored


async def test_a_wrapped_state_wins_over_top_level_fields(server: ServerUnderTest) -> None:
    body = {"name": "Wrapped", "state": full_state(tempo=99), "tempo": "fast", "tracks": 7, "note": "x"}
    status, created = await post(server, body)
    assert status == 201, created
    got = await session(server, created["id"])
    assert (got["name"], got["state"]["tempo"], got["state"]["tracks"][0]["id"]) == ("Wrapped", 99, "t1")


async def test_unknown_keys_are_ignored_and_everything_in_the_state_stays_strict(server: ServerUnderTest) -> None:
    for body in ({"description": "nothing else"}, {"constructor": 1, "__proto__": {"x": 1}}, {"version": 3}):
        status, created = await post(server, body)
        assert status == 201, (body, created)
        state = (await session(server, created["id"]))["state"]
        assert (state["tracks"], state["tempo"], state["version"]) == ([], 120, 1), body
    redis, keys = server.services.redis, server.services.keys
    before = await redis.zcard(keys.all_sessions())
    for body, field in (
        ({"state": {**full_state(), "description": "x"}}, "state.description"),
        ({"state": {**full_state(), "__proto__": {"x": 1}}}, "state.__proto__"),
        ({"tempo": 140, "tracks": [track(extra=1)]}, "tracks.0.extra"),
        ({"tempo": "fast", "description": "x"}, "tempo"),
        ({"name": "<script>x</script>", "tempo": 140}, "name"),
        ({"name": 42, "state": full_state()}, "name"),
        ({"state": 5}, "state"),
    ):
        status, answer = await post(server, body)
        assert status == 400 and answer["error"] == "Validation failed", (body, answer)
        assert any(detail.startswith(f"{field}:") for detail in answer["details"]), (body, answer)
    assert await redis.zcard(keys.all_sessions()) == before


async def test_a_put_takes_a_name_along_and_ignores_it(server: ServerUnderTest) -> None:
    status, created = await post(server, {"name": "Kept", "state": full_state()})
    assert status == 201
    path = f"{server.url}/api/sessions/{created['id']}"
    async with aiohttp.ClientSession() as http:
        for name in ("Other", None, 42, "<b>never stored</b>"):
            async with http.put(path, json={"state": full_state(tempo=130), "name": name}) as r:
                assert r.status == 200, (name, await r.text())
        async with http.put(path, json={"state": full_state(), "description": "x"}) as r:
            assert r.status == 400  # only name is taken along: PUT stays strict
    got = await session(server, created["id"])
    assert (got["name"], got["state"]["tempo"]) == ("Kept", 130)
