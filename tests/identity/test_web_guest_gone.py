"""In Chromium: a guest back after its devices ran out is told what became of its things."""

from __future__ import annotations

import json

from playwright.async_api import expect

from tests.browser import TOKEN_KEY, Tab
from tests.helpers import ServerUnderTest
from tests.identity.test_web_link import guest_with_a_session


async def test_a_guest_back_after_the_idle_time_is_not_sent_looking_for_its_sessions(
    server: ServerUnderTest, tab: Tab
) -> None:
    page = await guest_with_a_session(tab, "Holiday plans")
    user_id = str(await page.locator("#identity").get_attribute("data-user-id"))
    assert user_id.startswith("guest-")

    # 31 days away: the browser's device (its refresh credential) ran out on the server, and its
    # last access token long ago.
    keys = server.services.keys
    families = await server.services.redis.zrange(keys.user_families(user_id), 0, -1)
    assert families
    for family_id in families:
        await server.services.redis.delete(keys.family(str(family_id)), keys.family_spent(str(family_id)))
    await server.services.redis.delete(keys.user_families(user_id))
    stale = json.dumps({"token": "x.y.z", "expires_at": 1, "obtained_at": 0, "guest": True, "device": True})
    await page.evaluate(f"localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(stale)})")

    page = await tab.open("/")
    lost = page.locator("#identity-lost")
    await expect(lost).to_contain_text("Your sign-in here has expired.")
    # Not "they stay with the old identity; sign in … to get it back": a guest none of whose
    # devices came back is swept with what it made.
    await expect(lost).to_contain_text("is deleted with what it made")
    await expect(lost).not_to_contain_text("stay with the old identity")
    await expect(page.locator("#identity-start-over")).to_be_visible()  # the way forward
