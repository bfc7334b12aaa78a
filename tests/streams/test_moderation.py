"""Stream clips under abuse: per-viewer and per-address caps, and the owner's moderation
(block a viewer, clear their clips) over Socket.IO and HTTP (issue 20, finding 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from auth.claims import GUEST_PERMISSIONS
from storage.streams import repository as streams_repository
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, http, started


def events_of(client: Client, name: str) -> list[dict[str, Any]]:
    return [e for e in client.named(name) if isinstance(e, dict)]


@pytest.fixture
async def capped(redis_process: Any, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server with small caps: 3 clips per viewer, 5 per guest address, no cooldown."""
    from tests.conftest import start_server

    server = await start_server(
        redis_process.url, tmp_path, clips_max_per_viewer=3, clips_max_per_address=5, clips_cooldown_s=0
    )
    try:
        yield server
    finally:
        await server.stop()


async def guest(server: ServerUnderTest, clients: list[Client], user: str) -> Client:
    client = Client(server.url, server.token(user, perms=GUEST_PERMISSIONS, guest=True))
    clients.append(client)
    return await client.connect()


async def test_per_viewer_cap_refuses_with_quota_exceeded(capped: ServerUnderTest, clients: list[Client]) -> None:
    session_id, _ = await started(capped, clients)
    viewer = await connect(capped, clients, "viewer-1")
    acks = [await viewer.call("clip_submit", {"session_id": session_id}) for _ in range(4)]
    assert [a["ok"] for a in acks] == [True, True, True, False]
    assert (acks[3]["error"], acks[3]["limit"], acks[3]["scope"]) == ("quota_exceeded", 3, "viewer")
    assert "3 clips" in acks[3]["message"]
    # Another viewer still clips: one viewer's cap is not the session's.
    other = await connect(capped, clients, "viewer-2")
    assert (await other.call("clip_submit", {"session_id": session_id}))["ok"] is True
    # Over HTTP the same refusal is 403 with the code.
    status, body = await http(capped, "POST", f"/api/streams/{session_id}/clips", user="viewer-1", json={})
    assert (status, body["error"]) == (403, "quota_exceeded")


