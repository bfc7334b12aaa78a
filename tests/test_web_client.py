"""web/js/client.js is the one place for what every page shares: `$`, the connection badge, the
authenticated download, and the token record; the pages use it instead of copies of their own."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest

JS = Path(__file__).resolve().parent.parent / "web" / "js"
# What only client.js may define or do.
SHARED = {
    "a `$` of its own": re.compile(r"\bconst \$ =|function \$\("),
    "a connection badge text of its own": re.compile(r"Offline — reconnecting"),
    "a bearer header of its own on a download": re.compile(r"\.blob\(\)|createObjectURL"),
    "a token record written by hand": re.compile(r"TOKEN_KEY|sessionhub\.token"),
}


def test_pages_use_the_shared_client_instead_of_copies() -> None:
    found = [
        f"{path.name} has {what}"
        for path in sorted(JS.glob("*.js"))
        if path.name != "client.js"
        for what, pattern in SHARED.items()
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert not found, found


async def test_a_refused_download_rejects_with_the_servers_error_code(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/history")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    refused = await page.evaluate(
        """async () => {
          const client = await import("/static/js/client.js");
          try {
            await client.download("/api/listening/export?format=xml", "x.xml");
            return null;
          } catch (err) {
            return { name: err.name, code: err.code, status: err.status };
          }
        }"""
    )
    assert refused == {"name": "ApiError", "code": "invalid_payload", "status": 400}


async def test_every_page_names_connection_states_alike(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/history")
    badge = page.locator("#connection")
    await expect(badge).to_have_text("Live")
    texts = await page.evaluate(
        """async () => {
          const { showConnection } = await import("/static/js/client.js");
          const badge = document.createElement("span");
          return ["connecting", "connected", "live", "offline", "unauthorized"].map((state) => {
            showConnection(badge, state);
            return [badge.dataset.state, badge.textContent];
          });
        }"""
    )
    assert texts == [
        ["connecting", "Connecting…"],
        ["connected", "Connecting…"],
        ["live", "Live"],
        ["offline", "Offline — reconnecting…"],
        ["unauthorized", "Not signed in"],
    ]
