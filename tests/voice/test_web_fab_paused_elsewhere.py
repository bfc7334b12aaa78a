"""In Chromium: a recording paused from another tab or device (noticed and left by the audit
"voicephone": the laptop could not stop a recording the phone left running).

Before, the laptop's FAB showed "Recording elsewhere" with every button disabled, and the session
page refused Done ("pause the recording before closing the session") with no way to pause it; a
pause sent anyway left the phone recording under a session that said "paused", each of its cuts
refused. Now both offer Pause, and a recorder that hears a pause it did not make stops as its own
Pause does: what it recorded is kept and uploaded, the microphone is freed, Resume records again.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from tests.browser import SocketGate, Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.voice.test_web_fab_held import until_chunks
from tests.voice.test_web_fab_microphone_lost import KEEP_STREAMS
from tests.voice.test_web_session_follow import until_audio_is_kept
from tests.voice.waits import status_becomes

pytestmark = pytest.mark.timeout(180)

# Whether every microphone track the page was given has ended (the microphone is free).
MICROPHONE_FREE = """() => window.testStreams.length > 0
  && window.testStreams.every((stream) => stream.getTracks().every((track) => track.readyState === "ended"))"""


async def recording_phone(page: Page, session_id: str) -> None:
    await expect(page.locator("#fab-rec")).to_be_enabled()
    await page.locator("#fab-rec").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await until_audio_is_kept(page)


async def expect_stopped_by_a_pause(page: Page, where: str) -> None:
    await expect(page.locator("#fab-message")).to_contain_text(f"Paused {where}; what you recorded is kept")
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "paused")
    await expect(page.locator("#fab-rec")).to_have_text("Resume")
    await expect(page.locator("#fab-cut")).to_be_disabled()
    await page.wait_for_function(MICROPHONE_FREE, timeout=10_000)


async def test_a_pause_sent_by_another_device_stops_the_recorder_and_keeps_its_audio(
    server: ServerUnderTest, tab: Tab
) -> None:
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(KEEP_STREAMS)
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    page = await tab.open("/")
    await recording_phone(page, session_id)

    laptop = Client(server.url, server.token("alice"))
    await laptop.connect()
    try:
        ack = await laptop.call("set_session_status", {"session_id": session_id, "status": "paused"})
        assert ack["ok"] is True and ack["changed"] is True, ack
    finally:
        await laptop.close()

    await expect_stopped_by_a_pause(page, "on another tab or device")
    await until_chunks(server, session_id, 1)  # what it recorded before the pause went up
    await status_becomes(server, session_id, "paused")  # and stays so: nothing records
    # Resume records again here, with the microphone asked for anew.
    await page.locator("#fab-rec").click()
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await status_becomes(server, session_id, "recording")


async def test_the_laptops_fab_pauses_the_phones_recording(server: ServerUnderTest, browser: Browser) -> None:
    phone_tab, laptop_tab = await new_tab(browser, server), await new_tab(browser, server)
    try:
        for each in (phone_tab, laptop_tab):
            await each.use_token(server.token("alice"))
        await phone_tab.page.add_init_script(KEEP_STREAMS)
        session_id = await server.create_session("alice")
        await server.services.voice.set_active("alice", session_id)
        phone = await phone_tab.open("/")
        laptop = await laptop_tab.open("/")
        await recording_phone(phone, session_id)

        await expect(laptop.locator(".fab-label")).to_have_text("Recording elsewhere")
        await expect(laptop.locator("#fab-status")).to_have_attribute(
            "aria-label", "Recorder status: Recording elsewhere"
        )
        pause = laptop.locator("#fab-pause")
        await expect(pause).to_be_enabled()
        await expect(pause).to_have_attribute("aria-label", "Pause the recording on the other tab or device")
        for name in ("new", "rec", "cut", "done"):
            await expect(laptop.locator(f"#fab-{name}")).to_be_disabled()
        await pause.focus()
        await laptop.keyboard.press("Enter")  # by keyboard, as a person would

        await expect(laptop.locator("#fab-message")).to_contain_text("the tab or device that was recording stops")
        await expect(laptop.locator("#fab-status")).to_have_attribute("data-status", "paused")
        await expect_stopped_by_a_pause(phone, "on another tab or device")
        await until_chunks(server, session_id, 1)
        await status_becomes(server, session_id, "paused")
        # The laptop may now record into the session itself.
        await expect(laptop.locator("#fab-rec")).to_be_enabled()
        await expect(laptop.locator("#fab-pause")).to_be_disabled()
    finally:
        await phone_tab.page.context.close()
        await laptop_tab.page.context.close()


async def test_the_session_page_pauses_a_recording_elsewhere_then_closes_it(
    server: ServerUnderTest, browser: Browser
) -> None:
    phone_tab, laptop_tab = await new_tab(browser, server), await new_tab(browser, server)
    try:
        for each in (phone_tab, laptop_tab):
            await each.use_token(server.token("alice"))
        await phone_tab.page.add_init_script(KEEP_STREAMS)
        session_id = await server.create_session("alice")
        await server.services.voice.set_active("alice", session_id)
        phone = await phone_tab.open("/")
        laptop = await laptop_tab.open(f"/session/{session_id}")
        await recording_phone(phone, session_id)

        await expect(laptop.locator("#done-hint")).to_be_visible()
        await expect(laptop.locator("#done-button")).to_be_disabled()
        pause = laptop.locator("#pause-button")
        await expect(pause).to_be_visible()
        await pause.click()

        await expect_stopped_by_a_pause(phone, "on another tab or device")
        await expect(laptop.locator("#notice")).to_contain_text("Paused: the recorder stops")
        await expect(pause).to_be_hidden()
        await expect(laptop.locator("#done-button")).to_be_enabled()
        await until_chunks(server, session_id, 1)
        await laptop.locator("#done-button").click()
        await expect(laptop.locator("#notice")).to_contain_text("Session closed (Done \u00d7 1)")
        session = await server.services.voice.get(session_id)
        assert session is not None and session.status == "closed" and session.chunk_count >= 1
    finally:
        await phone_tab.page.context.close()
        await laptop_tab.page.context.close()


async def test_the_session_pages_pause_names_this_page_to_its_own_recorder(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(KEEP_STREAMS)
    session_id = await server.create_session("alice")
    page = await tab.open(f"/session/{session_id}")
    await recording_phone(page, session_id)
    await page.locator("#pause-button").click()
    await expect_stopped_by_a_pause(page, "with the button on this page")
    await until_chunks(server, session_id, 1)


class HeldPauses:
    """Holds the server's ``session_status`` events saying ``paused`` on their way to the page
    until released: the echo of the page's own Pause arriving after its Resume. Every socket of
    the page is routed (the FAB's and the page's own)."""

    def __init__(self) -> None:
        self.holding = True
        self.held: list[tuple[WebSocketRoute, str]] = []

    def route(self, ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()
        ws.on_message(server_side.send)

        def to_page(message: str | bytes) -> None:
            paused = isinstance(message, str) and message.startswith('42["session_status"') and '"paused"' in message
            if paused and self.holding:
                self.held.append((ws, message))
                return
            ws.send(message)

        server_side.on_message(to_page)

    def release(self) -> None:
        self.holding = False
        for ws, message in self.held:
            ws.send(message)


async def leaves_cutting(server: ServerUnderTest, session_id: str) -> str:
    """The session's status once it is no longer ``cutting`` (10 s at most)."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        session = await server.services.voice.get(session_id)
        assert session is not None
        if session.status != "cutting":
            return session.status
        assert asyncio.get_running_loop().time() < deadline, "the session stayed cutting"
        await asyncio.sleep(0.05)


