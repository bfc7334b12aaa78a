"""The stream pages in Chromium as a screen reader meets them: what others do is told, politely and
in few words, and the keyboard's focus stays where the person left it."""

from __future__ import annotations

import asyncio
import re

from playwright.async_api import Page, expect

from tests.browser import Tab, listen_to_live_regions, live_texts
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started

RAIDERS = 30
NEW_CLIPS = re.compile(r"^([\d,]+) new clips$")


def hms(ms: int) -> str:
    """web/js/clip_format.js's hms: 0:01:05."""
    total = ms // 1000
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


async def told(page: Page, region_id: str, count: int) -> list[str]:
    """The texts region ``region_id`` was given, once it was given ``count`` of them."""
    await page.wait_for_function(
        "([id, n]) => (window.__liveTexts[id] ?? []).filter(Boolean).length >= n", arg=[region_id, count]
    )
    return await live_texts(page, region_id)


def clips_told(texts: list[str]) -> int:
    """How many clips the texts told of: "New clip at …" one, "12 new clips" twelve."""
    total = 0
    for text in texts:
        many = NEW_CLIPS.match(text)
        total += int(many.group(1).replace(",", "")) if many else 1
    return total


async def dashboard(tab: Tab, server: ServerUnderTest, session_id: str) -> Page:
    """The streamer's dashboard, its live regions listened to, its review loaded."""
    await listen_to_live_regions(tab.page)
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#segments")).to_have_attribute("data-review", "settled")
    return page


async def test_the_dashboard_tells_a_new_clip_and_a_raid_in_one_sentence(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A viewer's clip updated the feed, the review and the count, none of them a live region: a
    streamer with a screen reader heard nothing. Each one is told now, and a raid is not a queue
    of one announcement a clip."""
    session_id, _owner = await started(server, clients)
    page = await dashboard(tab, server, session_id)
    viewer = await connect(server, clients, "v1")
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": "big play"})
    assert ack["ok"] is True, ack
    assert await told(page, "clip-news", 1) == [f"New clip at {hms(ack['clip']['offset_ms'])}: big play"]

    raiders = await asyncio.gather(*[connect(server, clients, f"raider{n}") for n in range(RAIDERS)])
    acks = await asyncio.gather(
        *[raider.call("clip_submit", {"session_id": session_id, "note": f"r{n}"}) for n, raider in enumerate(raiders)]
    )
    assert all(ack["ok"] for ack in acks), acks
    await expect(page.locator("#clip-count")).to_have_text(str(RAIDERS + 1))
    await page.wait_for_function(
        """(n) => (window.__liveTexts["clip-news"] ?? []).filter(Boolean).slice(1).reduce((sum, text) => {
             const many = /^([\\d,]+) new clips$/.exec(text);
             return sum + (many ? Number(many[1].replace(/,/g, "")) : 1);
           }, 0) >= n""",
        arg=RAIDERS,
        timeout=20_000,
    )
    raid = (await live_texts(page, "clip-news"))[1:]
    assert clips_told(raid) == RAIDERS, raid
    assert 1 <= len(raid) <= 3, raid  # a sentence every few seconds at most, not one a clip


async def test_the_dashboard_says_a_clip_it_deleted_is_gone(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Delete moved the focus on to the next clip's Delete and said nothing of the clip itself.
    The clips the page opens with are on the page, not news."""
    session_id, _owner = await started(server, clients)
    for user in ("v1", "v2"):
        viewer = await connect(server, clients, user)
        assert (await viewer.call("clip_submit", {"session_id": session_id, "note": user}))["ok"] is True
    page = await dashboard(tab, server, session_id)
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    deletes = page.locator(".review-clip .clip-delete")
    await expect(deletes).to_have_count(2)
    await deletes.first.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator(".review-clip")).to_have_count(1)
    await expect(page.locator("#notice[role=status]")).to_have_text("Clip deleted.")
    await expect(deletes.first).to_be_focused()
    await asyncio.sleep(1.5)  # longer than the clip news gathers
    assert await live_texts(page, "clip-news") == []


async def test_the_clip_button_keeps_the_focus_through_its_cooldown(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Clip Moment was disabled for its 2 s cooldown, which dropped the keyboard's focus to the
    page under a screen reader user: it stays on the button now, a press during the cooldown
    clips nothing and says the cooldown again."""
    session_id, _owner = await started(server, clients)
    await listen_to_live_regions(tab.page)
    await tab.use_token(server.token("bob"))
    page = await tab.open(f"/watch/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    button = page.locator("#clip-button")
    await expect(button).to_be_enabled()
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#clip-reason")).to_contain_text("Cooldown")
    # Read at once, not waited for: the focus used to come back only once the cooldown was over.
    assert await page.evaluate("document.activeElement?.id") == "clip-button"
    await expect(button).to_have_attribute("aria-disabled", "true")

    await page.keyboard.press("Enter")  # during the cooldown: refused, said again
    cooldowns = [text for text in await told(page, "clip-said", 2) if text.startswith("Cooldown")]
    assert len(cooldowns) == 2, cooldowns
    await expect(button).to_be_focused()
    await expect(page.locator("#mine li")).to_have_count(1)

    await expect(button).not_to_have_attribute("aria-disabled", "true")  # after the 2 s
    await expect(button).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#mine li")).to_have_count(2)
