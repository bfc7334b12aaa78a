"""The viewer's Clip Moment page on a flaky phone (audit "streamphone"): a note typed while a clip
is on its way is kept, a second moment while one waits is said not clipped, a clip waiting when
the tab is closed is sent when the page opens again, a signed-out page says its clip waits for a
sign-in, invisible characters a note may not hold are taken out, and a note cut for its bytes
says it is full."""

from __future__ import annotations

from playwright.async_api import Page, expect

from storage.streams.repository import StreamSessions
from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import started

FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one character, 25 bytes


async def live(tab: Tab, path: str) -> Page:
    page = await tab.open(path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    return page


async def notes(server: ServerUnderTest, session_id: str) -> list[str]:
    _, clips, _ = await StreamSessions(server.services.store).clips(session_id)
    return [clip.note for clip in clips]


async def offline(page: Page) -> None:
    await page.context.set_offline(True)
    await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")


async def test_a_note_typed_while_a_clip_waits_is_kept_and_a_second_press_is_said_not_clipped(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The answer to a clip emptied the note box whatever it held: the next moment's note, typed
    while the first was on its way, was wiped. And a second press while the first waited said the
    first's "will be sent when the connection is back", and clipped nothing."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    await offline(page)
    note = page.locator("#note-input")
    await note.fill("the first moment")
    await page.locator("#clip-button").click()
    await expect(page.locator("#clip-reason")).to_have_text(
        "Offline: your clip will be sent when the connection is back."
    )
    await note.fill("the next moment")
    await note.press("Enter")  # the button is aria-disabled while a clip waits: a press still lands
    await expect(page.locator("#confirmation")).to_have_text(
        "Not clipped: your last clip still waits to be sent, and one clip can wait at a time. Your note stays in the box."
    )
    await expect(note).to_have_value("the next moment")
    await page.context.set_offline(False)
    await expect(page.locator("#confirmation")).to_contain_text("Clipped!")
    await expect(note).to_have_value("the next moment")
    assert await notes(server, session_id) == ["the first moment"]


async def test_a_clip_waiting_when_the_tab_is_closed_is_sent_when_the_page_opens_again(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A phone's tab switcher closes a page without its leave prompt: the clip pressed offline
    lived only in the page, and the page opened again said nothing of it."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    await offline(page)
    await page.locator("#note-input").fill("pressed in the tunnel")
    await page.locator("#clip-button").click()
    await expect(page.locator("#clip-reason")).to_contain_text("Offline: your clip will be sent")
    context = page.context
    await page.close(run_before_unload=False)
    assert await notes(server, session_id) == []
    await context.set_offline(False)
    again = await context.new_page()
    await again.goto(f"{tab.base_url}/watch/{session_id}", wait_until="domcontentloaded")
    await expect(again.locator("#confirmation")).to_contain_text("Clipped!")
    assert await notes(server, session_id) == ["pressed in the tunnel"]
    await again.reload()  # answered: nothing waits any more
    await expect(again.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(again.locator("#confirmation")).to_have_text("")
    assert await notes(server, session_id) == ["pressed in the tunnel"]


async def test_a_page_signed_out_while_a_clip_waits_says_so(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A token the page cannot renew ran out while a clip waited: the page went on saying the clip
    "will be sent when the connection is back" beside "Not signed in", and it never was."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob", ttl_s=60))  # minted by an operator: no renewal
    page = await live(tab, f"/watch/{session_id}")
    await offline(page)
    await page.locator("#clip-button").click()
    clock = server.services.clock
    clock.shift_ms += 120_000  # the token has run out when the connection comes back
    try:
        await page.context.set_offline(False)
        await expect(page.locator("#connection")).to_have_attribute("data-state", "unauthorized")
        await expect(page.locator("#clip-reason")).to_have_text(
            "Not signed in: your clip is sent once you sign in again on this page, if within a minute of your press."
        )
    finally:
        clock.shift_ms -= 120_000


async def test_invisible_characters_are_taken_out_and_a_note_cut_for_its_bytes_says_full(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """A note pasted with a direction mark (U+202E) was refused in words about "control character
    U+202E", the field kept it unseen, and every press failed alike. A paste cut at 2,000 bytes
    (80 families) said "80/100" as if there were room, and nothing said it was cut."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    note = page.locator("#note-input")
    await note.fill(FAMILY * 100)
    await expect(page.locator("#note-counter")).to_have_text("80/100 · full")
    await expect(page.locator("#note-counter")).to_have_attribute("data-full", "true")
    await expect(page.locator("#clip-said")).to_contain_text("Your note was cut to 80 characters")
    await note.fill("gg \u202ewp\u202c\tnice")
    await page.locator("#clip-button").click()
    await expect(page.locator("#confirmation")).to_contain_text("Clipped!")
    assert await notes(server, session_id) == ["gg wp nice"]


async def test_a_waiting_clip_is_never_sent_as_the_next_person_signed_in(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Bob's clip waited for the connection; Carol signed in on the same browser, and when the
    connection came back the page said "Clipped!": the clip was stored as Carol's (audit "verify48")."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob"))
    page = await live(tab, f"/watch/{session_id}")
    await offline(page)
    await page.locator("#note-input").fill("bob's moment")
    await page.locator("#clip-button").click()
    record = {"token": server.token("carol"), "expires_at": 4_000_000_000, "guest": False}
    await page.evaluate("(record) => localStorage.setItem('sessionhub.token', JSON.stringify(record))", record)
    await page.context.set_offline(False)
    await expect(page.locator("#confirmation")).to_have_text(
        "Not clipped: that clip was pressed by the person signed in before, so it is not sent as you."
    )
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert await notes(server, session_id) == []
    await page.locator("#note-input").fill("carol's own")  # Carol's own press is hers
    await page.locator("#clip-button").click()
    await expect(page.locator("#confirmation")).to_contain_text("Clipped!")
    assert await notes(server, session_id) == ["carol's own"]


async def test_two_tabs_clips_waiting_when_both_close_are_both_sent(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """One entry per stream in the browser: a second tab's press overwrote the first's, and an
    answered clip took the other tab's with it (audit "verify48")."""
    session_id, _ = await started(server, clients)
    await tab.use_token(server.token("bob"))
    first = await live(tab, f"/watch/{session_id}")
    context = first.context
    second = await context.new_page()
    await second.goto(f"{tab.base_url}/watch/{session_id}", wait_until="domcontentloaded")
    await expect(second.locator("#connection")).to_have_attribute("data-state", "live")
    await context.set_offline(True)
    for page, note in ((first, "from the first tab"), (second, "from the second tab")):
        await expect(page.locator("#connection")).not_to_have_attribute("data-state", "live")
        await page.locator("#note-input").fill(note)
        await page.locator("#clip-button").click()
        await expect(page.locator("#clip-reason")).to_contain_text("Offline: your clip will be sent")
    for page in (first, second):
        await page.close(run_before_unload=False)
    await context.set_offline(False)
    again = await context.new_page()
    await again.goto(f"{tab.base_url}/watch/{session_id}", wait_until="domcontentloaded")
    await expect(again.locator("#mine li .note")).to_have_count(2)  # the second once the cooldown ended
    assert sorted(await notes(server, session_id)) == ["from the first tab", "from the second tab"]
