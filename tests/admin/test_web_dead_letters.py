"""The /admin page's dead letters in real Chromium: listed, retried and discarded by keyboard, at a
phone's width and a desktop's, with a job's own error text shown as text."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, expect

from storage.jobs import Job
from tests.admin.test_dead_letters import bury, dead_ids, queued_jobs
from tests.admin.test_http import LONG_TTL_S, admin_token
from tests.browser import Tab, new_tab
from tests.conftest import start_server
from tests.helpers import RedisProcess, ServerUnderTest
from tests.test_web_phone_touch import FINGER_PX, TARGETS, phone  # noqa: F401 - the phone fixture

HOSTILE = '<img src=x onerror="window.__owned=1"><b>bold</b> ' + "x" * 300


async def hostile_letter(server: ServerUnderTest) -> Job:
    """A dead letter whose type and error are markup (a processor's exception text is anything)."""
    (job,) = await bury(server, "<i>TYPE</i>")
    entry = await server.services.redis.lindex(server.services.keys.jobs_dead(), 0)
    assert entry is not None
    edited = replace(Job.from_json(str(entry)), last_error=HOSTILE).to_json()
    await server.services.redis.lset(server.services.keys.jobs_dead(), 0, edited)
    return job


@pytest.mark.parametrize("width", [390, 1280])
async def test_the_card_lists_them_and_a_keyboard_retries_and_discards(
    tab: Tab, server: ServerUnderTest, width: int
) -> None:
    retried, discarded = await bury(server, "RETRY_ME", "DISCARD_ME")
    page = tab.page
    await page.set_viewport_size({"width": width, "height": 900})
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    await tab.open("/admin")
    rows = page.locator("#dead-list li.dead-letter")
    await expect(rows).to_have_count(2)
    await expect(page.locator("#dead-summary")).to_have_text("2 dead letter(s); the newest 2 shown.")
    await expect(rows.first.locator(".dead-meta")).to_contain_text("failed for good")  # when, not when queued
    await expect(page.locator('#alerts li[data-alert="dead_letters"]')).to_contain_text("Dead letters on /admin")
    # Nothing wider than the window: no sideways scroll at a phone's width.
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    retry = page.get_by_role("button", name=f"Retry RETRY_ME job {retried.job_id[:8]}")
    await retry.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#dead-status")).to_have_text(f"RETRY_ME job {retried.job_id[:8]} queued again.")
    await expect(page.locator("#dead-status")).to_be_focused()
    await expect(rows).to_have_count(1)
    assert [job.job_id for job in await queued_jobs(server)] == [retried.job_id]

    discard = page.get_by_role("button", name=f"Discard DISCARD_ME job {discarded.job_id[:8]}")
    await discard.focus()
    await page.keyboard.press("Space")  # asks first: a discard cannot be undone (audit "adminphone")
    await expect(page.locator("#dead-status")).to_have_text(
        f'Discard DISCARD_ME job {discarded.job_id[:8]} for good? Press "Confirm discard" again; it cannot be undone.'
    )
    confirm = page.get_by_role("button", name=f"Confirm discard DISCARD_ME job {discarded.job_id[:8]}")
    await expect(confirm).to_be_focused()
    assert len(await dead_ids(server)) == 1  # nothing discarded yet
    await page.keyboard.press("Space")
    await expect(page.locator("#dead-status")).to_have_text(f"DISCARD_ME job {discarded.job_id[:8]} discarded.")
    await expect(rows).to_have_count(0)
    await expect(page.locator("#dead-summary")).to_have_text("No dead letters.")
    await expect(page.locator('#alerts li[data-alert="dead_letters"]')).to_have_count(0)
    assert await dead_ids(server) == []


async def test_discard_all_asks_for_the_count_then_empties_the_list(tab: Tab, server: ServerUnderTest) -> None:
    await bury(server, "A", "B", "C")
    page = tab.page
    await page.set_viewport_size({"width": 390, "height": 900})
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    await tab.open("/admin")
    await expect(page.locator("#dead-list li")).to_have_count(3)
    await page.locator("#dead-discard-all").focus()
    await page.keyboard.press("Enter")
    confirm = page.locator("#dead-discard-confirm")
    await expect(confirm).to_be_focused()
    await expect(confirm).to_have_text("Yes, discard all 3 dead letter(s)")
    await page.keyboard.press("Enter")
    await expect(page.locator("#dead-status")).to_have_text("Discarded 3 dead letter(s).")
    await expect(page.locator("#dead-list li")).to_have_count(0)
    assert await dead_ids(server) == []


async def test_a_jobs_own_text_is_shown_as_text(tab: Tab, server: ServerUnderTest) -> None:
    job = await hostile_letter(server)
    page = tab.page
    await page.set_viewport_size({"width": 390, "height": 900})
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    await tab.open("/admin")
    row = page.locator(f'#dead-list li[data-job="{job.job_id}"]')
    await expect(row.locator(".dead-error")).to_have_text(HOSTILE)
    await expect(row.locator("strong.dead-type")).to_have_text("<i>TYPE</i>")
    assert await row.locator("img, b, i").count() == 0
    assert await page.evaluate("window.__owned === undefined")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_an_entry_that_is_no_job_offers_no_buttons_that_cannot_work(tab: Tab, server: ServerUnderTest) -> None:
    """Its Retry and Discard only answered "no route DELETE /admin/jobs/dead/" (audit "verify47")."""
    await bury(server, "GOOD")
    await server.services.redis.lpush(server.services.keys.jobs_dead(), "not a job")
    page = tab.page
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    await tab.open("/admin")
    rows = page.locator("#dead-list li")
    await expect(rows).to_have_count(2)
    await expect(rows.nth(0).locator("button")).to_have_count(0)
    await expect(rows.nth(0).locator(".dead-buttons")).to_have_text(
        "Not a job this release can read: only Discard all removes it."
    )
    await expect(rows.nth(1).locator("button")).to_have_count(2)


async def test_on_a_touch_phone_each_control_is_a_fingers_size(
    server: ServerUnderTest,
    phone: Tab,  # noqa: F811
) -> None:
    await bury(server, "TAPPED")
    await phone.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await phone.open("/admin")
    await expect(page.locator("#dead-list li")).to_have_count(1)
    targets = await page.evaluate(TARGETS)
    small = [t for t in targets if t["width"] < FINGER_PX or t["height"] < FINGER_PX]
    assert small == []
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_a_press_while_the_store_is_away_leaves_its_row_usable(browser: Browser, tmp_path: Path) -> None:
    """A Retry pressed while Redis was away failed, and the list could not be read again either:
    the row's buttons stayed disabled after Redis came back (20 s on, the dashboard long
    recovered), and the keyboard's focus fell to the page, while the status said "try again"
    (audit "adminhostile"). The row is usable again at once, the focus on what was pressed."""
    own = RedisProcess(tmp_path / "redis", appendonly=True)  # the letter outlives the restart
    own.start()
    node = await start_server(own.url, tmp_path / "node")
    tab = await new_tab(browser, node)
    try:
        (job,) = await bury(node, "AWAY")
        page = tab.page
        await tab.use_token(admin_token(node), ttl_s=LONG_TTL_S)
        await tab.open("/admin")
        retry = page.get_by_role("button", name=f"Retry AWAY job {job.job_id[:8]}")
        discard = page.get_by_role("button", name=f"Discard AWAY job {job.job_id[:8]}")
        await expect(retry).to_be_enabled()
        own.stop()
        await retry.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#dead-status")).to_have_attribute("data-kind", "error")
        await expect(retry).to_be_enabled()
        await expect(discard).to_be_enabled()
        await expect(retry).to_be_focused()
        own.start()
        headers = {"Authorization": f"Bearer {admin_token(node)}"}
        async with aiohttp.ClientSession(headers=headers) as http, asyncio.timeout(15):
            while True:  # the node reaches Redis again
                async with http.get(f"{node.url}/admin/jobs/dead") as response:
                    if response.status == 200:
                        break
                await asyncio.sleep(0.05)
        await page.keyboard.press("Enter")  # the press the status asked for, from where the keyboard is
        await expect(page.locator("#dead-status")).to_have_text(f"AWAY job {job.job_id[:8]} queued again.")
        assert [queued.job_id for queued in await queued_jobs(node)] == [job.job_id]
    finally:
        await tab.page.context.close()
        await node.stop()
        own.stop()
