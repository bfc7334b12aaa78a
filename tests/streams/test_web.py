"""The stream pages in Chromium: the streamer's dashboard and a guest viewer's Clip Moment page."""

from __future__ import annotations

import asyncio
import json
import csv
import re
from pathlib import Path
from typing import Any

import pytest

from playwright.async_api import Browser, Dialog, Page, WebSocketRoute, expect

from tests.browser import UNCONFIRMED_CREATE, LeaveQuestions, SocketGate, Tab, lose_answers, lose_first_answer, new_tab
from tests.streams.dashboard import downloaded, press_export
from tests.streams.helpers import create_stream, http, started
from tests.conftest import start_server
from auth.claims import Permission
from tests.helpers import Client, ServerUnderTest

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
XSS_NOTE = '<img src=x onerror="window.__xss=1">gg'


# The first clip's offset: the clock is shifted 1:40 into the segment, real time adds to it.
CLIP_OFFSET = r"0:01:[45]\d"


async def live(tab: Tab, path: str) -> Page:
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def started_with_a_clip(
    server: ServerUnderTest, clients: list[Client], title: str, note: str
) -> tuple[str, Client]:
    """A stream of alice's, started, and a viewer (v1) who clipped ``note`` in it."""
    session_id = await create_stream(server, title=title)
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    viewer = Client(server.url, server.token("v1"))
    clients.append(viewer)
    await viewer.connect()
    assert (await viewer.call("clip_submit", {"session_id": session_id, "note": note}))["ok"] is True
    return session_id


