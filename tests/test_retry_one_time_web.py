"""In Chromium: a device link whose redemption answer the network lost still signs the browser in.

The /tg_auth page POSTs the link's token; the server uses the link up and opens a device, and the
answer (with the device's cookie) never reaches the page (the connection dropped). The page sends
the same redemption again (its attempt id) after 1 s and is signed in, instead of reading "This
link was already used or has expired" with no identity. The device the lost answer carried is
signed out (tests/test_retry_one_time.py holds the server's side).
"""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Browser, Route, expect

from tests.browser import new_tab
from tests.helpers import ServerUnderTest
from tests.identity.test_web_link import device_link, guest_with_a_session

pytestmark = pytest.mark.timeout(180)


async def test_a_link_whose_answer_was_lost_signs_in_when_sent_again(
    iserver: ServerUnderTest, browser: Browser
) -> None:
    first = await new_tab(browser, iserver)
    second = await new_tab(browser, iserver)
    sent: list[str] = []

    async def lose_the_first_answer(route: Route) -> None:
        sent.append(route.request.post_data or "")
        if len(sent) == 1:
            reached = await route.fetch()  # the server redeems the link and opens a device ...
            assert reached.status == 200, await reached.text()
            await route.abort("connectionreset")  # ... and the page never hears it
        else:
            await route.continue_()

    try:
        phone = await guest_with_a_session(first, "Made on the phone")
        phone_user = str(await phone.locator("#identity").get_attribute("data-user-id"))
        link = await device_link(phone, iserver)
        await second.page.route("**/api/auth/one_time", lose_the_first_answer)
        signed_in = await second.open(link)
        await expect(signed_in).to_have_url(re.compile(r"/session(/[0-9a-f-]+)?$"))
        await expect(signed_in.locator("#identity")).to_have_attribute("data-user-id", phone_user)
        # The same redemption twice (one attempt id), and nothing else.
        assert len(sent) == 2 and sent[0] == sent[1] and '"attempt"' in sent[0], sent
        # The phone and this browser are the user's devices: the lost one was signed out.
        families = await iserver.services.redis.zrange(iserver.services.keys.user_families(phone_user), 0, -1)
        assert len(families) == 2, families
    finally:
        await first.page.context.close()
        await second.page.context.close()
