"""In Chromium: a page whose connection was down while its session was deleted says so.

The deletion's last event went to the subscribers connected then. A page that was not (a phone
in a tunnel, a laptop asleep) subscribes again when it reconnects and is answered
``session_not_found``: it said "Live updates stopped: no such session" under a session still
shown as if it were there (the voice session page), or under a live Clip button (the viewers'
page), where the deletion is what happened."""

from __future__ import annotations

from collections.abc import Awaitable

from playwright.async_api import Page, expect

from tests.admin.test_web_deleted_open import admin_delete
from tests.browser import SocketGate, Tab
from tests.helpers import ServerUnderTest
from tests.streams.helpers import create_stream, http


async def opened_behind_a_gate(tab: Tab, path: str, user: str, server: ServerUnderTest) -> tuple[Page, SocketGate]:
    """``path`` opened as ``user``, its connection routed through a gate the test can cut."""
    await tab.use_token(server.token(user))
    gate = SocketGate()
    await gate.install(tab.page)
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page, gate


async def deleted_while_away(page: Page, gate: SocketGate, delete: Awaitable[None]) -> None:
    """Cut the page's connection, delete its session meanwhile, then let it reconnect."""
    await gate.cut()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    await delete
    gate.release()


async def owner_delete(server: ServerUnderTest, session_id: str) -> None:
    status, _ = await http(server, "DELETE", f"/voicebot/sessions/{session_id}")
    assert status == 200


async def test_the_voice_session_page_says_a_session_deleted_while_it_was_away_was_deleted(
    server: ServerUnderTest, tab: Tab
) -> None:
    session_id = await server.create_session("alice")
    page, gate = await opened_behind_a_gate(tab, f"/session/{session_id}", "alice", server)
    await deleted_while_away(page, gate, owner_delete(server, session_id))
    await expect(page.locator("#page-error-title")).to_have_text("Session deleted")
    await expect(page.locator("#page-error-message")).to_contain_text("deleted while this page was not connected")


async def test_the_viewers_page_says_a_stream_deleted_while_it_was_away_was_deleted(
    server: ServerUnderTest, tab: Tab
) -> None:
    stream_id = await create_stream(server, user="alice")
    assert (await http(server, "POST", f"/api/streams/{stream_id}/state", json={"action": "start"}))[0] == 200
    page, gate = await opened_behind_a_gate(tab, f"/watch/{stream_id}", "bob", server)
    await expect(page.locator("#clip-button")).to_be_enabled()
    await deleted_while_away(page, gate, admin_delete(server, stream_id))
    await expect(page.locator("#page-error-title")).to_have_text("Stream deleted")
    await expect(page.locator("#clip-button")).to_be_hidden()


async def test_the_dashboard_says_a_stream_deleted_while_it_was_away_was_deleted(
    server: ServerUnderTest, tab: Tab
) -> None:
    stream_id = await create_stream(server, user="alice", title="Gone")
    page, gate = await opened_behind_a_gate(tab, f"/streams/{stream_id}", "alice", server)
    await deleted_while_away(page, gate, admin_delete(server, stream_id))
    await expect(page.locator("#page-error-title")).to_have_text("Stream deleted")
    await expect(page.locator("#dashboard")).to_be_hidden()
