"""Limits said in characters count what a person sees (audit "localeworld"): a display name, a
stream's title and game and a voice session's name, on the server and in the pages, and a YouTube
chapter's title is cut at a whole character."""

from __future__ import annotations

import aiohttp
from playwright.async_api import expect

from handlers.streams.formats import Marker, youtube_chapters
from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import create_stream, http
from tests.streams.test_web import started_with_a_clip

HINDI = "रामचन्द्र कृष्णमूर्ति शास्त्री"  # 29 characters as seen, 29+ code points
FLAG = "\U0001f1eb\U0001f1f7"  # one character, two code points
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one character, seven code points


async def rename(server: ServerUnderTest, name: str) -> tuple[int, dict[str, object]]:
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with (
        aiohttp.ClientSession() as session,
        session.patch(f"{server.url}/api/auth/me", json={"name": name}, headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_a_name_of_60_characters_as_seen_is_taken_whole_and_61_are_refused(server: ServerUnderTest) -> None:
    """60 code points refused a 29-letter Hindi name, and 16 flags (32 code points) were taken
    but cut by the page to 15."""
    for name in (HINDI * 2, FLAG * 60, FAMILY * 48):  # 48 families: the 1,200 bytes behind 60
        status, answer = await rename(server, name)
        assert status == 200, (name, answer)
        assert (await server.services.identities.profile("alice")).name == name
    status, answer = await rename(server, FLAG * 61)
    assert (status, answer["error"]) == (400, "invalid_payload"), answer
    assert "a name holds at most 60 characters" in str(answer["message"])
    status, answer = await rename(server, FAMILY * 49)
    assert (status, answer["error"]) == (400, "invalid_payload"), answer
    assert "a name holds at most 1200 bytes" in str(answer["message"])


async def test_a_name_of_invisible_characters_alone_is_refused_and_nothing_changes(server: ServerUnderTest) -> None:
    """Ten zero-width joiners, a lone accent, blank Braille or the Hangul filler were taken as a
    name: the streamer's review and exports then showed the viewer with no name at all (audit
    "anonhostile"). A letter with its accent, or an emoji sequence, is a name."""
    assert (await rename(server, "Ann"))[0] == 200
    for name in ("\u200d" * 10, "\u0301", "\u2800", "\u3164", "\u200b\u200e\ufeff"):
        status, answer = await rename(server, name)
        assert (status, answer["error"]) == (400, "invalid_payload"), (name, answer)
        assert "a name needs a character that shows" in str(answer["message"])
        assert (await server.services.identities.profile("alice")).name == "Ann"
    for name in ("e\u0301", FAMILY, "\u0905\u0902"):
        assert (await rename(server, name))[0] == 200, name


async def test_titles_games_and_session_names_count_characters_as_seen(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await create_stream(server, title=FAMILY * 160, game=FLAG * 100)  # 4,000 and 800 bytes
    status, stream = await http(server, "GET", f"/api/streams/{session_id}")
    assert (status, stream["title"], stream["game"]) == (200, FAMILY * 160, FLAG * 100)
    for fields, refused in (({"title": FLAG * 201}, "a title"), ({"title": "t", "game": FLAG * 101}, "a game")):
        status, answer = await http(server, "POST", "/api/streams", json=fields)
        assert (status, answer["error"]) == (400, "invalid_payload"), answer
        assert f"{refused} holds at most" in answer["message"], answer
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as session:
        for name, status_wanted in ((HINDI * 6, 201), (FLAG * 201, 400)):  # 174 as seen, 300+ code points
            async with session.post(
                f"{server.url}/voicebot/create_session", json={"session_name": name}, headers=headers
            ) as response:
                assert response.status == status_wanted, await response.text()


def test_a_youtube_chapter_is_cut_at_a_whole_character() -> None:
    """The cut was in code points: a note of 60 flags ended in half a flag before the "…", a
    family after 95 letters in two of its people and a joiner."""
    markers = [
        Marker(1, at_ms, at_ms, label, "v", 0, 1, False, at_ms)
        for at_ms, label in ((0, "start"), (20_000, FLAG * 60), (40_000, "x" * 95 + FAMILY * 2))
    ]
    lines = youtube_chapters(markers, total_ms=60_000, moments=False).splitlines()
    assert lines[-2] == "0:20 " + FLAG * 49 + "…", lines  # 98 code points of whole flags
    assert lines[-1] == "0:40 " + "x" * 95 + "…", lines  # no room for a whole family


async def test_the_name_field_cuts_at_a_whole_character_and_says_so(server: ServerUnderTest, tab: Tab) -> None:
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    await page.locator("#identity-name").click()
    field = page.locator("#identity-name-input")
    await field.fill(HINDI)
    await expect(field).to_have_value(HINDI)  # the browser's maxlength cut it mid-syllable
    await field.fill(FLAG * 61)
    await expect(field).to_have_value(FLAG * 60)
    await expect(page.locator("#identity-name-note")).to_have_text("A name holds at most 60 characters: cut to fit.")
    await field.fill(FAMILY * 60)
    await expect(field).to_have_value(FAMILY * 48)
    await expect(page.locator("#identity-name-note")).to_have_text(
        "A name holds at most 60 characters, fewer of long ones like these (emoji, marks): cut to 48."
    )
    await field.press("Enter")
    await expect(page.locator("#identity-name")).to_have_text(FAMILY * 48)
    assert (await server.services.identities.profile("alice")).name == FAMILY * 48
    title = page.locator("#title-input")
    await title.fill(FLAG * 150)  # 300 UTF-16 units: maxlength 200 kept 100 flags
    await expect(title).to_have_value(FLAG * 150)


async def test_the_streamer_edits_a_note_of_100_characters_as_seen(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """The dashboard's note field took 100 UTF-16 units: a viewer's note of 100 flags, which the
    server takes, was cut to 50 as soon as the streamer edited it."""
    session_id = await started_with_a_clip(server, clients, "Flags", FLAG * 100)
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    clips = page.locator('.segment[data-index="1"] .review-clip')
    await expect(clips).to_have_count(1)
    await expect(page.locator(".moment .count")).to_have_text(["1 click"])  # settled: nothing moves under
    await clips.nth(0).locator(".clip-edit").click()
    note = clips.nth(0).locator(".note-edit input")
    await expect(note).to_have_value(FLAG * 100)
    await note.press("End")
    await note.press_sequentially("!")
    await expect(note).to_have_value(FLAG * 100)  # full: the 101st is cut, and said
    await expect(page.locator("#notice")).to_have_text("A note holds at most 100 characters: cut to fit.")
    await note.press("Enter")
    await expect(clips.nth(0).locator(".note")).to_have_text(FLAG * 100)
