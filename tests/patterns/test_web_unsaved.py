"""Edits on the pattern page that the server has not confirmed when the page goes (a reload, a
closed tab, a phone discarding it) are made again by the next load of the session; guests
jamming together are told apart."""

from __future__ import annotations

import re

from playwright.async_api import Browser, Page, Route, expect

from storage.patterns.repository import PatternSessions
from tests.browser import LostAnswers, SocketGate, Tab, lose_answers, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live, step, stored_steps


async def stored_name(server: ServerUnderTest, session_id: str) -> str | None:
    loaded = await PatternSessions(server.services.store).load(session_id, touch=False)
    assert loaded is not None
    name: str | None = loaded[0].name
    return name


async def test_a_name_typed_and_not_yet_entered_outlives_a_reload(server: ServerUnderTest, tab: Tab) -> None:
    """A name is an edit only on Enter or blur: typed and then reloaded, it was gone."""
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    await page.locator("#pattern-name").fill("Late night groove")  # no Enter, no blur
    await page.reload(wait_until="domcontentloaded")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#pattern-name")).to_have_value("Late night groove")
    for _ in range(150):  # the op reaches the store (15 s at most: a bound, not a wait)
        if await stored_name(server, session_id) == "Late night groove":
            break
        await page.wait_for_timeout(100)
    assert await stored_name(server, session_id) == "Late night groove"


async def test_a_step_set_offline_outlives_a_reload_before_it_was_saved(server: ServerUnderTest, tab: Tab) -> None:
    """Offline, an edit waits for the connection or the auto-save; a reload before either lost it."""
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")

    async def unreachable(route: Route) -> None:
        if route.request.method == "PUT":
            await route.abort("internetdisconnected")  # the auto-save cannot reach the server either
        else:
            await route.continue_()

    await page.route(re.compile(r"/api/sessions/"), unreachable)
    await step(page, "t1", 6).click()
    await expect(step(page, "t1", 6)).to_have_attribute("aria-pressed", "true")
    await page.reload(wait_until="domcontentloaded")
    await page.unroute(re.compile(r"/api/sessions/"))
    gate.release()  # back online: the reloaded page connects
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(step(page, "t1", 6)).to_have_attribute("aria-pressed", "true")
    for _ in range(150):  # 15 s, as ANSWER_BOUND_S: a bound, not a wait
        if (await stored_steps(server, session_id))[6]:
            break
        await page.wait_for_timeout(100)
    assert (await stored_steps(server, session_id))[6] is True
    # Made again once: nothing is left to make again on the next load.
    assert await page.evaluate(f"localStorage.getItem('sessionhub.pattern.unsaved.{session_id}')") is None


async def test_two_guests_in_one_jam_are_told_apart(server: ServerUnderTest, tab: Tab, browser: Browser) -> None:
    """Every guest's token is named "Guest": both avatars read "G", titled "Guest"."""
    session_id = await new_pattern(server)
    other = await new_tab(browser, server)
    try:
        first = await open_live(tab, f"/s/{session_id}")  # first visits: each becomes a guest
        second = await open_live(other, f"/s/{session_id}")
        for page in (first, second):
            avatars = page.locator("#players li.avatar")
            await expect(avatars).to_have_count(2)
            titles = await avatars.evaluate_all("(items) => items.map((i) => i.title)")
            assert "Guest" not in titles and len(set(titles)) == 2, titles
        assert not other.errors, other.errors
    finally:
        await other.page.context.close()


