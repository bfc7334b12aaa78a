"""In Chromium, as a screen reader names things: controls repeated per row say which row."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser import Tab
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, started


async def test_the_players_buttons_name_their_item(server: ServerUnderTest, tab: Tab) -> None:
    """Each row's Play, Pause and Stop were named just that: tabbing through, a screen reader
    said "Play, button" once per item, and nothing told which item each one plays."""
    await tab.use_token(server.token("alice"))
    page = await tab.open("/player")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    rows = page.locator("#items li")
    for i in range(await rows.count()):
        title = await rows.nth(i).locator("strong").text_content()
        for word in ("Play", "Pause", "Stop"):
            # The visible word first: a voice command "click Play" still finds it.
            named = page.get_by_role("button", name=f"{word} {title}", exact=True)
            await expect(named).to_have_count(1)
            await expect(named).to_have_text(word)


async def test_the_stream_reviews_clip_buttons_name_their_clip(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """Each clip of the review had 'Mark clipped', 'Edit note', 'Delete', 'Block viewer' and
    'Clear their clips', named the same for every clip: which one a press acts on was not said."""
    session_id, _owner = await started(server, clients)
    for user in ("v1", "v2"):
        viewer = await connect(server, clients, user)
        ack = await viewer.call("clip_submit", {"session_id": session_id, "note": f"liked by {user}"})
        assert ack["ok"] is True, ack
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{session_id}")
    clips = page.locator(".review-clip")
    await expect(clips).to_have_count(2)
    await expect(clips.locator(".clip-block")).to_have_count(2)
    labels: list[str] = []
    for i in range(2):
        clip = clips.nth(i)
        offset = await clip.locator(".offset").text_content()
        who = await clip.locator(".who").text_content()
        for selector, word in (
            (".clip-toggle", "Mark clipped"),
            (".clip-edit", "Edit note"),
            (".clip-delete", "Delete"),
        ):
            await expect(clip.locator(selector)).to_have_accessible_name(f"{word}, clip at {offset} by {who}")
        for selector, word in ((".clip-block", "Block viewer"), (".clip-clear", "Clear their clips")):
            await expect(clip.locator(selector)).to_have_accessible_name(f"{word}, {who}")
        labels += [str(await button.get_attribute("aria-label")) for button in await clip.locator("button").all()]
    assert len(set(labels)) == len(labels), labels


async def test_the_pattern_grids_track_controls_name_their_track(server: ServerUnderTest, tab: Tab) -> None:
    """Each track's Mute, Solo, volume, Clear and delete were named alike: with two tracks, two
    'Mute' buttons, and nothing said which track one mutes (its steps were named, these not)."""
    from tests.patterns.test_web import new_pattern, open_live

    session_id = await new_pattern(server)
    await tab.use_token(server.token("alice"))
    page = await open_live(tab, f"/s/{session_id}")
    await page.get_by_role("combobox", name="Add a track").select_option(label="Snare")
    await page.get_by_role("button", name="Add track").click()
    rows = page.locator("#grid .track-row")
    await expect(rows).to_have_count(2)
    for i in range(2):
        track = await rows.nth(i).locator(".track-name").input_value()
        for role, name in (
            ("button", f"Mute {track}"),
            ("button", f"Solo {track}"),
            ("slider", f"{track} volume"),
            ("button", f"Clear {track}"),
            ("button", f"Delete track {track}"),
        ):
            await expect(rows.nth(i).get_by_role(role, name=name, exact=True)).to_have_count(1)  # type: ignore[arg-type]


async def test_the_stream_list_counts_one_clip_as_one_clip(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    """'1 clips', read out as written."""
    session_id, _owner = await started(server, clients, title="One clip")
    viewer = await connect(server, clients, "v1")
    assert (await viewer.call("clip_submit", {"session_id": session_id, "note": ""}))["ok"] is True
    await tab.use_token(server.token("alice"))
    page = await tab.open("/streams")
    await expect(page.locator("#stream-list li", has_text="One clip")).to_contain_text("1 clip")
    await expect(page.locator("#stream-list li", has_text="One clip")).not_to_contain_text("1 clips")


async def test_the_recorders_done_is_not_named_as_the_session_pages_done(server: ServerUnderTest, tab: Tab) -> None:
    """The session page has its Done (close this session) and the recorder its own (close the
    session it records into): a screen reader's list of buttons read 'Done' twice."""
    session_id = await server.create_session("alice", name="Two Dones")
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/session/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await expect(page.get_by_role("button", name="Done", exact=True)).to_have_count(1)
    await expect(page.locator("#fab-done")).to_have_accessible_name("Done: close the recording session")
    await expect(page.locator("#fab-new")).to_have_accessible_name("New recording session")


