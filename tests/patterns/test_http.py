"""The pattern sharing API (seeds 001/004), as the origin app's clients use it."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest, to_window_start

UUID_GONE = "00000000-0000-4000-8000-000000000000"


def track(track_id: str = "t1", **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": track_id,
        "name": "Kick",
        "sampleId": "kick",
        "steps": [True, False, False, False] * 4,
        "parameterLocks": [None] * 16,
        "volume": 0.8,
        "muted": False,
        "soloed": False,
        "transpose": 0,
        "stepCount": 16,
    }
    return {**base, **fields}


def full_state(**fields: Any) -> dict[str, Any]:
    return {"tracks": [track()], "tempo": 120, "swing": 0, "version": 1, **fields}


@pytest_asyncio.fixture
async def http(server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=server.url) as session:
        yield session


@pytest_asyncio.fixture
async def refused(reading_server: ServerUnderTest) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of the module's shared server, for the tests whose every request is refused or
    reads a session that does not exist (~0.65 s of app setup saved per test, 23 of them)."""
    async with aiohttp.ClientSession(base_url=reading_server.url) as session:
        yield session


async def create(http: aiohttp.ClientSession, body: Any = None) -> str:
    async with http.post("/api/sessions", json=body if body is not None else {}) as response:
        assert response.status == 201, await response.text()
        created = await response.json()
    assert created["url"] == f"/s/{created['id']}"
    return str(created["id"])


async def fetch(http: aiohttp.ClientSession, session_id: str) -> tuple[int, Any, str]:
    async with http.get(f"/api/sessions/{session_id}") as response:
        return response.status, await response.json(), response.headers.get("ETag", "")


async def stored_fields(server: ServerUnderTest, session_id: str) -> dict[str, str]:
    fields: dict[str, str] = await server.services.redis.hgetall(server.services.keys.session(session_id))  # type: ignore[misc]
    return fields


async def test_create_with_defaults_and_get_the_whole_session(http: aiohttp.ClientSession) -> None:
    session_id = await create(http, {"tempo": 140})
    status, body, tag = await fetch(http, session_id)
    assert status == 200 and tag.startswith('"') and tag.endswith(':1"')
    assert set(body) >= {
        "id",
        "name",
        "createdAt",
        "updatedAt",
        "lastAccessedAt",
        "remixedFrom",
        "remixedFromName",
        "remixCount",
        "immutable",
        "state",
    }
    # The origin app's defaults for a new session (its session-defaults.ts): dry effects, a locked scale.
    assert body["state"] == {
        "tracks": [],
        "tempo": 140,
        "swing": 0,
        "version": 1,
        "effects": {
            "bypass": False,
            "reverb": {"decay": 2, "wet": 0},
            "delay": {"time": "8n", "feedback": 0.3, "wet": 0},
            "chorus": {"frequency": 1.5, "depth": 0.5, "wet": 0},
            "distortion": {"amount": 0.4, "wet": 0},
        },
        "scale": {"root": "C", "scaleId": "minor-pentatonic", "locked": True},
    }
    # Effects given without bypass are stored with it off, as the origin app stores them.
    effects = {k: v for k, v in body["state"]["effects"].items() if k != "bypass"}
    _, given, _ = await fetch(http, await create(http, {"effects": {**effects, "reverb": {"decay": 5, "wet": 1}}}))
    assert given["state"]["effects"] == {**body["state"]["effects"], "reverb": {"decay": 5, "wet": 1}}
    assert (body["remixedFrom"], body["remixCount"], body["immutable"], body["orphaned"]) == (None, 0, False, False)


