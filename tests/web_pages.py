"""Every page of web/, each with the data that fills it, for the tests that look at all of them
(phone layout, accessibility): `await visit(tab, server, clients, name)` opens one, rendered."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.streams.helpers import create_stream, http
from tests.helpers import Client, ServerUnderTest
from tests.admin.test_http import LONG_TTL_S, UUID_GONE, admin_token
from tests.patterns.test_web import new_pattern

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
LIVE = '#connection[data-state="live"]'


@dataclass(frozen=True)
class Visit:
    """Where a page is, whose token opens it, and what shows once it has rendered."""

    path: str
    ready: tuple[str, ...]
    token: str | None = None
    ttl_s: int = 3600


async def _stream_with_clips(server: ServerUnderTest, clients: list[Client]) -> str:
    session_id = await create_stream(server, title="Speedrun night with a rather long title")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    for user in ("v1", "v2"):
        viewer = Client(server.url, server.token(user))
        clients.append(viewer)
        await viewer.connect()
        ack = await viewer.call("clip_submit", {"session_id": session_id, "note": f"a moment {user} liked"})
        assert ack["ok"] is True, ack
    return session_id


async def _landing(server: ServerUnderTest, clients: list[Client]) -> Visit:
    await server.create_session("alice", name="Morning stand-up")
    return Visit("/", ("#recent-list li", "#fab-new:enabled"), server.token("alice"))


async def _streams(server: ServerUnderTest, clients: list[Client]) -> Visit:
    await create_stream(server, title="Speedrun night with a rather long title")
    return Visit("/streams", ("#stream-list li",), server.token("alice"))


async def _stream(server: ServerUnderTest, clients: list[Client]) -> Visit:
    session_id = await _stream_with_clips(server, clients)
    return Visit(f"/streams/{session_id}", (LIVE, ".moment"), server.token("alice"))


async def _watch(server: ServerUnderTest, clients: list[Client]) -> Visit:
    session_id = await _stream_with_clips(server, clients)
    return Visit(f"/watch/{session_id}", (LIVE, "#clip-button:enabled"), server.token("bob"))


async def _pattern(server: ServerUnderTest, clients: list[Client]) -> Visit:
    session_id = await new_pattern(server)
    return Visit(f"/s/{session_id}", (LIVE, ".step"), server.token("alice"))


async def _pattern_not_found(server: ServerUnderTest, clients: list[Client]) -> Visit:
    return Visit(f"/s/{UUID_GONE}", ("#not-found",), server.token("alice"))


async def _session(server: ServerUnderTest, clients: list[Client]) -> Visit:
    session_id = await server.create_session("alice", name="Morning stand-up")
    return Visit(f"/session/{session_id}", (LIVE, "#session-name"), server.token("alice"))


async def _sessions(server: ServerUnderTest, clients: list[Client]) -> Visit:
    """/session without an id: the person's voice sessions, each a link."""
    await server.create_session("alice", name="Morning stand-up")
    return Visit("/session", (".my-session > a",), server.token("alice"))


async def _history(server: ServerUnderTest, clients: list[Client]) -> Visit:
    return Visit("/history", (LIVE, ".day-chart-svg"), server.token("alice"))


async def _player(server: ServerUnderTest, clients: list[Client]) -> Visit:
    return Visit("/player", (LIVE, "#items li"), server.token("alice"))


async def _admin(server: ServerUnderTest, clients: list[Client]) -> Visit:
    await server.create_session("alice", name="Morning stand-up")
    return Visit("/admin", ("#sessions tr", "#kinds tr"), admin_token(server), LONG_TTL_S)


async def _admin_sign_in(server: ServerUnderTest, clients: list[Client]) -> Visit:
    """/admin opened with no identity: its own sign-in form (no guest is made for it)."""
    return Visit("/admin", ("#token-input", "#forbidden-message"))


async def _api_docs(server: ServerUnderTest, clients: list[Client]) -> Visit:
    return Visit("/api-docs", ("#operations > *",))


async def _tg_auth(server: ServerUnderTest, clients: list[Client]) -> Visit:
    return Visit("/tg_auth", ("#login-status:not(:empty)",))


PAGES: dict[str, Callable[[ServerUnderTest, list[Client]], Awaitable[Visit]]] = {
    "landing": _landing,
    "streams": _streams,
    "stream": _stream,
    "watch": _watch,
    "pattern": _pattern,
    "pattern-not-found": _pattern_not_found,
    "session": _session,
    "sessions": _sessions,
    "history": _history,
    "player": _player,
    "admin": _admin,
    "admin-sign-in": _admin_sign_in,
    "api-docs": _api_docs,
    "tg_auth": _tg_auth,
}


async def visit(tab: Tab, server: ServerUnderTest, clients: list[Client], name: str) -> Page:
    """Prepare the data of page ``name``, open it in ``tab`` and wait until it has rendered."""
    planned = await PAGES[name](server, clients)
    if planned.token is not None:
        await tab.use_token(planned.token, ttl_s=planned.ttl_s)
    page = await tab.open(planned.path)
    for selector in planned.ready:
        await expect(page.locator(selector).first).to_be_visible()
    return page
