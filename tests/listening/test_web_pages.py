"""The history page as people read it: device names, the chart's labels (issue 23)."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser import new_tab
from tests.helpers import ServerUnderTest
from tests.listening.support import TOKEN_TTL_S, FrozenClock

# null until the chart is drawn (the history's first answer may come after the device names).
LABELS_INSIDE = """
() => {
  const svg = document.querySelector('#chart svg');
  if (!svg || !svg.querySelector('text')) return null;
  const box = svg.viewBox.baseVal;
  return [...svg.querySelectorAll('text')].map((t) => {
    const b = t.getBBox();
    return {text: t.textContent, inside: b.x >= box.x && b.x + b.width <= box.x + box.width};
  });
}
"""


async def test_devices_have_names_and_every_chart_label_is_whole(
    browser: Browser, lserver: ServerUnderTest, clock: FrozenClock
) -> None:
    tab = await new_tab(browser, lserver)
    try:
        await tab.use_token(lserver.token("alice", ttl_s=TOKEN_TTL_S), ttl_s=TOKEN_TTL_S)
        player = await tab.open("/player")
        await expect(player.locator("#connection")).to_have_attribute("data-state", "live")
        row = player.locator('li[data-item-id="demo-song-3"]')
        await row.locator("button.play").click()
        await expect(row).to_have_attribute("data-last-action", "started")
        clock.shift_ms += 20_000
        await row.locator("button.stop").click()
        await expect(row).to_have_attribute("data-last-action", "finalized")
        device_id = await player.evaluate("localStorage.getItem('sessionhub.listening.device')")
        assert device_id

        history = await tab.page.context.new_page()
        await history.goto(lserver.url + "/history", wait_until="domcontentloaded")
        device = history.locator("#sessions li.listening-row .device")
        await expect(device).to_have_text("This browser")
        await expect(device).to_have_attribute("data-device-id", device_id)
        await expect(history.locator("#sessions li.listening-row")).not_to_contain_text(device_id)

        labels = await (await history.wait_for_function(LABELS_INSIDE)).json_value()
        assert labels and all(label["inside"] for label in labels), labels

        other = await new_tab(browser, lserver)
        try:
            await other.use_token(lserver.token("alice", ttl_s=TOKEN_TTL_S), ttl_s=TOKEN_TTL_S)
            elsewhere = await other.open("/history")
            await expect(elsewhere.locator("#sessions li.listening-row .device")).to_have_text("Another browser")
        finally:
            await other.page.context.close()
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()