async def test_streamer_and_viewer_from_start_to_csv(
    server: ServerUnderTest, tab: Tab, browser: Browser, tmp_path: Path
) -> None:
    clock = server.services.clock
    await tab.use_token(server.token("alice"))
    dash = await tab.open("/streams")
    await dash.locator("#title-input").fill("Speedrun night")
    await dash.locator("#create-button").click()
    await expect(dash).to_have_url(re.compile(rf"/streams/{UUID}$"))
    await expect(dash.locator("#connection")).to_have_attribute("data-state", "live")
    session_id = dash.url.rsplit("/", 1)[1]
    await expect(dash.locator("#viewer-link")).to_have_value(f"{server.url}/watch/{session_id}")
    await expect(dash.locator("#action-start")).to_be_visible()
    await expect(dash.locator("#action-pause")).to_be_hidden()
    await expect(dash.locator("#action-resume")).to_be_hidden()

    viewer_tab = await new_tab(browser, server)  # no token: the page gets a guest one
    try:
        viewer = await live(viewer_tab, f"/watch/{session_id}")
        button = viewer.locator("#clip-button")
        await expect(button).to_be_disabled()
        await expect(viewer.locator("#clip-reason")).to_contain_text("not started")

        await dash.locator("#action-start").click()
        await expect(dash.locator("#stream-state")).to_have_text("Live")
        await expect(dash.locator("#action-start")).to_be_hidden()
        await expect(dash.locator("#action-resume")).to_be_hidden()
        await expect(button).to_be_enabled()

        clock.shift_ms = 100_000  # 1:40 into segment 1
        await viewer.locator("#note-input").fill(XSS_NOTE)
        await expect(viewer.locator("#note-counter")).to_have_text(f"{len(XSS_NOTE)}/100")
        await button.click()
        # 1:40 plus the real seconds since the start click (a loaded machine takes a few).
        await expect(viewer.locator("#confirmation")).to_contain_text(re.compile(rf"Segment 1 at {CLIP_OFFSET}"))
        await expect(viewer.locator("#mine li .note")).to_have_text(XSS_NOTE)
        await expect(viewer.locator("#clip-reason")).to_contain_text("Cooldown")
        await expect(button).to_be_disabled()

        # The streamer sees it live, as text.
        await expect(dash.locator("#feed li .note")).to_have_text(XSS_NOTE)
        await expect(dash.locator("#clip-count")).to_have_text("1")
        await expect(dash.locator('.segment[data-index="1"] .review-clip .offset')).to_have_text(
            re.compile(rf"^{CLIP_OFFSET}$")
        )
        await expect(dash.locator(".moment")).to_have_count(1)

        await dash.locator("#action-pause").click()
        await expect(viewer.locator("#clip-reason")).to_contain_text("paused")
        await expect(button).to_be_disabled()
        await expect(dash.locator("#action-resume")).to_be_visible()
        await expect(dash.locator("#action-pause")).to_be_hidden()

        clock.shift_ms = 400_000  # the break is long; segment 2's offsets start again from 0
        await dash.locator("#action-resume").click()
        await expect(button).to_be_enabled()  # after the 2 s cooldown too
        await viewer.locator("#note-input").fill("second half")
        await button.click()
        await expect(viewer.locator("#confirmation")).to_contain_text("Segment 2 at 0:00:0")
        await expect(dash.locator('.segment[data-index="2"] .review-clip .note')).to_have_text("second half")

        dash.once("dialog", lambda dialog: _accept(dialog))
        await dash.locator("#action-end").click()
        await expect(dash.locator("#stream-state")).to_have_text("Ended")
        await expect(viewer.locator("#clip-reason")).to_contain_text("ended")
        await expect(button).to_be_disabled()
        for action in ("start", "pause", "resume", "end"):
            await expect(dash.locator(f"#action-{action}")).to_be_hidden()

        await dash.locator("#format-select").select_option("csv")
        download = await downloaded(dash)
        assert download.suggested_filename == "speedrun-night-clips.csv"
        saved = tmp_path / "export.csv"
        await download.save_as(saved)
        rows = list(csv.reader(saved.read_text(encoding="utf-8").splitlines()))
        assert rows[0] == ["segment_index", "offset_hms", "note", "submitted_by", "created_at", "viewer"]
        assert [r[:3] for r in rows[1:]] == [["1", rows[1][1], XSS_NOTE], ["2", rows[2][1], "second half"]]
        assert re.fullmatch(CLIP_OFFSET, rows[1][1])
        assert re.fullmatch(r"0:00:0\d", rows[2][1])
        stored = await viewer_tab.stored_token()
        assert stored is not None and stored["guest"] is True
        assert rows[1][3] == rows[2][3] and rows[1][3].startswith("guest-")

        await dash.locator("#format-select").select_option("edl")
        await dash.locator("#fps-select").select_option("29.97DF")
        edl_file = tmp_path / "export.edl"
        await (await downloaded(dash)).save_as(edl_file)
        edl = edl_file.read_text(encoding="utf-8").splitlines()
        assert edl[1] == "FCM: DROP FRAME"
        located = [line for line in edl if line.endswith(XSS_NOTE)]  # the clip at 1:4x of the VOD
        # The VOD's timecode starts at 1:00:00. Drop-frame timecode trails real time by at most a
        # few frames, so the marker's second is the clip's (as the CSV has it) or the one before:
        # read from the export, since a loaded machine puts the clip anywhere in 1:40-1:59.
        hours, minutes, seconds = (int(part) for part in rows[1][1].split(":"))
        at_s = 3600 * (1 + hours) + 60 * minutes + seconds
        marks = "|".join(f"{t // 3600:02d}:{t // 60 % 60:02d}:{t % 60:02d}" for t in (at_s - 1, at_s))
        assert len(located) == 1 and re.fullmatch(rf"\* LOC: ({marks});\d\d YELLOW  .*", located[0]), located

        for page in (dash, viewer):
            assert await page.locator("img").count() == 0
            assert await page.evaluate("typeof window.__xss") == "undefined"
        assert not viewer_tab.errors, viewer_tab.errors
    finally:
        clock.shift_ms = 0
        await viewer_tab.page.context.close()


def _accept(dialog: Dialog) -> Any:
    return dialog.accept()


