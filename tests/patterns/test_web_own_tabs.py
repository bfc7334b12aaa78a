"""In Chromium: a person's own second tab is not another player to them, and a track without a
visible name is still named to a screen reader (audit "patternphone").

Each tab made its own "Player NNN" and colour: the person's second tab showed as a stranger, and
their screen reader said "Player 760 joined." and "Player 760 set the tempo…" of their own edits.
A track named with spaces only (another client's op, or the API) named its controls " step 1",
"Mute ", one like the other.
"""

from __future__ import annotations

from typing import Any

from playwright.async_api import expect

from tests.browser import Tab, listen_to_live_regions, live_texts
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live, step
from tests.patterns.test_web_screen_reader import told


async def test_a_persons_second_tab_is_no_news_and_has_their_name_and_colour(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id = await new_pattern(server)
    await listen_to_live_regions(tab.page)
    first = await open_live(tab, f"/s/{session_id}")
    second_tab = Tab(page=await tab.page.context.new_page(), base_url=server.url)
    second = await open_live(second_tab, f"/s/{session_id}")
    await expect(first.locator("#players .avatar")).to_have_count(2)
    names = [await avatar.get_attribute("title") for avatar in await first.locator("#players .avatar").all()]
    colours = [
        await avatar.evaluate("(node) => getComputedStyle(node).backgroundColor")
        for avatar in await first.locator("#players .avatar").all()
    ]
    assert len(set(names)) == 1 and len(set(colours)) == 1, (names, colours)

    await step(second, "t1", 3).click()  # the person's own edit, in their other tab
    await expect(step(first, "t1", 3)).to_have_attribute("aria-pressed", "true")
    # Someone else's change is news, and comes after: nothing was said before it.
    bob = Client(server.url, server.token("bob"))
    clients.append(bob)
    await bob.connect()
    assert (await bob.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    assert (await bob.call("pattern_join", {"session_id": session_id, "name": "Bob", "colour": "#1e6fd9"}))["ok"]
    assert await told(first, "pattern-news", 1) == ["Bob joined."]
    await second.close()  # the person's other tab goes: no news either
    op = {"type": "set_step", "trackId": "t1", "step": 9, "on": True}
    assert (await bob.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True
    assert (await told(first, "pattern-news", 2))[1:] == ["Bob changed 1 step."]
    assert await live_texts(first, "pattern-news") == ["Bob joined.", "Bob changed 1 step."]


async def test_a_track_named_with_spaces_only_is_called_by_its_place(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    tracks: list[dict[str, Any]] = [track("t1"), track("t2", name="   ", sampleId="snare")]
    session_id = await new_pattern(server, state={"tracks": tracks})
    page = await open_live(tab, f"/s/{session_id}")
    row = page.locator('.track-row[data-track="t2"]')
    await expect(row.locator(".mute")).to_have_accessible_name("Mute Track 2")
    await expect(step(page, "t2", 0)).to_have_accessible_name("Track 2 step 1")
    await expect(row.locator(".delete-track")).to_have_accessible_name("Delete track Track 2")
    # Named by another player: its own name from then on.
    bob = Client(server.url, server.token("bob"))
    clients.append(bob)
    await bob.connect()
    assert (await bob.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
    op = {"type": "rename_track", "trackId": "t2", "name": "Snare"}
    assert (await bob.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True
    await expect(row.locator(".mute")).to_have_accessible_name("Mute Snare")
