"""Every page fits a phone (390x844): no sideways page scroll, every control a fingertip's target;
the pattern grid scrolls inside itself with readable track names and all 16 steps reachable."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.web_pages import PAGES, PHONE, visit

MIN_NAME_FONT_PX = 12
MIN_NAME_WIDTH_PX = 56  # about six characters at that size
MIN_STEP_PX = 24  # a fingertip's target
MIN_TARGET_PX = 24  # WCAG 2.2 target size (minimum), 2.5.8


# A phone's "large text" setting, as the page sees it: every rem twice as large (set through the
# CSSOM: the pages' CSP refuses an added <style>).
LARGE_TEXT = "document.documentElement.style.setProperty('font-size', '200%', 'important')"


@pytest.mark.parametrize("text", ["normal", "large"])
@pytest.mark.parametrize("name", list(PAGES))
async def test_the_page_fits_a_phone(
    name: str, text: str, server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Large text too: the admin's filter fields kept their width, 530 px on a 390 px phone, and the
    page scrolled sideways (audit "a11ykeys")."""
    await tab.page.set_viewport_size(PHONE)
    page = await visit(tab, server, clients, name)
    if text == "large":
        await page.evaluate(LARGE_TEXT)
    wide = await page.evaluate(
        """() => {
          // Wider content inside a box that scrolls (or clips) on its own does not move the page.
          const scrolledInside = (e) => {
            for (let up = e.parentElement; up && up !== document.body; up = up.parentElement) {
              if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(up).overflowX)) return true;
            }
            return false;
          };
          return [...document.querySelectorAll("body *")]
          .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > window.innerWidth + 0.5)
          .filter((e) => !scrolledInside(e))
          .map((e) => e.tagName + (e.id ? "#" + e.id : "") + "." + e.className)
          .slice(0, 10);
        }"""
    )
    assert not wide, wide
    widths = await page.evaluate(
        "() => ({view: window.innerWidth, doc: document.documentElement.scrollWidth, body: document.body.scrollWidth})"
    )
    assert widths["doc"] <= widths["view"] and widths["body"] <= widths["view"], widths


