"""The voice-session page and the landing page in a real browser against a real server."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
from playwright.async_api import Browser, Page, Route, expect

from auth.claims import GUEST_PERMISSIONS
from storage.voice.repository import KEEP_LAST_JOB
from tests.audio_samples import wav
from tests.browser import SocketGate, Tab, listen_to_live_regions, live_texts, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.voice.uploads import chunk_form, upload

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
XSS_NAME = '<img src=x onerror="window.__xss=1">'


async def open_live(tab: Tab, path: str) -> Page:
    """Open ``path`` and wait until the page follows its session live."""
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


def count_navigations(page: Page) -> list[str]:
    """URLs the main frame navigates to from now on (same-document ones included)."""
    seen: list[str] = []
    page.on("framenavigated", lambda frame: seen.append(frame.url) if frame == page.main_frame else None)
    return seen


async def test_page_follows_done_from_another_client(server: ServerUnderTest, tab: Tab, clients: list[Client]) -> None:
    session_id = await server.create_session("alice", "Standup")
    token = server.token("alice")
    await tab.use_token(token)
    page = await open_live(tab, f"/session/{session_id}")
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "ready")
    await expect(page.locator("#done-count")).to_have_text("0")
    await expect(page.locator("#session-name")).to_have_text("Standup")
    await page.evaluate("window.__sameDocument = true")
    navigations = count_navigations(page)

    other = Client(server.url, token)
    clients.append(other)
    await other.connect()
    ack = await other.call("session_done", {"session_id": session_id})
    assert ack["ok"] is True and ack["done_count"] == 1

    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
    await expect(page.locator("#done-count")).to_have_text("1")
    await expect(page.locator("#session-state")).to_have_text("Closed")
    assert navigations == []
    assert await page.evaluate("window.__sameDocument") is True
    # Opening a page session never makes it the active one.
    assert await server.services.voice.active_id("alice") is None


async def test_the_page_sessions_status_set_elsewhere_is_said_once_per_change(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The status was a pictogram's label and a plain word: a recording another device started in
    this session reached no screen reader. Said once per change (a cut is none); the FAB, which
    follows no session here, says nothing of it."""
    session_id = await server.create_session("alice", "Standup")
    await tab.use_token(server.token("alice"))
    await listen_to_live_regions(tab.page)
    page = await open_live(tab, f"/session/{session_id}")
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "ready")
    said = page.locator("#status-said")
    await expect(said).to_have_attribute("role", "status")
    await expect(said).to_have_text("")  # what the page shows as it opens is not said
    recorder = Client(server.url, server.token("alice"))
    clients.append(recorder)
    await recorder.connect()
    for status, heard in (
        ("recording", "Recording"),
        ("cutting", "Recording"),
        ("recording", "Recording"),
        ("paused", "Paused"),
    ):
        ack = await recorder.call("set_session_status", {"session_id": session_id, "status": status})
        assert ack["ok"] is True, ack
        await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", status)
        await expect(said).to_have_text(f"Session status: {heard}")
    assert await live_texts(page, "status-said") == ["Session status: Recording", "Session status: Paused"]
    assert await live_texts(page, "fab-announce") == []


