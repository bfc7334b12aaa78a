"""Two musicians on one pattern: a laptop that starts it, a friend's phone that joins by its link.

The laptop makes a pattern from the start page and copies its link (Invite); the friend opens
it on a touch phone and both edit live. The phone drops off the network, taps steps while the
laptop goes on, and comes back: both see both. The laptop remixes, and Back returns to the
original, which counts the remix. When the original is deleted, the phone's page says so with
Create New and Go Home, and stays where it is.
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.browser import SocketGate
from tests.helpers import ServerUnderTest
from tests.journeys import LIVE, device, fits, readable
from tests.patterns.test_web import UUID, stored_steps

pytestmark = pytest.mark.timeout(180)


def step(page: Page, row: int, index: int) -> Locator:
    return page.locator(".track-row").nth(row).locator(f'.step[data-step="{index}"]')


async def test_a_jam_across_a_laptop_and_a_phone_with_an_offline_spell_a_remix_and_a_deletion(
    server: ServerUnderTest, full_browser: Browser
) -> None:
    async with (
        device(full_browser, server, phone=False) as laptop_tab,
        device(full_browser, server, phone=True) as phone_tab,
    ):
        await laptop_tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
        laptop = await laptop_tab.open("/")
        await laptop.locator("nav.nav a", has_text="Patterns").click()
        await expect(laptop).to_have_url(re.compile(rf"/s/{UUID}$"))
        await expect(laptop.locator(LIVE)).to_be_visible()
        session_id = laptop.url.rsplit("/", 1)[1]
        await laptop.locator("#pattern-name").fill("Sunday jam")
        await laptop.locator("#pattern-name").press("Enter")
        await laptop.locator("#add-track").click()
        await expect(laptop.locator(".track-row")).to_have_count(1)
        await laptop.locator("#invite").click()
        await expect(laptop.locator("#toast")).to_have_text("Session link copied! Anyone with this link can edit.")
        link = await laptop.evaluate("navigator.clipboard.readText()")
        assert link == f"{server.url}/s/{session_id}"

        # The friend's phone, by the link; its connection goes through a gate the test can cut.
        gate = SocketGate()
        await gate.install(phone_tab.page)
        phone = await phone_tab.open(link.removeprefix(server.url))
        await expect(phone.locator(LIVE)).to_be_visible()
        await expect(phone.locator("#pattern-name")).to_have_value("Sunday jam")
        await expect(laptop.locator("#players .avatar")).to_have_count(2)
        await step(phone, 0, 0).tap()
        await expect(step(laptop, 0, 0)).to_have_attribute("aria-pressed", "true")
        await step(laptop, 0, 4).click()
        await expect(step(phone, 0, 4)).to_have_attribute("aria-pressed", "true")
        await fits(phone)

        # The phone loses the network, and the friend goes on tapping.
        await phone_tab.page.context.set_offline(True)
        await gate.cut()
        await expect(phone.locator(LIVE)).to_have_count(0)
        await step(phone, 0, 8).tap()
        await expect(step(phone, 0, 8)).to_have_attribute("aria-pressed", "true")
        await step(laptop, 0, 12).click()
        await expect(step(phone, 0, 12)).to_have_attribute("aria-pressed", "false")  # not heard yet
        await readable(phone)
        await phone_tab.page.context.set_offline(False)
        gate.release()
        await expect(phone.locator(LIVE)).to_be_visible()
        for page in (phone, laptop):
            for index in (0, 4, 8, 12):
                await expect(step(page, 0, index)).to_have_attribute("aria-pressed", "true")
        steps = await stored_steps(server, session_id)
        assert [index for index, on in enumerate(steps) if on] == [0, 4, 8, 12], steps

        # A remix on the laptop; Back returns to the original, which counts it.
        await laptop.locator("#remix").click()
        await expect(laptop).to_have_url(re.compile(rf"/s/{UUID}$"))
        await expect(laptop).not_to_have_url(re.compile(session_id))
        await expect(laptop.locator("#toast")).to_have_text("Remixed! You're now editing a copy.")
        await expect(laptop.locator("#parent-link")).to_have_text('"Sunday jam"')
        for index in (0, 4, 8, 12):
            await expect(step(laptop, 0, index)).to_have_attribute("aria-pressed", "true")
        remix_url = laptop.url
        await laptop.go_back()
        await expect(laptop).to_have_url(f"{server.url}/s/{session_id}")
        await expect(laptop.locator(LIVE)).to_be_visible()
        await expect(laptop.locator("#remix-count")).to_have_text("1 remix")
        await readable(laptop)

        # The original is deleted (an operator): the phone's open page says so and stays put.
        deleted = await laptop.evaluate(
            "async (id) => (await fetch(`/api/sessions/${id}`, {method: 'DELETE'})).status", session_id
        )
        assert deleted in (200, 204), deleted
        await expect(phone.locator("#not-found")).to_be_visible()
        await expect(phone.locator("#not-found h1")).to_have_text("This pattern was deleted")
        await expect(phone.get_by_role("button", name="Keep it as a new pattern")).to_be_visible()
        await expect(phone.locator("#create-new")).to_be_visible()
        await expect(phone.locator("#go-home")).to_have_attribute("href", "/")
        await expect(phone.locator("#connection")).to_be_hidden()
        await readable(phone)
        await fits(phone)
        # The remix lives on, and the phone's page was not sent anywhere meanwhile.
        await laptop.goto(remix_url, wait_until="domcontentloaded")
        await expect(laptop.locator(LIVE)).to_be_visible()
        # Seed 001: "Remixed from an unknown session", and no link to a page that would say so.
        await expect(laptop.locator("#lineage-parent")).to_have_text("↳ Remixed from an unknown session")
        await expect(laptop.locator("#parent-link")).not_to_have_attribute("href", re.compile("."))
        await readable(laptop)
        assert phone.url == f"{server.url}/s/{session_id}"
        await phone.locator("#go-home").tap()
        await expect(phone).to_have_url(f"{server.url}/")