async def test_the_echo_of_its_own_pause_after_a_resume_does_not_stop_the_recorder(
    server: ServerUnderTest, tab: Tab
) -> None:
    await tab.use_token(server.token("alice"))
    held = HeldPauses()
    await tab.page.route_web_socket(re.compile(r"/socket\.io/"), held.route)
    session_id = await server.create_session("alice")
    page = await tab.open(f"/session/{session_id}")
    await recording_phone(page, session_id)
    await page.locator("#fab-pause").click()
    await status_becomes(server, session_id, "paused")
    await expect(page.locator("#fab-rec")).to_have_text("Resume")
    await page.locator("#fab-rec").click()
    await status_becomes(server, session_id, "recording")
    await expect(page.locator("#fab-cut")).to_be_enabled()
    assert held.held, "the page's own pause was heard as an event"

    held.release()  # its own pause's event, late: older than its Resume
    # A cut: its answer comes after the released events on the same connection, and the cut is
    # followed by "recording" only while the FAB still records (a stopped one says "paused").
    await page.locator("#fab-cut").click()
    await status_becomes(server, session_id, "cutting")
    assert await leaves_cutting(server, session_id) == "recording"
    await expect(page.locator("#fab-status")).to_have_attribute("data-status", "recording")
    await expect(page.locator("#fab-message")).not_to_contain_text("Paused")
    await expect(page.locator("#fab-pause")).to_be_enabled()


