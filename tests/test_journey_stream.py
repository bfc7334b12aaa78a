"""A streamer's evening and the morning after, across a laptop, the streamer's phone and a viewer's phone.

The streamer creates the stream on the laptop and goes live; a viewer opens the viewer link on a
touch phone and clips with a note; the break (clipping off, and why), the second half, the end.
The streamer links their phone from the dashboard, reviews by segment there, marks a clip by
keyboard and exports only what was marked; the next day the laptop finds it all as it was left.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, Dialog, expect

from tests.browser import TOKEN_KEY
from tests.helpers import ServerUnderTest
from tests.streams.dashboard import downloaded
from tests.journeys import DAY_MS, LIVE, device, device_link, fits, live, readable

pytestmark = pytest.mark.timeout(180)


async def _accept(dialog: Dialog) -> None:
    await dialog.accept()


async def test_a_streamers_evening_on_two_devices_and_the_morning_after(
    iserver: ServerUnderTest, full_browser: Browser, tmp_path: Path
) -> None:
    async with (
        device(full_browser, iserver, phone=False) as laptop_tab,
        device(full_browser, iserver, phone=True) as viewer_tab,
        device(full_browser, iserver, phone=True) as phone_tab,
    ):
        # The laptop's own clock, which the night will move (time flows meanwhile).
        await laptop_tab.page.context.clock.install()
        # Evening, on the laptop: a first visit; the create makes the guest.
        laptop = await laptop_tab.open("/streams")
        await laptop.locator("#title-input").fill("Raid night")
        await laptop.locator("#game-input").fill("Hollow Knight")
        await laptop.locator("#create-button").click()
        await laptop.wait_for_url("**/streams/*")
        session_id = laptop.url.rsplit("/", 1)[1]
        await expect(laptop.locator(LIVE)).to_be_visible()
        await laptop.locator("#action-start").click()
        await expect(laptop.locator("#stream-state")).to_have_text("Live")
        viewer_link = await laptop.locator("#viewer-link").input_value()
        assert viewer_link == f"{iserver.url}/watch/{session_id}"

        # A viewer on a phone: a tap in the note, the phone's keyboard, a tap on the button.
        watch = await live(viewer_tab, viewer_link.removeprefix(iserver.url))
        button = watch.locator("#clip-button")
        await expect(button).to_be_enabled()
        await watch.locator("#note-input").tap()
        await watch.keyboard.type("boss down first try")
        await button.tap()
        await expect(watch.locator("#confirmation")).to_contain_text("Segment 1 at")
        await expect(watch.locator("#mine li .note")).to_have_text("boss down first try")
        await expect(laptop.locator("#feed li .note")).to_have_text("boss down first try")
        await expect(laptop.locator("#dashboard .meta")).to_contain_text("1 clip 0 clipped")  # not "1 clips"
        await fits(watch)
        await readable(watch)

        # The break: the viewer is told clipping is off, and why.
        await laptop.locator("#action-pause").click()
        await expect(watch.locator("#clip-reason")).to_have_text(
            "The stream is paused: clips are off during the break."
        )
        await expect(button).to_be_disabled()
        await expect(watch.locator("#stream-state")).to_have_text("Paused")
        await laptop.locator("#action-resume").click()
        await expect(button).to_be_enabled()
        await watch.locator("#note-input").tap()
        await watch.keyboard.type("chat went wild")
        await watch.keyboard.press("Enter")  # the phone keyboard's send key
        await expect(watch.locator("#confirmation")).to_contain_text("Segment 2 at 0:00:")
        await expect(watch.locator("#mine li .note")).to_have_text(["chat went wild", "boss down first try"])
        laptop.once("dialog", _accept)
        await laptop.locator("#action-end").click()
        await expect(laptop.locator("#stream-state")).to_have_text("Ended")
        await expect(watch.locator("#clip-reason")).to_have_text("The stream has ended.")
        await expect(button).to_be_disabled()
        await readable(watch)

        # The streamer's own phone, signed in with a link made on the dashboard: it opens there.
        link = await device_link(laptop, iserver)
        phone = await phone_tab.open(link)
        await expect(phone).to_have_url(f"{iserver.url}/streams/{session_id}")
        await expect(phone.locator(LIVE)).to_be_visible()
        await expect(phone.locator("#stream-title")).to_have_text("Raid night")
        await expect(phone.locator("#segments")).to_have_attribute("data-review", "settled")
        first = phone.locator('.segment[data-index="1"]')
        second = phone.locator('.segment[data-index="2"]')
        await expect(first.locator(".review-clip .note")).to_have_text(["boss down first try"])
        await expect(second.locator(".review-clip .note")).to_have_text(["chat went wild"])

        # Marked by keyboard: the focus stays on the button, which now says what it would undo.
        toggle = second.locator(".clip-toggle")
        await toggle.focus()
        await phone.keyboard.press("Enter")
        await expect(toggle).to_have_text("Unmark")
        await expect(toggle).to_be_focused()
        await expect(phone.locator("#clipped-count")).to_have_text("1")
        await expect(laptop.locator("#clipped-count")).to_have_text("1")  # the laptop follows live
        await fits(phone)
        await readable(phone)

        # The export of what was marked, from the phone.
        await phone.locator("#only-select").select_option("clipped")
        saved = tmp_path / "marked.csv"
        await (await downloaded(phone, tap=True)).save_as(saved)
        rows = list(csv.reader(saved.read_text(encoding="utf-8").splitlines()))
        assert [row[:3] for row in rows[1:]] == [["2", rows[1][1], "chat went wild"]], rows
        assert re.fullmatch(r"0:00:\d\d", rows[1][1]), rows

        # The morning after, on the laptop: the access token it holds ran out overnight.
        evening_token = json.loads(await laptop.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})"))
        await laptop.close()
        morning = await laptop_tab.page.context.new_page()
        await morning.clock.fast_forward(DAY_MS)
        await morning.goto(iserver.url + "/streams", wait_until="domcontentloaded")
        listed = morning.locator("#stream-list li")
        await expect(listed).to_have_count(1)
        await expect(listed).to_contain_text("Ended")
        await expect(listed).to_contain_text("Raid night")
        await expect(listed).to_contain_text("2 clips")
        await readable(morning)
        await listed.locator("a").click()
        await expect(morning).to_have_url(f"{iserver.url}/streams/{session_id}")
        await expect(morning.locator(LIVE)).to_be_visible()
        await expect(morning.locator("#stream-state")).to_have_text("Ended")
        await expect(morning.locator("#clip-count")).to_have_text("2")
        await expect(morning.locator("#dashboard .meta")).to_contain_text("2 clips 1 clipped")
        await expect(morning.locator("#clipped-count")).to_have_text("1")
        marked = morning.locator('.segment[data-index="2"] .review-clip')
        await expect(marked).to_have_attribute("data-clipped", "true")
        await expect(morning.locator(".clip-toggle")).to_have_text(["Mark clipped", "Unmark"])
        for action in ("start", "pause", "resume", "end"):
            await expect(morning.locator(f"#action-{action}")).to_be_hidden()
        await readable(morning)
        # Renewed from the cookie for the same person, not a new guest and no sign-in asked.
        renewed = json.loads(await morning.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})"))
        assert renewed["token"] != evening_token["token"], renewed
        assert renewed["obtained_at"] > evening_token["obtained_at"] + DAY_MS / 1000 - 60, (renewed, evening_token)
        await expect(morning.locator("#identity-lost")).to_have_count(0)
