"""Hostile and careless clients: every bad report is refused, stores nothing, and the connection
stays usable; foreign histories are out of reach."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from auth.claims import Permission
from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, Listener, auth, listener
from tests.listening.test_report import sessions

BAD_REPORTS: list[tuple[str, dict[str, Any]]] = [
    ("unknown status", {"item_id": "b", "status": "rewinding"}),
    ("missing item id", {"status": "playing"}),
    ("empty item id", {"item_id": "", "status": "playing"}),
    ("item id with a control character", {"item_id": "b\x00c", "status": "playing"}),
    ("huge item id", {"item_id": "b" * 201, "status": "playing"}),
    ("item id of the wrong type", {"item_id": 7, "status": "playing"}),
    ("negative position", {"item_id": "b", "status": "playing", "position_s": -1}),
    ("absurd position", {"item_id": "b", "status": "playing", "position_s": 1e12}),
    ("position as text", {"item_id": "b", "status": "playing", "position_s": "12"}),
    ("position as a boolean", {"item_id": "b", "status": "playing", "position_s": True}),
    ("device id with spaces", {"item_id": "b", "status": "playing", "device_id": "my phone"}),
    ("unknown field", {"item_id": "b", "status": "playing", "user_id": "bob"}),
    ("unknown metadata field", {"item_id": "b", "status": "playing", "item": {"title": "t", "html": "<b>"}}),
    ("huge title", {"item_id": "b", "status": "playing", "item": {"title": "t" * 301}}),
    ("title with a newline", {"item_id": "b", "status": "playing", "item": {"title": "a\nb"}}),
    # Shown as "x3pm.live" on /history, and kept so in the exports (audit exports).
    ("title with a bidi override", {"item_id": "b", "status": "playing", "item": {"title": "x\u202eevil.mp3"}}),
    ("artist with an isolate", {"item_id": "b", "status": "playing", "item": {"artist": "iso\u2066x"}}),
    ("album with a line separator", {"item_id": "b", "status": "playing", "item": {"album": "a\u2028b"}}),
    ("item id with a bidi override", {"item_id": "b\u202ec", "status": "playing"}),
    ("script artwork", {"item_id": "b", "status": "playing", "item": {"artwork_url": "javascript:alert(1)"}}),
    # "/..." is this site's: a second slash or a backslash makes it another host's (protocol-relative).
    ("off-site artwork", {"item_id": "b", "status": "playing", "item": {"artwork_url": "//evil.example/x.png"}}),
    ("backslash artwork", {"item_id": "b", "status": "playing", "item": {"artwork_url": "/\\evil.example/x.png"}}),
    ("negative item length", {"item_id": "b", "status": "playing", "item": {"duration_s": -5}}),
    # A blank row on /history, its Delete named "Delete session of    " (audit "listenhonest" F8).
    ("item id of spaces only", {"item_id": "   ", "status": "playing"}),
    # Unseen, each made another item than the one it reads as (audit "listenhonest").
    ("item id after a byte-order mark", {"item_id": "\ufeffbook-1", "status": "playing"}),
    ("item id with a zero-width space", {"item_id": "book\u200b-1", "status": "playing"}),
    ("item id with a word joiner", {"item_id": "book-1\u2060", "status": "playing"}),
    ("item id with a leading space", {"item_id": " book-1", "status": "playing"}),
    ("item id with a trailing space", {"item_id": "book-1 ", "status": "playing"}),
    ("item id of ideographic spaces only", {"item_id": "\u3000\u3000", "status": "playing"}),
]


NEW_ID_WORDS = (
    "one line of plain text: no control characters, line breaks, bidi controls or invisible characters "
    "(U+FEFF, U+200B, U+2060), and no space at its start or end"
)
# What a person is told of a value of the wrong form: its rule in words, not the regular
# expression (audit "listenhonest" F7).
WORDED = {
    "device id with spaces": "device_id: 1 to 64 letters, digits or _ . : - (no spaces)",
    "title with a newline": "item.title: one line of plain text: no control characters, line breaks or bidi controls",
    "item id with a bidi override": "item_id: " + NEW_ID_WORDS,
    "off-site artwork": "item.artwork_url: an http(s) URL, or a path of this site, with no spaces or backslashes",
    "item id of spaces only": "item_id: " + NEW_ID_WORDS,
    "item id of ideographic spaces only": "item_id: Value error, needs a character other than spaces",
    "item id after a byte-order mark": "item_id: " + NEW_ID_WORDS,
}


async def log_offset(server: ServerUnderTest, history_id: str) -> int:
    return (await server.services.log.position(history_id)).offset


@pytest.mark.parametrize("case, fields", BAD_REPORTS, ids=[c for c, _ in BAD_REPORTS])
async def test_bad_reports_are_refused_and_change_nothing(
    lserver: ServerUnderTest, clients: list[Client], case: str, fields: dict[str, Any]
) -> None:
    alice = await listener(lserver, clients)
    before = await log_offset(lserver, alice.history_id)
    ack = await alice.client.call("listening_report", {"session_id": alice.history_id, **fields})
    assert ack["ok"] is False and ack["error"] == "invalid_payload", ack
    assert "pattern" not in ack["message"], ack
    if case in WORDED:
        assert ack["message"] == WORDED[case], ack
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{lserver.url}/api/listening/report", json=fields, headers=auth(lserver)) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_payload"
    assert await log_offset(lserver, alice.history_id) == before
    assert await sessions(lserver) == []
    assert (await alice.report("b", "playing"))["action"] == "started"  # still usable


async def test_reports_to_foreign_or_missing_histories(lserver: ServerUnderTest, clients: list[Client]) -> None:
    alice = await listener(lserver, clients)
    mallory = await listener(lserver, clients, "mallory")
    forged = Listener(client=mallory.client, history_id=alice.history_id)
    assert (await forged.report("b", "playing"))["error"] == "forbidden"
    missing = Listener(client=mallory.client, history_id="00000000-0000-4000-8000-000000000000")
    assert (await missing.report("b", "playing"))["error"] == "session_not_found"
    voice_id = await lserver.create_session("mallory")  # a session of another kind is no history
    assert (await Listener(client=mallory.client, history_id=voice_id).report("b", "playing"))[
        "error"
    ] == "session_not_found"
    assert (await Listener(client=mallory.client, history_id="not-a-uuid").report("b", "playing"))[
        "error"
    ] == "invalid_session_id"
    now = lserver.services.clock.now_ms()  # an upload from 1970 would be refused as a payload first
    for event, extra in (
        ("listening_delete", {"id": "00000000-0000-4000-8000-000000000001"}),
        ("listening_clear", {"confirm": True}),
        (
            "listening_upload",
            {"item_id": "b", "device_id": "d", "client_id": "c", "started_at": now - 5000, "ended_at": now - 2000},
        ),
    ):
        ack = await mallory.client.call(event, {"session_id": alice.history_id, **extra})
        assert ack["error"] == "forbidden", (event, ack)
    assert (await mallory.client.call("subscribe_on_session", {"session_id": alice.history_id}))["error"] == "forbidden"
    assert await sessions(lserver) == []
    assert (await mallory.client.call("listening_history", {"user": "alice"}))["error"] == "invalid_payload"


async def test_read_all_may_watch_but_never_report(lserver: ServerUnderTest, clients: list[Client]) -> None:
    alice = await listener(lserver, clients)
    auditor = Client(lserver.url, lserver.token("auditor", perms=(Permission.READ_ALL, Permission.UPDATE)))
    clients.append(auditor)
    await auditor.connect()
    sub = await auditor.call("subscribe_on_session", {"session_id": alice.history_id})
    assert sub["ok"] is True
    ack = await auditor.call("listening_report", {"session_id": alice.history_id, "item_id": "b", "status": "playing"})
    assert ack["error"] == "forbidden"
    await alice.report("b", "playing")
    await auditor.wait_for(lambda: bool(auditor.named("listening_session")))
    reader = Client(lserver.url, lserver.token("reader", perms=(Permission.READ_OWN,)))
    clients.append(reader)
    await reader.connect()
    own = await reader.call("listening_history", {})
    ack = await reader.call("listening_report", {"session_id": own["session_id"], "item_id": "b", "status": "playing"})
    assert ack["error"] == "forbidden"  # reporting needs the update permission
    missing = {"session_id": "00000000-0000-4000-8000-000000000000", "item_id": "b", "status": "playing"}
    assert (await reader.call("listening_report", missing))["error"] == "session_not_found"  # checked first


@pytest.mark.parametrize("perms", [(Permission.UPDATE,), (Permission.CREATE, Permission.UPDATE), (Permission.CREATE,)])
async def test_a_token_that_may_not_read_its_history_neither_finds_nor_writes_it(
    lserver: ServerUnderTest, clients: list[Client], perms: tuple[Permission, ...]
) -> None:
    """Every route needs ``read_own`` (or ``read_all``), writes ``update`` too: the socket events
    as the HTTP routes. A token without a read permission neither makes nor finds a history there,
    and writes to its own history as nobody (refused, nothing stored)."""
    alice = await listener(lserver, clients)  # her history exists: found by id below
    blind = Client(lserver.url, lserver.token("alice", perms=perms))
    clients.append(blind)
    await blind.connect()
    assert (await blind.call("listening_history", {}))["error"] == "forbidden"
    before = await log_offset(lserver, alice.history_id)
    report = {"session_id": alice.history_id, "item_id": "b", "status": "playing"}
    assert (await blind.call("listening_report", report))["error"] == "forbidden"
    now = lserver.services.clock.now_ms()
    upload = {"item_id": "b", "device_id": "d", "client_id": "c1", "started_at": now - 60_000, "ended_at": now - 1000}
    assert (await blind.call("listening_upload", {"session_id": alice.history_id, **upload}))["error"] == "forbidden"
    clear = {"session_id": alice.history_id, "confirm": True}
    assert (await blind.call("listening_clear", clear))["error"] == "forbidden"
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {lserver.token('alice', perms=perms)}"}
        async with http.post(f"{lserver.url}/api/listening/report", json=report, headers=headers) as r:
            assert r.status == 403 and (await r.json())["error"] == "forbidden"
    assert await log_offset(lserver, alice.history_id) == before
    assert await sessions(lserver) == []
    nobody = Client(lserver.url, lserver.token("bob", perms=perms))
    clients.append(nobody)
    await nobody.connect()
    assert (await nobody.call("listening_history", {}))["error"] == "forbidden"
    assert await lserver.services.redis.get(lserver.services.keys.listening_history("bob")) is None  # none made


@pytest.mark.parametrize(
    "tz",
    [
        "Mars/Olympus_Mons",
        "../../etc/passwd",
        "",
        "Europe/Berlin\n",
        "UTC" * 30,
        "/usr/share/zoneinfo/UTC",
        "localtime",  # the server machine's own zone, never the listener's
        "posixrules",
    ],
)
async def test_time_zones_that_do_not_exist(reading_server: ServerUnderTest, tz: str) -> None:
    server = reading_server  # refused queries: the module's shared server
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/api/listening/stats", params={"tz": tz}, headers=auth(server)) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_payload"


@pytest.mark.parametrize(
    "query",
    [{"limit": "0"}, {"limit": "x"}, {"cursor": "nonsense"}, {"from": "-1"}, {"item_id": "a\x01b"}, {"days": "400"}],
)
async def test_bad_queries(reading_server: ServerUnderTest, query: dict[str, str]) -> None:
    server = reading_server  # refused queries: the module's shared server
    path = "/api/listening/stats" if "days" in query else "/api/listening/sessions"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}{path}", params=query, headers=auth(server)) as r:
            assert r.status == 400, await r.text()


async def test_http_needs_a_token_and_bounded_bodies(lserver: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{lserver.url}/api/listening/report", json={"item_id": "b", "status": "playing"}) as r:
            assert r.status == 401
        big = {"item_id": "b", "status": "playing", "item": {"title": "x" * 20000}}
        async with http.post(f"{lserver.url}/api/listening/report", json=big, headers=auth(lserver)) as r:
            assert r.status == 413
        async with http.post(f"{lserver.url}/api/listening/report", data="[1,2]", headers=auth(lserver)) as r:
            assert r.status == 400
        async with http.delete(f"{lserver.url}/api/listening/sessions/zzz", headers=auth(lserver)) as r:
            assert r.status == 400
    assert await sessions(lserver) == []


async def test_a_flood_is_coalesced_and_rate_limited(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    acks = [await alice.report("b", "playing") for _ in range(50)]
    assert [a["action"] for a in acks] == ["started"] + ["throttled"] * 49
    assert await log_offset(lserver, alice.history_id) == 2  # the history's creation and one start


@pytest.mark.parametrize("confirm", [1, 1.0], ids=["one", "one_point_zero"])
async def test_a_confirm_that_only_equals_true_clears_nothing(
    lserver: ServerUnderTest, clients: list[Client], confirm: float
) -> None:
    # pydantic matched Literal[True] by equality, strict mode or not: 1 and 1.0 wiped the history.
    alice = await listener(lserver, clients)
    assert (await alice.report("b", "playing"))["action"] == "started"
    ack = await alice.client.call("listening_clear", {"session_id": alice.history_id, "confirm": confirm})
    assert ack["ok"] is False and ack["error"] == "invalid_payload", ack
    async with aiohttp.ClientSession() as http:
        url = f"{lserver.url}/api/listening/clear"
        async with http.post(url, json={"confirm": confirm}, headers=auth(lserver)) as r:
            assert r.status == 400 and (await r.json())["error"] == "invalid_payload"
    assert len(await sessions(lserver)) == 1
