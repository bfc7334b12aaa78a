"""In Chromium: the streamer's dashboard names who clipped by display name, as text, and follows a rename."""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started

HOSTILE_NAME = '<img src=x onerror="window.__pwned=1">Ada'


async def test_the_dashboard_shows_each_viewers_current_name_escaped(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    clock = server.services.clock
    session_id, _ = await started(server, clients)
    await server.services.identities.rename("viewer-1", HOSTILE_NAME)
    named = await connect(server, clients, "viewer-1")
    unnamed = await connect(server, clients, "viewer-2")
    assert (await named.call("clip_submit", {"session_id": session_id, "note": "first"}))["ok"] is True
    assert (await unnamed.call("clip_submit", {"session_id": session_id, "note": "second"}))["ok"] is True

    await tab.use_token(server.token("alice"))
    dash = await tab.open(f"/streams/{session_id}")
    await expect(dash.locator("#connection")).to_have_attribute("data-state", "live")
    who = dash.locator(".review-clip .who")
    await expect(who).to_have_text([HOSTILE_NAME, re.compile(r"^viewer [0-9a-f]{12}$")])
    assert await dash.locator(".review-clip img").count() == 0  # text, not markup
    assert await dash.evaluate("window.__pwned") is None

    # A live clip names nobody on the wire; the page knows this viewer's name from the review.
    clock.shift_ms = 5_000  # past the per-viewer cooldown
    try:
        assert (await named.call("clip_submit", {"session_id": session_id, "note": "third"}))["ok"] is True
    finally:
        clock.shift_ms = 0
    await expect(who).to_have_count(3)
    await expect(dash.locator(".review-clip", has_text="third").locator(".who")).to_have_text(HOSTILE_NAME)

    # A rename shows on the next load, on the clips made before it too.
    await server.services.identities.rename("viewer-1", "Ada L.")
    await dash.reload(wait_until="domcontentloaded")
    await expect(dash.locator(".review-clip", has_text="first").locator(".who")).to_have_text("Ada L.")
    await expect(dash.locator(".review-clip", has_text="third").locator(".who")).to_have_text("Ada L.")
    assert await dash.evaluate("window.__pwned") is None
    assert not tab.errors, tab.errors
