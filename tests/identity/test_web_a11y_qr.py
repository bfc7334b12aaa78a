"""The device link's QR code as a screen reader meets it (audit "keyboard", finding 5)."""

from __future__ import annotations

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import ServerUnderTest


async def test_the_device_links_qr_code_is_one_named_image(server: ServerUnderTest, tab: Tab) -> None:
    """The tree had a generic div named "QR code of the link" (a name screen readers do not read
    on a div) around an unnamed image: what was heard was "image"."""
    page = await tab.open("/streams")  # a guest made by a create can link another device
    await page.locator("#title-input").fill("Linked")
    await page.locator("#create-button").click()
    await page.wait_for_url(f"{server.url}/streams/*")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    await page.locator("#identity-name").focus()
    await page.keyboard.press("Enter")
    await page.get_by_role("button", name="Link another device").press("Enter")
    qr = page.get_by_role("img", name="QR code of the device link", exact=True)
    await expect(qr).to_be_visible()
    await expect(qr.locator("svg")).to_be_visible()
    cdp = await page.context.new_cdp_session(page)
    try:
        nodes = (await cdp.send("Accessibility.getFullAXTree"))["nodes"]
    finally:
        await cdp.detach()
    images = [
        node.get("name", {}).get("value", "")
        for node in nodes
        if node.get("role", {}).get("value") in ("image", "img", "graphics-document") and not node.get("ignored")
    ]
    assert images == ["QR code of the device link"], images  # the SVG inside is no second, unnamed one