async def speaks_later(page: Page, selector: str, role: str = "status") -> None:
    """The live region is in the accessibility tree, empty, before it has anything to say: one
    un-hidden and filled in the same moment is skipped by some screen readers."""
    region = page.locator(selector)
    await expect(region).to_have_text("")
    await expect(region).to_match_aria_snapshot(f"- {role}")
    await expect(region).to_be_hidden()  # empty, it shows nothing (no blank box)


async def test_live_regions_are_in_place_before_they_speak(
    server: ServerUnderTest, tab: Tab, clients: list[Client]
) -> None:
    from tests.patterns.test_web import new_pattern, open_live

    stream_id, _owner = await started(server, clients)
    await tab.use_token(server.token("alice"))
    page = await tab.open(f"/streams/{stream_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    for selector in ("#notice", "#export-status"):
        await speaks_later(page, selector)
    await tab.open("/history")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await speaks_later(page, "#export-status")
    await tab.open("/player")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await speaks_later(page, "#player-notice", "alert")

    page = await open_live(tab, f"/s/{await new_pattern(server)}")
    for selector in ("#toast", "#pattern-name-error", "#tempo-error", ".track-row .track-name-error >> nth=0"):
        await speaks_later(page, selector)
    await page.locator("#publish").click()
    await expect(page.locator("#toast")).to_contain_text("Published")

    session_id = await server.create_session("alice", name="Said")
    page = await tab.open(f"/session/{session_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await speaks_later(page, "#notice")
    await speaks_later(page, "#fab-message")
    await page.locator("#done-button").click()
    await expect(page.locator("#notice")).to_contain_text("Session closed")

    page = await tab.open(f"/watch/{stream_id}")
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    await speaks_later(page, "#confirmation")
    await page.locator("#clip-button").click()
    await expect(page.locator("#confirmation")).to_contain_text("Clipped!")


async def test_the_admins_scrolling_tables_and_detail_link_are_named(server: ServerUnderTest, tab: Tab) -> None:
    """Three scrolling tables were Tab stops named nothing; the detail's link was named "open";
    the sign-in form sat in the alert, read out whole as the page opened."""
    from tests.admin.test_http import LONG_TTL_S, admin_token

    page = await tab.open("/admin")
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Sign in")
    await expect(alert.locator("form, input, button")).to_have_count(0)  # the message only
    await expect(page.get_by_role("textbox", name="Admin token")).to_be_visible()

    session_id = await server.create_session("bob", name="named")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    for name in ("By kind table", "Nodes table", "Sessions table"):
        region = page.get_by_role("region", name=name, exact=True)
        await expect(region).to_have_attribute("tabindex", "0")
        await expect(region.get_by_role("table")).to_have_count(1)
    await page.locator(f'#sessions tr[data-id="{session_id}"] .row-open').click()
    link = page.get_by_role("link", name=f"Open session {session_id}'s page", exact=True)
    await expect(link).to_have_text("open")  # the visible word first: "click open" still finds it


async def test_the_api_docs_schemas_are_named_tab_stops_only_where_they_scroll(
    server: ServerUnderTest, tab: Tab
) -> None:
    """The 24 body schemas were all Tab stops named nothing, scrolling or not."""
    for width in (1280, 390):
        await tab.page.set_viewport_size({"width": width, "height": 844})
        page = await tab.open("/api-docs")
        await expect(page.locator('#operations[data-ready="true"]')).to_be_attached()
        schemas = page.locator("pre.admin-json")
        await expect(schemas.first).to_be_visible()
        found = await schemas.evaluate_all(
            """(pres) => pres.map((pre) => ({
                scrolls: pre.scrollHeight > pre.clientHeight || pre.scrollWidth > pre.clientWidth,
                tabIndex: pre.tabIndex, role: pre.getAttribute("role"), name: pre.getAttribute("aria-label"),
            }))"""
        )
        assert any(schema["scrolls"] for schema in found) and not all(schema["scrolls"] for schema in found)
        for schema in found:
            if schema["scrolls"]:
                assert schema["tabIndex"] == 0 and schema["role"] == "region", schema
                assert schema["name"].startswith("Schema of the "), schema
            else:
                assert schema["tabIndex"] == -1 and schema["role"] is None, schema
