"""The /admin page in real Chromium against a real server."""

from __future__ import annotations

import json
import asyncio
import re
from typing import Any
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import expect

from auth.claims import USER_ID_PATTERN, Permission
from handlers.admin.nodes import NODES_KEY
from tests.browser import Tab, listen_to_live_regions, live_texts, lose_answers
from tests.helpers import Client, ServerUnderTest, to_window_start
from tests.admin.test_http import DAY_MS, LONG_TTL_S, admin_token, new_pattern
from tests.admin.test_withdrawn_token import polled_withdrawal

REFRESH_MS = 2000  # admin.js's refresh interval


async def test_an_admin_sees_the_counts_change_live_when_a_session_is_created_elsewhere(
    tab: Tab, server: ServerUnderTest
) -> None:
    to_window_start(server.services.clock, DAY_MS // 1000)  # "today" (UTC) holds both sessions
    await server.create_session("alice")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#m-sessions")).to_have_text("1")
    await expect(page.locator("#sessions tr")).to_have_count(1)
    await server.create_session("bob")
    await expect(page.locator("#m-sessions")).to_have_text("2")
    await expect(page.locator("#m-today")).to_have_text("2")
    await expect(page.locator('#kinds tr[data-kind="voice"] td').nth(1)).to_have_text("2")
    await expect(page.locator("#forbidden")).to_be_hidden()


async def test_an_operator_token_without_a_name_shows_its_user_id_not_guest(tab: Tab, server: ServerUnderTest) -> None:
    """`sessionhub token --user root --perm admin` (no --name) names no one: the top bar showed
    "Guest", which this browser is not; it shows the user id the token was minted for."""
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#dashboard")).to_be_visible()
    await expect(page.locator("#identity-name")).to_have_text("root")
    await page.locator("#identity-name").click()
    await expect(page.locator("#identity-panel")).to_contain_text("Signed in. Id: root")


async def test_a_non_admin_gets_the_403_page(tab: Tab, server: ServerUnderTest) -> None:
    user = server.token("alice", perms=(Permission.READ_ALL, Permission.UPDATE))
    await tab.use_token(user)
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden h1")).to_have_text("403 — Forbidden")
    await expect(page.locator("#dashboard")).to_be_hidden()
    await expect(page.locator("#m-sessions")).to_have_text("")


async def test_a_refused_dashboard_stops_asking(tab: Tab, server: ServerUnderTest) -> None:
    """A non-admin's /admin asked again every 2 s for as long as it stayed open: two refusals and
    two console errors each time."""
    asked: list[str] = []
    tab.page.on("request", lambda request: asked.append(request.url) if "/admin/metrics" in request.url else None)
    await tab.page.clock.install()  # the page's timers, moved by the test
    await tab.use_token(server.token("alice", perms=(Permission.READ_ALL, Permission.UPDATE)))
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden")).to_be_visible()
    await page.clock.run_for(10_000)  # five refreshes' worth
    await expect(page.locator("#forbidden")).to_be_visible()
    assert len(asked) == 1, asked


async def test_a_screen_reader_hears_a_refresh_fail_and_come_back_not_every_new_time(
    tab: Tab, server: ServerUnderTest
) -> None:
    """The time a refresh writes was a status region: a screen reader said "updated 14:58:27",
    then ":29", ":31", every 2 s for as long as the page stayed open, over every other message
    (audit "a11ykeys"). Now it hears a refresh failing, once, and working again, once."""
    await listen_to_live_regions(tab.page)
    await tab.page.clock.install()  # the page's timers, moved by the test
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#refreshed")).to_contain_text("updated")
    for _ in range(3):
        await page.clock.run_for(2_000)  # a refresh's worth each
    assert await live_texts(page, "refreshed") == []
    assert await live_texts(page, "refresh-said") == []

    async def away(route: Any) -> None:
        await route.fulfill(status=503, json={"error": "unavailable", "message": "Redis is away"})

    await page.route("**/admin/metrics", away)
    for _ in range(3):
        await page.clock.run_for(2_000)
    await expect(page.locator("#refreshed")).to_contain_text("refresh failed")
    await page.unroute("**/admin/metrics")
    for _ in range(2):
        await page.clock.run_for(2_000)
    await expect(page.locator("#refreshed")).to_contain_text("updated")
    said = await live_texts(page, "refresh-said")
    assert len(said) == 2 and said[0].startswith("Refresh failed") and said[1].startswith("Refreshing again"), said


async def test_a_visitor_without_a_token_gets_the_403_page_and_can_paste_an_admin_token(
    tab: Tab, server: ServerUnderTest
) -> None:
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden")).to_be_visible()
    await page.fill("#token-input", admin_token(server))
    await page.click("#token-form button")
    await expect(page.locator("#dashboard")).to_be_visible()
    await expect(page.locator("#m-sessions")).to_have_text("0")


@pytest.mark.parametrize("width", [390, 1280])
async def test_a_token_pasted_and_entered_puts_the_keyboard_on_the_dashboards_heading(
    tab: Tab, server: ServerUnderTest, width: int
) -> None:
    """Signed in with Enter in the token field, the dashboard appeared with focus on nothing: the
    next Tab started from the top of the page, and a screen reader said nothing of what opened."""
    page = tab.page
    await page.set_viewport_size({"width": width, "height": 800})
    await tab.open("/admin")
    field = page.locator("#token-input")
    await field.fill(admin_token(server))
    await field.press("Enter")
    heading = page.locator("#dashboard-title")
    await expect(page.locator("#dashboard")).to_be_visible()
    await expect(heading).to_be_focused()
    await expect(heading).to_have_text("Admin dashboard")
    await page.reload()  # an ordinary load of the dashboard takes no focus of its own
    await expect(page.locator("#dashboard")).to_be_visible()
    await expect(page.locator("#m-sessions")).to_have_text("0")
    await expect(heading).not_to_be_focused()


async def test_exporting_orphans_downloads_a_file_with_exactly_the_orphans(
    tab: Tab, server: ServerUnderTest, tmp_path: Path
) -> None:
    orphans = {await server.create_session("alice"), await server.create_session("bob")}
    server.services.clock.shift_ms = 100 * DAY_MS
    fresh = await server.create_session("carol")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#m-orphaned")).to_have_text("2")
    async with page.expect_download() as download_info:
        await page.click("#export-orphans")
    download = await download_info.value
    assert download.suggested_filename == "sessionhub-orphans.jsonl"
    target = tmp_path / "orphans.jsonl"
    await download.save_as(target)
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[0]["total"] == 2
    assert {line["session_id"] for line in lines[1:]} == orphans
    assert fresh not in {line["session_id"] for line in lines[1:]}
    await expect(page.locator("#bulk-status")).to_have_text("Exported 2 session(s) (orphans).")


async def test_filter_open_detail_and_delete_with_confirmation(tab: Tab, server: ServerUnderTest) -> None:
    await server.create_session("alice", name="keep me")
    doomed = await server.create_session("bob", name="<b>doomed</b>")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#sessions tr")).to_have_count(2)
    await page.fill("#f-owner", "bob")
    await page.click("#filters button[type=submit]")
    await expect(page.locator("#sessions tr")).to_have_count(1)
    await page.click(f'#sessions tr[data-id="{doomed}"]')
    await expect(page.locator("#detail-id")).to_have_text(doomed)
    await expect(page.locator("#detail-json")).to_contain_text('"name": "<b>doomed</b>"')  # shown as text
    await expect(page.locator("#delete-button")).to_be_disabled()
    await page.fill("#delete-confirm", doomed[:-1])
    await expect(page.locator("#delete-button")).to_be_disabled()
    await page.fill("#delete-confirm", doomed)
    await page.click("#delete-button")
    await expect(page.locator("#detail-notice")).to_have_text(f"Deleted {doomed}.")
    await expect(page.locator("#sessions tr")).to_have_count(0)
    await expect(page.locator("#m-sessions")).to_have_text("1")
    await expect(page.locator("#audit li").first).to_contain_text("delete_session")
    assert await server.services.sessions.meta(doomed) is None


async def test_a_delete_whose_answer_was_lost_says_so_and_pressed_again_is_done(
    tab: Tab, server: ServerUnderTest
) -> None:
    """The session was deleted, its answer lost: the page said "The server cannot be reached.",
    and pressed again, "no such session", the row still listed (audit lostcreates)."""
    doomed = await server.create_session("bob", name="doomed")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await page.click(f'#sessions tr[data-id="{doomed}"]')
    await page.fill("#delete-confirm", doomed)
    seen = await lose_answers(page, f"**/admin/sessions/{doomed}", method="DELETE")
    await page.click("#delete-button")
    notice = page.locator("#detail-notice")
    await expect(notice).to_have_text(
        f"No answer from the server, so {doomed} may have been deleted: press Delete again, which is safe."
    )
    assert await server.services.sessions.meta(doomed) is None  # it was
    await page.click("#delete-button")
    await expect(notice).to_have_text(f"Deleted {doomed} (it was gone already).")
    await expect(page.locator("#sessions tr")).to_have_count(0)
    assert len(seen.keys) == 2
    tab.errors.clear()  # the lost answer is a console error by design


async def test_an_orphan_delete_and_a_recalculate_whose_answers_were_lost_say_they_may_have_run(
    tab: Tab, server: ServerUnderTest
) -> None:
    """The server deleted the orphans (or recalculated), the answer was lost: the page said "The
    server cannot be reached.", as if nothing was done (audit verify42b)."""
    await server.create_session("alice")
    await server.create_session("bob")
    server.services.clock.shift_ms = 100 * DAY_MS
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#m-orphaned")).to_have_text("2")
    await page.fill("#orphan-days", "1")
    await page.locator("#orphans-form [type=submit]").first.click()
    await expect(page.locator("#orphans-confirm")).to_have_text("Delete 2 orphan(s)")
    status = page.locator("#bulk-status")
    deleted = await lose_answers(page, "**/admin/orphans/delete")
    await page.locator("#orphans-confirm").click()
    await expect(status).to_have_text(
        "No answer from the server, so the orphans may have been deleted: count them again to see."
    )
    assert len(deleted.keys) == 1
    await expect(page.locator("#m-orphaned")).to_have_text("0")  # read again: they were

    recalculated = await lose_answers(page, "**/admin/recalculate")
    await page.locator("#recalculate").click()
    await expect(status).to_have_text(
        "No answer from the server, so it may have run: pressing Recalculate again is harmless."
    )
    assert len(recalculated.keys) == 1
    tab.errors.clear()  # the lost answers are console errors by design


async def test_sort_by_remix_count_and_see_the_remix_tree(tab: Tab, server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession(base_url=server.url) as http:
        root = await new_pattern(http)
        await server.create_session("alice")
        children = []
        for _ in range(2):
            async with http.post(f"/api/sessions/{root}/remix", json={}) as response:
                children.append(str((await response.json())["id"]))
        async with http.post(f"/api/sessions/{children[0]}/remix", json={}) as response:
            grandchild = str((await response.json())["id"])
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#sessions tr")).to_have_count(5)
    await page.select_option("#f-sort", "remixes")
    await page.click("#filters button[type=submit]")
    await expect(page.locator("#sessions tr").first).to_have_attribute("data-id", root)
    await expect(page.locator("#sessions tr").nth(1)).to_have_attribute("data-id", children[0])
    await page.click(f'#sessions tr[data-id="{root}"]')
    await expect(page.locator("#detail-id")).to_have_text(root)
    tree = page.locator("#detail-tree")
    await expect(tree.locator(":scope > li")).to_have_count(2)
    await expect(tree.locator(f':scope > li[data-id="{children[0]}"] li[data-id="{grandchild}"]')).to_have_count(1)
    await expect(page.locator("#detail-tree-empty")).to_be_hidden()
    await tree.locator(f'li[data-id="{grandchild}"] a').click()
    await expect(page.locator("#detail-id")).to_have_text(grandchild)
    await expect(page.locator("#detail-lineage")).to_contain_text(f"remixed from {children[0][:8]} ← {root[:8]}")
    await expect(page.locator("#detail-tree-empty")).to_be_visible()


async def test_the_nodes_table_shows_each_nodes_clients_and_subscriptions(tab: Tab, server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    try:
        await client.connect()
        assert (await client.call("subscribe_on_session", {"session_id": session_id}))["ok"] is True
        await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
        page = await tab.open("/admin")
        row = page.locator("#nodes tr")
        await expect(row).to_have_count(1)
        await expect(row.locator('[data-field="clients"]')).to_have_text("1")
        await expect(row.locator('[data-field="subscriptions"]')).to_have_text("1")
        await expect(row.locator('[data-field="bus"]')).to_have_text("live")
        await expect(page.locator("#nodes-none")).to_be_hidden()
        await client.close()  # the page polls: the figures follow
        await expect(row.locator('[data-field="clients"]')).to_have_text("0")
        await expect(row.locator('[data-field="subscriptions"]')).to_have_text("0")
    finally:
        await client.close()


@pytest.mark.parametrize("width", [390, 1280])
async def test_the_nodes_table_shows_each_nodes_address_and_the_dead_node_it_replaced(
    tab: Tab, server: ServerUnderTest, width: int
) -> None:
    """A node restarted on its address names the dead process it replaced, on its own row: no row
    "down" of its own (audit "multinode": 8 dead rows beside 3 serving, none with an address)."""
    port = int(server.url.rsplit(":", 1)[1])
    heartbeat = server.app[NODES_KEY]
    await heartbeat.listening_on("127.0.0.1", port)
    assert heartbeat.listening_since_ms is not None
    dead = f"{heartbeat.node_id.split(':', 1)[0]}:4242:abcdef"
    beat = {"bus_live": True, "ts": heartbeat.listening_since_ms - 5_000, "address": f"127.0.0.1:{port}"}
    await server.services.redis.hset(server.services.keys.admin_nodes(), dead, json.dumps(beat))
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = tab.page
    await page.set_viewport_size({"width": width, "height": 800})
    await tab.open("/admin")
    row = page.locator("#nodes tr")
    await expect(row).to_have_count(1)
    await expect(row.locator('[data-field="address"]')).to_have_text(f"127.0.0.1:{port}")
    await expect(row.locator('[data-field="bus"]')).to_have_text("live")
    await expect(row.locator(".admin-node-replaces")).to_have_text(f"restarted: replaces {dead}")
    await expect(page.locator("#alerts li[data-alert=bus_down]")).to_have_count(0)
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


async def test_a_keyboard_opens_a_sessions_detail(tab: Tab, server: ServerUnderTest) -> None:
    """The rows opened their detail on a click only: an operator on a keyboard could not reach a
    session's detail, nor delete it."""
    session_id = await server.create_session("alice", name="by keyboard")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    row = page.locator(f'#sessions tr[data-id="{session_id}"]')
    await expect(row).to_have_count(1)
    await page.locator("#f-owner").focus()
    for _ in range(30):  # Tab until the row's own control has the focus (bounded)
        await page.keyboard.press("Tab")
        if await row.locator(".row-open").evaluate("node => node === document.activeElement"):
            break
    await expect(row.locator(".row-open")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#detail-id")).to_have_text(session_id)
    await expect(page.locator("#detail-title")).to_be_focused()


async def test_a_filter_that_cannot_match_says_why_in_words_and_shows_no_old_rows(
    tab: Tab, server: ServerUnderTest
) -> None:
    await server.create_session("alice")
    await server.create_session("bob")
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    rows = page.locator("#sessions tr")
    error = page.locator("#sessions-error")
    owner = page.locator("#f-owner")
    await expect(rows).to_have_count(2)

    await owner.fill("bob smith")
    await page.click("#filters button[type=submit]")
    await expect(error).to_have_text(
        'Owner "bob smith" is not a user id: user ids have only letters, digits and . _ : @ - (no spaces).'
    )
    await expect(rows).to_have_count(0)  # not the unfiltered rows, as if they were bob smith's
    await expect(page.locator("#sessions-empty")).to_be_hidden()
    await expect(owner).to_have_attribute("aria-invalid", "true")
    await owner.fill("bob")
    await page.click("#filters button[type=submit]")
    await expect(rows).to_have_count(1)
    await expect(error).to_be_hidden()
    await expect(owner).to_have_attribute("aria-invalid", "false")

    await page.fill("#f-from", "2024-05-02")
    await page.fill("#f-to", "2024-05-01")
    await page.click("#filters button[type=submit]")
    await expect(error).to_have_text("“Created from” is after “to”: pick a start on or before the end.")
    await expect(rows).to_have_count(0)
    await page.fill("#f-to", "")

    await page.context.set_offline(True)  # a failed list shows no rows either
    await page.click("#page-first")
    await expect(error).to_have_text("The server cannot be reached.")
    await expect(rows).to_have_count(0)


def test_the_pages_owner_rule_is_the_servers() -> None:
    """admin.js checks an owner with a copy of the server's user id rule: the two accept the same."""
    source = (Path(__file__).resolve().parents[2] / "web" / "js" / "admin.js").read_text(encoding="utf-8")
    found = re.search(r"^const USER_ID = /(.+)/;$", source, re.MULTILINE)
    assert found, "admin.js no longer has its USER_ID rule"
    page_rule, server_rule = re.compile(found[1]), re.compile(USER_ID_PATTERN)
    probes = [chr(c) for c in range(32, 127)] + ["a" * 128, "a" * 129, "", "é", "bob smith"]
    assert [bool(page_rule.match(p)) for p in probes] == [bool(server_rule.match(p)) for p in probes]


async def test_a_grant_shows_the_dashboard_at_once_and_a_revoke_closes_it(tab: Tab, server: ServerUnderTest) -> None:
    """`sessionhub admin grant` reached the person's page only when its token ran out (an hour of
    "403 — Forbidden", reloads or not), and `revoke` left an open dashboard its delete and export
    rights for as long (audit "operatorday"). The refused page asks its refresh cookie for a new
    token once; the admin routes read a device token's grant as it stands now."""
    page = await tab.open("/")
    await page.locator("#new-session").click()  # a first visit: the person becomes a guest, a device
    await page.wait_for_url(re.compile("/session/"))
    # Read once the page has it: a page just navigated to may not have said whose it is yet.
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
    user_id = str(await page.locator("#identity").get_attribute("data-user-id"))
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden h1")).to_have_text("403 — Forbidden")

    await server.services.identities.set_admin(user_id, True)
    page = await tab.open("/admin")
    await expect(page.locator("#dashboard")).to_be_visible()
    await expect(page.locator("#m-sessions")).to_have_text("1")

    await server.services.identities.set_admin(user_id, False)
    await expect(page.locator("#forbidden")).to_be_visible()  # at the dashboard's next refresh
    await expect(page.locator("#dashboard")).to_be_hidden()
    # Told what happened, not asked for "a token with the admin permission" (audit "operator").
    await expect(page.locator("#forbidden h1")).to_have_text("Admin permission withdrawn")
    await expect(page.locator("#forbidden-message")).to_contain_text("An operator has withdrawn the admin permission")


async def test_a_pasted_token_whose_admin_is_withdrawn_says_withdrawn_not_sign_in(
    tab: Tab, server: ServerUnderTest
) -> None:
    """A device's admin token pasted on /admin (the page cannot renew it), then `sessionhub admin
    revoke`: once the node's revocation poll had the withdrawal, every route refused the token
    `401` before the admin check could say `403 withdrawn`, and the page flipped to "Sign in"
    (audit "multinode"). The `401` says `reason: "withdrawn"`, and the page says so."""
    user = "ops-ann"
    await server.services.identities.set_admin(user, True)
    await tab.page.clock.install()  # the dashboard's refresh runs when the test says
    await tab.use_token(server.token(user, perms=(Permission.ADMIN,), ttl_s=LONG_TTL_S, fam="d1ce"), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#dashboard")).to_be_visible()

    await server.services.identities.set_admin(user, False)
    await polled_withdrawal(server, user)  # the next refresh is refused 401, not 403
    await page.clock.run_for(REFRESH_MS)
    await expect(page.locator("#dashboard")).to_be_hidden()
    await expect(page.locator("#forbidden h1")).to_have_text("Admin permission withdrawn")
    await expect(page.locator("#forbidden-message")).to_contain_text("An operator has withdrawn the admin permission")
    await expect(page).to_have_title("Admin permission withdrawn · sessionhub")


async def test_a_device_page_whose_admin_is_withdrawn_after_the_poll_says_withdrawn(
    tab: Tab, server: ServerUnderTest
) -> None:
    """The same, signed in through this browser's refresh cookie: the `401` makes the page ask the
    cookie for a new token, which no longer says admin and is refused `403` "required"; the page
    had shown the dashboard, so it says the permission was withdrawn, not "403 — Forbidden"."""
    page = await tab.open("/")
    await page.locator("#new-session").click()  # a guest, a device, a refresh cookie
    await page.wait_for_url(re.compile("/session/"))
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
    user_id = str(await page.locator("#identity").get_attribute("data-user-id"))
    await server.services.identities.set_admin(user_id, True)
    await page.clock.install()
    page = await tab.open("/admin")  # refused once, it asks the refresh cookie: an admin token
    await expect(page.locator("#dashboard")).to_be_visible()

    await server.services.identities.set_admin(user_id, False)
    await polled_withdrawal(server, user_id)
    await page.clock.run_for(REFRESH_MS)
    await expect(page.locator("#forbidden h1")).to_have_text("Admin permission withdrawn")
    # The cookie's new token, without admin: asked after the refusal, which may be said first (the
    # admin token's own `401 withdrawn`); a loaded CI run looked before it was stored.
    for _ in range(200):
        if await page.evaluate(STORED_ADMIN) is False:
            break
        await page.clock.run_for(100)
        await asyncio.sleep(0.05)
    assert await page.evaluate(STORED_ADMIN) is False


async def test_a_refused_admin_page_keeps_a_token_not_from_the_refresh_cookie(
    tab: Tab, server: ServerUnderTest
) -> None:
    """A browser that was a guest, then signed in through a bot's link (a token with no device
    behind it): its refused /admin asked the refresh cookie for a token, and the cookie's older
    guest became the browser's identity on every page, without a word (audit "verify39b")."""
    page = await tab.open("/")
    await page.locator("#new-session").click()  # a guest, a device, a refresh cookie
    await page.wait_for_url(re.compile("/session/"))
    record = json.dumps({"token": server.token("bob"), "expires_at": 2_000_000_000, "guest": False})
    await page.evaluate(f"localStorage.setItem('sessionhub.token', {json.dumps(record)})")  # the bot's link
    page = await tab.open("/admin")
    await expect(page.locator("#forbidden h1")).to_have_text("403 — Forbidden")
    who = await page.evaluate("async () => (await import('/static/js/client.js')).currentUserId()")
    assert who == "bob", who  # still the bot link's identity, not the cookie's older guest


async def test_a_page_open_when_the_admin_is_withdrawn_connects_again_without_it(
    tab: Tab, server: ServerUnderTest, clients: list[Client]
) -> None:
    """A revoke closes the connections of the user's earlier admin tokens (`permissions_withdrawn`,
    then the server's disconnect, after which socket.io-client does not reconnect by itself): the
    page connects again with the token its refresh cookie gives now, and stays live."""
    page = await tab.open("/")
    await page.locator("#new-session").click()
    await page.wait_for_url(re.compile("/session/"))
    await expect(page.locator("#identity")).to_have_attribute("data-user-id", re.compile("^guest-"))
    user_id = str(await page.locator("#identity").get_attribute("data-user-id"))
    session_path = page.url.removeprefix(server.url)
    await server.services.identities.set_admin(user_id, True)
    page = await tab.open("/admin")  # refused once, it asks the refresh cookie: an admin token
    await expect(page.locator("#dashboard")).to_be_visible()
    page = await tab.open(session_path)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert await page.evaluate(STORED_ADMIN) is True

    await server.services.identities.set_admin(user_id, False)
    await page.wait_for_function(f"() => ({STORED_ADMIN})() === false", timeout=15_000)
    await expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    # Live on the new connection: a change made elsewhere shows.
    owner = Client(server.url, server.token(user_id))
    clients.append(owner)
    await owner.connect()
    ack = await owner.call("session_done", {"session_id": session_path.rsplit("/", 1)[1]})
    assert ack["ok"], ack
    await expect(page.locator("#status-pictogram")).to_have_attribute("data-status", "closed")


# Whether the page's stored access token says admin (its payload read, not verified).
STORED_ADMIN = """() => {
  const record = JSON.parse(localStorage.getItem("sessionhub.token") || "null");
  if (!record) return null;
  const part = record.token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  return (JSON.parse(atob(part)).perms || []).includes("admin");
}"""


async def test_the_orphans_days_are_the_servers_and_count_as_the_card_does(
    browser: Any, redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    """With SESSIONHUB_ADMIN_ORPHAN_DAYS=30 the Orphaned card counted 30-day orphans while the
    deletion's days field said 90: its dry run counted others (audit "operator")."""
    from tests.browser import new_tab
    from tests.conftest import start_server

    srv = await start_server(redis_process.url, tmp_path / "node", admin_orphan_days=30)
    try:
        await srv.create_session("alice")
        srv.services.clock.shift_ms = 40 * DAY_MS  # an orphan at 30 days, not at 90
        tab = await new_tab(browser, srv)
        try:
            await tab.use_token(admin_token(srv), ttl_s=LONG_TTL_S)
            page = await tab.open("/admin")
            await expect(page.locator("#m-orphaned")).to_have_text("1")
            await expect(page.locator("#orphan-days")).to_have_value("30")
            await page.locator("#orphans-form button[type=submit]").click()
            await expect(page.locator("#bulk-status")).to_have_text("1 orphan(s) not accessed for 30 days.")
            # Typed by the operator, the field is theirs: a refresh does not put 30 back.
            await page.locator("#orphan-days").fill("120")
            await srv.create_session("bob")  # the dashboard refreshes
            await expect(page.locator("#m-sessions")).to_have_text("2")
            await expect(page.locator("#orphan-days")).to_have_value("120")
        finally:
            await tab.page.context.close()
    finally:
        srv.services.clock.shift_ms = 0
        await srv.stop()


async def test_a_recalculate_that_measured_sizes_anew_says_so(tab: Tab, server: ServerUnderTest) -> None:
    """Totals measured anew from 1.7 MB to 3.0 MB were said "no drift": read as nothing changed
    (audit "adminphone"). The page says what the sizes went from and to."""
    session_id = await server.create_session("alice")
    await server.services.sessions.touch(session_id, "voice", created_ms=0, force=True)
    await server.services.redis.hset(server.services.keys.session(session_id), "grown", "x" * 20_000)  # unmeasured
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await page.locator("#recalculate").click()
    status = page.locator("#bulk-status")
    await expect(status).to_contain_text("Recalculated ")
    await expect(status).to_contain_text(re.compile(r"sizes measured anew: Redis \S+ \S+ → \S+ \S+"))
    await expect(status).not_to_contain_text("no drift")


async def test_figures_a_refresh_could_not_renew_are_said_stale_where_they_are_read(
    tab: Tab, server: ServerUnderTest
) -> None:
    """With Redis away, a phone showed the last figures as current: the top bar's "refresh failed"
    was scrolled out of sight (audit "adminphone"). A note above the cards, kept in sight while
    scrolling, says since when they are, and goes once a refresh works."""
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.page.clock.install()
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#m-sessions")).not_to_be_empty()
    note = page.locator("#stale-note")
    await expect(note).to_be_hidden()

    async def away(route: Any) -> None:
        await route.fulfill(status=503, json={"error": "unavailable", "message": "Redis is away"})

    await page.route("**/admin/metrics", away)
    await page.clock.run_for(2_000)
    await expect(note).to_be_visible()
    await expect(note).to_contain_text("These figures are from")
    await expect(note).to_contain_text("Redis is away")
    await expect(page.locator("#cards")).to_have_attribute("data-stale", "true")
    await page.locator("#sessions").scroll_into_view_if_needed()  # far down the page
    await expect(note).to_be_in_viewport()
    await page.unroute("**/admin/metrics")
    await page.clock.run_for(2_000)
    await expect(note).to_be_hidden()
    await expect(page.locator("#cards")).not_to_have_attribute("data-stale", "true")


async def test_a_table_wider_than_a_phone_says_it_scrolls_sideways(tab: Tab, server: ServerUnderTest) -> None:
    """On a phone the Sessions table showed 3 of its 10 columns, and nothing said the rest were a
    swipe away (audit "adminphone"); on a desktop, where it fits, nothing is said."""
    await server.create_session("alice")
    await tab.page.set_viewport_size({"width": 390, "height": 844})
    await tab.use_token(admin_token(server), ttl_s=LONG_TTL_S)
    page = await tab.open("/admin")
    await expect(page.locator("#sessions tr")).to_have_count(1)
    region = page.get_by_role("region", name="Sessions table")
    hint = page.locator("#sessions-title-hint")
    await expect(hint).to_be_visible()
    await expect(hint).to_have_text("Scroll the table sideways for its other columns.")
    await expect(region).to_have_accessible_description("Scroll the table sideways for its other columns.")
    await page.set_viewport_size({"width": 1600, "height": 900})
    await expect(hint).to_be_hidden()
