"""Pattern, track and player names counted as people see them (audit "patternworld").

Before: a player whose account name had more than 32 code points ("Maria Fernanda Gonzalez
Rodriguez") was refused at every join, an editor nobody saw listed; a Hindi track name of 24
letters was "over 32 characters", five family emoji too; the page's fields cut UTF-16 units
silently, a flag cut in half and saved so; avatars showed half a flag; a track name on a phone
ended in "…" with half its line empty."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, expect

from tests.browser import Tab, new_tab
from tests.helpers import Client, ServerUnderTest
from tests.patterns.test_events import new_pattern as new_pattern_state
from tests.patterns.test_events import player
from tests.patterns.test_web import api, new_pattern, open_live
from tests.patterns.test_web_names import name_ops, next_op

pytestmark = pytest.mark.timeout(120)

HINDI = "स्वतंत्रता दिवस की शुभकामनाएँ और बधाई"  # 24 characters as seen, 37 code points
FAMILY = "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one character, seven code points
JAPAN = "\U0001f1ef\U0001f1f5"  # one flag, two code points
LONG_NAME = "Maria Fernanda Gonzalez Rodriguez"  # 33: taken by the account


def op(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, **fields}


async def test_names_are_counted_in_characters_as_seen(server: ServerUnderTest, clients: list[Client]) -> None:
    assert len(HINDI) > 32
    session_id = await new_pattern_state(server)
    alice = await player(server, clients, session_id, "alice")
    ref = {"session_id": session_id}
    for seq, name in enumerate((HINDI, FAMILY * 5, JAPAN * 32), start=1):
        ack = await alice.call("pattern_op", {**ref, "seq": seq, "op": op("rename_track", trackId="t1", name=name)})
        assert ack["ok"] is True, (name, ack)
    ack = await alice.call("pattern_op", {**ref, "seq": 10, "op": op("set_name", name="A" + JAPAN * 99)})
    assert ack["ok"] is True, ack
    # One character too many, and a short name of too many bytes ("zalgo"): refused, nothing changed.
    for seq, name in enumerate(("x" * 33, JAPAN * 33, "e" + "\u0301" * 700), start=20):
        ack = await alice.call("pattern_op", {**ref, "seq": seq, "op": op("rename_track", trackId="t1", name=name)})
        assert ack["error"] == "invalid_payload", (name, ack)
    stored = await api(server, "GET", f"/api/sessions/{session_id}")
    assert stored["name"] == "A" + JAPAN * 99
    assert stored["state"]["tracks"][0]["name"] == JAPAN * 32


async def test_a_player_is_named_as_their_account_is(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await new_pattern_state(server)
    alice = await player(server, clients, session_id, "alice")
    for name in (LONG_NAME, "ढोलक" * 15, "y" * 60):
        ack = await alice.call("pattern_join", {"session_id": session_id, "name": name, "colour": "#112233"})
        assert ack["ok"] is True, (name, ack)
    ack = await alice.call("pattern_join", {"session_id": session_id, "name": "y" * 61, "colour": "#112233"})
    assert ack["error"] == "invalid_payload", ack


async def test_a_long_account_name_is_listed_to_the_other_players(server: ServerUnderTest, browser: Browser) -> None:
    session_id = await new_pattern(server)
    maria, jun = await new_tab(browser, server), await new_tab(browser, server)
    try:
        await maria.use_token(server.token("maria", name=LONG_NAME))
        await jun.use_token(server.token("jun", name=f"{JAPAN} 相子 Aiko"))
        maria_page = await open_live(maria, f"/s/{session_id}")
        jun_page = await open_live(jun, f"/s/{session_id}")
        for page in (maria_page, jun_page):
            await expect(page.locator("#players .avatar")).to_have_count(2)
            await expect(page.locator(f'#players .avatar[title="{LONG_NAME}"]')).to_have_text("MR")
            # A whole flag, not half of one ("🇯A").
            await expect(page.locator(f'#players .avatar[title="{JAPAN} 相子 Aiko"]')).to_have_text(f"{JAPAN}A")
            # Wide characters stay inside the circle (two family emoji overflowed it: audit "verify49").
            assert (
                await page.locator("#players .avatar").first.evaluate("(el) => getComputedStyle(el).overflow")
                == "hidden"
            )
    finally:
        await maria.page.context.close()
        await jun.page.context.close()


async def test_an_account_name_with_markup_joins_with_look_alikes(server: ServerUnderTest, browser: Browser) -> None:
    session_id = await new_pattern(server)
    bob, ann = await new_tab(browser, server), await new_tab(browser, server)
    try:
        await bob.use_token(server.token("bob", name="Bob <3"))
        await ann.use_token(server.token("ann", name="Ann"))
        await open_live(bob, f"/s/{session_id}")
        ann_page = await open_live(ann, f"/s/{session_id}")
        # Recognisable ("Bob <3" with the look-alike U+2039 the text rule takes), initials letters.
        await expect(ann_page.locator('#players .avatar[title="Bob \u20393"]')).to_have_text("B3")
    finally:
        await bob.page.context.close()
        await ann.page.context.close()


async def test_the_fields_keep_whole_characters_and_save_them(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    sent, arrived = name_ops(tab)
    page = await open_live(tab, f"/s/{session_id}")
    name, track_name = page.locator("#pattern-name"), page.locator(".track-name").first
    await expect(name).to_have_value("Funky Beat")
    # 50 flags after a letter: 201 UTF-16 units, which the field's maxlength cut inside a flag.
    await name.fill("A" + JAPAN * 50)
    await expect(name).to_have_value("A" + JAPAN * 50)
    await name.press("Enter")
    await next_op(arrived)
    await track_name.fill(FAMILY * 5)
    await track_name.press("Enter")
    await next_op(arrived)
    assert [op.get("name") for op in sent] == ["A" + JAPAN * 50, FAMILY * 5], sent
    stored = await api(server, "GET", f"/api/sessions/{session_id}")
    assert (stored["name"], stored["state"]["tracks"][0]["name"]) == ("A" + JAPAN * 50, FAMILY * 5)
    # One flag more than a track takes is said, and not sent.
    await track_name.fill(JAPAN * 33)
    await expect(track_name).to_have_value(JAPAN * 33)
    await expect(page.locator(".track-name-error").first).to_have_text("Names are at most 32 characters.")
    await track_name.press("Enter")
    stored = await api(server, "GET", f"/api/sessions/{session_id}")
    assert stored["state"]["tracks"][0]["name"] == FAMILY * 5
    assert len(sent) == 2, sent


async def test_a_track_name_takes_its_lines_room_on_a_phone(server: ServerUnderTest, tab: Tab) -> None:
    session_id = await new_pattern(server)
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    page = await open_live(tab, f"/s/{session_id}")
    field = page.locator(".track-name").first
    box = await field.bounding_box()
    font_px = await page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
    # The line's free room (it was 7rem, with room to spare beside M, S and the volume).
    assert box is not None and box["width"] > 8 * font_px, box
    assert box["x"] + box["width"] <= 390, box  # and within the phone's width
    assert await field.evaluate("(el) => el.dir") == "auto"  # an Arabic name reads from the right