HIDE = """() => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "hidden" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""
SHOW = """() => {
  Object.defineProperty(document, "visibilityState", { configurable: true, get: () => "visible" });
  document.dispatchEvent(new Event("visibilitychange"));
}"""


async def test_a_tab_back_in_view_leaves_a_hidden_tabs_unsaved_edits_kept(server: ServerUnderTest, tab: Tab) -> None:
    """Two tabs of one pattern: the one hidden (a phone may discard it without a word) keeps its
    unconfirmed edit in storage; the other coming back into view took that away with its own."""
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    gate = SocketGate()
    await gate.install(tab.page)
    hidden = await open_live(tab, f"/s/{session_id}")
    second = Tab(page=await tab.page.context.new_page(), base_url=server.url)
    shown = await open_live(second, f"/s/{session_id}")

    await gate.cut()  # the first tab is offline, and its auto-save cannot reach the server either
    await expect(hidden.locator("#connection")).not_to_have_attribute("data-state", "live")
    await hidden.route(re.compile(r"/api/sessions/"), lambda route: route.abort("internetdisconnected"))
    await step(hidden, "t1", 6).click()
    await expect(step(hidden, "t1", 6)).to_have_attribute("aria-pressed", "true")
    await hidden.evaluate(HIDE)
    await shown.evaluate(SHOW)
    await hidden.evaluate(SHOW)  # back again: its own entry goes, it holds the edit itself

    # The hidden tab is discarded meanwhile (its edit in memory only); the other one reloads.
    await hidden.evaluate(HIDE)
    await shown.evaluate(SHOW)
    await shown.reload(wait_until="domcontentloaded")
    await expect(shown.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(step(shown, "t1", 6)).to_have_attribute("aria-pressed", "true")
    for _ in range(150):  # 15 s, as ANSWER_BOUND_S: a bound, not a wait
        if (await stored_steps(server, session_id))[6]:
            break
        await shown.wait_for_timeout(100)
    assert (await stored_steps(server, session_id))[6] is True
    assert not second.errors, second.errors


async def offline_with_a_lost_save(
    tab: Tab, server: ServerUnderTest, session_id: str, cell: int
) -> tuple[Page, LostAnswers]:
    """``tab`` opened on the pattern, offline, its edit of ``cell`` auto-saved: applied, its
    answer lost."""
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    seen = await lose_answers(page, f"**/api/sessions/{session_id}", method="PUT")
    await step(page, "t1", cell).click()
    for _ in range(150):  # bounded: the auto-save goes 2 s after the edit
        if (await stored_steps(server, session_id))[cell]:
            break
        await page.wait_for_timeout(100)
    await expect(page.locator("#toast")).to_contain_text("Offline: your changes are kept")
    return page, seen


async def turned_off_by_another_player(
    server: ServerUnderTest, clients: list[Client], session_id: str, *cells: int
) -> None:
    other = Client(server.url, server.token("other-player"))
    clients.append(other)
    await other.connect()
    for seq, cell in enumerate(cells, start=1):
        op = {"type": "set_step", "trackId": "t1", "step": cell, "on": False}
        assert (await other.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op}))["ok"] is True


async def reopened_after(closing: list[Page], tab: Tab, session_id: str, saves: int) -> tuple[Page, LostAnswers]:
    """Close ``closing`` (hidden first: their unconfirmed edits are kept), open the pattern again
    in the same browser, and wait (bounded) for its first ``saves`` auto-saves."""
    for page in closing:
        await page.evaluate(HIDE)
        await page.close()
    again = Tab(page=await tab.page.context.new_page(), base_url=tab.base_url)
    resent = await lose_answers(again.page, "**/api/sessions/*", count=0, method="PUT")
    reopened = await open_live(again, f"/s/{session_id}")
    for _ in range(150):  # bounded: the adopted saves go 2 s after the load
        if len(resent.keys) >= saves:
            break
        await reopened.wait_for_timeout(100)
    return reopened, resent


async def test_an_auto_save_whose_answer_was_lost_is_sent_again_as_it_was_by_the_next_load(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The same, but the tab closed before it was back: the next load made the kept edit again
    as a new one, over the other player's newer change (audit verify42)."""
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    page, seen = await offline_with_a_lost_save(tab, server, session_id, 5)
    await turned_off_by_another_player(server, clients, session_id, 5)
    reopened, resent = await reopened_after([page], tab, session_id, saves=1)
    assert resent.keys == [seen.keys[0]], (resent.keys, seen.keys)  # sent again, as it was
    await expect(step(reopened, "t1", 5)).to_have_attribute("aria-pressed", "false")
    assert (await stored_steps(server, session_id))[5] is False  # the newer edit stands
    tab.errors.clear()  # the lost answer is a console error by design


async def test_the_lost_saves_of_two_closed_tabs_are_each_sent_again_as_they_were(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Two tabs, each with a lost save: only the first was taken over as a save, the second's
    edit made again as a new one, over the other player's newer change (audit verify42b)."""
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    first, seen_first = await offline_with_a_lost_save(tab, server, session_id, 5)
    second_tab = Tab(page=await tab.page.context.new_page(), base_url=server.url)
    second, seen_second = await offline_with_a_lost_save(second_tab, server, session_id, 7)
    await turned_off_by_another_player(server, clients, session_id, 5, 7)
    reopened, resent = await reopened_after([first, second], tab, session_id, saves=2)
    assert sorted(resent.keys[:2]) == sorted([seen_first.keys[0], seen_second.keys[0]]), resent.keys
    await expect(step(reopened, "t1", 7)).to_have_attribute("aria-pressed", "false")
    stored = await stored_steps(server, session_id)
    assert stored[5] is False and stored[7] is False  # the newer edits stand
    tab.errors.clear()  # the lost answers are console errors by design
