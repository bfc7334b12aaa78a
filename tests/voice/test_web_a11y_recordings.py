"""The session page's recordings as a screen reader meets them (audit "keyboard", finding 2)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.audio_samples import wav
from tests.browser import Tab
from tests.helpers import ServerUnderTest
from tests.voice.uploads import chunk_form, upload


async def audio_names(page: Page) -> list[str]:
    """The names Chromium's accessibility tree gives the page's audio players, in order."""
    cdp = await page.context.new_cdp_session(page)
    try:
        nodes = (await cdp.send("Accessibility.getFullAXTree"))["nodes"]
    finally:
        await cdp.detach()
    return [
        node.get("name", {}).get("value", "")
        for node in nodes
        if node.get("role", {}).get("value") == "Audio" and not node.get("ignored")
    ]


async def test_each_recordings_player_is_named_after_its_line(server: ServerUnderTest, tab: Tab) -> None:
    """The tree held "Audio ''" once per recording, each with a "play" button like the others:
    nothing told which recording a player plays."""
    session_id = await server.create_session("alice", "Three recordings")
    token = server.token("alice")
    for i, duration_ms in enumerate((1500, 2000, 1500)):
        start_ms = 1000 + i * 3000
        form = chunk_form(
            session_id,
            wav(duration_ms),
            start_ms=start_ms,
            end_ms=start_ms + duration_ms,
            duration_ms=duration_ms,
            filename=f"{i}.wav",
        )
        status, _ = await upload(server, token, form)
        assert status == 201
    await tab.use_token(token)
    page = await tab.open(f"/session/{session_id}")
    players = page.locator("#chunk-list li audio")
    await expect(players).to_have_count(3)
    await expect(page.locator("#chunk-list .chunk-title")).to_have_text(["#1 · 0:01.5", "#2 · 0:02.0", "#3 · 0:01.5"])
    assert await audio_names(page) == ["Recording #1, 0:01.5", "Recording #2, 0:02.0", "Recording #3, 0:01.5"]
