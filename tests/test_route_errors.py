"""Unknown routes and methods under every API prefix: one JSON error shape, 404 or 405 + Allow."""

from __future__ import annotations

import aiohttp
import pytest
import pytest_asyncio

from tests.helpers import ServerUnderTest


@pytest_asyncio.fixture
async def server(reading_server: ServerUnderTest) -> ServerUnderTest:
    """One server for the module: every test here only reads (refusals of unknown routes)."""
    return reading_server


@pytest.mark.parametrize(
    "path",
    [
        "/api/streams/00000000-0000-4000-8000-000000000000/nope",
        "/api/nope",
        "/api/admin/nope",
        "/voicebot/nope",
        "/voicebot",
        "/admin/nope/deeper",
        "/socket.io/nope",
    ],
)
async def test_unknown_routes_answer_json_404(server: ServerUnderTest, path: str) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + path) as response:
        assert response.status == 404, path
        assert response.content_type == "application/json", path
        body = await response.json()
        assert body["error"] == "not_found" and path in body["message"], body


async def test_the_pattern_api_keeps_its_words_in_the_same_shape(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/api/sessions/x/y/z") as response:
        assert response.status == 404
        assert await response.json() == {"error": "Not found", "message": "no route GET /api/sessions/x/y/z"}


@pytest.mark.parametrize(
    ("method", "path"), [("PUT", "/api/streams"), ("DELETE", "/api/auth/guest"), ("PUT", "/socket.io/")]
)
async def test_a_known_route_with_another_method_answers_405_with_allow(
    server: ServerUnderTest, method: str, path: str
) -> None:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path) as response:
        assert response.status == 405, (method, path)
        allowed = response.headers["Allow"].split(", ")
        assert "POST" in allowed
        body = await response.json()
        assert body["error"] == "method_not_allowed" and body["allowed"] == allowed, body


async def test_a_handlers_own_404_keeps_its_body(server: ServerUnderTest) -> None:
    # Only the router's refusals are rewritten: a missing session is still session_not_found.
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            server.url + "/api/streams/00000000-0000-4000-8000-000000000000", headers={"Authorization": "Bearer x"}
        ) as response,
    ):
        assert response.status in (401, 404)
        assert (await response.json())["error"] in ("unauthorized", "session_not_found")


async def test_pages_keep_their_own_404(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http, http.get(server.url + "/no-such-page") as response:
        assert response.status == 404
        assert response.content_type != "application/json"
