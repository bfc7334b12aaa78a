"""Names the server refuses (handlers/patterns/state.py bounded_text: no < or >, no control
characters, no "javascript:"), on the pattern page in real Chromium against a real server.

Before: "Rock <3" went out, the server answered invalid_payload, a toast showed the validator's
words for 4 s, and the field went on showing the refused name as if it were saved."""

from __future__ import annotations

import asyncio
import json
import re

from playwright.async_api import Browser, Page, WebSocket, WebSocketRoute, expect

from tests.browser import Tab, new_tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web import api, new_pattern, open_live

NOT_SAVED = "Not saved: names can't contain < or >."


def name_ops(tab: Tab) -> tuple[list[dict[str, object]], asyncio.Event]:
    """The set_name and rename_track ops the page sends, as they go out; an event set at each."""
    sent: list[dict[str, object]] = []
    arrived = asyncio.Event()

    def watch(socket: WebSocket) -> None:
        def frame(payload: str | bytes) -> None:
            text = payload if isinstance(payload, str) else payload.decode()
            if not text.startswith("42") or "pattern_op" not in text:
                return
            body = json.loads(text[text.index("[") :])
            if body[1]["op"]["type"] in ("set_name", "rename_track"):
                sent.append(body[1]["op"])
                arrived.set()

        socket.on("framesent", frame)

    tab.page.on("websocket", watch)
    return sent, arrived


async def next_op(arrived: asyncio.Event) -> None:
    await asyncio.wait_for(arrived.wait(), timeout=10)
    arrived.clear()


