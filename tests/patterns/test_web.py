"""The pattern editor page in real Chromium against a real server."""

from __future__ import annotations

import asyncio
import copy
import re
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, Response, WebSocket, expect

from storage.patterns.repository import PatternSessions
from tests.browser import UNCONFIRMED_CREATE, SocketGate, Tab, lose_answers, lose_first_answer, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_http import full_state, track
from tests.patterns.test_keyboardia_model import sample, state_of

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


async def api(server: ServerUnderTest, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession(base_url=server.url) as http, http.request(method, path, json=body) as r:
        assert r.status < 300, await r.text()
        return await r.json() if r.status != 204 else None


async def new_pattern(server: ServerUnderTest, **body: Any) -> str:
    created = await api(server, "POST", "/api/sessions", body or {"name": "Funky Beat", "state": full_state()})
    return str(created["id"])


async def open_live(tab: Tab, path: str) -> Page:
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


def step(page: Page, track_id: str, index: int) -> Any:
    return page.locator(f'.step[data-track="{track_id}"][data-step="{index}"]')


async def stored_steps(server: ServerUnderTest, session_id: str) -> list[bool]:
    # Read as stored, whole or split (storage/patterns/layout.py), without touching the session.
    loaded = await PatternSessions(server.services.store).load(session_id, touch=False)
    assert loaded is not None
    steps: list[bool] = loaded[0].state["tracks"][0]["steps"]
    return steps


async def test_two_browsers_see_each_others_edits_live(server: ServerUnderTest, tab: Tab, browser: Browser) -> None:
    session_id = await new_pattern(server)
    other = await new_tab(browser, server)
    try:
        first = await open_live(tab, f"/s/{session_id}")
        second = await open_live(other, f"/s/{session_id}")
        await expect(first.locator("#pattern-name")).to_have_value("Funky Beat")
        await expect(first.locator("#players .avatar")).to_have_count(2)

        await step(first, "t1", 1).click()
        await expect(step(second, "t1", 1)).to_have_attribute("aria-pressed", "true")
        await step(second, "t1", 0).press("Enter")  # keyboard: the first step was on, now off
        await expect(step(first, "t1", 0)).to_have_attribute("aria-pressed", "false")
        await second.locator("#tempo").fill("133")
        await second.locator("#tempo").press("Enter")
        await expect(first.locator("#tempo")).to_have_value("133")
        await first.locator("#add-sample").select_option("synth:bass")
        await first.locator("#add-track").click()
        await expect(second.locator(".track-row")).to_have_count(2)
        steps = await stored_steps(server, session_id)
        assert steps[:2] == [False, True]
        assert not other.errors, other.errors
    finally:
        await other.page.context.close()


async def test_a_tempo_outside_the_range_says_why_at_the_field_and_keeps_the_focus(
    server: ServerUnderTest, tab: Tab
) -> None:
    """A tempo typed outside 60-180 snapped back without a word: now the field says why
    (aria-invalid, described by a visible message), keeps the focus, and nothing is sent."""
    session_id = await new_pattern(server)
    sent: list[str] = []
    tempo_sent = asyncio.Event()

    def watch(socket: WebSocket) -> None:
        def frame(payload: str | bytes) -> None:
            sent.append(str(payload))
            if "set_tempo" in str(payload):
                tempo_sent.set()

        socket.on("framesent", frame)

    tab.page.on("websocket", watch)
    page = await open_live(tab, f"/s/{session_id}")
    field, message = page.locator("#tempo"), page.locator("#tempo-error")
    await expect(field).to_have_value("120")
    await expect(message).to_be_hidden()
    await field.fill("200")
    await field.press("Enter")
    await expect(message).to_have_text("200 BPM was not set: the tempo is 60 to 180 BPM.")
    await expect(message).to_be_visible()
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(field).to_have_attribute("aria-describedby", "tempo-error")
    await expect(field).to_be_focused()
    await expect(field).to_have_value("200")  # the person's text, to correct
    # Leaving the field: it shows the tempo that stands, the message still says why.
    await field.press("Tab")
    await expect(field).to_have_value("120")
    await expect(field).not_to_have_attribute("aria-invalid", "true")
    await expect(message).to_be_visible()
    # Refused as the focus leaves (typed, then Tab): said too, and the focus goes where Tab sent it.
    await field.fill("20")
    await field.press("Tab")
    await expect(message).to_have_text("20 BPM was not set: the tempo is 60 to 180 BPM.")
    await expect(field).to_have_value("120")
    await expect(field).not_to_be_focused()
    # A tempo in range is sent, and the message goes.
    await field.fill("133")
    await field.press("Enter")
    await asyncio.wait_for(tempo_sent.wait(), timeout=10)
    await expect(message).to_be_hidden()
    await expect(field).not_to_have_attribute("aria-describedby", "tempo-error")
    await expect(field).not_to_have_attribute("aria-invalid", "true")
    tempos = [frame for frame in sent if "set_tempo" in frame]
    assert len(tempos) == 1 and '"tempo":133' in tempos[0].replace(" ", ""), tempos
    assert not tab.errors, tab.errors


async def test_remix_navigates_and_back_returns(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    await page.locator("#remix").click()
    await expect(page).not_to_have_url(re.compile(session_id))
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    await expect(page.locator("#toast")).to_have_text("Remixed! You're now editing a copy.")
    await expect(page.locator("#parent-link")).to_have_text('"Funky Beat"')
    await expect(page.locator("#parent-link")).to_have_attribute("href", f"/s/{session_id}")
    await page.go_back()
    await expect(page).to_have_url(re.compile(f"/s/{session_id}$"))
    await expect(page.locator("#remix-count")).to_have_text("1 remix")


async def test_send_copy_keeps_the_url_and_copies_the_new_link(server: ServerUnderTest, tab: Tab) -> None:
    await tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    await page.locator("#send-copy").click()
    await expect(page.locator("#toast")).to_have_text("Copy link sent! Recipients get their own version to remix.")
    copied = await page.evaluate("navigator.clipboard.readText()")
    assert re.fullmatch(rf"{re.escape(server.url)}/s/{UUID}", copied) and session_id not in copied
    assert page.url.endswith(f"/s/{session_id}")
    copy_id = copied.rsplit("/", 1)[1]
    body = await api(server, "GET", f"/api/sessions/{copy_id}")
    assert body["remixedFrom"] == session_id
    await page.locator("#invite").click()
    await expect(page.locator("#toast")).to_have_text("Session link copied! Anyone with this link can edit.")
    assert await page.evaluate("navigator.clipboard.readText()") == f"{server.url}/s/{session_id}"


async def test_a_stale_auto_save_does_not_erase_a_live_edit(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()  # the page is offline; its edits wait for the auto-save
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")

    live = Client(server.url, server.token("live-player"))
    clients.append(live)
    await live.connect()
    op = {"type": "set_step", "trackId": "t1", "step": 0, "on": True}
    assert (await live.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True

    await step(page, "t1", 5).click()  # made offline, saved by PUT with a now stale If-Match
    await expect(step(page, "t1", 5)).to_have_attribute("aria-pressed", "true")
    for _ in range(150):  # 15 s, as ANSWER_BOUND_S: a bound, not a wait
        steps = await stored_steps(server, session_id)
        if steps[5]:
            break
        await page.wait_for_timeout(100)
    assert steps[0] is True and steps[5] is True  # the live edit survived, the offline one landed
    await expect(step(page, "t1", 0)).to_have_attribute("aria-pressed", "true")
    gate.release()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert (await stored_steps(server, session_id))[0] is True


async def test_a_published_session_is_read_only_with_a_remix_button(server: ServerUnderTest, tab: Tab) -> None:
    source = await new_pattern(server)
    published = (await api(server, "POST", f"/api/sessions/{source}/publish"))["id"]
    page = await open_live(tab, f"/s/{published}")
    await expect(page.locator("#readonly-banner")).to_be_visible()
    await expect(page.locator("#tempo")).to_be_disabled()
    await expect(page.locator("#add-track")).to_be_disabled()
    # Its steps say they take no change, look it (no accent blue), and no hint tells how to.
    await expect(page.locator("#grid .step[aria-disabled='true']")).to_have_count(16)
    on_colour = await step(page, "t1", 0).evaluate("el => getComputedStyle(el).backgroundColor")
    assert on_colour != "rgb(30, 111, 217)", on_colour  # --accent: an editable on step
    await expect(page.locator("#grid-keys")).to_be_hidden()
    assert await page.locator("#grid").get_attribute("aria-describedby") is None
    # Playwright holds back clicks on aria-disabled elements; a finger does not.
    await step(page, "t1", 2).click(force=True)
    # A tap says why it changed nothing, once.
    await expect(page.locator("#toast")).to_have_text("This is a published snapshot: Remix to edit.")
    await page.evaluate("document.getElementById('toast').textContent = ''")
    await step(page, "t1", 2).press("Space")
    await page.wait_for_timeout(300)
    await expect(page.locator("#toast")).to_have_text("")
    await expect(step(page, "t1", 2)).to_have_attribute("aria-pressed", "false")
    assert (await stored_steps(server, published))[2] is False
    await page.locator("#readonly-remix").click()
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    await expect(page).not_to_have_url(re.compile(published))
    await expect(page.locator("#readonly-banner")).to_be_hidden()
    await expect(page.locator("#tempo")).to_be_enabled()
    await expect(page.locator("#grid .step[aria-disabled]")).to_have_count(0)
    await expect(page.locator("#grid-keys")).to_be_visible()
    await expect(page.locator("#grid")).to_have_attribute("aria-describedby", "grid-keys")


async def test_not_found_page_offers_create_new_and_go_home(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/s/00000000-0000-4000-8000-000000000000")
    await expect(page.locator("#not-found h1")).to_have_text("This session doesn't exist")
    await expect(page.locator("#go-home")).to_have_attribute("href", "/")
    await page.locator("#create-new").click()
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    await expect(page.locator("#editor")).to_be_visible()
    page = await tab.open("/s/not-an-id")
    await expect(page.locator("#not-found")).to_be_visible()


async def test_a_session_that_doesnt_exist_shows_no_connection_badge(server: ServerUnderTest, tab: Tab) -> None:
    for path in ("/s/00000000-0000-4000-8000-000000000000", "/s/not-an-id"):
        page = await tab.open(path)
        await expect(page.locator("#not-found")).to_be_visible()
        await expect(page.locator("#connection")).to_be_hidden()  # not "Connecting…" for ever
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    await api(server, "DELETE", f"/api/sessions/{session_id}")  # deleted while the page is live
    await expect(page.locator("#not-found")).to_be_visible()
    await expect(page.locator("#connection")).to_be_hidden()


async def test_nav_and_new_pattern_from_the_landing_page(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/")
    await expect(page.locator("#capability-patterns h2")).to_have_text("Pattern sessions")
    await page.locator("nav.nav a", has_text="Patterns").click()
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.locator("#pattern-name")).to_have_value("")
    await expect(page.locator(".track-row")).to_have_count(0)
    # A track's steps past its first are reached by the arrow keys (a roving focus): said, for a
    # keyboard's user, where they only met a first step and then "Clear".
    await expect(page.locator("#grid")).to_have_accessible_description(re.compile("the arrow keys move between them"))
    await page.go_back()
    await expect(page).to_have_url(f"{server.url}/")


async def test_patterns_opens_the_persons_untouched_pattern_before_making_another(
    server: ServerUnderTest, tab: Tab
) -> None:
    """Each look at the nav's Patterns made an empty pattern, and "My recent sessions" filled with
    "Untitled pattern"s; one left as it came is opened again, and a new one made once it is used."""
    page = await tab.open("/patterns")
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    first = page.url
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    page = await tab.open("/patterns")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert page.url == first
    await page.locator("#add-sample").select_option("synth:bass")
    await page.locator("#add-track").click()
    await expect(page.locator(".track-row")).to_have_count(1)
    session_id = first.rsplit("/", 1)[1]
    async with asyncio.timeout(10):  # the op stored before the next look
        while not (await api(server, "GET", f"/api/sessions/{session_id}"))["state"]["tracks"]:
            await asyncio.sleep(0.05)
    page = await tab.open("/patterns")
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert page.url != first
    assert not tab.errors, tab.errors


async def test_orphan_banner_shows_once_and_dismisses(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    long_ago = server.services.clock.now_ms() - 91 * 86_400_000
    await server.services.redis.hset(server.services.keys.session(session_id), "last_accessed_at", long_ago)  # type: ignore[misc]
    page = await open_live(tab, f"/s/{session_id}")
    await expect(page.locator("#orphan-banner")).to_be_visible()
    await page.locator("#orphan-dismiss").click()
    await expect(page.locator("#orphan-banner")).to_be_hidden()
    await page.reload()
    await expect(page.locator("#editor")).to_be_visible()
    await expect(page.locator("#orphan-banner")).to_be_hidden()  # the first load revived it


async def test_play_moves_the_playhead_and_stop_clears_it(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    await page.get_by_role("button", name="Play", exact=True).click()
    # The word says what a press does, and nothing else says it again (a pressed "Stop").
    stop = page.get_by_role("button", name="Stop", exact=True)
    await expect(stop).to_be_visible()
    await expect(stop).not_to_have_attribute("aria-pressed", re.compile("."))
    await expect(page.locator(".step.playing").first).to_be_visible()
    await stop.click()
    await expect(page.get_by_role("button", name="Play", exact=True)).to_be_visible()
    await expect(page.locator("#play")).not_to_have_attribute("aria-pressed", re.compile("."))
    await expect(page.locator(".step.playing")).to_have_count(0)


async def test_names_are_shown_as_text(server: ServerUnderTest, tab: Tab) -> None:
    name = 'Tom & "Jerry\'s" {{x}} &lt;b&gt;'
    parent = await new_pattern(server, name=name, state={"tracks": [track("t1", name='A&B "q"')]})
    child = (await api(server, "POST", f"/api/sessions/{parent}/remix"))["id"]
    page = await open_live(tab, f"/s/{child}")
    await expect(page.locator("#parent-link")).to_have_text(f'"{name}"')
    await expect(page.locator(".track-name")).to_have_value('A&B "q"')
    assert await page.locator("#lineage b").count() == 0


async def test_cursors_and_rest_replacements_reach_the_page(
    server: ServerUnderTest, tab: Tab, browser: Browser
) -> None:
    session_id = await new_pattern(server)
    other = await new_tab(browser, server)
    try:
        first = await open_live(tab, f"/s/{session_id}")
        second = await open_live(other, f"/s/{session_id}")
        await expect(second.locator("#players .avatar")).to_have_count(2)
        await step(first, "t1", 6).focus()
        await expect(step(second, "t1", 6)).to_have_class(re.compile("remote-cursor"))
        await api(server, "PUT", f"/api/sessions/{session_id}", {"state": full_state(tempo=99)})
        await expect(second.locator("#tempo")).to_have_value("99")
        await api(server, "PATCH", f"/api/sessions/{session_id}", {"name": "Renamed"})
        await expect(first.locator("#pattern-name")).to_have_value("Renamed")
        await other.page.close()  # pagehide: the player leaves
        await expect(first.locator("#players .avatar")).to_have_count(1)
        await api(server, "DELETE", f"/api/sessions/{session_id}")
        await expect(first.locator("#not-found")).to_be_visible()
    finally:
        await other.page.context.close()


async def test_a_page_that_was_offline_catches_up_on_live_edits(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()
    live = Client(server.url, server.token("live-player"))
    clients.append(live)
    await live.connect()
    for seq, index in enumerate((3, 7, 11)):
        op = {"type": "set_step", "trackId": "t1", "step": index, "on": True}
        assert (await live.call("pattern_op", {"session_id": session_id, "seq": seq, "op": op}))["ok"] is True
    await expect(step(page, "t1", 7)).to_have_attribute("aria-pressed", "false")
    gate.release()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    for index in (3, 7, 11):
        await expect(step(page, "t1", index)).to_have_attribute("aria-pressed", "true")


async def test_a_name_half_typed_outlives_another_players_new_track(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A track added (or removed) by another player redrew every row: the name being typed lost
    its text and its focus, and a focused step's label kept a track's old name."""
    session_id = await new_pattern(server, state={"tracks": [track("t1"), track("t2", name="Snare")]})
    page = await open_live(tab, f"/s/{session_id}")
    rows = page.locator(".track-row")
    await expect(rows).to_have_count(2)
    name = rows.nth(0).locator(".track-name")
    await name.focus()
    await name.press("Control+A")
    await page.keyboard.type("Bass li")

    other = Client(server.url, server.token("other-player"))
    clients.append(other)
    await other.connect()
    added = {"type": "add_track", "track": track("t3", name="Hat")}
    assert (await other.call("pattern_op", {"session_id": session_id, "seq": 1, "op": added}))["ok"] is True
    renamed = {"type": "rename_track", "trackId": "t2", "name": "Clap"}
    assert (await other.call("pattern_op", {"session_id": session_id, "seq": 2, "op": renamed}))["ok"] is True
    await expect(rows).to_have_count(3)
    await expect(step(page, "t2", 0)).to_have_attribute("aria-label", "Clap step 1")
    await expect(name).to_be_focused()
    await expect(name).to_have_value("Bass li")
    await page.keyboard.type("ne")
    await page.keyboard.press("Enter")
    await expect(rows.nth(0).locator(".track-name")).to_have_value("Bass line")
    for _ in range(150):  # the rename's op reaches the store (15 s at most: a bound, not a wait)
        loaded = await PatternSessions(server.services.store).load(session_id, touch=False)
        assert loaded is not None
        if loaded[0].state["tracks"][0]["name"] == "Bass line":
            break
        await page.wait_for_timeout(100)
    assert [t["name"] for t in loaded[0].state["tracks"]] == ["Bass line", "Clap", "Hat"]
    assert not tab.errors, tab.errors


async def test_an_auto_save_keeps_every_field_the_editor_does_not_edit(server: ServerUnderTest, tab: Tab) -> None:
    """The editor shows no FM params, track swing, ties, effects, scale or loop, but its auto-save
    PUTs the whole state: each must reach the server as it was (Keyboardia's own samples)."""
    showcase = sample("advanced-features-showcase.json")
    state = {"version": 1, **state_of(showcase), "scale": {"root": "D", "scaleId": "natural-minor", "locked": False}}
    state["tracks"].append(sample("303-slide.json")["tracks"][0])  # tied steps
    session_id = await new_pattern(server, name=showcase["name"], state=state)
    before = await PatternSessions(server.services.store).load(session_id, touch=False)
    assert before is not None
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()  # offline: the edit waits for the auto-save (PUT of the whole state)
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")

    def is_the_save(response: Response) -> bool:
        return response.request.method == "PUT" and session_id in response.url

    async with page.expect_response(is_the_save, timeout=10_000) as saved:
        await step(page, "snare-1", 1).click()
    assert (await saved.value).status == 200
    expected = copy.deepcopy(before[0].state)
    snare = next(t for t in expected["tracks"] if t["id"] == "snare-1")
    snare["steps"][1] = True
    after = await PatternSessions(server.services.store).load(session_id, touch=False)
    assert after is not None and after[0].state == expected
    assert after[0].state["tracks"][0]["fmParams"] == {"harmonicity": 2.5, "modulationIndex": 8}
    assert after[0].state["tracks"][-1]["parameterLocks"][1] == {"tie": True}
    assert not tab.errors, tab.errors


async def test_a_remix_link_makes_one_copy_and_back_returns_to_the_original(server: ServerUnderTest, tab: Tab) -> None:
    # Seed 004's /s/<id>/remix and seed 001's /s/<id>?remix=true: the visitor's own copy, made once.
    session_id = await new_pattern(server)
    for count, link in enumerate((f"/s/{session_id}/remix", f"/s/{session_id}?remix=true"), start=1):
        page = await tab.open(link)
        await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
        await expect(page).not_to_have_url(re.compile(session_id))
        await expect(page.locator("#toast")).to_have_text("Remixed! You're now editing a copy.")
        await expect(page.locator("#parent-link")).to_have_attribute("href", f"/s/{session_id}")
        await page.go_back()
        await expect(page).to_have_url(re.compile(f"/s/{session_id}$"))
        await expect(page.locator("#remix-count")).to_have_text(f"{count} remix" + ("es" if count > 1 else ""))
        await page.reload()
        await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
        parent = await api(server, "GET", f"/api/sessions/{session_id}")
        assert parent["remixCount"] == count
    assert not tab.errors, tab.errors


async def test_a_remix_link_to_no_session_makes_nothing(server: ServerUnderTest, tab: Tab) -> None:
    page = await tab.open("/s/00000000-0000-4000-8000-000000000000/remix")
    await expect(page.locator("#not-found")).to_be_visible()
    assert page.url.endswith("/s/00000000-0000-4000-8000-000000000000")


async def test_a_remix_whose_answer_is_lost_is_retried_into_the_same_copy(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    keys = await lose_first_answer(page, f"**/api/sessions/{session_id}/remix")
    await page.locator("#remix").click()
    await expect(page).to_have_url(re.compile(rf"/s/{UUID}$"))
    await expect(page).not_to_have_url(re.compile(session_id))
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]
    parent = await api(server, "GET", f"/api/sessions/{session_id}")
    assert parent["remixCount"] == 1
    tab.errors.clear()  # the lost answer is a console error by design


async def test_steps_and_the_recording_pictogram_under_a_contrast_theme_and_reduced_motion(
    server: ServerUnderTest, tab: Tab
) -> None:
    """Under forced colours (Windows' contrast themes) an on step was drawn as an off one (both
    white with a black border); under reduced motion the recording pictogram still blinked."""
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    await expect(step(page, "t1", 0)).to_have_attribute("aria-pressed", "true")
    await expect(step(page, "t1", 1)).to_have_attribute("aria-pressed", "false")
    await page.emulate_media(forced_colors="active", reduced_motion="reduce")
    look = "(el) => { const s = getComputedStyle(el); return [s.backgroundColor, s.borderColor]; }"
    on = await step(page, "t1", 0).evaluate(look)
    off = await step(page, "t1", 1).evaluate(look)
    assert on[0] != off[0], (on, off)
    # The stylesheet is every page's: a recording pictogram made here is styled as on a session page.
    animation = await page.evaluate(
        "() => { const p = document.createElement('span'); p.className = 'pictogram';"
        " p.dataset.status = 'recording'; document.body.append(p);"
        " return getComputedStyle(p).animationName; }"
    )
    assert animation == "none", animation
    await page.emulate_media(reduced_motion="no-preference")
    blinking = await page.evaluate("() => getComputedStyle(document.querySelector('.pictogram')).animationName")
    assert blinking == "blink", blinking  # the check above can tell


@pytest.mark.parametrize(
    ("button", "route"), [("#new", "/api/sessions"), ("#remix", "/remix"), ("#publish", "/publish")]
)
async def test_a_create_pressed_again_after_its_answers_were_lost_gets_the_first_copy(
    server: ServerUnderTest, tab: Tab, button: str, route: str
) -> None:
    """The server made it, but the network was gone past the page's two resends: the page said
    "The server cannot be reached.", and the press again sent a new Idempotency-Key, making a
    second pattern, remix or published copy (audit lostcreates). The key stays until answered."""
    await tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    url = f"**{route}" if route == "/api/sessions" else f"**/api/sessions/{session_id}{route}"
    seen = await lose_answers(page, url, count=3)  # the first send and the page's two resends
    await page.locator(button).click()
    await expect(page.locator("#toast")).to_have_text(UNCONFIRMED_CREATE)
    await expect(page.locator(button)).to_be_enabled()
    made = seen.lost[0]["id"]
    assert [answer["id"] for answer in seen.lost] == [made] * 3  # the resends found the first

    await page.locator(button).click()  # pressed again: answered with what the first made
    if button == "#publish":
        await expect(page.locator("#toast")).to_contain_text("Published!")
        assert await page.evaluate("navigator.clipboard.readText()") == f"{server.url}/s/{made}"
    else:
        await expect(page).to_have_url(re.compile(f"/s/{made}$"))
    assert len(seen.keys) == 4 and seen.keys[0] and len(set(seen.keys)) == 1
    if button == "#remix":
        assert (await api(server, "GET", f"/api/sessions/{session_id}"))["remixCount"] == 1
    tab.errors.clear()  # the lost answers are console errors by design


async def test_new_is_one_create_however_often_it_is_pressed_while_it_runs(server: ServerUnderTest, tab: Tab) -> None:
    """On a slow network two presses of New made two empty patterns (audit lostcreates)."""
    session_id = await new_pattern(server)
    page = await open_live(tab, f"/s/{session_id}")
    release = asyncio.Event()
    posts: list[str] = []

    async def slow(route: Any) -> None:
        if route.request.method != "POST":
            await route.continue_()
            return
        posts.append(route.request.url)
        await release.wait()
        await route.continue_()

    await page.route("**/api/sessions", slow)
    await page.locator("#new").click()
    await expect(page.locator("#new")).to_be_disabled()
    await page.locator("#new").click(force=True)  # a finger on a disabled button does nothing
    release.set()
    await expect(page).not_to_have_url(re.compile(session_id))
    assert len(posts) == 1, posts


async def test_an_auto_save_whose_answer_was_lost_is_not_applied_again_over_a_newer_edit(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Offline, the page auto-saved step 5 on; the save was applied and its answer lost. Another
    player then turned step 5 off. Back online, the page sent its kept edits again as new ops
    and turned it back on: the other player's change was lost (audit lostcreates)."""
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    gate = SocketGate()
    await gate.install(tab.page)
    page = await open_live(tab, f"/s/{session_id}")
    await gate.cut()  # offline: the edit waits for the auto-save
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
    seen = await lose_answers(page, f"**/api/sessions/{session_id}", method="PUT")

    await step(page, "t1", 5).click()
    for _ in range(150):  # bounded: the auto-save goes 2 s after the edit
        if (await stored_steps(server, session_id))[5]:
            break
        await page.wait_for_timeout(100)
    assert (await stored_steps(server, session_id))[5] is True  # applied; its answer lost
    await expect(page.locator("#toast")).to_contain_text("Offline: your changes are kept")

    other = Client(server.url, server.token("other-player"))
    clients.append(other)
    await other.connect()
    op = {"type": "set_step", "trackId": "t1", "step": 5, "on": False}
    assert (await other.call("pattern_op", {"session_id": session_id, "seq": 1, "op": op}))["ok"] is True

    gate.release()
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    for _ in range(150):  # bounded: the save is sent again as the page subscribes again
        if len(seen.keys) == 2:
            break
        await page.wait_for_timeout(100)
    assert len(seen.keys) == 2 and seen.keys[0] and seen.keys[0] == seen.keys[1]  # sent again, as it was
    await expect(step(page, "t1", 5)).to_have_attribute("aria-pressed", "false")
    assert (await stored_steps(server, session_id))[5] is False  # the newer edit stands
    tab.errors.clear()  # the lost answer is a console error by design


async def test_a_copy_pressed_again_after_an_edit_is_a_copy_of_the_pattern_as_it_is_now(
    server: ServerUnderTest, tab: Tab
) -> None:
    """Publish's answers lost, then an edit, then Publish again: the first copy, without the
    edit, came back as "Published!" (audit verify42). The kept key is the copy of a version."""
    await tab.page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    session_id = await new_pattern(server, state={"tracks": [track("t1", steps=[False] * 16)]})
    page = await open_live(tab, f"/s/{session_id}")
    seen = await lose_answers(page, f"**/api/sessions/{session_id}/publish", count=3)
    await page.locator("#publish").click()
    await expect(page.locator("#toast")).to_have_text(UNCONFIRMED_CREATE)
    await expect(page.locator("#publish")).to_be_enabled()
    first = seen.lost[0]["id"]

    await step(page, "t1", 3).click()  # an edit after the copy that may have been made
    await expect(step(page, "t1", 3)).to_have_attribute("aria-pressed", "true")
    await page.locator("#publish").click()
    await expect(page.locator("#toast")).to_contain_text("Published!")
    link = await page.evaluate("navigator.clipboard.readText()")
    assert link != f"{server.url}/s/{first}", "the copy from before the edit came back"
    assert (await stored_steps(server, link.rsplit("/", 1)[1]))[3] is True
    assert seen.keys[3] != seen.keys[0]  # another copy: another key
    tab.errors.clear()  # the lost answers are console errors by design


async def test_a_remix_link_whose_answers_were_lost_then_remix_pressed_gets_the_first_copy(
    server: ServerUnderTest, tab: Tab
) -> None:
    """A remix link's create was keyed on no state (the page not loaded yet), Remix on the loaded
    page on its state: pressed after the link's answers were lost, it made a second copy
    (audit verify42b)."""
    session_id = await new_pattern(server)
    seen = await lose_answers(tab.page, f"**/api/sessions/{session_id}/remix", count=3)
    page = await tab.open(f"/s/{session_id}/remix")
    await expect(page.locator("#toast")).to_have_text(UNCONFIRMED_CREATE)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.reload()  # the URL is the original's now: no remix again
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await page.locator("#remix").click()  # "press again, which is safe"
    await expect(page).to_have_url(re.compile(f"/s/{seen.lost[0]['id']}$"))
    assert (await api(server, "GET", f"/api/sessions/{session_id}"))["remixCount"] == 1
    tab.errors.clear()  # the lost answers are console errors by design
