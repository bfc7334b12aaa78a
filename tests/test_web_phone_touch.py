"""Every page on a real phone's terms, in Chromium emulating one: 390x844 CSS px at 3x, a mobile
viewport (the page's viewport meta applies) and a touch screen (a coarse pointer, no hover).

tests/test_web_phone.py sizes a desktop window like a phone; here the browser is a phone: the
targets a finger taps, the fields iOS zooms into, the steps of the pattern grid under a thumb."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser, expect

from tests.browser import ACTION_TIMEOUT_MS, Tab
from tests.helpers import Client, ServerUnderTest
from tests.test_web_phone import AT_THE_END
from tests.web_pages import PAGES, visit

PORTRAIT = {"width": 390, "height": 844}
LANDSCAPE = {"width": 844, "height": 390}
FINGER_PX = 44  # WCAG 2.5.5; Apple's 44 pt, Google's 48 dp
NO_ZOOM_FONT_PX = 16  # iOS zooms the page into a field with smaller text as it takes the focus


@pytest_asyncio.fixture
async def phone(full_browser: Browser, server: ServerUnderTest) -> AsyncIterator[Tab]:
    """A tab in a phone's context; after the test, no uncaught error or CSP violation."""
    context = await full_browser.new_context(viewport=PORTRAIT, device_scale_factor=3, is_mobile=True, has_touch=True)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    opened = Tab(page=await context.new_page(), base_url=server.url)
    yield opened
    await context.close()
    assert not opened.errors, "the page reported errors:\n" + "\n".join(opened.errors + opened.console)


# Every control a person taps (a link in a line of text is exempt, as in WCAG), with its size.
TARGETS = """() => [...document.querySelectorAll(
    "button, input, select, textarea, summary, a[href], [role=button], [tabindex]:not([tabindex='-1'])")]
  .filter((e) => e.getClientRects().length && getComputedStyle(e).visibility !== "hidden")
  .filter((e) => !(e.tagName === "A" && getComputedStyle(e).display === "inline"))
  .map((e) => [e, e.getBoundingClientRect()])
  .map(([e, box]) => ({
    name: `${e.tagName}#${e.id}.${e.className} ${(e.textContent || "").trim().slice(0, 20)}`,
    width: Math.round(box.width * 10) / 10,
    height: Math.round(box.height * 10) / 10,
  }))"""


@pytest.mark.parametrize("name", list(PAGES))
async def test_every_control_is_a_fingers_size_on_a_touch_screen(
    name: str, server: ServerUnderTest, phone: Tab, clients: list[Client]
) -> None:
    """Before: the top bar's links 24 px tall, the FAB's buttons 35, selects and date fields 28,
    the pattern's steps 25.6 (3 px apart), Mute/Solo/Delete of a track 27x29-33, the admin's sort
    buttons 28 (and 43 px wide), every .button 42 tall. In landscape too."""
    page = await visit(phone, server, clients, name)
    assert await page.evaluate("() => matchMedia('(pointer: coarse)').matches")  # a finger, truly
    for size in (PORTRAIT, LANDSCAPE):
        await page.set_viewport_size(size)
        targets = await page.evaluate(TARGETS)
        assert targets, "no control measured"
        small = [t for t in targets if t["width"] < FINGER_PX or t["height"] < FINGER_PX]
        assert small == [], (size, small)
        width = await page.evaluate("() => [innerWidth, document.documentElement.scrollWidth]")
        assert width[1] <= width[0], (size, width)  # bigger targets, still no sideways scroll


