"""In Chromium: /history's Delete sent on a stalled network (SocketGate mutes the socket) says it
was not confirmed and whether pressing again is safe, not "Delete failed: Not confirmed…"; Delete
all is sent again as the same press (its request_id) until answered."""

from __future__ import annotations

import aiohttp
from playwright.async_api import expect

from tests.browser import Tab, accept_dialogs
from tests.helpers import ServerUnderTest
from tests.test_web_stalled_actions import GIVEN_UP_MS, NOT_CONFIRMED, live, stall_out, stalled

ROW_NOT_CONFIRMED = (
    "Delete not confirmed: the server did not answer in time (the connection may be stalled). If the session"
    " is still listed once the connection is back, press its Delete again: that is safe, nothing is deleted twice."
)
ALL_NOT_CONFIRMED = (
    f"{NOT_CONFIRMED} Delete all is being sent again once the connection is back, as the same press: nothing"
    " played since is deleted."
)


async def test_a_stalled_delete_says_it_was_not_confirmed_and_whether_to_press_again(
    server: ServerUnderTest, tab: Tab
) -> None:
    now = server.services.clock.now_ms()
    body = {
        "item_id": "item-0",
        "device_id": "car",
        "client_id": "c0",
        "started_at": now - 2 * 3_600_000,
        "ended_at": now - 3_600_000,
        "item": {"title": "Stalled"},
    }
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/listening/upload", json=body, headers=headers) as r:
            assert r.status == 201, await r.text()
    gate = await stalled(tab)
    await tab.use_token(server.token("alice"))
    history = await live(tab, "/history")
    rows = history.locator("#sessions li.listening-row")
    await expect(rows).to_have_count(1)
    error = history.locator("#history-error")

    gate.mute()
    accept_dialogs(history)  # the Delete's question
    await rows.locator("button.delete").click()
    await gate.until_kept("listening_delete")
    await stall_out(history)
    await expect(error).to_have_text(ROW_NOT_CONFIRMED, timeout=GIVEN_UP_MS)
    await history.locator("#clear").click()
    await history.locator("#clear-yes").click()
    await gate.until_kept("listening_clear")
    await stall_out(history)
    # Delete all is a press sent again as itself (its request_id), not one to press again: said in
    # its status line, and it goes on trying.
    await expect(history.locator("#clear-status")).to_have_text(ALL_NOT_CONFIRMED, timeout=GIVEN_UP_MS)

    gate.unmute()  # every try reaches the server: the row goes, and the history is cleared once
    await expect(rows).to_have_count(0)
    await expect(history.locator("#clear-status")).to_have_text("Your history was deleted.")
    assert not tab.errors, tab.errors