async def test_a_refused_name_is_said_beside_its_field_and_never_sent(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    session_id = await new_pattern(server)
    sent, arrived = name_ops(tab)
    page = await open_live(tab, f"/s/{session_id}")
    other = await new_tab(browser, server)
    try:
        watcher = await open_live(other, f"/s/{session_id}")
        name, message = page.locator("#pattern-name"), page.locator("#pattern-name-error")
        await expect(name).to_have_value("Funky Beat")
        await expect(message).to_be_hidden()

        # Said as it is typed, and again, for good, once entered: the text stays to correct.
        await name.fill("Rock <3")
        await expect(message).to_have_text("Names can't contain < or >.")
        await name.press("Enter")
        await expect(message).to_have_text(NOT_SAVED)
        await expect(message).to_be_visible()
        await expect(name).to_have_attribute("aria-invalid", "true")
        await expect(name).to_have_attribute("aria-describedby", "pattern-name-error")
        await expect(name).to_be_focused()
        await expect(name).to_have_value("Rock <3")
        # Leaving the field: the saved name is back, the message still says why.
        await name.press("Tab")
        await expect(name).to_have_value("Funky Beat")
        await expect(name).not_to_have_attribute("aria-invalid", "true")
        await expect(message).to_have_text(NOT_SAVED)
        await expect(page.locator("#toast")).to_be_hidden()

        # The text changed to one the server takes: the message goes, and that name is sent.
        await name.fill("Rock 3")
        await expect(message).to_be_hidden()
        await expect(name).not_to_have_attribute("aria-describedby", "pattern-name-error")
        await name.press("Enter")
        await next_op(arrived)
        await expect(watcher.locator("#pattern-name")).to_have_value("Rock 3")

        # A track's name, refused as the focus leaves it: said beside it, in its row.
        row = page.locator(".track-row").first
        track_name, track_message = row.locator(".track-name"), row.locator(".track-name-error")
        await expect(track_name).to_have_value("Kick")
        await track_name.fill("Kick > Snare")
        await track_name.press("Tab")
        await expect(track_message).to_have_text(NOT_SAVED)
        await expect(track_message).to_be_visible()
        await expect(track_name).to_have_value("Kick")
        await expect(track_name).to_have_attribute("aria-describedby", "track-name-error-t1")
        await expect(track_message).to_have_attribute("id", "track-name-error-t1")
        await track_name.fill("javascript:alert(1)")
        await expect(track_message).to_have_text("Names can't contain “javascript:”.")
        await track_name.fill("Kick and snare")
        await expect(track_message).to_be_hidden()
        await track_name.press("Enter")
        await next_op(arrived)
        await expect(watcher.locator(".track-row .track-name").first).to_have_value("Kick and snare")
    finally:
        await other.page.context.close()

    # Only the names the server takes went out; a reload shows them.
    assert [op.get("name") for op in sent] == ["Rock 3", "Kick and snare"], sent
    stored = await api(server, "GET", f"/api/sessions/{session_id}")
    assert stored["name"] == "Rock 3" and stored["state"]["tracks"][0]["name"] == "Kick and snare", stored
    assert not other.errors, other.errors


async def test_a_name_the_server_refuses_anyway_puts_the_saved_name_back(server: ServerUnderTest, tab: Tab) -> None:
    """A name the page lets through but the server refuses (a page of an older rule: here the
    test, between the page and the real server, puts a "<" into the name the page sent): the field
    shows the saved name again and says why beside it, not a toast of the validator's words."""
    session_id = await new_pattern(server)

    def route(ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and '"set_name"' in message:
                message = message.replace('"Rock 3"', '"Rock <3"')
            server_side.send(message)

        ws.on_message(to_server)
        server_side.on_message(ws.send)

    await tab.page.route_web_socket(re.compile(r"/socket\.io/"), route)
    page: Page = await open_live(tab, f"/s/{session_id}")
    name, message = page.locator("#pattern-name"), page.locator("#pattern-name-error")
    await expect(name).to_have_value("Funky Beat")
    await name.fill("Rock 3")
    await name.press("Enter")
    await expect(message).to_have_text("Not saved: names can't contain < or >, control characters or “javascript:”.")
    await expect(name).to_have_value("Funky Beat")
    await expect(name).to_have_attribute("aria-describedby", "pattern-name-error")
    await expect(page.locator("#toast")).not_to_contain_text("Value error")
    await page.reload()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(name).to_have_value("Funky Beat")


async def test_a_name_of_emoji_within_the_limit_is_saved_whole(server: ServerUnderTest, tab: Tab) -> None:
    """The server counts a name's characters (32 for a track, 100 for the pattern); the page cut
    what was entered at 32 and 100 UTF-16 units, in which each of these emoji takes two: one
    letter taken off a name of 31 🎵 saved 16 of them, with no word (audit "patternjam")."""
    from tests.patterns.test_http import full_state, track

    session_id = await new_pattern(server, name="a" + "🎸" * 99, state=full_state(tracks=[track(name="a" + "🎵" * 31)]))
    sent, arrived = name_ops(tab)
    page = await open_live(tab, f"/s/{session_id}")
    name, track_name = page.locator("#pattern-name"), page.locator(".track-name").first
    await expect(track_name).to_have_value("a" + "🎵" * 31)
    for field in (track_name, name):  # the "a" taken off, as a person does
        await field.focus()
        await field.press("Home")
        await field.press("Delete")
        await field.press("Enter")
        await next_op(arrived)
    assert [op.get("name") for op in sent] == ["🎵" * 31, "🎸" * 99], sent
    stored = await api(server, "GET", f"/api/sessions/{session_id}")
    assert (stored["name"], stored["state"]["tracks"][0]["name"]) == ("🎸" * 99, "🎵" * 31)
    # One more than the server takes is said, and not sent; as many as it takes can be typed.
    await track_name.fill("x" * 33)
    await expect(page.locator(".track-name-error").first).to_have_text("Names are at most 32 characters.")
    await track_name.press("Enter")
    await track_name.fill("🎵" * 32)
    await expect(track_name).to_have_value("🎵" * 32)
    await track_name.press("Enter")
    await next_op(arrived)
    assert [op.get("name") for op in sent[2:]] == ["🎵" * 32], sent