@pytest.mark.parametrize("name", list(PAGES))
async def test_no_field_zooms_the_page_and_the_page_can_be_zoomed(
    name: str, server: ServerUnderTest, phone: Tab, clients: list[Client]
) -> None:
    """Before: every select, number, date and range field (Chromium's 13.3 px: the pattern's
    tempo, swing, volume, step count and sample; the dashboard's sort and export selects; the
    admin's filters, its owner field at its label's 13.6 px) made iOS zoom the page on a tap."""
    page = await visit(phone, server, clients, name)
    meta = await page.locator('meta[name="viewport"]').get_attribute("content")
    assert meta is not None and "width=device-width" in meta, meta
    # A page a person cannot pinch-zoom fails WCAG 1.4.4: neither of these may appear.
    assert "user-scalable" not in meta and "maximum-scale" not in meta, meta
    assert await page.evaluate("() => innerWidth") == PORTRAIT["width"]
    fields = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea")]
          .filter((e) => e.getClientRects().length && e.type !== "hidden")
          .map((e) => [`${e.tagName}#${e.id}.${e.className}`, parseFloat(getComputedStyle(e).fontSize)])"""
    )
    small = [field for field in fields if field[1] < NO_ZOOM_FONT_PX]
    assert small == [], small


@pytest.mark.parametrize("count", ["16", "32", "64"])
async def test_the_pattern_grid_takes_a_thumb_at_every_length(
    count: str, server: ServerUnderTest, phone: Tab, clients: list[Client]
) -> None:
    """A step is a finger's size at 16, 32 and 64 steps (it was 25.6 px, 3 px from the next);
    the grid scrolls sideways inside its own box, never the page, and its last step takes a tap."""
    page = await visit(phone, server, clients, "pattern")
    row = page.locator("#grid .track-row").first
    await row.locator(".step-count").select_option(count)
    steps = row.locator(".step")
    await expect(steps).to_have_count(int(count))
    sizes = await steps.evaluate_all(
        "(all) => all.map((e) => e.getBoundingClientRect()).map((b) => [b.width, b.height])"
    )
    assert min(min(size) for size in sizes) >= FINGER_PX, sizes[:3]
    last = steps.nth(int(count) - 1)
    await last.scroll_into_view_if_needed()
    scrolled = await page.evaluate(
        """() => ({page: scrollX, pageWidth: document.documentElement.scrollWidth, view: innerWidth,
          grid: document.getElementById("grid").scrollLeft})"""
    )
    assert scrolled["page"] == 0 and scrolled["pageWidth"] <= scrolled["view"], scrolled
    assert scrolled["grid"] > 0, scrolled  # the grid, not the page, moved to the last step
    await last.tap()
    await expect(last).to_have_attribute("aria-pressed", "true")


# Whether the control's centre takes a tap there (not the FAB or anything else lying over it).
FREE = """(selector) => {
  const control = document.querySelector(selector);
  const box = control.getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return { free: control === hit || control.contains(hit), hit: hit?.outerHTML.slice(0, 60) ?? null };
}"""


async def test_the_fab_leaves_the_session_page_usable_on_a_phone_held_sideways(
    server: ServerUnderTest, phone: Tab, clients: list[Client]
) -> None:
    """At 844x390 the FAB (status line over its buttons, 126 px) lay over the session page's Done
    button as the page opened; its status line and buttons now share one line there."""
    await phone.page.set_viewport_size(LANDSCAPE)
    page = await visit(phone, server, clients, "session")
    await expect(page.locator("#sessionhub-fab #fab-new")).to_be_enabled()
    done = await page.evaluate(FREE, "#done-button")
    assert done["free"], done
    end = await page.evaluate(AT_THE_END)
    assert end["contentEnd"] <= end["fabTop"] and end["tapped"], end
    await page.evaluate("() => window.scrollTo(0, 0)")
    await page.locator("#done-button").tap()
    await expect(page.locator("#notice")).to_contain_text("Session closed")


# The fields a phone's keyboard opens for, and what they tell it.
TYPED = """() => [...document.querySelectorAll("input, textarea")]
  .filter((e) => e.getClientRects().length && !e.readOnly && !e.disabled)
  .filter((e) => e.tagName === "TEXTAREA" || ["text", "number", "search", "email", "url", "tel"].includes(e.type))
  .map((e) => ({ field: `${e.tagName}#${e.id}.${e.className}`, type: e.type, hint: e.enterKeyHint,
    mode: e.inputMode }))"""


@pytest.mark.parametrize("name", list(PAGES))
async def test_the_on_screen_keyboard_says_what_enter_does(
    name: str, server: ServerUnderTest, phone: Tab, clients: list[Client]
) -> None:
    """No field said what its Enter does (a phone's keyboard showed a bare return key), and the
    number fields (a stream's delay, the tempo, the moment window) opened a full keyboard, not
    the digits."""
    page = await visit(phone, server, clients, name)
    if name == "stream":  # and the dashboard's note editor, opened
        await page.locator(".clip-edit").first.tap()
        await expect(page.locator(".note-edit input")).to_be_focused()
    fields = await page.evaluate(TYPED)
    assert [f for f in fields if not f["hint"]] == []
    assert [f for f in fields if f["type"] == "number" and f["mode"] != "numeric"] == []


async def test_the_clip_note_sends_the_clip_from_the_phones_keyboard(
    server: ServerUnderTest, phone: Tab, clients: list[Client]
) -> None:
    """A tap on the note, a few words, the keyboard's Send (Enter): the clip is taken with it; the
    field stays clear of anything lying over it, in landscape too."""
    await phone.page.set_viewport_size(LANDSCAPE)
    page = await visit(phone, server, clients, "watch")
    note = page.locator("#note-input")
    await note.tap()
    await expect(note).to_be_focused()
    shown = await page.evaluate(FREE, "#note-input")
    assert shown["free"], shown
    await page.keyboard.type("what a save")
    await page.keyboard.press("Enter")
    await expect(page.locator("#mine li")).to_have_count(1)
    await expect(page.locator("#mine li").first).to_contain_text("what a save")


@pytest.mark.parametrize("size", [PORTRAIT, LANDSCAPE], ids=["portrait", "landscape"])
async def test_the_identity_panels_last_buttons_are_not_under_the_fab(
    size: dict[str, int], server: ServerUnderTest, phone: Tab
) -> None:
    """The panel lies over the page: the room kept for the FAB below the page's content did not
    count for it, and scrolled to the very end, Sign out everywhere was still under the FAB."""
    await phone.page.set_viewport_size(size)
    page = await phone.open("/")
    await page.locator("#new-session").tap()  # a first visit: a guest, on a device of its own
    # The landing page knows the new guest before it goes to the session: a tap there opened the
    # panel on the page being left (the fresh-clone run timed out tapping through that navigation).
    await page.wait_for_url("**/session/**")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    await page.locator("#identity-name").tap()
    await page.locator("#identity-link").tap()
    await expect(page.locator("#identity-link-url")).to_be_visible()
    await expect(page.locator("#sessionhub-fab")).to_be_visible()
    await page.evaluate(
        """async () => {
          window.scrollTo(0, document.scrollingElement.scrollHeight);
          await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
        }"""
    )
    # The controls on screen at the end (a panel taller than a phone held sideways starts above it).
    shown = await page.evaluate(
        """() => [...document.querySelectorAll("#identity-panel :is(button, input, a[href])")]
          .filter((e) => e.getClientRects().length)
          .map((e) => [e, e.getBoundingClientRect()])
          .filter(([, box]) => box.top >= 0 && box.bottom <= innerHeight)
          .map(([e, box]) => {
            const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
            return { id: e.id, free: e === hit || e.contains(hit), hit: hit?.id ?? null };
          })"""
    )
    assert "identity-signout-all" in [control["id"] for control in shown], shown
    assert [control for control in shown if not control["free"]] == []


async def test_the_session_name_field_has_room_for_a_name_on_a_phone(
    server: ServerUnderTest, phone: Tab, clients: list[Client]
) -> None:
    """Beside its New voice session button the field was 98 px wide (about 8 characters); it now
    takes the line and the button the next. A tap on the button with a name typed makes it."""
    page = await visit(phone, server, clients, "landing")
    field = page.locator("#session-name-input")
    box = await field.bounding_box()
    assert box is not None and box["width"] >= 12 * NO_ZOOM_FONT_PX, box  # 12 rem: about 20 characters
    await field.tap()
    await page.keyboard.type("Dentist call")
    await page.locator("#new-session").tap()
    await page.wait_for_url("**/session/*")
    await expect(page.locator("#session-name")).to_have_text("Dentist call")


async def test_the_admins_detail_link_is_a_fingers_size(server: ServerUnderTest, phone: Tab) -> None:
    """The detail's "open" link was a word in a line of text, 20 px tall, beside the kind badge."""
    from tests.admin.test_http import LONG_TTL_S, admin_token

    session_id = await server.create_session("bob", name="tapped")
    await phone.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await phone.open("/admin")
    await page.locator(f'#sessions tr[data-id="{session_id}"] .row-open').tap()
    link = page.locator("#detail-link")
    await expect(link).to_be_visible()
    box = await link.bounding_box()
    assert box is not None and box["height"] >= FINGER_PX and box["width"] >= FINGER_PX, box