async def test_the_pattern_grid_is_playable_on_a_phone(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    await tab.page.set_viewport_size(PHONE)
    page = await visit(tab, server, clients, "pattern")
    names = page.locator("#grid .track-name")
    await expect(names.first).to_be_visible()
    for i in range(await names.count()):
        name = names.nth(i)
        font_px = float(await name.evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
        placed = await name.bounding_box()
        assert placed is not None
        assert font_px >= MIN_NAME_FONT_PX and placed["width"] >= MIN_NAME_WIDTH_PX, (font_px, placed)
        full = await name.input_value()
        shown_all = await name.evaluate("e => e.scrollWidth <= e.clientWidth || e.title === e.value")
        assert shown_all, f"track name {full!r} is cut without a title"
    steps = page.locator("#grid .step")
    assert await steps.count() >= 16
    last = steps.nth(15)
    box = await last.bounding_box()
    assert box is not None and box["width"] >= MIN_STEP_PX and box["height"] >= MIN_STEP_PX, box
    # The last step is reached by scrolling the grid, not the page, and then takes a tap.
    await last.scroll_into_view_if_needed()
    assert await page.evaluate("() => window.scrollX") == 0
    before = await last.get_attribute("aria-pressed")
    await last.click()
    await expect(last).not_to_have_attribute("aria-pressed", before or "")


@pytest.mark.parametrize("name", list(PAGES))
async def test_every_control_is_a_fingertip_target_on_a_phone(
    name: str, server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    await tab.page.set_viewport_size(PHONE)
    page = await visit(tab, server, clients, name)
    small = await page.evaluate(
        """(min) => {
          const inSentence = (e) => /\\p{L}/u.test(
            [...e.parentElement.childNodes].filter((n) => n !== e).map((n) => n.textContent).join("")
          );
          return [...document.querySelectorAll("button, input, select, textarea, summary, a[href]")]
          .filter((e) => e.getClientRects().length && getComputedStyle(e).visibility !== "hidden")
          // A link in a sentence is exempt (WCAG's inline exception); a link styled as a button is
          // not, nor one on a line of its own (no words beside it: "Open the player · See my history").
          .filter((e) => !(e.tagName === "A" && getComputedStyle(e).display === "inline" && inSentence(e)))
          .map((e) => [e, e.getBoundingClientRect()])
          .filter(([, box]) => box.width < min || box.height < min)
          .map(([e, box]) => `${e.tagName}#${e.id}.${e.className} ${Math.round(box.width)}x${Math.round(box.height)}`);
        }""",
        MIN_TARGET_PX,
    )
    assert not small, small


# Scrolled to the very end: where the page's content ends, where the FAB starts, and whether the
# last control of the page takes a tap at its centre (not the FAB lying over it).
AT_THE_END = """async () => {
  window.scrollTo(0, document.scrollingElement.scrollHeight);
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const controls = [...document.querySelectorAll("main a[href], main button, main input, main select")]
    .filter((e) => e.getClientRects().length);
  const last = controls.at(-1);
  const box = last.getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {
    contentEnd: document.querySelector("main").getBoundingClientRect().bottom,
    fabTop: document.getElementById("sessionhub-fab").getBoundingClientRect().top,
    last: last.outerHTML.slice(0, 80),
    tapped: last === hit || last.contains(hit),
  };
}"""


@pytest.mark.parametrize("name", ["landing", "session"])
async def test_nothing_is_under_the_fab_at_the_end_of_a_page(
    name: str, server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    await tab.page.set_viewport_size(PHONE)
    page = await visit(tab, server, clients, name)
    await expect(page.locator("#sessionhub-fab")).to_be_visible()
    end = await page.evaluate(AT_THE_END)
    assert end["contentEnd"] <= end["fabTop"] and end["tapped"], end
    # The FAB grows when it says something (an error, say): still nothing under it.
    await page.evaluate(
        """() => {
          const message = document.getElementById("fab-message");
          message.textContent = "The microphone is not available: NotAllowedError: Permission denied by the system";
          message.toggleAttribute("data-said", true);  // as fab.js say() marks a message
        }"""
    )
    end = await page.evaluate(AT_THE_END)
    assert end["contentEnd"] <= end["fabTop"] and end["tapped"], end


# The control the keyboard focused, if it is in `main`, and whether the FAB lies over its centre.
FOCUSED_UNDER_THE_FAB = """async () => {
  await new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)));
  const control = document.activeElement;
  if (!control?.closest("main")) return { control: null, under: false };
  const box = control.getBoundingClientRect();
  const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
  return {
    control: control.outerHTML.slice(0, 80),
    under: document.getElementById("sessionhub-fab").contains(hit),
  };
}"""


@pytest.mark.parametrize("name", ["landing", "session"])
async def test_a_control_the_keyboard_reaches_is_not_under_the_fab(
    name: str, server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Tab scrolls the next control just into view, at the bottom edge: there it was under the
    FAB, focused but unseen (WCAG 2.4.11)."""
    await tab.page.set_viewport_size(PHONE)
    page = await visit(tab, server, clients, name)
    await expect(page.locator("#sessionhub-fab")).to_be_visible()
    reached: list[str] = []
    hidden: list[str] = []
    for _ in range(80):  # more than either page has controls: the end of `main` is reached
        await page.keyboard.press("Tab")
        focused = await page.evaluate(FOCUSED_UNDER_THE_FAB)
        if focused["control"] is None:
            if reached:
                break  # past the end of main (the FAB's own buttons come after it)
            continue
        reached.append(focused["control"])
        if focused["under"]:
            hidden.append(focused["control"])
    assert len(reached) >= 2, reached
    assert hidden == [], hidden


async def test_the_identity_panels_controls_are_fingertip_targets_on_a_phone(server: ServerUnderTest, tab: Tab) -> None:
    """The panel's text fields had no type, so the text fields' style missed them: 18 px tall."""
    await tab.page.set_viewport_size(PHONE)
    page = await tab.open("/")
    await page.locator("#new-session").click()  # a first visit: a guest, on a device of its own
    # The landing page knows the new guest before it goes to the session: a panel opened there
    # went with it (CI caught the click landing on the page being left).
    await page.wait_for_url("**/session/**")
    await expect(page.locator("#identity")).to_have_attribute("data-state", "known")
    await page.locator("#identity-name").click()
    await page.locator("#identity-link").click()
    await expect(page.locator("#identity-link-url")).to_be_visible()
    small = await page.evaluate(
        """(min) => [...document.querySelectorAll("#identity-panel :is(button, input, select, a[href])")]
          .filter((e) => e.getClientRects().length)
          .map((e) => [e, e.getBoundingClientRect()])
          .filter(([, box]) => box.width < min || box.height < min)
          .map(([e, box]) => `${e.tagName}#${e.id} ${Math.round(box.width)}x${Math.round(box.height)}`)""",
        MIN_TARGET_PX,
    )
    assert not small, small


# The smallest phones: WCAG 2.1 reflow (1.4.10) asks for no sideways scroll at 320 CSS px.
SMALL_PHONE = {"width": 320, "height": 640}

# The controls that stick out of their panel's content box (past its padding, or out of the
# screen), but those inside a box that scrolls on its own (the pattern grid, the admin tables).
OUT_OF_THEIR_PANEL = """() => {
  const scrolledInside = (e, panel) => {
    for (let up = e.parentElement; up && up !== panel; up = up.parentElement) {
      if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(up).overflowX)) return true;
    }
    return false;
  };
  return [...document.querySelectorAll("main button, main input, main select, main textarea, main a.button")]
    .filter((e) => e.getClientRects().length && getComputedStyle(e).visibility !== "hidden")
    .map((e) => [e, e.closest(".panel")])
    .filter(([e, panel]) => panel && !scrolledInside(e, panel))
    .filter(([e, panel]) => {
      const box = e.getBoundingClientRect();
      const outer = panel.getBoundingClientRect();
      const style = getComputedStyle(panel);
      const right = Math.min(outer.right - parseFloat(style.paddingRight), window.innerWidth);
      return box.right > right + 0.5 || box.left < outer.left + parseFloat(style.paddingLeft) - 0.5;
    })
    .map(([e]) => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`);
}"""


@pytest.mark.parametrize("name", list(PAGES))
async def test_the_page_reflows_on_the_smallest_phones(
    name: str, server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """At 320 px the pattern page's name field (16 rem at least, and its 20 characters), the Clip
    Moment button, the player's Stop buttons and history's Delete all history went out of their
    panel and the page scrolled sideways; at 390 px the name field and Delete all history still
    lay over their panel's padding, Delete all history broken over three lines."""
    await tab.page.set_viewport_size(SMALL_PHONE)
    page = await visit(tab, server, clients, name)
    assert not await page.evaluate(OUT_OF_THEIR_PANEL)
    widths = await page.evaluate("() => ({view: window.innerWidth, doc: document.documentElement.scrollWidth})")
    assert widths["doc"] <= widths["view"], widths
    await page.set_viewport_size(PHONE)
    assert not await page.evaluate(OUT_OF_THEIR_PANEL)
