"""Two devices press Rec on one session, the second before it has heard of the first's recording:
one recording, and the session's recording lease stays with the device that records."""

from __future__ import annotations

import asyncio
import json
import re
import time

from playwright.async_api import Browser, WebSocketRoute, expect

from tests.browser import new_tab
from tests.helpers import ServerUnderTest
from tests.voice.waits import status_becomes


async def statuses(server: ServerUnderTest, session_id: str, count: int) -> list[tuple[str, str | None]]:
    """The session's status changes (status, reason) once ``count`` are logged (bounded wait)."""
    deadline = time.monotonic() + 10
    while True:
        logged = [
            json.loads(entry["e"])
            for _, entry in await server.services.redis.xrange(server.services.keys.log(session_id))
        ]
        found = [(e["data"]["status"], e["data"].get("reason")) for e in logged if e["type"] == "session_status"]
        if len(found) >= count:
            return found
        assert time.monotonic() < deadline, f"{count} status changes expected: {found}"
        await asyncio.sleep(0.05)


def deaf_to_recordings(ws: WebSocketRoute) -> None:
    """A connection whose page never hears that the session records (a late phone): the server's
    events saying ``recording`` are dropped on their way; answers to its own events (43…) pass."""
    server_side = ws.connect_to_server()
    ws.on_message(server_side.send)

    def to_page(message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("42") and '"recording"' in message:
            return
        ws.send(message)

    server_side.on_message(to_page)


async def test_a_second_rec_on_a_session_recording_elsewhere_records_nothing(
    server: ServerUnderTest, browser: Browser
) -> None:
    laptop_tab, phone_tab = await new_tab(browser, server), await new_tab(browser, server)
    try:
        for tab in (laptop_tab, phone_tab):
            await tab.use_token(server.token("alice"))
        session_id = await server.create_session("alice")
        await server.services.voice.set_active("alice", session_id)
        await phone_tab.page.route_web_socket(re.compile(r"/socket\.io/"), deaf_to_recordings)
        phone = await phone_tab.open("/")
        laptop = await laptop_tab.open("/")
        await expect(phone.locator("#fab-rec")).to_be_enabled()
        await expect(laptop.locator("#fab-rec")).to_be_enabled()
        await laptop.locator("#fab-rec").click()
        await expect(laptop.locator("#fab-status")).to_have_attribute("data-status", "recording")
        await status_becomes(server, session_id, "recording")

        await expect(phone.locator("#fab-rec")).to_be_enabled()  # it has not heard
        await phone.locator("#fab-rec").click()
        await expect(phone.locator("#fab-message")).to_contain_text("already being recorded on another")
        # No second recorder: the phone shows the laptop's, whose recording it may only pause.
        await expect(phone.locator(".fab-label")).to_have_text("Recording elsewhere")
        await expect(phone.locator("#fab-cut")).to_be_disabled()
        await expect(laptop.locator("#fab-status")).to_have_attribute("data-status", "recording")
        # The phone's refused "recording" left the lease with the laptop: nothing paused, then
        # taken again (it took the lease, and had to give it back by connecting anew).
        await phone.close()
        await laptop.close()
        await status_becomes(server, session_id, "paused")
        assert await statuses(server, session_id, 2) == [("recording", None), ("paused", "recorder_gone")]
    finally:
        await laptop_tab.page.context.close()
        await phone_tab.page.context.close()
