"""A page's subscription answered ``unavailable`` (Redis away a moment: a restart, a failover) is
asked again, and the page follows the session once Redis is back, in real Chromium against a
real server. The answer went to the page's error handler and was never asked again while the
connection stayed up: the page showed what it had until it was reloaded (audit "returning" F4)."""

from __future__ import annotations

import json
import re

from playwright.async_api import WebSocketRoute, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.patterns.test_web import api, new_pattern
from tests.patterns.test_http import full_state

REFUSED = 2


async def test_a_subscribe_answered_unavailable_is_asked_again(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    asked: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            # A subscribe event ("42<ack id>[...]"): the first ones answered as a server whose
            # Redis is away answers them, the rest let through.
            found = re.match(r"42(\d+)(\[.*)", message) if isinstance(message, str) else None
            if found and json.loads(found.group(2))[0] == "subscribe_on_session":
                asked.append(message)
                if len(asked) <= REFUSED:
                    answer = {"ok": False, "error": "unavailable", "message": "Redis is unavailable; try again"}
                    ws.send(f"43{found.group(1)}{json.dumps([answer])}")
                    return
            server_side.send(message)

        ws.on_message(to_server)
        server_side.on_message(ws.send)

    await tab.page.route_web_socket(re.compile(r"/socket\.io/"), route)
    page = await tab.open(f"/s/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=20_000)
    assert len(asked) == REFUSED + 1
    # Following the session: another player's change shows.
    await api(server, "PUT", f"/api/sessions/{session_id}", {"state": full_state(tempo=99)})
    await expect(page.locator("#tempo")).to_have_value("99")
