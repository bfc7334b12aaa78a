"""The voice REST endpoints of seed 002 and their errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import re

import aiohttp
import pytest_asyncio

from auth.claims import Permission
from handlers.admin.nodes import NODES_KEY
from handlers.payloads import ActivateSession
from server.settings import Settings
from tests.helpers import ServerUnderTest, to_window_start
from tests.listening.support import FrozenClock


class Api:
    def __init__(self, http: aiohttp.ClientSession, server: ServerUnderTest) -> None:
        self.http, self.server = http, server

    async def call(self, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.server.url + path, headers=headers, **kw) as resp:
            return resp.status, await resp.json()


@pytest_asyncio.fixture
async def api(server: ServerUnderTest) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as http:
        yield Api(http, server)


async def test_create_sets_active_and_active_session_returns_it(api: Api, server: ServerUnderTest) -> None:
    token = server.token("alice")
    status, created = await api.call("POST", "/voicebot/create_session", token, json={"session_name": " Notes "})
    assert status == 201
    assert created == {
        "success": True,
        "session_id": created["session_id"],
        "session_name": "Notes",
        "is_active": True,
        "url": f"/session/{created['session_id']}",
    }
    status, body = await api.call("POST", "/voicebot/active_session", token)
    assert status == 200 and body == {
        "active_session": {k: created[k] for k in ("session_id", "session_name", "is_active", "url")}
    }


async def test_no_active_session_is_null(api: Api, server: ServerUnderTest) -> None:
    assert await api.call("POST", "/voicebot/active_session", server.token("nobody")) == (200, {"active_session": None})


async def test_activate_switches_only_through_explicit_action(api: Api, server: ServerUnderTest) -> None:
    token = server.token("alice")
    _, first = await api.call("POST", "/voicebot/create_session", token, json={})
    _, second = await api.call("POST", "/voicebot/create_session", token, json={})
    # Reading a page session does not change the active session.
    status, page = await api.call("GET", f"/voicebot/sessions/{first['session_id']}", token)
    assert status == 200 and page["session_id"] == first["session_id"] and page["offset"] == 1
    _, active = await api.call("POST", "/voicebot/active_session", token)
    assert active["active_session"]["session_id"] == second["session_id"]
    link = f"https://voice.example.org/session/{first['session_id']}"
    status, body = await api.call("POST", "/voicebot/activate_session", token, json={"session_id": link})
    assert status == 200 and body["success"] is True and body["session_id"] == first["session_id"]
    _, active = await api.call("POST", "/voicebot/active_session", token)
    assert active["active_session"]["session_id"] == first["session_id"]


async def test_a_client_sent_telegram_user_id_is_ignored_not_refused(api: Api, server: ServerUnderTest) -> None:
    """Seed 002: identity comes from the token only; a client's ``telegram_user_id`` is ignored
    (as by the socket events), so a client that still sends it is served, as the token's user."""
    token = server.token("alice", telegram_user_id="4242")
    status, created = await api.call("POST", "/voicebot/create_session", token, json={"telegram_user_id": "999"})
    assert status == 201, created
    session = await server.services.voice.get(created["session_id"])
    assert session is not None and (session.owner_id, session.telegram_user_id) == ("alice", "4242")
    other = await server.create_session("alice")
    body = {"session_id": other, "telegram_user_id": "999"}
    status, activated = await api.call("POST", "/voicebot/activate_session", token, json=body)
    assert (status, activated["session_id"]) == (200, other), activated
    assert await server.services.voice.active_id("alice") == other
    # Ignored, never a way in: bob's token naming alice's telegram id is still bob.
    status, refused = await api.call("POST", "/voicebot/activate_session", server.token("bob"), json=body)
    assert (status, refused["error"]) == (403, "forbidden")


async def test_activate_publishes_the_link_form_it_takes(api: Api, server: ServerUnderTest) -> None:
    """PROTOCOL.md: ``session_id`` is an id or a session link; the OpenAPI schema must say both, or
    a client validating with it refuses the link the server takes."""
    token = server.token("alice")
    _, created = await api.call("POST", "/voicebot/create_session", token, json={})
    session_id = created["session_id"]
    published = re.compile(ActivateSession.model_json_schema()["properties"]["session_id"]["pattern"])
    for ref in (session_id, f"https://voice.example.org/session/{session_id}", f"/session/{session_id}/"):
        assert published.match(ref), ref
        status, body = await api.call("POST", "/voicebot/activate_session", token, json={"session_id": ref})
        assert (status, body["session_id"]) == (200, session_id)
    assert not published.match(f"https://voice.example.org/s/{session_id}")