async def test_per_address_cap_counts_guests_not_signed_in_viewers(
    capped: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(capped, clients)
    stored = 0
    refused: list[dict[str, Any]] = []
    for n in range(4):  # 4 guests from one loopback address, 2 clicks each: 5 fit
        viewer = await guest(capped, clients, f"guest-{n}")
        for _ in range(2):
            ack = await viewer.call("clip_submit", {"session_id": session_id})
            stored += ack["ok"] is True
            if ack["ok"] is False:
                refused.append(ack)
    assert stored == 5
    assert {(a["error"], a["scope"], a["limit"]) for a in refused} == {("quota_exceeded", "address", 5)}
    # Over HTTP a guest from the same address is refused too.
    token = capped.token("guest-9", perms=GUEST_PERMISSIONS, guest=True)
    status, body = await http(capped, "POST", f"/api/streams/{session_id}/clips", token=token, json={})
    assert (status, body["error"], body["scope"]) == (403, "quota_exceeded", "address")
    # Signed-in viewers on that address are not counted by address.
    member = await connect(capped, clients, "member-1")
    assert (await member.call("clip_submit", {"session_id": session_id}))["ok"] is True


async def test_retry_of_a_stored_submission_is_not_counted_twice(
    capped: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(capped, clients)
    viewer = await connect(capped, clients, "viewer-1")
    first = await viewer.call("clip_submit", {"session_id": session_id, "submission_id": "sub-00001"})
    assert first["created"] is True
    for _ in range(5):
        again = await viewer.call("clip_submit", {"session_id": session_id, "submission_id": "sub-00001"})
        assert again["ok"] is True and again["created"] is False
        assert again["clip"]["clip_id"] == first["clip"]["clip_id"]
    # The cap (3) still leaves two fresh clicks after six answers for one stored clip.
    acks = [
        await viewer.call("clip_submit", {"session_id": session_id, "submission_id": f"sub-new-{i}"}) for i in range(3)
    ]
    assert [a["ok"] for a in acks] == [True, True, False]
    # A retry of a stored click over the cap is still answered as before.
    status, body = await http(
        capped, "POST", f"/api/streams/{session_id}/clips", user="viewer-1", json={"submission_id": "sub-00001"}
    )
    assert (status, body["created"]) == (200, False)


async def test_block_and_unblock_a_viewer(capped: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    server = capped  # no cooldown between one viewer's clicks
    session_id, owner = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    stored = await viewer.call("clip_submit", {"session_id": session_id, "submission_id": "sub-before"})
    assert stored["ok"] is True

    status, body = await http(server, "POST", f"/api/streams/{session_id}/blocked", json={"user_id": "viewer-1"})
    assert (status, body["blocked"], body["changed"]) == (200, True, True)
    status, body = await http(server, "GET", f"/api/streams/{session_id}/blocked")
    assert body["blocked"] == ["viewer-1"]
    refused = await viewer.call("clip_submit", {"session_id": session_id, "submission_id": "sub-after1"})
    assert refused["error"] == "forbidden" and "blocked" in refused["message"]
    # The retry of a click stored before the block is answered as before.
    again = await viewer.call("clip_submit", {"session_id": session_id, "submission_id": "sub-before"})
    assert again["ok"] is True and again["created"] is False
    assert await redis.hlen(server.services.keys.stream_clips(session_id)) == 1

    status, body = await http(server, "DELETE", f"/api/streams/{session_id}/blocked/viewer-1")
    assert (status, body["blocked"], body["changed"]) == (200, False, True)
    assert (await viewer.call("clip_submit", {"session_id": session_id}))["ok"] is True

    # The socket event does the same.
    ack = await owner.call("stream_block_viewer", {"session_id": session_id, "user_id": "viewer-1"})
    assert ack["ok"] is True and ack["changed"] is True
    assert (await viewer.call("clip_submit", {"session_id": session_id}))["error"] == "forbidden"
    ack = await owner.call("stream_block_viewer", {"session_id": session_id, "user_id": "viewer-1", "blocked": False})
    assert ack["ok"] is True and ack["blocked"] is False


async def test_the_blocked_viewers_of_a_stream_are_capped(
    server: ServerUnderTest, clients: list[Client], redis: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any user id may be blocked, so the set is bounded: an owner's loop of made-up ids grew it
    without end (36,589 in a minute, and its listing, read whole, stalled the node)."""
    monkeypatch.setattr(streams_repository, "MAX_BLOCKED_VIEWERS", 3)
    session_id, owner = await started(server, clients)
    for n in range(3):
        status, _ = await http(server, "POST", f"/api/streams/{session_id}/blocked", json={"user_id": f"made-up-{n}"})
        assert status == 200
    status, body = await http(server, "POST", f"/api/streams/{session_id}/blocked", json={"user_id": "one-more"})
    assert (status, body["error"], body["limit"]) == (409, "limit_reached", 3), body
    assert "3 blocked viewers" in body["message"]
    ack = await owner.call("stream_block_viewer", {"session_id": session_id, "user_id": "one-more"})
    assert (ack["ok"], ack["error"]) == (False, "limit_reached")
    assert await redis.scard(server.services.keys.stream_blocked(session_id)) == 3
    # One already blocked may be blocked again (a retry), and an unblock makes room.
    assert (await http(server, "POST", f"/api/streams/{session_id}/blocked", json={"user_id": "made-up-0"}))[0] == 200
    assert (await http(server, "DELETE", f"/api/streams/{session_id}/blocked/made-up-0"))[0] == 200
    assert (await http(server, "POST", f"/api/streams/{session_id}/blocked", json={"user_id": "one-more"}))[0] == 200


async def test_clear_a_viewers_clips_with_one_event(server: ServerUnderTest, clients: list[Client], redis: Any) -> None:
    session_id, owner = await started(server, clients)
    watcher = await server.subscriber(clients, session_id, user="alice")
    spammer = await connect(server, clients, "spammer")
    other = await connect(server, clients, "viewer-2")
    spam_ids = []
    try:
        for _ in range(3):
            server.services.clock.shift_ms += 3000  # past the cooldown
            spam_ids.append((await spammer.call("clip_submit", {"session_id": session_id}))["clip"]["clip_id"])
    finally:
        server.services.clock.shift_ms = 0
    kept = (await other.call("clip_submit", {"session_id": session_id}))["clip"]["clip_id"]
    marked = await owner.call("clip_update", {"session_id": session_id, "clip_id": spam_ids[0], "clipped": True})
    assert marked["ok"] is True

    status, body = await http(server, "DELETE", f"/api/streams/{session_id}/clips?by=spammer")
    assert (status, body["removed"]) == (200, 3)
    await watcher.wait_for(lambda: len(events_of(watcher, "clips_cleared")) == 1)
    data = events_of(watcher, "clips_cleared")[0]["data"]
    assert sorted(data["clip_ids"]) == sorted(spam_ids)
    assert (data["count"], data["clipped_count"]) == (1, 0)
    assert "spammer" not in str(data) and len(data["viewer_tag"]) == 12
    assert await redis.hkeys(server.services.keys.stream_clips(session_id)) == [kept]
    status, body = await http(server, "GET", f"/api/streams/{session_id}/clips")
    assert body["clip_count"] == 1 and body["session"]["clip_count"] == 1

    # Over the socket too; nothing left to remove still answers (and appends its event).
    ack = await owner.call("clip_clear_viewer", {"session_id": session_id, "user_id": "spammer"})
    assert ack["ok"] is True and ack["removed"] == 0


@pytest.mark.parametrize(
    "method, path, body",
    [
        ("POST", "/blocked", {"user_id": "viewer-1"}),
        ("DELETE", "/blocked/viewer-1", None),
        ("DELETE", "/clips?by=viewer-1", None),
        ("GET", "/blocked", None),
    ],
)
async def test_only_the_owner_moderates(
    server: ServerUnderTest, clients: list[Client], method: str, path: str, body: Any
) -> None:
    session_id, _ = await started(server, clients)
    viewer = await connect(server, clients, "viewer-1")
    assert (await viewer.call("clip_submit", {"session_id": session_id}))["ok"] is True
    status, answer = await http(server, method, f"/api/streams/{session_id}{path}", user="mallory", json=body)
    assert (status, answer["error"]) == (403, "forbidden")
    # A guest (who has `update`) is still not the owner.
    token = server.token("guest-1", perms=GUEST_PERMISSIONS, guest=True)
    status, answer = await http(server, method, f"/api/streams/{session_id}{path}", token=token, json=body)
    assert (status, answer["error"]) == (403, "forbidden")
    assert (await viewer.call("clip_submit", {"session_id": session_id}))["ok"] is not None
    status, review = await http(server, "GET", f"/api/streams/{session_id}/clips")
    assert review["clip_count"] == 1


async def test_moderation_events_refuse_non_owners_and_bad_payloads(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, _ = await started(server, clients)
    mallory = await connect(server, clients, "mallory")
    for event in ("stream_block_viewer", "clip_clear_viewer"):
        ack = await mallory.call(event, {"session_id": session_id, "user_id": "viewer-1"})
        assert ack["error"] == "forbidden"
        ack = await mallory.call(event, {"session_id": session_id, "user_id": "has space"})
        assert ack["error"] == "invalid_payload"
    status, body = await http(server, "DELETE", f"/api/streams/{session_id}/clips")
    assert (status, body["error"]) == (400, "invalid_payload")
