"""/admin by keyboard: the orphan days' refusal tied to its field, a focused sort button in view
(audit "keyboard", findings 3 and 6)."""

from __future__ import annotations

from playwright.async_api import expect

from tests.admin.test_http import LONG_TTL_S, admin_token
from tests.browser import Tab
from tests.helpers import ServerUnderTest

# How much of the focused control shows inside its scrolling region, in CSS pixels.
SHOWN = """
(button) => {
  const region = button.closest(".table-scroll");
  const b = button.getBoundingClientRect();
  const r = region.getBoundingClientRect();
  return {
    shown: Math.min(b.right, r.right) - Math.max(b.left, r.left),
    width: b.width,
    overflow: region.scrollWidth - region.clientWidth,
    scrollLeft: region.scrollLeft,
  };
}
"""


async def test_orphan_days_refused_are_said_beside_the_field_which_takes_the_focus(
    tab: Tab, server: ServerUnderTest
) -> None:
    """-5 and Enter: "Enter a whole number of days (1 or more)." went to the bulk status line,
    and the field was neither marked invalid nor described by it."""
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#dashboard")).to_be_visible()
    days = page.locator("#orphan-days")
    await days.fill("-5")
    await days.press("Enter")
    rule = "Enter a whole number of days, 1 to 36500."
    await expect(page.locator("#orphan-days-error")).to_have_text(rule)
    await expect(page.locator("#orphan-days-error")).to_have_attribute("role", "status")
    await expect(days).to_have_attribute("aria-invalid", "true")
    await expect(days).to_have_accessible_description(rule)
    await expect(days).to_be_focused()
    await expect(page.locator("#orphans-confirm")).to_be_hidden()

    await days.fill("99999")  # five digits the page took, more days than the server does
    await expect(days).not_to_have_attribute("aria-invalid", "true")  # corrected: unmarked meanwhile
    await page.locator("#orphans-form button[type=submit]").focus()
    await page.keyboard.press("Enter")
    await expect(days).to_have_attribute("aria-invalid", "true")
    await expect(days).to_have_accessible_description(rule)
    await expect(days).to_be_focused()

    await days.fill("30")  # a number it takes: counted, the mark and the message gone
    await days.press("Enter")
    await expect(page.locator("#bulk-status")).to_have_text("0 orphan(s) not accessed for 30 days.")
    await expect(days).not_to_have_attribute("aria-invalid", "true")
    await expect(days).not_to_have_attribute("aria-describedby", "orphan-days-error")
    await expect(page.locator("#orphan-days-error")).to_have_text("")


async def test_a_sort_button_tabbed_to_is_scrolled_into_its_tables_view(tab: Tab, server: ServerUnderTest) -> None:
    """At 1280 px the audit's Sessions table was 63 px wider than its scrolling region: Tab to its
    last sort button ("Remixes") left it cut off (the region did not scroll), its focus ring
    around one letter. The width at which this table is so much wider depends on what it holds:
    the test takes the widest window that cuts the button off but still shows part of it."""
    await server.create_session("alice", "A session whose name takes some room in the table")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#sessions tr")).to_have_count(1)
    remixes = page.get_by_role("button", name="Remixes", exact=True)
    for width in range(1280, 640, -10):
        await page.set_viewport_size({"width": width, "height": 800})
        before = await remixes.evaluate(SHOWN)
        if 0 < before["shown"] < before["width"] / 2:
            break
    else:
        raise AssertionError("no window width cuts the Remixes button off partly")
    await page.get_by_role("button", name="Files", exact=True).focus()
    await page.keyboard.press("Tab")
    await expect(remixes).to_be_focused()
    after = await remixes.evaluate(SHOWN)
    assert after["shown"] >= after["width"] - 0.5 and after["scrollLeft"] > 0, (width, before, after)