async def test_viewer_catches_up_after_a_reconnect(server: ServerUnderTest, tab: Tab, clients: list[Client]) -> None:
    session_id = await create_stream(server, title="Flaky")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    gate = SocketGate()
    await gate.install(tab.page)
    viewer = await live(tab, f"/watch/{session_id}")
    await expect(viewer.locator("#clip-button")).to_be_enabled()

    await gate.cut()
    await expect(viewer.locator("#connection")).to_have_attribute("data-state", "offline")
    # Offline, the button still takes the moment, and says it is sent once the connection is back.
    await expect(viewer.locator("#clip-reason")).to_contain_text("Offline: a clip pressed now is sent")
    await expect(viewer.locator("#clip-button")).to_be_enabled()
    status, _ = await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "pause"})
    assert status == 200
    gate.release()

    await expect(viewer.locator("#connection")).to_have_attribute("data-recovered", "true")
    await expect(viewer.locator("#connection")).to_have_attribute("data-missed", "1")
    await expect(viewer.locator("#stream-state")).to_have_text("Paused")
    await expect(viewer.locator("#clip-reason")).to_contain_text("paused")

    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "resume"})
    await expect(viewer.locator("#clip-button")).to_be_enabled()
    await viewer.locator("#clip-button").click()
    await expect(viewer.locator("#mine li")).to_have_count(1)
    assert await server.services.redis.hlen(server.services.keys.stream_clips(session_id)) == 1


async def test_a_clip_pressed_offline_is_sent_once_back_placed_when_pressed(server: ServerUnderTest, tab: Tab) -> None:
    """In a tunnel the button was disabled ("Reconnecting…"): the moment was lost. Pressed offline,
    the clip waits and is sent once the connection is back, placed at the press."""
    session_id = await create_stream(server, title="Tunnel")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    gate = SocketGate()
    await gate.install(tab.page)
    viewer = await live(tab, f"/watch/{session_id}")
    await gate.cut()
    await expect(viewer.locator("#connection")).to_have_attribute("data-state", "offline")
    await viewer.locator("#note-input").fill("in the tunnel")
    await viewer.locator("#clip-button").click()
    await expect(viewer.locator("#clip-reason")).to_contain_text("your clip will be sent when the connection is back")
    await asyncio.sleep(1.5)  # the tunnel: what is measured is this much time passing
    gate.release()
    await expect(viewer.locator("#confirmation")).to_contain_text("Clipped! Segment 1")
    keys = server.services.keys
    [stored] = await server.services.redis.hvals(keys.stream_clips(session_id))
    clip = json.loads(stored)
    started_at = int(await server.services.redis.hget(keys.session(session_id), "seg_started_at"))
    assert clip["note"] == "in the tunnel"
    assert clip["created_at"] - started_at - clip["offset_ms"] >= 1_300, clip


