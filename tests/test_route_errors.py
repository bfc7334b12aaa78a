"""Unknown routes and methods under every API prefix: one JSON error shape, 404 or 405 + Allow;
the pattern API's paths and the ``/api`` paths of no family of sessionhub's in Keyboardia's words."""

from __future__ import annotations

import aiohttp
import yarl
import pytest
import pytest_asyncio

from handlers.route_errors import own_families
from tests.helpers import ServerUnderTest


@pytest_asyncio.fixture
async def server(reading_server: ServerUnderTest) -> ServerUnderTest:
    """One server for the module: every test here only reads (refusals of unknown routes)."""
    return reading_server


@pytest.mark.parametrize(
    "path",
    [
        "/api/streams/00000000-0000-4000-8000-000000000000/nope",
        "/api/streams/nope/deeper",
        "/api/auth/nope",
        "/api/me/nope",
        "/api/listening/nope",
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


async def test_a_404_names_the_path_as_sent(server: ServerUnderTest) -> None:
    """Decoded, ``/admin%2Fmetrics`` was answered "no route GET /admin/metrics": a route that
    exists (audit "adminhostile")."""
    url = yarl.URL(server.url + "/admin%2Fmetrics", encoded=True)
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 404
        assert (await response.json())["message"] == "no route GET /admin%2Fmetrics"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/sessions/x/y/z"),
        ("GET", "/api/definitely-not-a-route"),  # Keyboardia's contract asks it
        ("GET", "/api"),
        ("GET", "/api/"),
        ("POST", "/api/nope/deeper"),
        ("GET", "/api/admin/nope"),  # sessionhub's admin API is /admin, not /api/admin
        ("GET", "/api/streamsx"),  # a family's name as a prefix of another word is not the family
    ],
)
async def test_the_pattern_api_and_api_paths_of_no_family_answer_in_keyboardias_words(
    server: ServerUnderTest, method: str, path: str
) -> None:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path) as response:
        assert response.status == 404
        assert response.content_type == "application/json"
        assert await response.json() == {"error": "Not found", "message": f"no route {method} {path}"}
        assert response.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/api/sessions/00000000-0000-4000-8000-000000000000/publish", "POST"),  # Keyboardia's contract
        ("GET", "/api/sessions/00000000-0000-4000-8000-000000000000/remix", "POST"),
        ("GET", "/api/sessions", "POST"),
        ("POST", "/api/health", "GET, HEAD"),
        ("POST", "/api/sessions/00000000-0000-4000-8000-000000000000", "DELETE, GET, HEAD, PATCH, PUT"),
    ],
)
async def test_a_pattern_route_asked_with_another_method_is_keyboardias_404(
    server: ServerUnderTest, method: str, path: str, allowed: str
) -> None:
    async with aiohttp.ClientSession() as http, http.request(method, server.url + path) as response:
        assert response.status == 404 and "Allow" not in response.headers, (method, path)
        body = await response.json()
        assert body == {"error": "Not found", "message": f"no route {method} {path}; it takes {allowed}"}
        assert response.headers["Access-Control-Allow-Origin"] == "*"


async def test_the_families_are_read_from_the_router(server: ServerUnderTest) -> None:
    assert own_families(server.app.router) >= {"streams", "auth", "me", "listening"}
    assert not own_families(server.app.router) & {"sessions", "health", ""}


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
