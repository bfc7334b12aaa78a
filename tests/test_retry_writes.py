"""Every client write sent again after its answer was lost (the connection dropped after the
server committed): the state changes once and the resend is answered sensibly (the same answer,
or a documented repeat), never a second change, nor an error a correct client gives up on.

These are the writes whose retry no other test covered (what every write's resend does is
PROTOCOL's "Sending a write again"; the rest have their tests: request_id presses in tests/voice/test_retry_jobs.py, clips'
submission_id in tests/streams/test_events.py, pattern ops in tests/patterns/test_edges.py,
Idempotency-Key creates in tests/test_idempotency.py, listening_clear in
tests/test_retry_listening_clear.py). The first try is emitted, seen committed by another of the
user's connections (or in Redis), and its socket closed before its ack is read; the resend comes
from a new connection of the same user, as a reconnected page sends it. Real server, real
redis-server, real Socket.IO clients and HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from tests.helpers import OWNER, WAIT_POLL_S, Client, ServerUnderTest
from tests.identity.support import Browser
from tests.streams.helpers import connect, create_stream, http
from tests.test_protocol_doc import PROTOCOL

Committed = Callable[[], Awaitable[bool]]
# A bound on the first try's commit, not a wait.
COMMIT_BOUND_S = 10.0


async def lost_ack(client: Client, event: str, payload: dict[str, Any], committed: Committed) -> None:
    """Send ``event`` on ``client``, wait until the server committed it, then drop the connection
    before its ack is read (the ack goes nowhere)."""
    await client.sio.emit(event, payload, callback=lambda *_: None)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + COMMIT_BOUND_S
    while not await committed():  # a predicate on Redis: polled, as Client.wait_for does
        assert loop.time() < deadline, f"{event} never committed"
        await asyncio.sleep(WAIT_POLL_S)
    await client.close()


async def record(server: ServerUnderTest, session_id: str) -> dict[str, Any]:
    status, body = await http(server, "GET", f"/api/streams/{session_id}")
    assert status == 200, body
    return dict(body["session"]) if "session" in body else dict(body)


async def blocked_users(server: ServerUnderTest, session_id: str) -> list[str]:
    status, body = await http(server, "GET", f"/api/streams/{session_id}/blocked")
    assert status == 200, body
    return list(body["blocked"])


async def test_a_stream_state_action_resent_is_invalid_state_naming_the_state_it_asked_for(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await create_stream(server)

    async def state_is(state: str) -> Committed:
        async def check() -> bool:
            return bool((await record(server, session_id))["state"] == state)

        return check

    for action, state in (("start", "active"), ("pause", "paused"), ("resume", "active"), ("end", "ended")):
        first = await connect(server, clients, "alice")
        await lost_ack(first, "stream_set_state", {"session_id": session_id, "action": action}, await state_is(state))
        again = await connect(server, clients, "alice")
        resent = await again.call("stream_set_state", {"session_id": session_id, "action": action})
        # Refused as a move from the state it made, naming that state: the client reads it as done.
        assert resent["ok"] is False and resent["error"] == "invalid_state" and resent["state"] == state, resent
    session = await record(server, session_id)
    assert [s["index"] for s in session["segments"]] == [1, 2], session
    assert all(s["ended_at"] for s in session["segments"])


async def test_moderation_and_clip_edits_resent_change_nothing_more(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id = await create_stream(server)
    owner = await connect(server, clients, "alice")
    assert (await owner.call("stream_set_state", {"session_id": session_id, "action": "start"}))["ok"]
    viewer = await connect(server, clients, "bob")
    clips = [(await viewer.call("clip_submit", {"session_id": session_id}))["clip"]]
    dashboard = await server.subscriber(clients, session_id)

    def logged(name: str) -> int:
        return len(dashboard.named(name))

    # clip_update: the same edit again is the same clip, one clipped.
    edit = {"session_id": session_id, "clip_id": clips[0]["clip_id"], "clipped": True, "note": "the play"}

    async def edited() -> bool:
        return logged("clip_updated") == 1

    await lost_ack(await connect(server, clients, "alice"), "clip_update", edit, edited)
    resent = await (await connect(server, clients, "alice")).call("clip_update", edit)
    assert resent["ok"] and resent["clip"]["clipped"] is True and resent["clip"]["note"] == "the play", resent
    session = await record(server, session_id)
    assert session["clipped_count"] == 1 and session["clip_count"] == 1, session

    # stream_block_viewer: blocked once, the resend says it changed nothing.
    block = {"session_id": session_id, "user_id": "bob"}

    async def blocked() -> bool:
        return await blocked_users(server, session_id) == ["bob"]

    await lost_ack(await connect(server, clients, "alice"), "stream_block_viewer", block, blocked)
    resent = await (await connect(server, clients, "alice")).call("stream_block_viewer", block)
    assert resent["ok"] and resent["blocked"] is True and resent["changed"] is False, resent
    assert await blocked_users(server, session_id) == ["bob"]
    await dashboard.wait_for(lambda: logged("viewer_blocked") == 1)

    # clip_clear_viewer: the resend removes nothing more.
    clear = {"session_id": session_id, "user_id": "bob"}

    async def cleared() -> bool:
        return logged("clips_cleared") == 1

    await lost_ack(await connect(server, clients, "alice"), "clip_clear_viewer", clear, cleared)
    resent = await (await connect(server, clients, "alice")).call("clip_clear_viewer", clear)
    assert resent["ok"] and resent["removed"] == 0, resent
    session = await record(server, session_id)
    assert session["clip_count"] == 0 and session["clipped_count"] == 0, session
    # Nothing the resends did reached the log but clip_clear_viewer's own documented event.
    await dashboard.wait_for(lambda: logged("clips_cleared") == 2)
    assert logged("viewer_blocked") == 1 and logged("clip_removed") == 0


async def test_a_voice_status_resent_is_unchanged(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    voice = server.services.voice
    await voice.set_status(session_id, "recording", OWNER)

    async def paused() -> bool:
        session = await voice.get(session_id)
        return session is not None and session.status == "paused"

    press = {"session_id": session_id, "status": "paused"}
    await lost_ack(await connect(server, clients, "alice"), "set_session_status", press, paused)
    resent = await (await connect(server, clients, "alice")).call("set_session_status", press)
    assert resent["ok"] and resent["status"] == "paused" and resent["changed"] is False, resent
    assert resent["offset"] == 0


async def test_http_writes_resent_answer_alike(server: ServerUnderTest) -> None:
    session_id = await server.create_session("alice")
    first = await http(server, "POST", "/voicebot/activate_session", json={"session_id": session_id})
    again = await http(server, "POST", "/voicebot/activate_session", json={"session_id": session_id})
    assert first == again and first[0] == 200, (first, again)
    first = await http(server, "PATCH", "/api/auth/me", json={"name": "Ada"})
    again = await http(server, "PATCH", "/api/auth/me", json={"name": "Ada"})
    assert first[0] == again[0] == 200 and again[1]["name"] == "Ada", (first, again)

    # A stream's clip by HTTP with a submission_id: 201, then 200 with the same clip.
    stream_id = await create_stream(server)
    assert (await http(server, "POST", f"/api/streams/{stream_id}/state", json={"action": "start"}))[0] == 200
    click = {"submission_id": "click-0000-0001"}
    first = await http(server, "POST", f"/api/streams/{stream_id}/clips", user="bob", json=click)
    again = await http(server, "POST", f"/api/streams/{stream_id}/clips", user="bob", json=click)
    assert first[0] == 201 and again[0] == 200 and again[1]["created"] is False, (first, again)
    assert again[1]["clip"]["clip_id"] == first[1]["clip"]["clip_id"]


async def test_pattern_saves_resent_store_the_same_state(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as client:
        async with client.post(server.url + "/api/sessions", json={"name": "Beat"}) as made:
            pattern_id = (await made.json())["id"]
            etag = made.headers.get("ETag")
        async with client.get(f"{server.url}/api/sessions/{pattern_id}") as got:
            etag = got.headers["ETag"]
        state = {"tracks": [], "tempo": 133, "swing": 10, "version": 1}
        url = f"{server.url}/api/sessions/{pattern_id}"
        async with client.put(url, json={"state": state}, headers={"If-Match": etag}) as put:
            assert put.status == 200, await put.text()
        # The save sent again with the If-Match it was based on (its answer was lost): 412, and
        # the answer holds the session as stored, the save in it: the client sees it landed.
        async with client.put(url, json={"state": state}, headers={"If-Match": etag}) as put:
            refused = await put.json()
            assert put.status == 412, refused
        assert {k: refused["session"]["state"][k] for k in state} == state, refused
        # Without If-Match (last write wins) the resend stores the same state again.
        for _ in range(2):
            async with client.put(url, json={"state": state}) as put:
                assert put.status == 200
        renames = []
        for _ in range(2):
            async with client.patch(f"{server.url}/api/sessions/{pattern_id}", json={"name": "Beat 2"}) as patch:
                renames.append((patch.status, (await patch.json())["name"]))
        assert renames == [(200, "Beat 2"), (200, "Beat 2")], renames
        async with client.get(f"{server.url}/api/sessions/{pattern_id}") as got:
            stored = await got.json()
        assert stored["name"] == "Beat 2" and stored["state"]["tempo"] == 133


async def test_deletes_resent_are_not_found(server: ServerUnderTest) -> None:
    voice_id = await server.create_session("alice")
    first = await http(server, "DELETE", f"/voicebot/sessions/{voice_id}")
    again = await http(server, "DELETE", f"/voicebot/sessions/{voice_id}")
    assert first[0] == 200 and first[1]["deleted"] is True, first
    assert again[0] == 404 and again[1]["error"] == "session_not_found", again
    status, made = await http(server, "POST", "/api/sessions", user=None, json={})
    assert status == 201, made
    first = await http(server, "DELETE", f"/api/sessions/{made['id']}", user=None)
    again = await http(server, "DELETE", f"/api/sessions/{made['id']}", user=None)
    assert first[0] == 204 and again == (404, {"error": "Session not found"}), (first, again)


async def test_sign_outs_resent_are_done_as_asked(iserver: ServerUnderTest) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        first = Browser(session, iserver.url)
        await first.guest()
        link = await first.call("POST", "/api/auth/link")
        second = Browser(session, iserver.url)
        await second.post("/api/auth/one_time", json={"token": link.body["url"].split("token=", 1)[1]})
        device = iserver.tokens.verify(second.token).fam
        answers = [await first.call("DELETE", f"/api/auth/devices/{device}") for _ in range(2)]
        assert [(a.status, a.body) for a in answers] == [(200, {"revoked": 1})] * 2, answers
        # The sign-out's answer (and its cleared cookie) lost: the browser sends its cookie again.
        kept = first.credential
        answers = []
        for _ in range(2):
            first.credential = kept
            answers.append(await first.post("/api/auth/logout", json={}))
        assert [a.status for a in answers] == [200, 200], answers
        assert (await first.refresh()).body["reason"] == "revoked"
        third = Browser(session, iserver.url)
        await third.guest()
        bearer = {"Authorization": f"Bearer {third.token}"}
        answers = [await third.post("/api/auth/logout_all", json={}, headers=bearer) for _ in range(2)]
        assert answers[0].status == 200 and answers[0].body["revoked"] == 1, answers
        assert (answers[1].status, answers[1].body["message"]) == (401, "this device was signed out"), answers


def test_protocol_says_what_every_resend_does() -> None:
    doc = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    section = doc[doc.index("### Sending a write again") : doc.index("## Session kinds")]
    for said in (
        "`invalid_state` whose `state` is the one the action moves to",
        "`412` whose `session` holds what the first saved",
        "`set_session_status` (`changed: false`, `offset` 0)",
        "`stream_block_viewer` and its routes (`changed: false`)",
        '`POST /api/auth/logout_all`: `401` "this device was signed out", as asked',
        "`DELETE /voicebot/sessions/{id}` and `DELETE /api/sessions/<id>`: `404`",
    ):
        assert said in section, said
