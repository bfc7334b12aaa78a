"""Delete all history sent again after its ack was lost (issue: retries of every write).

The first ``listening_clear`` deleted everything and its ack never reached the page (the
connection dropped); meanwhile the person's phone played on and stored a new session. The same
press sent again (the same ``request_id``, from the reconnected page or by HTTP) is that clear:
answered with the first one's ``removed`` and ``offset`` and ``repeated: true``, deleting nothing
played since. Without a ``request_id`` a clear is a new press and deletes whatever is there.
Real server, real redis-server, real Socket.IO clients.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.helpers import Client, ServerUnderTest
from tests.listening.support import FrozenClock, Listener, auth, listener
from tests.test_protocol_doc import PROTOCOL

HOUR = 3_600_000


def _upload(history_id: str, now: int, n: int) -> dict[str, Any]:
    return {
        "session_id": history_id,
        "item_id": f"book-{n}",
        "device_id": "phone",
        "client_id": f"offline-{n}",
        "started_at": now - (n + 2) * HOUR,
        "ended_at": now - (n + 1) * HOUR,
    }


def cleared(listener: Listener) -> list[Any]:
    return [data for name, data in listener.log_events() if name == "listening_cleared"]


async def _stored(server: ServerUnderTest, history_id: str) -> list[str]:
    records = await server.services.redis.hkeys(server.services.keys.listening_records(history_id))
    return sorted(str(r) for r in records)


async def test_a_clear_resent_after_its_ack_was_lost_deletes_nothing_played_since(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    now = clock.now_ms()
    page = await listener(lserver, clients)
    for n in range(2):
        assert (await page.client.call("listening_upload", _upload(page.history_id, now, n)))["ok"]
    phone = await listener(lserver, clients)  # another device of the same user, subscribed
    press = {"session_id": page.history_id, "confirm": True, "request_id": "clear-press-0001"}

    # The press goes out; the server clears; the page's link drops before the ack is read.
    await page.client.sio.emit("listening_clear", press)
    await phone.client.wait_for(lambda: any(n == "listening_cleared" for n, _ in phone.log_events()))
    await page.client.close()
    assert await _stored(lserver, page.history_id) == []

    # The phone plays on: a new session is stored after the clear.
    kept = await phone.client.call("listening_upload", _upload(page.history_id, now, 5))
    assert kept["ok"] and kept["action"] == "uploaded", kept

    # The page is back and sends the same press again: it is that clear, answered as it was.
    again = await listener(lserver, clients)
    resent = await again.client.call("listening_clear", press)
    assert resent["ok"] is True and resent["repeated"] is True, resent
    assert resent["removed"] == 2, resent
    assert await _stored(lserver, page.history_id) == [kept["listening"]["id"]]
    # Over HTTP too (the same request_id names the same press).
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            lserver.url + "/api/listening/clear",
            json={"confirm": True, "request_id": "clear-press-0001"},
            headers=auth(lserver),
        ) as answer,
    ):
        body = await answer.json()
    assert answer.status == 200 and body["repeated"] is True and body["removed"] == 2, body
    assert body["offset"] == resent["offset"]
    assert await _stored(lserver, page.history_id) == [kept["listening"]["id"]]
    # Another press (another id, or none) deletes whatever is there.
    fresh = await again.client.call(
        "listening_clear", {"session_id": page.history_id, "confirm": True, "request_id": "clear-press-0002"}
    )
    assert fresh["ok"] and fresh["repeated"] is False and fresh["removed"] == 1, fresh
    assert await _stored(lserver, page.history_id) == []
    # Both clears' upload ids are put aside together (the second merged into the first's).
    aside = lserver.services.keys.listening_cleared_clients(page.history_id)
    assert sorted(await lserver.services.redis.hkeys(aside)) == ["offline-0", "offline-1", "offline-5"]
    # The phone heard two clears, in order: the first press and this one; the resends added none.
    await phone.client.wait_for(lambda: [d["data"]["removed"] for d in cleared(phone)] == [2, 1])
    bare = await again.client.call("listening_clear", {"session_id": page.history_id, "confirm": True})
    assert bare["ok"] and bare["repeated"] is False and bare["removed"] == 0, bare


async def test_a_clear_request_id_is_the_callers_and_well_formed(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    alice = await listener(lserver, clients)
    await alice.client.call("listening_upload", _upload(alice.history_id, clock.now_ms(), 0))
    for bad in ("short", "has space in it", "x" * 65, 12345678):
        refused = await alice.client.call(
            "listening_clear", {"session_id": alice.history_id, "confirm": True, "request_id": bad}
        )
        assert refused["error"] == "invalid_payload", (bad, refused)
    assert len(await _stored(lserver, alice.history_id)) == 1
    # Someone else's press with the same id on alice's history is refused before it is looked up.
    mallory = await listener(lserver, clients, "mallory")
    press = {"session_id": alice.history_id, "confirm": True, "request_id": "clear-press-0009"}
    assert (await mallory.client.call("listening_clear", press))["error"] == "forbidden"
    cleared = await alice.client.call("listening_clear", press)
    assert cleared["ok"] and cleared["repeated"] is False and cleared["removed"] == 1, cleared
    # The stored answer expires: it has a TTL, as every press answer.
    keys = [k async for k in lserver.services.redis.scan_iter(match=f"*{{{alice.history_id}}}*request*")]
    assert len(keys) == 1 and 0 < await lserver.services.redis.pttl(keys[0]) <= 24 * 3600 * 1000


def test_protocol_says_a_resent_clear_is_repeated() -> None:
    doc = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    assert '`listening_clear` | `{"session_id", "confirm": true, "request_id"?' in doc
    assert '`"repeated": true`' in doc


async def test_an_upload_resent_after_a_clear_is_not_stored_again(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """The offline player's upload landed, its ack was lost; the person cleared the history (the
    session was in it); the player, back online, sends the upload again: that upload was made
    and cleared, so it is answered duplicate with nothing stored, not brought back."""
    now = clock.now_ms()
    page = await listener(lserver, clients)
    player = await listener(lserver, clients, subscribe=False)
    sent = _upload(page.history_id, now, 0)

    async def stored_once() -> None:
        await page.client.wait_for(lambda: any(n == "listening_session" for n, _ in page.log_events()))

    await player.client.sio.emit("listening_upload", sent)
    await stored_once()
    await player.client.close()
    cleared_now = await page.client.call(
        "listening_clear", {"session_id": page.history_id, "confirm": True, "request_id": "clear-after-upload"}
    )
    assert cleared_now["ok"] and cleared_now["removed"] == 1, cleared_now

    again = await listener(lserver, clients, subscribe=False)
    resent = await again.client.call("listening_upload", sent)
    assert resent["ok"] is True and resent["duplicate"] is True and resent["listening"] is None, resent
    assert resent["action"] == "duplicate" and resent["offset"] == 0, resent
    assert await _stored(lserver, page.history_id) == []
    # Over HTTP too.
    body = {k: v for k, v in sent.items() if k != "session_id"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(lserver.url + "/api/listening/upload", json=body, headers=auth(lserver)) as answer,
    ):
        replayed = await answer.json()
    assert answer.status == 200 and replayed["duplicate"] is True, replayed
    assert await _stored(lserver, page.history_id) == []

    # An upload the server never had before the clear is stored after it.
    fresh = await again.client.call("listening_upload", _upload(page.history_id, now, 1))
    assert fresh["ok"] and fresh["action"] == "uploaded", fresh
    # One deleted since (listening_delete) is not brought back either.
    gone = await page.client.call("listening_delete", {"session_id": page.history_id, "id": fresh["listening"]["id"]})
    assert gone["ok"], gone
    resent = await again.client.call("listening_upload", _upload(page.history_id, now, 1))
    assert resent["duplicate"] is True and resent["listening"] is None, resent
    assert await _stored(lserver, page.history_id) == []
    # The ids a clear put aside are kept a day, no longer, and go with the history.
    keys = lserver.services.keys
    aside = keys.listening_cleared_clients(page.history_id)
    assert 0 < await lserver.services.redis.pttl(aside) <= 24 * 3600 * 1000
    kind = lserver.services.kinds.get("listening")
    assert kind is not None and aside in kind.owned_keys(page.history_id)


async def test_clears_of_new_request_ids_keep_one_bounded_key_and_http_ones_count_as_writes(
    redis: Any, redis_process: Any, tmp_path: Any, clock: FrozenClock
) -> None:
    """Each press with a new request id kept its answer in a key of its own for a day: one guest
    clearing its empty history in a loop filled Redis until everybody's writes were refused, and
    HTTP clears were not counted as writes (audit "exhaust3"). The answers are one key per
    history, the newest 16, and an HTTP clear spends the per-user write budget."""
    from storage.listening.repository import CLEAR_REQUESTS_KEPT
    from tests.listening.support import start_on_clock

    server = await start_on_clock(redis_process.url, tmp_path, clock, listening_http_reports_per_min=30)
    made: list[Client] = []
    try:
        page = await listener(server, made)
        before = await redis.dbsize()
        for n in range(40):
            press = {"session_id": page.history_id, "confirm": True, "request_id": f"clear-press-{n:04d}"}
            assert (await page.client.call("listening_clear", press))["ok"]
        assert await redis.dbsize() - before <= 2  # the answers' key (and the upload ids put aside)
        answers = server.services.keys.listening_clear_requests(page.history_id)
        assert await redis.zcard(answers) == CLEAR_REQUESTS_KEPT
        assert 0 < await redis.pttl(answers) <= 24 * HOUR
        recent = {"session_id": page.history_id, "confirm": True, "request_id": "clear-press-0039"}
        again = await page.client.call("listening_clear", recent)
        assert again["ok"] and again["repeated"] is True, again

        async with aiohttp.ClientSession() as http:
            statuses = []
            for n in range(31):
                body = {"confirm": True, "request_id": f"http-press-{n:04d}"}
                url = f"{server.url}/api/listening/clear"
                async with http.post(url, json=body, headers=auth(server)) as answer:
                    statuses.append(answer.status)
        assert statuses[:30] == [200] * 30 and statuses[30] == 429, statuses
    finally:
        for client in made:
            await client.close()
        await server.stop()


async def test_a_press_answered_by_a_node_of_before_is_still_that_press(
    lserver: ServerUnderTest, clients: list[Client], clock: FrozenClock
) -> None:
    """In a rolling upgrade a press answered by a node that kept its answer in a key of its own,
    its ack lost, resent to this node: cleared again, deleting what was played since (audit
    "verify39b"). The old key is read (and expires a day after it was written)."""
    page = await listener(lserver, clients)
    redis, keys = lserver.services.redis, lserver.services.keys
    before = keys.listening_clear_request_before(page.history_id, "clear-press-old1")
    await redis.set(before, '{"offset":3,"removed":1}', px=24 * HOUR)  # as that node wrote it
    assert (await page.client.call("listening_upload", _upload(page.history_id, clock.now_ms(), 0)))["ok"]
    press = {"session_id": page.history_id, "confirm": True, "request_id": "clear-press-old1"}
    again = await page.client.call("listening_clear", press)
    assert again["ok"] and again["repeated"] is True and (again["offset"], again["removed"]) == (3, 1), again
    assert len(await _stored(lserver, page.history_id)) == 1  # played since: kept