async def test_create_remix_and_publish_answer_when_the_copy_was_made(http: aiohttp.ClientSession) -> None:
    """Seed 001: creating answers ``{ id, url, createdAt }`` and remixing ``{ id, url, remixedFrom,
    createdAt }``: the time the new session's record holds, not a time of its own."""
    async with http.post("/api/sessions", json={"name": "Funky Beat"}) as response:
        created = await response.json()
    async with http.post(f"/api/sessions/{created['id']}/remix") as response:
        remixed = await response.json()
    async with http.post(f"/api/sessions/{created['id']}/publish") as response:
        published = await response.json()
    for answer in (created, remixed, published):
        _, body, _ = await fetch(http, answer["id"])
        assert isinstance(answer["createdAt"], int) and answer["createdAt"] == body["createdAt"], (answer, body)
    assert set(created) == {"id", "url", "createdAt"}
    assert set(remixed) == {"id", "url", "remixedFrom", "createdAt"}


async def test_create_wrapped_pads_steps_and_keeps_the_first_of_duplicate_tracks(http: aiohttp.ClientSession) -> None:
    state = {"tracks": [track("a", steps=[True]), track("a", name="Dup"), track("b", name=" Snare ")]}
    session_id = await create(http, {"name": "  Funky Beat ", "state": state})
    _, body, _ = await fetch(http, session_id)
    assert body["name"] == "Funky Beat"
    tracks = body["state"]["tracks"]
    assert [t["id"] for t in tracks] == ["a", "b"] and tracks[0]["name"] == "Kick" and tracks[1]["name"] == "Snare"
    assert len(tracks[0]["steps"]) == 128 and tracks[0]["steps"][:2] == [True, False]
    assert tracks[0]["parameterLocks"] == [None] * 128


