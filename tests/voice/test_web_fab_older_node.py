"""In Chromium: a FAB of this release records through a node of the release before (a rolling
upgrade, a rollback), which refuses `set_session_status`'s fields it does not know.

The FAB names itself (`recorder`, and `own` on a pause it heard); the release before refused
them as `invalid_payload` ("recorder: Extra inputs are not permitted"), and the page recorded
nothing through that node, saying the raw refusal (audit "upgrade50"). It asks again without them.
The older node is played here by the test, answering as that release answers."""

from __future__ import annotations

import json
import re

from playwright.async_api import WebSocketRoute, expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.voice.waits import status_becomes

OLD_REFUSAL = {"ok": False, "error": "invalid_payload", "message": "recorder: Extra inputs are not permitted"}


async def test_a_fab_records_through_a_node_that_does_not_know_its_new_fields(
    server: ServerUnderTest, tab: Tab
) -> None:
    refused: list[str] = []

    def route(ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def to_server(message: str | bytes) -> None:
            found = re.match(r"42(\d+)(\[.*)", message) if isinstance(message, str) else None
            if found and json.loads(found.group(2))[0] == "set_session_status":
                fields = json.loads(found.group(2))[1]
                if "recorder" in fields or "own" in fields:
                    refused.append(message)
                    ws.send(f"43{found.group(1)}{json.dumps([OLD_REFUSAL])}")
                    return
            server_side.send(message)

        ws.on_message(to_server)
        server_side.on_message(ws.send)

    await tab.page.route_web_socket(re.compile(r"/socket\.io/"), route)
    await tab.use_token(server.token("alice"))
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    page = await tab.open("/")
    await expect(page.locator("#fab-rec")).to_be_enabled()
    await page.locator("#fab-rec").click()
    await status_becomes(server, session_id, "recording")
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await page.locator("#fab-pause").click()
    await status_becomes(server, session_id, "paused")
    await expect(page.locator("#fab-message")).not_to_contain_text("Extra inputs")
    assert len(refused) == 1  # asked once with them; not again on this connection