async def test_a_pause_pressed_while_the_phone_was_away_stands_when_it_comes_back(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The phone's connection went silent, the laptop pressed Pause, and the phone, back, set
    `recording` again and recorded on over it (audit "verify49"). Its resume is refused now
    (tests/voice/test_recording_lease.py), and it stops as if it had heard the pause."""
    gate = SocketGate()
    await gate.install(tab.page)
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(KEEP_STREAMS)
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    page = await tab.open("/")
    await recording_phone(page, session_id)

    # The phone's network goes (silent: the server may not know yet, or may have paused the
    # session itself, its recorder gone); the laptop presses Pause meanwhile.
    await gate.cut()
    laptop = Client(server.url, server.token("alice"))
    await laptop.connect()
    try:
        ack = await laptop.call("set_session_status", {"session_id": session_id, "status": "paused"})
        assert ack["ok"] is True, ack
    finally:
        await laptop.close()
    gate.release()  # the phone is back: it resumed its recording over the pause

    await expect_stopped_by_a_pause(page, "on another tab or device")
    await until_chunks(server, session_id, 1)  # what it recorded is kept
    await status_becomes(server, session_id, "paused")
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == "paused"


async def test_a_phone_back_leaves_the_laptop_that_took_the_session_up_recording(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The phone's connection went silent; on the laptop the person pressed Pause, then Rec and
    talked. The phone, back, took the laptop's lease and, hearing the old pause, said it once more:
    the laptop stopped, "paused on another tab or device", though nobody had pressed Pause (audit
    "verify50"). The phone stops and leaves the laptop recording."""
    gate = SocketGate()
    await gate.install(tab.page)
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(KEEP_STREAMS)
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    page = await tab.open("/")
    await recording_phone(page, session_id)

    await gate.cut()
    laptop = Client(server.url, server.token("alice"))
    await laptop.connect()
    try:
        for status in ("paused", "recording"):  # the laptop's Pause, then its own Rec
            payload = {"session_id": session_id, "status": status, "recorder": "laptop-recorder-1"}
            ack = await laptop.call("set_session_status", payload)
            assert ack["ok"] is True and ack["changed"] is True, ack
        lease = await server.services.redis.get(server.services.keys.voice_recording_lease(session_id))
        logged = await server.services.redis.xlen(server.services.keys.log(session_id))
        gate.release()  # the phone is back

        message = page.locator("#fab-message")
        await expect(message).to_contain_text(re.compile(r"Another tab or device records|Paused on another tab"))
        await page.wait_for_function(MICROPHONE_FREE, timeout=10_000)
        await until_chunks(server, session_id, 1)  # what the phone recorded is kept, uploaded after it stopped
        session = await server.services.voice.get(session_id)
        assert session is not None and session.status == "recording"  # the laptop records on
        assert await server.services.redis.get(server.services.keys.voice_recording_lease(session_id)) == lease
        entries = await server.services.redis.xrange(server.services.keys.log(session_id))
        later = [json.loads(entry["e"]) for _, entry in entries[logged:]]
        assert [e for e in later if e["type"] == "session_status"] == [], later
    finally:
        await laptop.close()


async def test_a_pause_the_server_has_not_heard_says_so_until_it_has(server: ServerUnderTest, tab: Tab) -> None:
    """On a stalled connection the FAB said "Paused" and freed the microphone while the server,
    and every other device, showed the session recording for 38 s until the socket timed out
    (audit "voicefield"). It says the pause has not reached the server, until it has."""
    gate = SocketGate()
    await gate.install(tab.page)
    await tab.use_token(server.token("alice"))
    await tab.page.add_init_script(KEEP_STREAMS)
    session_id = await server.create_session("alice")
    await server.services.voice.set_active("alice", session_id)
    page = await tab.open("/")
    await recording_phone(page, session_id)
    gate.mute()  # the network stalls: no close, no error
    await page.locator("#fab-pause").click()
    await gate.until_kept("set_session_status")
    message = page.locator("#fab-message")
    await expect(message).to_contain_text("the server has not heard it yet")
    session = await server.services.voice.get(session_id)
    assert session is not None and session.status == "recording"  # as every other device sees it
    gate.unmute()
    await status_becomes(server, session_id, "paused")
    await expect(message).to_have_text("Paused: every device shows it now.")