async def test_a_body_that_is_not_json_gives_a_default_session(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/sessions", data="tempo=999", headers={"Content-Type": "text/plain"}) as response:
        assert response.status == 201
        session_id = (await response.json())["id"]
    _, body, _ = await fetch(http, session_id)
    assert body["state"]["tempo"] == 120


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"tempo": 250}, "tempo"),
        ({"tempo": True}, "tempo"),
        ({"swing": "10"}, "swing"),
        ({"loopRegion": {"start": 9, "end": 2}}, "loopRegion.start"),
        ({"loopRegion": {"start": 1.5, "end": 2}}, "loopRegion.start"),
        ({"effects": {"reverb": 1}}, "effects.reverb"),
        ({"scale": {"root": "H", "scaleId": "minor", "locked": True}}, "scale.root"),
        ({"tracks": [track(stepCount=17)]}, "tracks.0.stepCount"),
        ({"tracks": [track(transpose=1.0)]}, "tracks.0.transpose"),
        ({"tracks": [track(steps=[1, 0])]}, "tracks.0.steps.0"),
        ({"tracks": [track(steps=[False] * 129)]}, "tracks.0.steps"),
        ({"tracks": [track(name="<script>x</script>")]}, "tracks.0.name"),
        ({"tracks": [track(name="javascript:alert(1)")]}, "tracks.0.name"),
        ({"tracks": [track(name="a\x00b")]}, "tracks.0.name"),
        ({"tracks": [track(str(i)) for i in range(17)]}, "tracks"),
        ({"tracks": [track(parameterLocks=[{"pitch": 30}])]}, "tracks.0.parameterLocks.0.pitch"),
        ({"tracks": [track(playbackMode="loop")]}, "tracks.0.playbackMode"),
        ({"state": {"__proto__": {"x": 1}}}, "state.__proto__"),
        ({"name": "x", "state": {"constructor": 1}}, "state.constructor"),
        ({"name": "<b>hi</b>"}, "name"),
    ],
)
async def test_hostile_states_are_refused_naming_the_field(
    reading_server: ServerUnderTest, refused: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    redis, keys = reading_server.services.redis, reading_server.services.keys
    before = await redis.zcard(keys.all_sessions())
    async with refused.post("/api/sessions", json=body) as response:
        assert response.status == 400
        answer = await response.json()
    assert answer["error"] == "Validation failed"
    assert any(detail.startswith(f"{field}:") for detail in answer["details"]), answer
    assert await redis.zcard(keys.all_sessions()) == before  # nothing was created


async def test_nan_is_refused_naming_the_field(refused: aiohttp.ClientSession) -> None:
    raw = '{"tempo": NaN}'
    async with refused.post("/api/sessions", data=raw, headers={"Content-Type": "application/json"}) as response:
        assert response.status == 400
        assert (await response.json())["details"][0].startswith("tempo:")


async def test_invalid_json_bad_ids_and_unknown_sessions(refused: aiohttp.ClientSession) -> None:
    http = refused
    async with http.post("/api/sessions", data="{nope", headers={"Content-Type": "application/json"}) as response:
        assert (response.status, await response.json()) == (400, {"error": "Invalid JSON"})
    # Deeper than the JSON reader recurses on every Python of pyproject's classifiers (3.13's takes
    # 5,000 deep, 3.11's not): a 400, not a 500. 40 KB, under the 64 KB body limit.
    nested = "[" * 20_000 + "]" * 20_000
    async with http.post("/api/sessions", data=nested, headers={"Content-Type": "application/json"}) as response:
        assert (response.status, await response.json()) == (400, {"error": "Invalid JSON"})
    async with http.get("/api/sessions/not-a-uuid") as response:
        assert (response.status, await response.json()) == (400, {"error": "Invalid session ID format"})
    async with http.get(f"/api/sessions/{UUID_GONE}") as response:
        assert (response.status, await response.json()) == (404, {"error": "Session not found"})
    for method in ("PUT", "PATCH"):
        async with http.request(method, f"/api/sessions/{UUID_GONE}", json={"state": full_state()}) as response:
            assert response.status == 404
    async with http.delete(f"/api/sessions/{UUID_GONE}") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    "session_id",
    [
        "00000000-0000-0000-0000-000000000000",  # the nil UUID (the origin app's contract asks it)
        "6ba7b810-9dad-11d1-80b4-00c04fd430c8",  # a v1 UUID
        "6BA7B810-9DAD-11D1-80B4-00C04FD430C8",  # a v1 UUID in upper case
    ],
)
async def test_any_uuid_is_well_formed_and_an_unknown_one_is_not_found(
    refused: aiohttp.ClientSession, session_id: str
) -> None:
    for method, suffix, body in (
        ("GET", "", None),
        ("PUT", "", {"state": full_state()}),
        ("PATCH", "", {"name": "x"}),
        ("DELETE", "", None),
        ("POST", "/remix", None),
        ("POST", "/publish", None),
    ):
        async with refused.request(method, f"/api/sessions/{session_id}{suffix}", json=body) as response:
            assert (response.status, await response.json()) == (404, {"error": "Session not found"}), (method, suffix)
    for bad in ("-" * 36, "not-a-uuid", "00000000-0000-0000-0000-00000000000g", "00000000000000000000000000000000"):
        async with refused.post(f"/api/sessions/{bad}/publish") as response:
            assert (response.status, await response.json()) == (400, {"error": "Invalid session ID format"}), bad