async def test_dashboard_is_the_owners_and_bad_links_say_so(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await create_stream(server, user="bob", title="Bob's stream")
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#page-error-title")).to_have_text("This is not your stream")
    await expect(page.locator("#page-error-link")).to_have_attribute("href", f"/watch/{session_id}")
    page = await tab.open("/watch/00000000-0000-4000-8000-000000000000")
    await expect(page.locator("#page-error")).to_have_attribute("data-code", "session_not_found")
    page = await tab.open("/watch/nope")
    await expect(page.locator("#page-error")).to_have_attribute("data-code", "invalid_session_id")


async def test_an_export_is_saved_under_the_titles_own_letters(server: ServerUnderTest, tab: Tab) -> None:
    """The page named the file from the ASCII ``filename`` only: "Überraschung 配信" was saved
    as ``uberraschung-clips.csv``; it takes ``filename*`` when the server sends one."""
    session_id = await create_stream(server, title="Überraschung 配信")
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#stream-title")).to_have_text("Überraschung 配信")
    await page.locator("#format-select").select_option("csv")
    download = await downloaded(page)
    assert download.suggested_filename == "überraschung-配信-clips.csv"


async def test_an_admin_token_opens_any_streams_dashboard(server: ServerUnderTest, tab: Tab) -> None:
    """An admin token acts as the owner (docs/PROTOCOL.md): the dashboard opens for it, where it
    said "This is not your stream" though every owner's action was the admin's to take."""
    session_id = await create_stream(server, user="bob", title="Bob's stream")
    await tab.use_token(server.token("operator", perms=(Permission.ADMIN,)))
    page = await tab.open(f"/streams/{session_id}")
    await expect(page.locator("#stream-title")).to_have_text("Bob's stream")
    await expect(page.locator("#review")).to_be_visible()
    await expect(page.locator("#page-error")).to_be_hidden()


async def test_landing_page_links_to_streams(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/")
    await expect(page.locator('nav.nav a[href="/streams"]')).to_have_text("Streams")
    await expect(page.locator("#capability-clips h2")).to_have_text("Stream clips")


class AckDropper:
    """Forwards a page's Socket.IO traffic, but swallows the first ack that holds ``marker`` (by
    default the first stored clip's) and then cuts that connection: the write reached the server,
    its answer never reached the page."""

    def __init__(self, marker: str = '"created":true') -> None:
        self.marker = marker
        self.dropped = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def install(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r"/socket\.io/"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if self.dropped == 0 and isinstance(message, str) and message.startswith("43") and self.marker in message:
                self.dropped += 1
                self._tasks.append(asyncio.get_running_loop().create_task(self._cut(ws, server_side)))
                return
            ws.send(message)

        server_side.on_message(from_server)

    @staticmethod
    async def _cut(page_side: WebSocketRoute, server_side: WebSocketRoute) -> None:
        await server_side.close(code=1001, reason="cut by the test")
        await page_side.close(code=1001, reason="cut by the test")


async def test_a_click_whose_answer_was_lost_is_stored_once(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await create_stream(server, title="Lossy")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    dropper = AckDropper()
    await dropper.install(tab.page)
    viewer = await live(tab, f"/watch/{session_id}")

    await viewer.locator("#note-input").fill("once only")
    await viewer.locator("#clip-button").click()

    # The page re-sends the same submission id after reconnecting and gets the stored clip back.
    await expect(viewer.locator("#confirmation")).to_contain_text("Clipped! Segment 1")
    await expect(viewer.locator("#mine li")).to_have_count(1)
    await expect(viewer.locator("#mine li .note")).to_have_text("once only")
    assert dropper.dropped == 1
    assert await server.services.redis.hlen(server.services.keys.stream_clips(session_id)) == 1
    assert await server.services.redis.hget(server.services.keys.session(session_id), "clip_count") == "1"


@pytest.mark.parametrize(
    ("press", "marker"),
    [("mark", '"clipped":true'), ("delete", '"deleted":true'), ("block", '"blocked":true')],
)
async def test_a_review_change_whose_answer_was_lost_is_sent_again_not_called_failed(
    server: ServerUnderTest, tab: Tab, clients: list[Client], press: str, marker: str
) -> None:
    """The dashboard said "Could not change the clip: The connection was lost…" (or "Could not
    moderate") while the server had marked, deleted or blocked, and never sent it again: a
    streamer who believed it pressed Mark again and unmarked the clip (audit "retries3")."""
    session_id = await started_with_a_clip(server, clients, "Review", "the clutch")
    dropper = AckDropper(marker)
    await dropper.install(tab.page)
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    clip = page.locator(".review-clip")
    await expect(clip).to_have_count(1)
    if press == "mark":
        await clip.locator(".clip-toggle").click()
        await expect(page.locator("#clipped-count")).to_have_text("1")
    elif press == "delete":
        page.once("dialog", lambda dialog: _accept(dialog))  # "Delete the clip at …?"
        await clip.locator(".clip-delete").click()
        await expect(clip).to_have_count(0)
    else:
        await clip.locator(".clip-block").click()
        await expect(page.locator("#notice")).to_contain_text("may no longer clip this stream")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert dropper.dropped == 1
    await expect(page.locator("#notice")).not_to_contain_text("Could not")
    stored = await server.services.redis.hvals(server.services.keys.stream_clips(session_id))
    if press == "mark":
        assert [json.loads(one)["clipped"] for one in stored] == [True]  # marked once, not back off
        await expect(clip).to_have_attribute("data-clipped", "true")
    elif press == "delete":
        assert stored == []
    else:
        status, blocked = await http(server, "GET", f"/api/streams/{session_id}/blocked")
        assert status == 200 and blocked["blocked"] == ["v1"], blocked


class ClickHolder:
    """Forwards a page's Socket.IO traffic, but holds the first clip the page sends for
    ``hold_s`` and then cuts that connection unanswered, as a tunnel would."""

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self.held = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def install(self, page: Page) -> None:
        await page.route_web_socket(re.compile(r"/socket\.io/"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if self.held == 0 and isinstance(message, str) and '"clip_submit"' in message:
                self.held += 1
                self._tasks.append(asyncio.get_running_loop().create_task(self._cut_later(ws, server_side)))
                return
            server_side.send(message)

        ws.on_message(from_page)
        server_side.on_message(ws.send)

    async def _cut_later(self, page_side: WebSocketRoute, server_side: WebSocketRoute) -> None:
        await asyncio.sleep(self.hold_s)  # the tunnel: nothing gets through meanwhile
        await AckDropper._cut(page_side, server_side)


async def test_a_click_sent_after_the_connection_came_back_is_placed_when_pressed(
    server: ServerUnderTest, tab: Tab
) -> None:
    """A click held by a connection that dropped was stored where it arrived, as late as the
    outage was long (12.4 s in the audit): it says how long ago it was pressed."""
    session_id = await create_stream(server, title="Tunnel")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    holder = ClickHolder(hold_s=2.0)
    await holder.install(tab.page)
    viewer = await live(tab, f"/watch/{session_id}")
    await viewer.locator("#clip-button").click()
    await expect(viewer.locator("#confirmation")).to_contain_text("Clipped! Segment 1")
    assert holder.held == 1
    keys = server.services.keys
    clips = await server.services.redis.hvals(keys.stream_clips(session_id))
    assert len(clips) == 1
    clip = json.loads(clips[0])
    started_at = int(await server.services.redis.hget(keys.session(session_id), "seg_started_at"))
    late_by = clip["created_at"] - started_at - clip["offset_ms"]
    assert late_by >= 1_800, clip  # placed at the press, the 2 s hold before it arrived


async def test_dashboard_review_mark_edit_delete_and_exports(
    server: ServerUnderTest, tab: Tab, clients: list[Client], tmp_path: Path
) -> None:
    clock = server.services.clock
    session_id = await create_stream(server, title="Review me")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    try:
        for user, at_ms, note in [("v1", 10_000, "first"), ("v2", 12_000, "second"), ("v3", 40_000, "third")]:
            clock.shift_ms = at_ms
            viewer = Client(server.url, server.token(user))
            clients.append(viewer)
            await viewer.connect()
            assert (await viewer.call("clip_submit", {"session_id": session_id, "note": note}))["ok"] is True
    finally:
        clock.shift_ms = 0
    await server.services.identities.rename("v1", "Vee One")
    await server.services.identities.rename("v2", "Vee Two")
    await tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")

    clips = page.locator('.segment[data-index="1"] .review-clip')
    await expect(clips).to_have_count(3)
    # Viewers by their display name (read at load), else by their short tag: never by user id.
    await expect(clips.locator(".who")).to_have_text(["Vee One", "Vee Two", re.compile(r"^viewer [0-9a-f]{12}$")])
    await expect(page.locator(".moment .count")).to_have_text(["2 clicks", "1 click"])
    await page.locator("#window-input").fill("60")
    await page.locator("#window-input").dispatch_event("change")
    await expect(page.locator(".moment .count")).to_have_text(["3 clicks"])

    await clips.nth(2).locator(".clip-toggle").click()
    await expect(clips.nth(2)).to_have_attribute("data-clipped", "true")
    await expect(page.locator("#clipped-count")).to_have_text("1")
    await clips.nth(0).locator(".clip-edit").click()
    await clips.nth(0).locator(".note-edit input").fill("renamed")
    await clips.nth(0).locator(".note-edit button", has_text="Save").click()
    await expect(clips.nth(0).locator(".note")).to_have_text("renamed")
    page.once("dialog", lambda dialog: _accept(dialog))  # "Delete the clip at …?"
    await clips.nth(1).locator(".clip-delete").click()
    await expect(clips).to_have_count(2)
    await expect(page.locator("#clip-count")).to_have_text("2")

    await page.locator("#format-select").select_option("youtube")
    await page.locator("#only-select").select_option("clipped")
    await press_export(page)
    await expect(page.locator("#export-error")).to_contain_text("at least 3 chapters")

    await page.locator("#format-select").select_option("resolve")
    await page.locator("#only-select").select_option("all")
    download = await downloaded(page)
    assert download.suggested_filename == "review-me-clips-resolve-markers.edl"
    saved = tmp_path / "markers.edl"
    await download.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    assert text.startswith("TITLE: Review me\nFCM: NON-DROP FRAME\n")
    assert " |C:ResolveColorBlue |M:renamed |D:1" in text and " |C:ResolveColorGreen |M:third |D:1" in text

    await page.locator("#copy-link").click()
    await expect(page.locator("#notice")).to_have_text("Viewer link copied.")
    assert await page.evaluate("navigator.clipboard.readText()") == f"{server.url}/watch/{session_id}"
    stored = await server.services.redis.hlen(server.services.keys.stream_clips(session_id))
    assert stored == 2


async def test_a_refused_clip_waits_as_long_as_the_server_asks(
    redis_process: Any, redis: Any, tmp_path: Path, browser: Browser
) -> None:
    # The viewer clipped from another tab: this page has no cooldown of its own, so its click
    # is refused, and the refusal's retry_after_s (not a guess) is how long the button waits.
    srv = await start_server(redis_process.url, tmp_path, clips_cooldown_s=40)
    clients: list[Client] = []
    viewer_tab = await new_tab(browser, srv)
    try:
        session_id, _ = await started(srv, clients)
        viewer = await live(viewer_tab, f"/watch/{session_id}")
        token = await viewer.evaluate("JSON.parse(localStorage.getItem('sessionhub.token')).token")
        other_tab = Client(srv.url, token)
        clients.append(other_tab)
        await other_tab.connect()
        assert (await other_tab.call("clip_submit", {"session_id": session_id}))["ok"] is True
        button = viewer.locator("#clip-button")
        await expect(button).to_be_enabled()
        await button.click()
        await expect(viewer.locator("#confirmation")).to_contain_text("Not clipped")
        await expect(viewer.locator("#clip-reason")).to_have_text(
            re.compile(r"Cooldown: you can clip again in (3\d|40) s\.")
        )
        await expect(button).to_be_disabled()
        assert not viewer_tab.errors, viewer_tab.errors
    finally:
        await viewer_tab.page.context.close()
        for client in clients:
            await client.close()
        await srv.stop()


# Runs in the page before its scripts: notes, the first time the review draws a clip, how many
# moments were drawn with it and where the clip's top was.
FIRST_DRAW_WATCH = """
window.__firstDraw = null;
new MutationObserver((_, observer) => {
  const clip = document.querySelector(".review-clip");
  if (!clip) return;
  const top = clip.getBoundingClientRect().top + window.scrollY;
  window.__firstDraw = { moments: document.querySelectorAll(".moment").length, top };
  observer.disconnect();
}).observe(document, { childList: true, subtree: true });
"""


async def test_the_review_draws_its_moments_with_its_clips_so_nothing_moves_under_a_tap(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The moments sit above the clips. Drawn after them, they pushed every clip down a moment
    after the page showed it, and a tap meant for a clip landed on what moved under it."""
    session_id = await create_stream(server, title="Steady page")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    for name in ("v1", "v2"):  # two viewers: one moment of two clicks
        viewer = Client(server.url, server.token(name))
        clients.append(viewer)
        await viewer.connect()
        assert (await viewer.call("clip_submit", {"session_id": session_id, "note": name}))["ok"] is True
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.page.add_init_script(FIRST_DRAW_WATCH)
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    clips = page.locator('.segment[data-index="1"] .review-clip')
    await expect(clips).to_have_count(2)
    await expect(page.locator(".moment .count")).to_have_text(["2 clicks"])
    first = await page.evaluate("window.__firstDraw")
    assert first is not None and first["moments"] == 1, first
    # The page's own regrouping after the load (and its redraw) leaves the clips where they were.
    await expect(page.locator("#segments")).to_have_attribute("data-moments", "settled", timeout=10_000)
    box = await clips.nth(0).bounding_box()
    assert box is not None
    scroll_y = await page.evaluate("window.scrollY")
    assert abs(box["y"] + scroll_y - first["top"]) < 1, (box, scroll_y, first)
    assert not tab.errors, tab.errors


async def test_a_note_being_edited_survives_live_redraws_of_the_review(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The review is redrawn on every clip and every moments reload: a note being typed is drawn
    again with its text and keeps the focus (a redraw used to drop the form and what was typed)."""
    session_id = await started_with_a_clip(server, clients, "Busy stream", "first")
    await tab.use_token(server.token("alice"))
    page = await live(tab, f"/streams/{session_id}")
    clips = page.locator('.segment[data-index="1"] .review-clip')
    await expect(clips).to_have_count(1)
    # The moments load a moment later, above the clips: a click made as they arrive lands on
    # whatever moved under it (seen on a busy machine). Click once the page has settled.
    await expect(page.locator(".moment .count")).to_have_text(["1 click"])
    await clips.nth(0).locator(".clip-edit").click()
    note = clips.nth(0).locator(".note-edit input")
    await note.fill("half-typed")

    # Another viewer clips meanwhile: the review is redrawn (then once more with the moments).
    other = Client(server.url, server.token("v2"))
    clients.append(other)
    await other.connect()
    assert (await other.call("clip_submit", {"session_id": session_id, "note": "second"}))["ok"] is True
    await expect(clips).to_have_count(2)
    await expect(page.locator(".moment .count")).to_have_text(["2 clicks"])
    await expect(note).to_have_value("half-typed")
    await expect(note).to_be_focused()
    await page.keyboard.type(" note")  # the caret stayed at the end
    await page.keyboard.press("Enter")
    await expect(clips.nth(0).locator(".note")).to_have_text("half-typed note")
    await expect(clips.nth(0).locator(".note-edit")).to_have_count(0)
    assert not tab.errors, tab.errors


async def test_a_live_clip_moves_nothing_a_keyboard_user_has_reached(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A streamer reviews on a phone while viewers clip. The review was drawn anew on every clip:
    the button a keyboard user had reached lost its focus, and a new moment above the clips (and
    the live feed growing above the review) pushed the clip on screen down under the finger."""
    clock = server.services.clock
    session_id = await create_stream(server, title="Live review")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})

    async def clip_at(user: str, at_ms: int) -> None:
        clock.shift_ms = at_ms  # a minute apart: a moment each
        viewer = Client(server.url, server.token(user))
        clients.append(viewer)
        await viewer.connect()
        assert (await viewer.call("clip_submit", {"session_id": session_id, "note": user}))["ok"] is True

    try:
        for n in range(6):
            await clip_at(f"v{n}", 60_000 * n)
        await tab.page.set_viewport_size({"width": 390, "height": 844})
        await tab.use_token(server.token("alice"))
        page = await live(tab, f"/streams/{session_id}")
        clips = page.locator('.segment[data-index="1"] .review-clip')
        await expect(clips).to_have_count(6)
        await expect(page.locator(".moment")).to_have_count(6)
        await expect(page.locator("#segments")).to_have_attribute("data-moments", "settled", timeout=10_000)
        # The last moments at the top of the screen, the first clips below them: a moment added
        # there must not push the clips down.
        await page.locator(".moment").nth(4).evaluate("node => node.scrollIntoView({ block: 'start' })")
        target = clips.nth(1)
        await expect(target).to_be_in_viewport()
        await target.locator(".clip-toggle").focus()
        before = await target.bounding_box()
        assert before is not None and await page.evaluate("window.scrollY") > 0

        await clip_at("v6", 60_000 * 6)  # a new clip (at the end) and a new moment (above the clips)
        await expect(clips).to_have_count(7)
        await expect(page.locator(".moment")).to_have_count(7)
        await expect(page.locator("#feed .feed-item")).to_have_count(7)  # the latest clips, the new one too
        await expect(page.locator("#segments")).to_have_attribute("data-moments", "settled", timeout=10_000)
    finally:
        clock.shift_ms = 0
    await expect(target.locator(".clip-toggle")).to_be_focused()
    after = await target.bounding_box()
    assert after is not None and abs(after["y"] - before["y"]) < 1, (before, after)
    await page.keyboard.press("Enter")  # lands on the clip the user had reached
    await expect(target).to_have_attribute("data-clipped", "true")
    await expect(target.locator(".clip-toggle")).to_be_focused()
    await expect(target.locator(".clip-toggle")).to_have_text("Unmark")
    assert not tab.errors, tab.errors


async def test_a_create_whose_answer_was_lost_makes_one_stream(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    dash = await tab.open("/streams")
    keys = await lose_first_answer(dash, "**/api/streams")
    await dash.locator("#title-input").fill("Speedrun night")
    await dash.locator("#create-button").click()
    await expect(dash).to_have_url(re.compile(rf"/streams/{UUID}$"))
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
    status, mine = await http(server, "GET", "/api/streams")
    assert status == 200, mine
    assert [s["title"] for s in mine["sessions"]] == ["Speedrun night"]
    tab.errors.clear()  # the lost answer is a console error by design


async def test_a_create_pressed_again_after_its_answers_were_lost_makes_one_stream(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The network gone past the page's two resends: the page said the server could not be
    reached, and the press again made a second stream (audit lostcreates)."""
    await tab.use_token(server.token("alice"))
    dash = await tab.open("/streams")
    seen = await lose_answers(dash, "**/api/streams", count=3)
    await dash.locator("#title-input").fill("Speedrun night")
    await dash.locator("#create-button").click()
    await expect(dash.locator("#create-error")).to_have_text(UNCONFIRMED_CREATE)
    await dash.locator("#create-button").click()
    made = seen.lost[0]["session"]["session_id"]
    await expect(dash).to_have_url(re.compile(f"/streams/{made}$"))
    assert len(seen.keys) == 4 and seen.keys[0] and len(set(seen.keys)) == 1
    status, mine = await http(server, "GET", "/api/streams")
    assert status == 200, mine
    assert [s["title"] for s in mine["sessions"]] == ["Speedrun night"]
    tab.errors.clear()  # the lost answers are console errors by design


async def test_leaving_with_a_clip_not_yet_sent_asks_first(server: ServerUnderTest, tab: Tab) -> None:
    """The connection went before a click's answer: the page says the clip is sent when it is
    back, and keeps it only in memory. Closing the tab then lost the moment without a word."""
    session_id = await create_stream(server, title="Lossy")
    await http(server, "POST", f"/api/streams/{session_id}/state", json={"action": "start"})
    gate = SocketGate()
    await gate.install(tab.page)
    viewer = await live(tab, f"/watch/{session_id}")
    leaving = LeaveQuestions(viewer)
    gate.mute()  # the click goes out, its answer never comes back
    await viewer.locator("#note-input").fill("the clutch")
    await viewer.locator("#clip-button").click()
    await gate.cut()
    await expect(viewer.locator("#confirmation")).to_contain_text("your clip will be sent again")
    await viewer.close(run_before_unload=True)
    await asyncio.wait_for(leaving.asked.wait(), timeout=10)
    assert leaving.types == ["beforeunload"]
    assert not viewer.is_closed()  # the viewer stayed: back online, the clip goes out
    gate.unmute()
    gate.release()
    await expect(viewer.locator("#confirmation")).to_contain_text("Clipped! Segment 1")
    await expect(viewer.locator("#mine li .note")).to_have_text("the clutch")
    # Nothing owed any more: leaving asks nothing.
    async with viewer.expect_event("close"):
        await viewer.close(run_before_unload=True)
    assert leaving.types == ["beforeunload"]


async def test_back_to_the_list_shows_the_stream_as_it_is_now(server: ServerUnderTest, tab: Tab) -> None:
    """Started from its dashboard, then Back: the list read its sessions again, and Chromium
    answered that read from its cache (a history navigation may), so it still said 'Not
    started'. JSON answers are now never stored (Cache-Control: no-store)."""
    await create_stream(server, title="Back and forth")
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    row = page.locator("#stream-list li").first
    await expect(row.locator(".state-badge")).to_have_text("Not started")
    await row.locator("a").click()
    await page.wait_for_url("**/streams/*")
    await page.locator("#action-start").click()
    await expect(page.locator("#stream-state")).to_have_text("Live")
    await page.go_back(wait_until="domcontentloaded")
    await expect(page.locator("#stream-list li").first.locator(".state-badge")).to_have_text("Live")