async def test_activate_checks_access(api: Api, server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    assert (await api.call("POST", "/voicebot/activate_session", server.token("bob"), json={"session_id": session_id}))[
        0
    ] == 403
    assert await server.services.voice.active_id("bob") is None
    missing = "00000000-0000-4000-8000-000000000000"
    status, body = await api.call(
        "POST", "/voicebot/activate_session", server.token("bob"), json={"session_id": missing}
    )
    assert (status, body["error"]) == (404, "session_not_found")
    status, body = await api.call(
        "POST", "/voicebot/activate_session", server.token("bob"), json={"session_id": "nope"}
    )
    assert (status, body["error"]) == (400, "invalid_session_id")


async def test_list_and_get_respect_ownership(api: Api, server: ServerUnderTest) -> None:
    alice = server.token("alice")
    ids = [
        (await api.call("POST", "/voicebot/create_session", alice, json={"session_name": f"s{i}"}))[1]["session_id"]
        for i in range(3)
    ]
    status, body = await api.call("GET", "/voicebot/sessions?limit=2", alice)
    assert status == 200 and [s["session_id"] for s in body["sessions"]] == ids[::-1][:2]
    assert body["active_session_id"] == ids[-1]
    assert (await api.call("GET", "/voicebot/sessions", server.token("bob")))[1]["sessions"] == []
    assert (await api.call("GET", f"/voicebot/sessions/{ids[0]}", server.token("bob")))[0] == 403
    admin = server.token("ops", perms=(Permission.READ_ALL,))
    assert (await api.call("GET", f"/voicebot/sessions/{ids[0]}", admin))[0] == 200


async def test_http_errors_change_nothing(api: Api, server: ServerUnderTest, redis: Any) -> None:
    token = server.token("alice")
    await server.app[NODES_KEY].beat()  # the heartbeat the node writes in the background, written now
    before = await redis.dbsize()
    cases = [
        ("POST", "/voicebot/create_session", None, {"json": {}}, 401, "unauthorized"),
        ("POST", "/voicebot/create_session", "not-a-jwt", {"json": {}}, 401, "unauthorized"),
        ("POST", "/voicebot/create_session", token, {"json": {"session_name": 5}}, 400, "invalid_payload"),
        ("POST", "/voicebot/create_session", token, {"json": {"unknown": 1}}, 400, "invalid_payload"),
        ("POST", "/voicebot/create_session", token, {"data": b"{not json"}, 400, "invalid_payload"),
        ("POST", "/voicebot/create_session", token, {"json": [1, 2]}, 400, "invalid_payload"),
        ("POST", "/voicebot/create_session", token, {"json": {"session_name": "x" * 20000}}, 413, "payload_too_large"),
        (
            "POST",
            "/voicebot/create_session",
            server.token("ro", perms=(Permission.READ_OWN,)),
            {"json": {}},
            403,
            "forbidden",
        ),
        ("GET", "/voicebot/sessions?limit=0", token, {}, 400, "invalid_payload"),
        ("GET", "/voicebot/sessions/not-an-id", token, {}, 400, "invalid_session_id"),
        ("POST", "/voicebot/activate_session", token, {"json": {}}, 400, "invalid_session_id"),
    ]
    for method, path, tok, kw, want_status, want_error in cases:
        status, body = await api.call(method, path, tok, **kw)
        assert (status, body.get("error")) == (want_status, want_error), (path, kw)
        # A 413 says the cap it passed, as every route's does.
        assert set(body) == {"error", "message"} | ({"max_bytes"} if want_status == 413 else set())
    assert await redis.dbsize() == before


async def test_create_is_rate_limited(api: Api, redis_process: Any, redis: Any, tmp_path: Any) -> None:
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path, creates_per_min=2)
    try:
        to_window_start(srv.services.clock)
        token = srv.token("alice")
        async with aiohttp.ClientSession() as http:
            statuses = []
            for _ in range(3):
                async with http.post(
                    f"{srv.url}/voicebot/create_session", json={}, headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    statuses.append(resp.status)
        assert statuses == [201, 201, 429]
    finally:
        await srv.stop()


async def test_one_address_cannot_mass_create_through_many_guest_tokens(
    redis_process: Any, redis: Any, tmp_path: Any
) -> None:
    """The issue's figure: 30 guest tokens x 10 creates from one address (300 created before)."""
    from tests.conftest import start_server

    defaults = Settings()
    srv = await start_server(
        redis_process.url,
        tmp_path,
        clock=FrozenClock(),  # the limits count per wall-clock minute: a test across two would see two
        guests_per_min=defaults.guests_per_min,
        creates_per_min=defaults.creates_per_min,
        creates_per_min_per_address=defaults.creates_per_min_per_address,
    )
    try:
        async with aiohttp.ClientSession() as http:
            tokens = []
            for _ in range(30):
                async with http.post(f"{srv.url}/api/auth/guest") as resp:
                    assert resp.status == 201
                    tokens.append((await resp.json())["token"])
            statuses: list[int] = []
            for token in tokens:
                for _ in range(10):
                    headers = {"Authorization": f"Bearer {token}"}
                    async with http.post(f"{srv.url}/voicebot/create_session", json={}, headers=headers) as resp:
                        statuses.append(resp.status)
                        body = await resp.json()
            assert statuses.count(201) == defaults.creates_per_min_per_address == 30
            assert statuses.count(429) == 270 and "this address" in body["message"]
            # The bot route counts against the same address.
            headers = {"Authorization": f"Bearer {srv.token('bob')}"}
            async with http.post(f"{srv.url}/voicebot/bot/command", json={"text": "/start"}, headers=headers) as resp:
                assert resp.status == 429
            material = {"kind": "text", "text": "hi"}
            async with http.post(f"{srv.url}/voicebot/materials", json=material, headers=headers) as resp:
                assert resp.status == 429
    finally:
        await srv.stop()


async def test_static_files_are_revalidated_and_pages_are_locked_down(api: Api, server: ServerUnderTest) -> None:
    async with api.http.get(f"{server.url}/static/js/client.js") as resp:
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-cache"
    async with api.http.get(f"{server.url}/session") as resp:
        assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
        assert resp.headers["X-Frame-Options"] == "DENY"


async def test_every_html_response_carries_the_page_headers(api: Api, server: ServerUnderTest) -> None:
    # The same files reached under /static/ must be as locked down as under their own routes.
    for path in ("/", "/tg_auth", "/static/session.html", "/static/index.html", "/static/tg_auth.html"):
        async with api.http.get(f"{server.url}{path}") as resp:
            assert resp.status == 200 and resp.content_type == "text/html", path
            assert "frame-ancestors 'none'" in resp.headers.get("Content-Security-Policy", ""), path
            assert resp.headers.get("X-Frame-Options") == "DENY", path
