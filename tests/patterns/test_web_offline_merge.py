"""Edits made offline and saved over another player's newer state (PUT, 412, made again)."""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.browser import SocketGate, Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_http import track
from tests.patterns.test_web import new_pattern, open_live, step, stored_steps


async def test_an_offline_edit_whose_track_was_deleted_meanwhile_is_said_to_be_dropped(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The auto-save put the page's edits over the newer state and silently left out the one
    whose track another player had deleted: the player saw the step go and was told nothing."""
    tracks = [track("t1", steps=[False] * 16), track("t2", name="Snare", sampleId="snare", steps=[False] * 16)]
    session_id = await new_pattern(server, state={"tracks": tracks})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()  # the page is offline; its edits wait for the auto-save
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")

    live = Client(server.url, server.token("live-player"))
    clients.append(live)
    await live.connect()
    op = {"type": "delete_track", "trackId": "t2"}
    assert (await live.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True

    await step(page, "t1", 5).click()
    await step(page, "t2", 3).click()  # its track is gone on the server
    await expect(page.locator("#toast")).to_have_text(
        "1 change made offline could not be kept: another player deleted its track meanwhile,"
        " or the pattern already holds 16 tracks."
    )
    assert (await stored_steps(server, session_id))[5] is True  # the other edit was kept
    await expect(page.locator('.track-row[data-track="t2"]')).to_have_count(0)
    gate.release()


async def test_an_offline_delete_of_a_track_deleted_meanwhile_is_no_dropped_change(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Both players deleted the track: what this one wanted is done, so nothing is said dropped."""
    tracks = [track("t1", steps=[False] * 16), track("t2", name="Snare", sampleId="snare", steps=[False] * 16)]
    session_id = await new_pattern(server, state={"tracks": tracks})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    live = Client(server.url, server.token("live-player"))
    clients.append(live)
    await live.connect()
    op = {"type": "delete_track", "trackId": "t2"}
    assert (await live.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True

    async with page.expect_response(lambda r: r.request.method == "PUT" and r.status == 200) as saved:
        await page.get_by_role("button", name="Delete track Snare").click()
        await step(page, "t1", 5).click()  # saved by PUT: 412, then made again over the newer state
    await (await saved.value).finished()
    await page.evaluate("new Promise((done) => setTimeout(done, 0))")  # the page has read the answer
    assert (await stored_steps(server, session_id))[5] is True
    assert await page.locator("#toast").is_hidden()  # now, not once a toast has gone (4 s)
    gate.release()


async def test_an_edit_the_auto_save_cannot_send_offline_is_said_kept_and_is_sent_back_online(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    """Offline, the auto-save's failure said only "The server cannot be reached.", though the
    edit was kept and sent once the connection was back."""
    tracks = [track("t1", steps=[False] * 16)]
    session_id = await new_pattern(server, state={"tracks": tracks})
    page = await open_live(tab, f"/s/{session_id}")
    await page.context.set_offline(True)
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")

    await step(page, "t1", 5).click()
    await expect(page.locator("#toast")).to_have_text(
        "Offline: your changes are kept on this page and will be sent when the connection is back."
    )
    assert (await stored_steps(server, session_id))[5] is False

    await page.context.set_offline(False)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    other = await new_tab(browser, server)  # the edit went live as the page subscribed again
    try:
        watcher = await open_live(other, f"/s/{session_id}")
        await expect(step(watcher, "t1", 5)).to_have_attribute("aria-pressed", "true")
    finally:
        await other.page.context.close()
    assert (await stored_steps(server, session_id))[5] is True
