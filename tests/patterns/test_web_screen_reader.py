"""The pattern editor in Chromium as a screen reader meets it: a heading that names the pattern,
controls that name their track, and other players' changes told."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.browser import Tab, listen_to_live_regions, live_texts, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import api, new_pattern, open_live, step
from tests.test_web_axe import axe_source


async def told(page: Page, region_id: str, count: int) -> list[str]:
    """The texts region ``region_id`` was given, once it was given ``count`` of them."""
    await page.wait_for_function(
        "([id, n]) => (window.__liveTexts[id] ?? []).filter(Boolean).length >= n", arg=[region_id, count]
    )
    return await live_texts(page, region_id)


HEADING_RULE = """async () => {
  const result = await axe.run(document, { runOnly: ["page-has-heading-one"], resultTypes: ["violations"] });
  return result.violations.map((v) => v.id);
}"""


async def test_the_pattern_page_has_a_level_one_heading_that_follows_the_name(
    server: ServerUnderTest, browser: Browser
) -> None:
    """/patterns and /s/<id> had no level-one heading (axe page-has-heading-one): the name was only
    a text field, and a screen reader's list of headings offered nothing to start from."""
    tab = await new_tab(browser, server, bypass_csp=True)  # the CSP forbids axe's injection
    try:
        await tab.use_token(server.token("alice"))
        page = await open_live(tab, "/patterns")
        heading = page.get_by_role("heading", level=1)
        await expect(heading).to_have_text("Untitled Session")
        await page.add_script_tag(content=axe_source())
        assert await page.evaluate(HEADING_RULE) == []

        await page.locator("#pattern-name").fill("Jam one")
        await page.locator("#pattern-name").press("Enter")
        await expect(heading).to_have_text("Jam one")
        session_id = page.url.rsplit("/", 1)[1]
        await api(server, "PATCH", f"/api/sessions/{session_id}", {"name": "Jam two"})  # another's rename
        await expect(heading).to_have_text("Jam two")
        await expect(page.locator("#pattern-name")).to_have_value("Jam two")
        assert not tab.errors, tab.errors
    finally:
        await tab.page.context.close()


async def test_each_track_name_field_names_its_track(server: ServerUnderTest, tab: Tab) -> None:
    """Every track's name field was called "Track name" while its other controls said their track
    ("Mute Snare"): tabbing through, nothing told whose name a field held but its text."""
    session_id = await new_pattern(server)
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/s/{session_id}")
    await page.get_by_role("combobox", name="Add a track").select_option(label="Snare")
    await page.get_by_role("button", name="Add track").click()
    rows = page.locator("#grid .track-row")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0).locator(".track-name")).to_have_accessible_name("Name of track Kick")
    await expect(rows.nth(1).locator(".track-name")).to_have_accessible_name("Name of track Snare")
    field = rows.nth(1).locator(".track-name")
    await field.fill("Big Snare")
    await field.press("Enter")
    await expect(field).to_have_accessible_name("Name of track Big Snare")
    await expect(rows.nth(1).locator(".mute")).to_have_accessible_name("Mute Big Snare")


async def test_another_players_changes_are_told_in_a_few_words(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The grid redrew as others edited and a screen reader said nothing: the toast, the only live
    region, spoke of the person's own actions. Others' changes are told now, gathered (five steps
    are "changed 5 steps", not five announcements), and a track removed under the person's focus
    is said at once. The person's own edits are not news."""
    session_id = await new_pattern(server)
    await listen_to_live_regions(tab.page)
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/s/{session_id}")
    await expect(page.locator("#players .avatar")).to_have_count(1)

    bob = Client(server.url, server.token("bob"))
    clients.append(bob)
    await bob.connect()
    assert (await bob.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    assert (await bob.call("pattern_join", {"session_id": session_id, "name": "Bob", "colour": "#1e6fd9"}))["ok"]
    assert await told(page, "pattern-news", 1) == ["Bob joined."]

    ops: list[dict[str, Any]] = [{"type": "add_track", "track": track("t2", name="Snare")}]
    ops += [{"type": "set_step", "trackId": "t1", "step": n, "on": True} for n in (1, 2, 3, 5, 6)]
    ops += [{"type": "set_name", "name": "Jam one"}]
    # Sent at once (one connection: applied in order), so that all fall in one gathering of the
    # news even on a machine slow to answer each.
    acks = await asyncio.gather(
        *(
            bob.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op})
            for seq, op in enumerate(ops, start=1)
        )
    )
    assert all(ack["ok"] is True for ack in acks), acks
    await expect(page.locator(".track-row")).to_have_count(2)
    assert (await told(page, "pattern-news", 2))[1:] == [
        "Bob added track Snare, renamed the pattern to “Jam one” and changed 5 steps."
    ]

    await step(page, "t1", 8).click()  # the person's own edit: no news
    await step(page, "t2", 3).focus()
    deleted = {"type": "delete_track", "trackId": "t2"}
    assert (await bob.call("pattern_op", {"session_id": session_id, "seq": len(ops) + 1, "op": deleted}))["ok"]
    assert (await told(page, "pattern-news", 3))[2:] == ["Bob removed track Snare, where your focus was."]
    await expect(step(page, "t1", 3)).to_be_focused()

    assert (await bob.call("pattern_leave", {"session_id": session_id}))["ok"] is True
    assert (await told(page, "pattern-news", 4))[3:] == ["Bob left."]
    await api(server, "PATCH", f"/api/sessions/{session_id}", {"name": "Jam two"})  # a save over HTTP
    assert (await told(page, "pattern-news", 5))[4:] == ["Another player renamed the pattern to “Jam two”."]
    await page.wait_for_timeout(2000)  # longer than the news gathers: nothing more is said
    assert len(await live_texts(page, "pattern-news")) == 5


async def test_a_player_whose_connection_came_back_is_not_told_as_joining_and_leaving(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A co-editor's connection dropped and came back: the new one joined before the old one's
    leave (its close seen late), and the page told "Bob joined, changed 1 step and left." while
    Bob was there all along (audit "retries3"). Only the step is news."""
    session_id = await new_pattern(server)
    await listen_to_live_regions(tab.page)
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/s/{session_id}")

    async def bob_joins() -> Client:
        bob = Client(server.url, server.token("bob"))
        clients.append(bob)
        await bob.connect()
        assert (await bob.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
        joined = await bob.call("pattern_join", {"session_id": session_id, "name": "Bob", "colour": "#1e6fd9"})
        assert joined["ok"] is True, joined
        return bob

    first = await bob_joins()
    assert await told(page, "pattern-news", 1) == ["Bob joined."]
    await expect(page.locator("#players .avatar")).to_have_count(2)
    again = await bob_joins()  # the new connection
    await first.close()  # the old one's close, seen late
    op = {"type": "set_step", "trackId": "t1", "step": 5, "on": True}
    assert (await again.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True
    assert (await told(page, "pattern-news", 2))[1:] == ["Bob changed 1 step."]
    await expect(page.locator("#players .avatar")).to_have_count(2)
    await page.wait_for_timeout(2000)  # longer than the news gathers: nothing more is said
    assert len(await live_texts(page, "pattern-news")) == 2