async def test_done_button_closes_the_page_session(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await server.create_session("alice", "Planning")
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/session/{session_id}")

    await page.locator("#done-button").click()

    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
    await expect(page.locator("#done-count")).to_have_text("1")
    stored = await server.services.voice.get(session_id)
    assert stored is not None
    assert (stored.is_active, stored.status, stored.done_count) == (False, "closed", 1)


async def test_done_waits_while_another_recorder_records_into_the_session(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Done pressed on the page while another tab recorded into the session closed it under that
    recorder: it went on recording, and what it cut next was refused (the session closed). Done
    waits for the recording to pause, and says why meanwhile."""
    session_id = await server.create_session("alice", "Standup")
    token = server.token("alice")
    await tab.use_token(token)
    page = await open_live(tab, f"/session/{session_id}")
    await expect(page.locator("#done-button")).to_be_enabled()
    await expect(page.locator("#done-hint")).to_be_hidden()

    recorder = Client(server.url, token)  # another tab's recorder
    clients.append(recorder)
    await recorder.connect()
    ack = await recorder.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["ok"] is True, ack
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "recording")
    await expect(page.locator("#done-button")).to_be_disabled()
    await expect(page.locator("#done-hint")).to_be_visible()

    ack = await recorder.call("set_session_status", {"session_id": session_id, "status": "paused"})
    assert ack["ok"] is True, ack
    await expect(page.locator("#done-button")).to_be_enabled()
    await expect(page.locator("#done-hint")).to_be_hidden()
    await page.locator("#done-button").click()
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")


async def test_done_pressed_offline_says_so_at_once(server: ServerUnderTest, tab: Tab) -> None:
    """The browser offline before its socket noticed (Done still offered), Done said nothing for
    the 10 s its call waited."""
    session_id = await server.create_session("alice", "Planning")
    await tab.use_token(server.token("alice"))
    # The socket goes through the test, which stalls it: it stays open and its page goes on
    # offering Done, as a real socket does until a ping goes unanswered. The browser says it is
    # offline without the window's "offline" event, on which the socket would close at once:
    # the moment between the two, which Playwright's set_offline cannot hold still.
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/session/{session_id}")
    gate.mute()
    await page.evaluate("Object.defineProperty(navigator, 'onLine', { configurable: true, get: () => false })")
    await page.locator("#done-button").click()
    await expect(page.locator("#notice")).to_have_text("Offline: Done is sent when the connection is back…")
    await page.evaluate("delete navigator.onLine")  # the prototype's answer again: online
    gate.unmute()
    await expect(page.locator("#notice")).to_have_text(re.compile(r"^Session closed \(Done \S 1\)\.$"))
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")


async def test_session_without_id_shows_empty_state_then_the_active_session(server: ServerUnderTest, tab: Tab) -> None:
    token = server.token("alice")
    await tab.use_token(token)
    page = await tab.open("/session")
    await expect(page.locator("#empty-state")).to_be_visible()
    await expect(page.locator("#empty-state h1")).to_have_text("Активная сессия не найдена")

    response = await page.request.post(
        f"{server.url}/voicebot/create_session",
        headers={"Authorization": f"Bearer {token}"},
        data={"session_name": "Active one"},
    )
    assert response.status == 201
    active_id = (await response.json())["session_id"]

    await tab.open("/session")
    await expect(page).to_have_url(f"{server.url}/session/{active_id}")
    await expect(page.locator("#session-name")).to_have_text("Active one")
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "ready")
    await expect(page.locator("#empty-state")).to_be_hidden()

    other_id = await server.create_session("alice", "Another")
    await open_live(tab, f"/session/{other_id}")
    assert await server.services.voice.active_id("alice") == active_id


async def test_session_name_is_shown_as_text(server: ServerUnderTest, browser: Browser) -> None:
    session_id = await server.create_session("alice", XSS_NAME)
    # Without the page's CSP, so that only the rendering stands between the name and the DOM.
    unprotected = await new_tab(browser, server, bypass_csp=True)
    try:
        await unprotected.use_token(server.token("alice"))
        page = await open_live(unprotected, f"/session/{session_id}")
        await expect(page.locator("#session-name")).to_have_text(XSS_NAME)
        assert await page.locator("img").count() == 0
        assert await page.evaluate("typeof window.__xss") == "undefined"
        assert await page.title() == f"{XSS_NAME} · sessionhub"
        assert not unprotected.errors, unprotected.errors
    finally:
        await unprotected.page.context.close()


async def test_job_results_are_listed(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await server.create_session("alice", "With jobs")
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/session/{session_id}")
    services = server.services

    for status in ("retrying", "succeeded"):
        data = {"job_id": "j1", "job_type": "DONE_MULTIPROMPT", "status": status}
        await services.log.append(services.scripts.append, session_id, "job_result", data)

    # One line per job in the person's words; another job is a line of its own, above.
    items = page.locator("#activity li")
    await expect(items).to_have_count(1)
    await expect(items.first.locator(".job-status")).to_have_text("done")
    await expect(items.first.locator(".job-type")).to_have_text("Summary")
    await expect(page.locator("#activity-empty")).to_be_hidden()
    other = {"job_id": "j2", "job_type": "MY_PLUGIN_JOB", "status": "failed"}
    await services.log.append(services.scripts.append, session_id, "job_result", other)
    await expect(items.locator(".job-type")).to_have_text(["My plugin job", "Summary"])
    await expect(items.locator(".job-status")).to_have_text(["failed", "done"])


async def test_a_page_opened_while_the_session_is_processed_says_so(server: ServerUnderTest, tab: Tab) -> None:
    """Opened mid-transcription, the page said "No jobs yet" and "Not processed yet: Done or
    'Process now' builds the digest" until the job's next step: the record keeps its last step."""
    session_id = await server.create_session("alice", "Being transcribed")
    services = server.services
    step = {"job_id": "j1", "job_type": "done_multiprompt", "step": "transcribe", "done": 3, "total": 5}
    await services.log.append_kept(services.scripts.append_kept, session_id, "job_progress", step, **KEEP_LAST_JOB)
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/session/{session_id}")
    await expect(page.locator("#activity li .job-status")).to_have_text("transcribing 3 of 5")
    await expect(page.locator("#activity-empty")).to_be_hidden()
    await expect(page.locator("#digest-empty")).to_contain_text("Being processed (transcribing 3 of 5)")
    done = {"job_id": "j1", "job_type": "done_multiprompt", "status": "failed", "attempts": 3, "error": "x"}
    await services.log.append_kept(services.scripts.append_kept, session_id, "job_result", done, **KEEP_LAST_JOB)
    # Failed: said so, with its reason and the way on (it said "Not processed yet", as if
    # nothing had been tried).
    await expect(page.locator("#digest-empty")).to_have_text("Processing failed (x). “Process now” tries again.")


async def test_landing_page_gets_a_guest_token_and_creates_a_session(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/")
    assert await tab.stored_token() is None

    await page.locator("#new-session").click()

    await expect(page).to_have_url(re.compile(rf"^{re.escape(server.url)}/session/{UUID}$"))
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "ready")
    stored = await tab.stored_token()
    assert stored is not None and stored["guest"] is True
    session_id = page.url.rsplit("/", 1)[1]
    session = await server.services.voice.get(session_id)
    assert session is not None and session.owner_id.startswith("guest-")
    assert await server.services.voice.active_id(session.owner_id) == session_id


async def test_a_refused_guest_token_is_said_and_replaced_only_on_request(server: ServerUnderTest, tab: Tab) -> None:
    # Issue 22: a browser whose identity fails is told so; it becomes a new guest only when asked.
    await tab.use_token("not-a-token", guest=True)
    page = await tab.open("/")
    await expect(page.locator("#identity-lost")).to_contain_text("could not be restored")
    assert not await server.services.redis.keys(server.services.keys.user_profile("*"))  # no guest behind its back
    # Starting over reloads the page: fill the form of the reloaded page, not the one going away.
    async with page.expect_navigation():
        await page.locator("#identity-start-over").click()
    await expect(page.locator("#identity-lost")).to_have_count(0)
    await page.locator("#session-name-input").fill("Renewed")
    await page.locator("#new-session").click()

    await expect(page.locator("#session-name")).to_have_text("Renewed")
    stored = await tab.stored_token()
    assert stored is not None and stored["guest"] is True and stored["token"] != "not-a-token"


async def test_socket_refusing_a_guest_token_says_so(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await server.create_session("alice", "Not the guest's")
    stored = await server.services.voice.get(session_id)
    assert stored is not None
    # The session's reads are answered by the test, so that the socket is the first to refuse the
    # token; the page's other reads with it (who this is, the recorder's active session) are held
    # until then. Refused first, either of them made the page say the identity is lost before it
    # had a session to connect for (a page error, the connection never started: CI saw it).
    body = {**stored.public(), "url": f"/session/{session_id}", "epoch": "", "offset": 0}
    await tab.page.route(f"**/voicebot/sessions/{session_id}", lambda route: route.fulfill(json=body))
    chunks = {"session_id": session_id, "chunks": [], "chunk_count": 0, "audio_ms": 0, "storage_bytes": 0}
    await tab.page.route(f"**/voicebot/sessions/{session_id}/chunks", lambda route: route.fulfill(json=chunks))
    refused = asyncio.Event()

    async def after_the_socket(route: Route) -> None:
        await refused.wait()
        await route.continue_()

    for path in ("**/api/auth/me", "**/voicebot/active_session"):
        await tab.page.route(path, after_the_socket)
    await tab.use_token("refused-by-the-socket", guest=True)
    page = await tab.open(f"/session/{session_id}")

    # Before issue 22 the page took a new guest token here; now it says the identity is gone.
    await expect(page.locator("#identity-lost")).to_contain_text("could not be restored")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "unauthorized")
    refused.set()
    await expect(page.locator("#session-name")).to_have_text("Not the guest's")  # the page stays
    await expect(page.locator("#connection")).to_have_attribute("data-state", "unauthorized")
    assert not await server.services.redis.keys(server.services.keys.user_profile("*"))  # no guest minted


async def test_expired_sign_in_is_not_replaced_by_a_guest(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await server.create_session("alice")
    expired = server.token("alice", ttl_s=-60)
    await tab.use_token(expired, ttl_s=-60)
    page = await tab.open(f"/session/{session_id}")

    await expect(page.locator("#page-error")).to_have_attribute("data-code", "unauthorized")
    stored = await tab.stored_token()
    assert stored is not None and stored["token"] == expired and stored["guest"] is False


async def test_errors_are_shown(server: ServerUnderTest, tab: Tab) -> None:
    bobs = await server.create_session("bob", "Bob's")
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/session/{bobs}")
    await expect(page.locator("#page-error")).to_have_attribute("data-code", "forbidden")
    await expect(page.locator("#page-error-title")).to_have_text("No access to this session")
    await expect(page.locator("#session")).to_be_hidden()

    await tab.open("/session/00000000-0000-4000-8000-000000000000")
    await expect(page.locator("#page-error")).to_have_attribute("data-code", "session_not_found")
    await expect(page.locator("#page-error-title")).to_have_text("Session not found")

    await tab.open("/session/not-a-session")
    await expect(page.locator("#page-error")).to_have_attribute("data-code", "invalid_session_id")


async def test_reconnect_replays_what_was_missed(server: ServerUnderTest, tab: Tab, clients: list[Client]) -> None:
    session_id = await server.create_session("alice", "Flaky network")
    token = server.token("alice")
    await tab.use_token(token)
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/session/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-recovered", "")
    navigations = count_navigations(page)

    await gate.cut()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    other = Client(server.url, token)
    clients.append(other)
    await other.connect()
    assert (await other.call("session_done", {"session_id": session_id}))["ok"] is True
    gate.release()

    # The Done's update, its status, and its job said queued (no worker runs here).
    await expect(page.locator("#connection")).to_have_attribute("data-missed", "3")
    await expect(page.locator("#connection")).to_have_attribute("data-recovered", "true")
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")
    await expect(page.locator("#done-count")).to_have_text("1")
    await expect(page.locator("#activity li .job-status")).to_have_text("waiting to start")
    await expect(page.locator("#digest-empty")).to_contain_text("Waiting to be processed")
    assert navigations == []


async def test_a_guest_past_half_its_token_life_renews_it_for_the_same_guest(server: ServerUnderTest, tab: Tab) -> None:
    old, _ = server.tokens.mint(
        user_id="guest-refresh", now_s=time.time(), ttl_s=600, perms=GUEST_PERMISSIONS, guest=True
    )
    await tab.use_token(old, guest=True, ttl_s=600, obtained_s_ago=3000)
    session_id = await server.create_session("guest-refresh", "Mine")
    page = await open_live(tab, f"/session/{session_id}")
    await page.wait_for_function(
        "(old) => JSON.parse(localStorage.getItem('sessionhub.token')).token !== old", arg=old, timeout=10_000
    )
    record = await tab.stored_token()
    assert record is not None and record["guest"] is True
    assert server.tokens.verify(record["token"]).sub == "guest-refresh"


async def test_login_link_signs_the_browser_in_and_opens_the_active_session(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await server.create_session("alice", "From the bot")
    await server.services.voice.set_active("alice", session_id)
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {server.token('alice')}"}
        async with http.post(f"{server.url}/voicebot/bot/command", json={"text": "/login"}, headers=headers) as resp:
            login_url = (await resp.json())["login_url"]
    assert login_url.startswith(f"{server.url}/tg_auth?token=")  # absolute, from the request's origin
    login_url = login_url.removeprefix(server.url)
    page = await tab.open(login_url)
    await expect(page).to_have_url(re.compile(rf"/session/{session_id}$"))
    await expect(page.locator("#session-name")).to_have_text("From the bot")
    record = await tab.stored_token()
    assert record is not None and record["guest"] is False
    assert server.tokens.verify(record["token"]).sub == "alice"
    # The link is spent: opening it again says so instead of signing in.
    again = await tab.open(login_url)
    await expect(again.locator("#login-heading")).to_have_text("This link was already used or has expired")


async def test_a_chunk_being_played_back_goes_on_playing_as_recordings_arrive(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The chunk list was drawn anew on every new recording and every re-list (each re-list signs
    its links anew): the recording a person was listening to stopped whenever another arrived."""
    session_id = await server.create_session("alice", "Listen while recording")
    token = server.token("alice")
    status, _ = await upload(server, token, chunk_form(session_id, wav(30_000), duration_ms=30_000, filename="a.wav"))
    assert status == 201
    await tab.use_token(token)
    page = await open_live(tab, f"/session/{session_id}")
    player = page.locator("#chunk-list li audio").first
    await expect(player).to_have_count(1)
    await player.click()  # the person's gesture: the page may play sound from now on
    await player.evaluate("audio => audio.play()")
    await page.wait_for_function(
        "() => { const a = document.querySelector('#chunk-list audio'); return !a.paused && a.currentTime > 0; }"
    )
    await player.evaluate("audio => { audio.__listening = true; }")

    start_ms = 31_000
    status, _ = await upload(
        server, token, chunk_form(session_id, wav(1000), start_ms=start_ms, end_ms=start_ms + 1000, filename="b.wav")
    )
    assert status == 201
    # The new chunk shows, then the list is read again with fresh links (its player comes then).
    await expect(page.locator("#chunk-list li audio")).to_have_count(2)
    kept = await player.evaluate("audio => [audio.__listening === true, audio.paused, audio.currentTime]")
    assert kept[0] is True and kept[1] is False and kept[2] > 0, kept
    assert not tab.errors, tab.errors
