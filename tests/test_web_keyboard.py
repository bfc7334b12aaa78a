"""In Chromium, with the keyboard only: a control that goes away under the focus hands it on.

A pressed button disabled while its call runs, or hidden once it has done its work, drops the
focus to the page: the next Tab starts from the top, and what the person does next is a page of
Tabs away."""

from __future__ import annotations

import re

from playwright.async_api import Dialog, WebSocketRoute, expect

from tests.browser import Tab, listen_to_live_regions, live_texts
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import create_stream, started


async def test_the_stream_dashboards_state_buttons_hand_the_focus_on(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await create_stream(server, title="Keys only")
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    state = page.locator("#stream-state")
    await page.locator("#action-start").focus()
    for key, shown, focused in (
        ("Enter", "Live", "#action-pause"),  # Start gives way to Pause, End
        ("Space", "Paused", "#action-resume"),
        ("Enter", "Live", "#action-pause"),
    ):
        await page.keyboard.press(key)
        await expect(state).to_have_text(shown)
        await expect(page.locator(focused)).to_be_focused()

    async def accept(dialog: Dialog) -> None:
        await dialog.accept()

    page.once("dialog", accept)
    await page.locator("#action-end").focus()
    await page.keyboard.press("Enter")
    await expect(state).to_have_text("Ended")
    await expect(state).to_be_focused()  # no action is left: the focus says where things stand


async def test_a_state_drawn_before_its_actions_answer_still_hands_the_focus_on(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The stream's new state may be drawn before the action's answer is read (a full run on a
    busy machine saw it): the buttons were still disabled, nothing was offered, and the focus
    went to the state instead of Pause. Here the test holds each answer to ``stream_set_state``
    back until the state event behind it has reached the page."""
    session_id = await create_stream(server, title="Answer late")
    ids: set[str] = set()

    def route(ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()
        held: list[str | bytes] = []

        def to_server(message: str | bytes) -> None:
            if isinstance(message, str) and (found := re.match(r'42(\d+)\["stream_set_state"', message)):
                ids.add(found.group(1))
            server_side.send(message)

        def to_page(message: str | bytes) -> None:
            if isinstance(message, str) and (found := re.match(r"43(\d+)", message)) and found.group(1) in ids:
                held.append(message)  # the answer waits for the event behind it
                return
            ws.send(message)
            if isinstance(message, str) and message.startswith("42") and held:
                ws.send(held.pop(0))

        ws.on_message(to_server)
        server_side.on_message(to_page)

    await tab.page.route_web_socket(re.compile(r"/socket\.io/"), route)
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    state = page.locator("#stream-state")
    await page.locator("#action-start").focus()
    for key, shown, focused in (("Enter", "Live", "#action-pause"), ("Space", "Paused", "#action-resume")):
        await page.keyboard.press(key)
        await expect(state).to_have_text(shown)
        await expect(page.locator(focused)).to_be_focused()
    assert len(ids) == 2  # both answers were held behind their events


async def test_the_session_pages_done_and_process_keep_the_focus(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await server.create_session("alice", name="Keys only")
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/session/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    done = page.locator("#done-button")
    await done.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#notice")).to_contain_text("Session closed")
    await expect(done).to_be_focused()
    process = page.locator("#process-button")
    await process.focus()
    await page.keyboard.press("Space")
    await expect(page.locator("#notice")).to_contain_text("Processing")
    await expect(process).to_be_focused()


async def test_an_identity_action_that_fails_gives_the_focus_back_to_its_button(
    server: ServerUnderTest, tab: Tab
) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    await page.locator("#identity-name").focus()
    await page.keyboard.press("Enter")
    save = page.locator("#identity-panel button", has_text="Save name")
    await page.context.set_offline(True)
    await save.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#identity-error")).to_contain_text("The name was not saved")
    await expect(save).to_be_focused()  # to try again with Enter once back online
    await page.context.set_offline(False)


async def test_the_clip_button_has_the_focus_again_after_its_cooldown(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A viewer clipping with the keyboard: Enter on the button clips, the cooldown disables it,
    and it had dropped the focus to the page, so the next moment was a page of Tabs away."""
    session_id, _owner = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await tab.open(f"/watch/{session_id}")
    button = page.locator("#clip-button")
    await expect(button).to_be_enabled()
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#clip-reason")).to_contain_text("Cooldown")
    await expect(button).to_be_enabled()  # after the 2 s cooldown
    await expect(button).to_be_focused()
    await page.keyboard.press("Enter")  # the next moment, one key away
    await expect(page.locator("#mine li")).to_have_count(2)  # clipped, not refused (also "Cooldown")
    await expect(page.locator("#clip-reason")).to_contain_text("Cooldown")


async def test_the_pattern_pages_publish_gives_the_focus_back(server: ServerUnderTest, tab: Tab) -> None:
    """Publish is disabled while its request runs, which dropped the focus to the page."""
    from tests.patterns.test_web import new_pattern, open_live

    session_id = await new_pattern(server)
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/s/{session_id}")
    publish = page.locator("#publish")
    await publish.focus()
    await page.keyboard.press("Enter")
    await expect(page.locator(".toast")).to_contain_text("Published")
    await expect(publish).to_be_focused()


async def test_the_admins_delete_hands_the_focus_to_what_happened(server: ServerUnderTest, tab: Tab) -> None:
    """Delete session is disabled for good once the session is gone, which dropped the focus."""
    from tests.admin.test_http import LONG_TTL_S, admin_token

    doomed = await server.create_session("bob", name="doomed")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await page.locator(f'#sessions tr[data-id="{doomed}"] .row-open').focus()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-title")).to_be_focused()
    await page.locator("#delete-confirm").fill(doomed)
    await page.keyboard.press("Tab")
    await expect(page.locator("#delete-button")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-notice")).to_have_text(f"Deleted {doomed}.")
    await expect(page.locator("#detail-notice")).to_be_focused()


async def test_the_players_play_pause_and_stop_hand_the_focus_on(server: ServerUnderTest, tab: Tab) -> None:
    """Each of the three disables itself once it has done its work, which dropped the focus."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/player")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    row = page.locator('li[data-item-id="demo-audiobook-1"]')
    await expect(row.locator("button.play")).to_be_enabled()
    await row.locator("button.play").focus()
    for key, state, focused in (
        ("Enter", "playing", "pause"),
        ("Space", "paused", "play"),
        ("Enter", "playing", "pause"),
    ):
        await page.keyboard.press(key)
        await expect(row).to_have_attribute("data-state", state)
        await expect(row.locator(f"button.{focused}")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(row.locator("button.stop")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(row).to_have_attribute("data-state", "stopped")
    await expect(row.locator("button.play")).to_be_focused()


async def test_the_watch_page_says_each_change_once(server: ServerUnderTest, tab: Tab, clients: list[Client]) -> None:
    """The stream coming back live emptied the clip reason (said nothing); the cooldown rewrote
    its live text four times a second; the note's counter was live and queued every keystroke; the
    button's name read its emoji aloud."""
    session_id, owner = await started(server, clients)
    await tab.use_token(server.token("bob"))
    await listen_to_live_regions(tab.page)
    page = await tab.open(f"/watch/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    button = page.get_by_role("button", name="Clip Moment", exact=True)
    await expect(button).to_be_enabled()
    said = page.locator("#clip-said")
    await expect(said).to_have_attribute("role", "status")  # in place before anything is said
    await expect(said).to_have_text("")  # what the page shows as it loads is not said

    async def stream(action: str, text: str) -> None:
        ack = await owner.call("stream_set_state", {"session_id": session_id, "action": action})
        assert ack["ok"] is True, ack
        await expect(said).to_have_text(text)

    await stream("pause", "The stream is paused: clips are off during the break.")
    await stream("resume", "The stream is live again.")
    await page.locator("#note-input").fill("what a jump")
    await button.focus()
    await page.keyboard.press("Enter")
    await expect(said).to_have_text(re.compile(r"^Cooldown: you can clip again in \d s\.$"))
    await expect(button).to_be_enabled()  # after the 2 s cooldown (rewritten on screen meanwhile)
    await stream("pause", "The stream is paused: clips are off during the break.")
    texts = await live_texts(page, "clip-said")
    assert len(texts) == 4 and texts[2].startswith("Cooldown"), texts  # the cooldown said once
    assert await live_texts(page, "note-counter") == []
    assert await page.locator("#note-counter").get_attribute("aria-live") is None
