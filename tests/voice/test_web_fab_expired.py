"""The recorder's New once the page's access token has run out: one press, one session, recording.

The page renewed its token over HTTP and made the session, then sent its three socket calls
(leave the old session, follow the new one, start recording) at once on the connection still
holding the old token: each was refused `unauthorized`, each made the connection again, and each
reconnect dropped the others' calls. Nothing was recorded, an empty session was left behind, and
the page said "The connection was lost before the server answered."
"""

from __future__ import annotations

import re

from playwright.async_api import expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.voice.test_web_fab import fab_ready

HOUR_MS = 3_600_000


def seen(client: Client) -> list[str]:
    return [event["data"]["status"] for event in client.named("session_status")]


# The voice sessions of the page's identity, read with its own (renewed) token.
MY_SESSIONS = """async () => {
  const token = JSON.parse(localStorage.getItem("sessionhub.token")).token;
  const answer = await fetch("/voicebot/sessions?limit=50", { headers: { Authorization: `Bearer ${token}` } });
  return (await answer.json()).sessions.map((s) => s.status);
}"""


async def test_new_after_the_access_token_ran_out_records_into_one_new_session(
    server: ServerUnderTest, tab: Tab
) -> None:
    page = await tab.open("/")  # a first visit: the first session made makes the page a guest
    await page.locator("#session-name-input").fill("first")
    await page.locator("#new-session").click()
    await page.wait_for_url(re.compile("/session/"))
    await expect(page.locator('#connection[data-state="live"]')).to_be_visible()
    page = await tab.open("/")
    await fab_ready(page)
    before = await page.evaluate(MY_SESSIONS)
    # Two hours on the server's clock alone: the page believes its token fresh, the server holds
    # it expired (the page's next request and socket calls are refused until it renews).
    server.services.clock.shift_ms += 2 * HOUR_MS
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording", timeout=15_000)
    await expect(page.locator("#fab-message")).not_to_contain_text("lost")
    await page.locator("#fab-pause").click()  # one chunk recorded, then paused: it stays
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
    await expect(page.locator("#fab-message")).not_to_contain_text("already being recorded")
    after = await page.evaluate(MY_SESSIONS)
    assert len(after) == len(before) + 1 and after.count("paused") == 1, (before, after)


# Three calls at once on a connection of this page's identity, once its token expired at the server.
THREE_AT_ONCE = """async () => {
  const client = await import("/static/js/client.js");
  const socket = client.connect();
  await new Promise((resolve) => (socket.connected ? resolve() : socket.once("connect", resolve)));
  window.__threeAtOnce = async () => {
    const calls = [1, 2, 3].map(() => client.call(socket, "follow_user", {}));
    const settled = await Promise.allSettled(calls);
    return settled.map((s) => (s.status === "fulfilled" ? "ok" : `${s.reason?.code}: ${s.reason?.message}`));
  };
}"""


async def test_calls_refused_together_for_an_expired_token_are_each_sent_again_once(
    server: ServerUnderTest, tab: Tab
) -> None:
    """Each refused call made the connection again, and each reconnect dropped the calls the
    others had resent ("disconnected"): one renewal is shared by every call refused meanwhile."""
    page = await tab.open("/")
    await page.locator("#session-name-input").fill("first")
    await page.locator("#new-session").click()
    await page.wait_for_url(re.compile("/session/"))
    await page.evaluate(THREE_AT_ONCE)
    server.services.clock.shift_ms += 2 * HOUR_MS
    assert await page.evaluate("() => window.__threeAtOnce()") == ["ok", "ok", "ok"]


async def test_a_cut_after_the_access_token_ran_out_keeps_the_session_recording(
    server: ServerUnderTest, tab: Tab
) -> None:
    """A recording longer than its access token (an hour by default): the next status call is
    refused, the connection is made again, and the old one's close pauses the session
    (`recorder_gone`). The recorder sent its Cut again without taking the lease back: refused
    ("not allowed in the session's current state"), the session stayed paused under a recorder
    still recording, and another tab offered Rec into it (audit "returning")."""
    page = await tab.open("/")
    await fab_ready(page)
    await page.locator("#fab-new").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    # Read once the page has it: a page just navigated to may not have said whose it is yet.
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
    user_id = await page.locator("#identity").get_attribute("data-user-id")
    session_id = await server.services.voice.active_id(str(user_id))
    assert session_id is not None
    # Another tab's view of the session (a token that outlives the test's two hours).
    watcher = Client(server.url, server.token(str(user_id), ttl_s=6 * 3600))
    try:
        await watcher.connect()
        await watcher.call("subscribe_on_session", {"session_id": session_id})
        server.services.clock.shift_ms += 2 * HOUR_MS
        await page.locator("#fab-cut").click()
        await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording", timeout=15_000)
        # The cut, then its own "recording" a second on.
        await watcher.wait_for(lambda: seen(watcher)[-2:] == ["cutting", "recording"])
        statuses = await page.evaluate(MY_SESSIONS)
        assert statuses == ["recording"], statuses
        # The recorder's connection took its next token in place (renew_token): it was not made
        # again, so its lease did not end and the other tab never saw the session paused.
        assert seen(watcher) == ["cutting", "recording"], seen(watcher)
    finally:
        await watcher.close()
    # Past the cut's own "recording" (1 s on): the session records, and nothing was refused.
    await page.locator("#fab-pause").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
    await expect(page.locator("#fab-message")).not_to_contain_text("not allowed")
    assert await page.evaluate(MY_SESSIONS) == ["paused"]


# A subscription asked for on a connection of this page's identity once its token expired at the
# server: `subscribe_on_session` resends only at a connect, and a renewal in place makes none.
SUBSCRIBE_LATE = """async (sessionId) => {
  const client = await import("/static/js/client.js");
  const socket = client.connect();
  await new Promise((resolve) => (socket.connected ? resolve() : socket.once("connect", resolve)));
  window.__subscribeLate = () =>
    new Promise((resolve) => {
      const id = socket.id;
      client.subscribeSession(socket, sessionId, {
        onSnapshot: (session) => resolve({ status: session.status, same: socket.id === id }),
        onError: (err) => resolve({ error: err.code }),
      });
    });
}"""


async def test_a_subscription_asked_for_after_the_token_ran_out_is_made(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/")
    await page.locator("#session-name-input").fill("first")
    await page.locator("#new-session").click()
    await page.wait_for_url(re.compile("/session/"))
    # Read once the page has it: a page just navigated to may not have said whose it is yet.
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
    user_id = await page.locator("#identity").get_attribute("data-user-id")
    later = await server.create_session(str(user_id), name="later")
    await page.evaluate(SUBSCRIBE_LATE, later)
    server.services.clock.shift_ms += 2 * HOUR_MS
    subscribed = await page.evaluate("() => window.__subscribeLate()")
    # Renewed in place: the same connection, and the subscription sent again on it.
    assert subscribed == {"status": "ready", "same": True}, subscribed