async def test_put_replaces_the_state_and_refuses_incomplete_or_unknown(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    session_id = await create(http)
    async with http.put(f"/api/sessions/{session_id}", json={"state": full_state(tempo=99)}) as response:
        assert response.status == 200
        answer = await response.json()
        assert answer["id"] == session_id and answer["trackCount"] == 1 and answer["updatedAt"] > 0
        assert response.headers["ETag"].endswith(':2"')
    await server.services.sessions.settle()  # the PUT's access is recorded in the background
    before = await stored_fields(server, session_id)
    async with http.put(f"/api/sessions/{session_id}", json={"state": {"tracks": []}}) as response:
        assert response.status == 400
        assert "state.tempo: Field required" in (await response.json())["details"]
    async with http.put(f"/api/sessions/{session_id}", json={"state": full_state(), "extra": 1}) as response:
        assert response.status == 400
    assert await stored_fields(server, session_id) == before
    _, body, _ = await fetch(http, session_id)
    assert body["state"]["tempo"] == 99 and len(body["state"]["tracks"][0]["steps"]) == 128


async def test_patch_renames_and_needs_something(http: aiohttp.ClientSession) -> None:
    session_id = await create(http, {"name": "Old"})
    async with http.patch(f"/api/sessions/{session_id}", json={"name": "  New name  "}) as response:
        assert response.status == 200
        answer = await response.json()
        assert (answer["id"], answer["name"]) == (session_id, "New name")
    async with http.patch(f"/api/sessions/{session_id}", json={"name": "   "}) as response:
        assert (await response.json())["name"] is None
    async with http.patch(f"/api/sessions/{session_id}", json={}) as response:
        assert response.status == 400 and (await response.json())["error"] == "Validation failed"
    _, body, _ = await fetch(http, session_id)
    assert body["name"] is None


async def test_if_match_refuses_a_stale_write_with_the_current_state(http: aiohttp.ClientSession) -> None:
    session_id = await create(http)
    _, _, stale = await fetch(http, session_id)
    async with http.put(
        f"/api/sessions/{session_id}", json={"state": full_state(tempo=100)}, headers={"If-Match": stale}
    ) as r:
        assert r.status == 200
        fresh = r.headers["ETag"]
    async with http.put(
        f"/api/sessions/{session_id}", json={"state": full_state(tempo=61)}, headers={"If-Match": stale}
    ) as r:
        assert r.status == 412
        answer = await r.json()
        assert answer["etag"] == fresh and answer["session"]["state"]["tempo"] == 100
    async with http.patch(f"/api/sessions/{session_id}", json={"name": "x"}, headers={"If-Match": '"garbage"'}) as r:
        assert r.status == 412
    _, body, tag = await fetch(http, session_id)
    assert (body["state"]["tempo"], body["name"], tag) == (100, None, fresh)


async def test_delete_then_gone(http: aiohttp.ClientSession) -> None:
    session_id = await create(http)
    async with http.delete(f"/api/sessions/{session_id}") as response:
        assert response.status == 204
    status, _, _ = await fetch(http, session_id)
    assert status == 404


async def test_remix_lineage_and_unknown_parent(
    server: ServerUnderTest, http: aiohttp.ClientSession, clients: list[Client]
) -> None:
    parent = await create(http, {"name": "Funky Beat", "state": full_state()})
    async with http.post(f"/api/sessions/{parent}/remix") as response:
        assert response.status == 201
        remix = await response.json()
    assert remix["remixedFrom"] == parent and remix["url"] == f"/s/{remix['id']}"
    _, child, _ = await fetch(http, remix["id"])
    # The copy starts unnamed and caches the parent's name (the origin app's sessions.ts).
    assert (child["name"], child["remixedFrom"], child["remixedFromName"]) == (None, parent, "Funky Beat")
    assert child["state"]["tracks"][0]["id"] == "t1"
    _, parent_body, _ = await fetch(http, parent)
    assert parent_body["remixCount"] == 1
    # Seed 001: the parent's name is fetched on load (the cache is the fallback), so a rename of
    # the parent shows in the remix's lineage, on a load and in a live snapshot.
    async with http.patch(f"/api/sessions/{parent}", json={"name": "Funkier Beat"}) as response:
        assert response.status == 200
    _, child, _ = await fetch(http, remix["id"])
    assert child["remixedFromName"] == "Funkier Beat"
    player = await server.subscriber(clients, remix["id"])
    assert player.named("session_snapshot")[-1]["session"]["remixedFromName"] == "Funkier Beat"
    async with http.patch(f"/api/sessions/{parent}", json={"name": ""}) as response:
        assert response.status == 200
    _, child, _ = await fetch(http, remix["id"])
    assert child["remixedFromName"] == "Funky Beat"  # unnamed now: the name cached at the remix
    async with http.delete(f"/api/sessions/{parent}") as response:
        assert response.status == 204
    _, child, _ = await fetch(http, remix["id"])
    assert child["remixedFromName"] == "Unknown Session"
    await player.call("subscribe_on_session", {"session_id": remix["id"]})
    assert player.named("session_snapshot")[-1]["session"]["remixedFromName"] == "Unknown Session"


async def test_an_unnamed_parent_is_cached_by_its_first_tracks_name_else_untitled(
    http: aiohttp.ClientSession,
) -> None:
    for state, cached in ((full_state(tracks=[track(name="Kick"), track("t2", name="Snare")]), "Kick"), ({}, None)):
        parent = await create(http, {"state": state} if state else {})
        for route in ("remix", "publish"):
            async with http.post(f"/api/sessions/{parent}/{route}") as response:
                assert response.status == 201
                copy_id = (await response.json())["id"]
            _, copied, _ = await fetch(http, copy_id)
            assert (copied["name"], copied["remixedFromName"]) == (None, cached or "Untitled Session"), route


async def test_publish_makes_an_immutable_copy(http: aiohttp.ClientSession) -> None:
    source = await create(http, {"name": "Published Beat", "state": full_state()})
    async with http.post(f"/api/sessions/{source}/publish") as response:
        assert response.status == 201
        published = await response.json()
    assert published["immutable"] is True and published["sourceId"] == source
    pid = published["id"]
    _, copy, _ = await fetch(http, pid)
    # A published copy keeps the name (the origin app's sessions.ts) and caches it for its lineage.
    assert (copy["name"], copy["remixedFrom"], copy["remixedFromName"]) == ("Published Beat", source, "Published Beat")
    for method, body in (("PUT", {"state": full_state()}), ("PATCH", {"name": "x"}), ("DELETE", None)):
        async with http.request(method, f"/api/sessions/{pid}", json=body) as response:
            # The origin app's words (live-session.ts).
            assert (response.status, await response.json()) == (
                403,
                {
                    "error": "Session is published",
                    "message": "This session has been published and cannot be modified. "
                    "Remix it to create an editable copy.",
                    "immutable": True,
                },
            )
    async with http.post(f"/api/sessions/{pid}/publish") as response:
        # The origin app's words (session-allocator.ts), with its status (index.ts).
        assert (response.status, await response.json()) == (
            400,
            {"error": "Cannot publish from an already-published session. Remix it first to create an editable copy."},
        )
    async with http.post(f"/api/sessions/{pid}/remix") as response:
        assert response.status == 201
        remix_id = (await response.json())["id"]
    _, remix, _ = await fetch(http, remix_id)
    assert remix["immutable"] is False
    _, source_body, _ = await fetch(http, source)
    assert source_body["immutable"] is False


async def test_a_write_to_a_published_or_unknown_session_is_refused_before_its_body_is_validated(
    http: aiohttp.ClientSession,
) -> None:
    """PROTOCOL's order: that the session may not be changed (404, 403) comes before how the
    change is wrong (400): a client told "Validation failed" would fix its body and try again."""
    source = await create(http, {"name": "Snapshot", "state": full_state()})
    async with http.post(f"/api/sessions/{source}/publish") as response:
        published = (await response.json())["id"]
    incomplete = {"state": {"tracks": [], "tempo": 100}}
    for method, body in (("PUT", incomplete), ("PATCH", incomplete), ("PATCH", {"name": "<b>"}), ("PATCH", {})):
        async with http.request(method, f"/api/sessions/{published}", json=body) as response:
            assert (response.status, (await response.json())["error"]) == (403, "Session is published"), (method, body)
        async with http.request(method, f"/api/sessions/{UUID_GONE}", json=body) as response:
            assert (response.status, await response.json()) == (404, {"error": "Session not found"}), (method, body)
    # A body that is no JSON at all is still refused as such: there is nothing to check it against.
    async with http.put(
        f"/api/sessions/{published}", data=b"{", headers={"Content-Type": "application/json"}
    ) as response:
        assert (response.status, await response.json()) == (400, {"error": "Invalid JSON"})
    _, copy, _ = await fetch(http, published)
    assert (copy["name"], copy["state"]["tempo"]) == ("Snapshot", 120)


async def test_hundred_concurrent_remixes_count_exactly(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    server = await start_server(redis_process.url, tmp_path, patterns_creates_per_min=1000)
    try:
        async with aiohttp.ClientSession(base_url=server.url) as http:
            parent = await create(http)

            async def remix() -> int:
                async with http.post(f"/api/sessions/{parent}/remix") as response:
                    return response.status

            statuses = await asyncio.gather(*(remix() for _ in range(100)))
            assert statuses == [201] * 100
            _, body, _ = await fetch(http, parent)
            assert body["remixCount"] == 100
    finally:
        await server.stop()


async def test_loading_marks_access_and_flags_orphans(server: ServerUnderTest, http: aiohttp.ClientSession) -> None:
    session_id = await create(http)
    server.services.clock.shift_ms = 91 * 86_400_000
    try:
        _, body, _ = await fetch(http, session_id)
        assert body["orphaned"] is True
        assert body["lastAccessedAt"] >= server.services.clock.now_ms() - 5000
        _, body, _ = await fetch(http, session_id)
        assert body["orphaned"] is False  # the load revived it; never deleted
    finally:
        server.services.clock.shift_ms = 0


async def test_rate_limit_counts_only_accepted_creations(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    server = await start_server(redis_process.url, tmp_path, patterns_creates_per_min=3)
    try:
        to_window_start(server.services.clock)
        async with aiohttp.ClientSession(base_url=server.url) as http:
            for _ in range(5):
                async with http.post("/api/sessions", json={"tempo": 1000}) as response:
                    assert response.status == 400  # refused: not counted
            first = await create(http)
            await create(http)
            async with http.post(f"/api/sessions/{first}/remix") as response:
                assert response.status == 201
            for path in ("/api/sessions", f"/api/sessions/{first}/remix", f"/api/sessions/{first}/publish"):
                async with http.post(path, json={}) as response:
                    assert response.status == 429
                    answer = await response.json()
                    assert 1 <= answer["retryAfter"] <= 60
                    assert response.headers["Retry-After"] == str(answer["retryAfter"])
            # Reads and edits are not limited.
            async with http.put(f"/api/sessions/{first}", json={"state": full_state()}) as response:
                assert response.status == 200
    finally:
        await server.stop()


async def test_a_day_caps_the_creations_of_one_address(redis_process: RedisProcess, redis: Any, tmp_path: Path) -> None:
    """Creates, remixes and publishes of one address are capped per day too: the minute's limit
    alone lets one address store ~0.9 GB of pattern sessions a day, every day (seed 004: DoS
    via session creation, storage abuse)."""
    server = await start_server(redis_process.url, tmp_path, patterns_creates_per_min=1000, patterns_creates_per_day=3)
    clock = server.services.clock
    try:
        to_window_start(clock, 86_400)
        async with aiohttp.ClientSession(base_url=server.url) as http:
            first = await create(http)
            for path in (f"/api/sessions/{first}/remix", f"/api/sessions/{first}/publish"):
                async with http.post(path) as response:
                    assert response.status == 201
            for path in ("/api/sessions", f"/api/sessions/{first}/remix", f"/api/sessions/{first}/publish"):
                async with http.post(path, json={}) as response:
                    answer = await response.json()
                    assert response.status == 429, answer
                    assert 86_400 - 60 < answer["retryAfter"] <= 86_400  # the day's end, not the minute's
                    assert response.headers["Retry-After"] == str(answer["retryAfter"])
                    assert answer["message"] == "At most 3 sessions a day; try again later."
            async with http.put(f"/api/sessions/{first}", json={"state": full_state()}) as response:
                assert response.status == 200  # edits are not capped
            clock.shift_ms += 86_400_000
            await create(http)  # a new day
    finally:
        clock.shift_ms = 0
        await server.stop()


async def test_body_over_64_kib_is_413_before_parsing(http: aiohttp.ClientSession) -> None:
    session_id = await create(http)
    big = b"{" + b" " * (64 * 1024 + 10) + b"}"
    async with http.put(f"/api/sessions/{session_id}", data=big, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 413 and (await r.json())["error"] == "Request body too large"
    # A real, large state under the limit is accepted.
    tracks = [track(f"t{i}", steps=[True] * 128, parameterLocks=[{"pitch": 1, "volume": 1.5}] * 128) for i in range(12)]
    body = json.dumps({"state": full_state(tracks=tracks)})
    assert 40_000 < len(body) < 64 * 1024
    async with http.put(f"/api/sessions/{session_id}", data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 200, await r.text()


async def test_unknown_api_routes_and_methods_are_json_404_and_old_routes_work(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    # One shape for every prefix (handlers/route_errors.py); Keyboardia's words for its routes and for
    # /api paths of no family of sessionhub's.
    for method, path, status, error in (
        ("GET", "/api/nope", 404, "Not found"),
        ("GET", "/api/sessions", 404, "Not found"),
        ("POST", "/api/health", 404, "Not found"),
        ("DELETE", "/api/me/sessions", 405, "method_not_allowed"),
        ("GET", "/api/me/nope", 404, "not_found"),
        ("GET", f"/api/sessions/{UUID_GONE}/remix", 404, "Not found"),
        ("GET", f"/api/sessions/{UUID_GONE}/nope", 404, "Not found"),
    ):
        async with http.request(method, path) as response:
            assert response.status == status, (method, path)
            body = await response.json()
            assert body["error"] == error and isinstance(body["message"], str), (method, path, body)
            assert response.headers["Access-Control-Allow-Origin"] == "*"
    async with http.get("/api/health") as response:
        assert await response.json() == {"status": "ok"}
    async with http.post("/api/auth/guest") as response:
        assert response.status == 201
        token = (await response.json())["token"]
    async with http.get("/api/me/sessions", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
    async with http.get("/no-such-page") as response:
        assert response.status == 404 and "Access-Control-Allow-Origin" not in response.headers


async def test_cors_preflight_and_headers(http: aiohttp.ClientSession) -> None:
    async with http.options(
        "/api/sessions", headers={"Origin": "https://x.example", "Access-Control-Request-Method": "POST"}
    ) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "*"
        assert "If-Match" in r.headers["Access-Control-Allow-Headers"]
    session_id = await create(http)
    async with http.get(f"/api/sessions/{session_id}") as r:
        assert r.headers["Access-Control-Allow-Origin"] == "*" and "ETag" in r.headers["Access-Control-Expose-Headers"]


def _listed(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",")}


async def test_a_page_of_another_origin_may_retry_a_create_with_a_key(http: aiohttp.ClientSession) -> None:
    """The creates take Idempotency-Key (docs/PROTOCOL.md, Retries): a browser sends it across
    origins only when the preflight allows the header, and reads the replay's mark only when it
    is exposed."""
    preflight = {
        "Origin": "https://x.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,idempotency-key",
    }
    async with http.options("/api/sessions", headers=preflight) as r:
        assert r.status == 204
        assert {"content-type", "idempotency-key"} <= _listed(r.headers["Access-Control-Allow-Headers"])
    key = {"Origin": "https://x.example", "Idempotency-Key": "cross-origin-create-1"}
    async with http.post("/api/sessions", json={}, headers=key) as first:
        assert first.status == 201
        created = await first.json()
    async with http.post("/api/sessions", json={}, headers=key) as again:
        assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
        assert "idempotent-replayed" in _listed(again.headers["Access-Control-Expose-Headers"])
        assert await again.json() == created


async def test_the_etag_is_in_the_openapi_document_as_it_is_sent(http: aiohttp.ClientSession) -> None:
    """GET, PUT and PATCH answer the ETag (and a 412 the current one): the document says so, with
    the form the answers have, so a client written from it knows what to send back as If-Match."""
    async with http.get("/openapi.json") as r:
        operations = (await r.json())["paths"]["/api/sessions/{session_id}"]
    session_id = await create(http)
    async with http.get(f"/api/sessions/{session_id}") as r:
        etag = r.headers["ETag"]
    for method, status in (("get", "200"), ("put", "200"), ("patch", "200"), ("put", "412"), ("patch", "412")):
        header = operations[method]["responses"][status]["headers"]["ETag"]
        assert re.fullmatch(header["schema"]["pattern"], etag), (method, status, etag)


async def test_a_token_names_the_author_and_lists_the_pattern(
    server: ServerUnderTest, http: aiohttp.ClientSession
) -> None:
    token = server.token("bob")
    async with http.post("/api/sessions", json={"name": "Bob's"}, headers={"Authorization": f"Bearer {token}"}) as r:
        session_id = (await r.json())["id"]
    async with http.post("/api/sessions", json={}, headers={"Authorization": "Bearer forged"}) as r:
        assert r.status == 201  # the API takes no token: a bad one only names nobody
    async with http.get("/api/me/sessions", headers={"Authorization": f"Bearer {token}"}) as r:
        listed = (await r.json())["sessions"]
    assert [(s["session_id"], s["kind"], s["title"], s["url"]) for s in listed] == [
        (session_id, "pattern", "Bob's", f"/s/{session_id}")
    ]
    assert (await stored_fields(server, session_id))["owner_id"] == ""


async def test_redis_down_is_503_with_retry_after_and_counted(tmp_path: Path) -> None:
    own = RedisProcess(tmp_path / "redis")
    own.start()
    srv = await start_server(own.url, tmp_path / "srv")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{srv.url}/api/sessions", json={"name": "kept"}) as r:
                assert r.status == 201
                session_id = (await r.json())["id"]
            own.stop()
            for method, path in (("GET", f"/api/sessions/{session_id}"), ("POST", "/api/sessions")):
                async with http.request(method, f"{srv.url}{path}", json={}) as r:
                    assert (r.status, await r.json()) == (503, {"error": "Service unavailable"}), path
                    assert r.headers["Retry-After"] == "1"
            registry = srv.services.metrics.registry
            labels = {"source": "http", "error": "ConnectionError"}
            assert (registry.get_sample_value("sessionhub_redis_errors_total", labels) or 0) >= 2
            own.start()  # an empty Redis (it saves nothing): the server answers again
            async with http.get(f"{srv.url}/api/sessions/{session_id}") as r:
                assert r.status == 404
    finally:
        await srv.stop()
        own.stop()


async def test_whole_state_writes_of_one_address_are_limited(
    redis_process: RedisProcess, redis: Any, tmp_path: Path
) -> None:
    """PUT and PATCH carry up to a 64 KB state to every watcher and take no token: past
    ``SESSIONHUB_PATTERNS_WRITES_PER_MIN`` an address is refused 429 with nothing stored, another
    address is not, and reads stay open (one address sent thousands a second before)."""
    server = await start_server(redis_process.url, tmp_path, patterns_writes_per_min=3, trust_forwarded_for=True)
    try:
        to_window_start(server.services.clock)
        async with aiohttp.ClientSession(base_url=server.url) as http:
            session_id = await create(http)
            for tempo in (100, 101):
                async with http.put(f"/api/sessions/{session_id}", json={"state": full_state(tempo=tempo)}) as response:
                    assert response.status == 200
            async with http.patch(f"/api/sessions/{session_id}", json={"name": "Third"}) as response:
                assert response.status == 200
            for method in ("PUT", "PATCH"):
                body = {"state": full_state(tempo=150), "name": "Refused"}
                async with http.request(method, f"/api/sessions/{session_id}", json=body) as response:
                    assert response.status == 429
                    answer = await response.json()
                    assert answer["error"] == "Too many requests"
                    assert "3 changes a minute" in answer["message"]
                    assert 1 <= answer["retryAfter"] <= 60
                    assert response.headers["Retry-After"] == str(answer["retryAfter"])
            async with http.get(f"/api/sessions/{session_id}") as response:
                assert response.status == 200
                kept = await response.json()
            assert (kept["name"], kept["state"]["tempo"]) == ("Third", 101)
            other = {"X-Forwarded-For": "203.0.113.9"}
            async with http.put(
                f"/api/sessions/{session_id}", json={"state": full_state(tempo=120)}, headers=other
            ) as response:
                assert response.status == 200
    finally:
        await server.stop()
