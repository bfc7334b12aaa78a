"""A viewer's own clips (``GET /api/streams/{id}/clips/mine``): what the viewer page shows after a
reload or on another device, as the clips are now, and never another viewer's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from auth.claims import GUEST_PERMISSIONS
from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, create_stream, http, started


@pytest.fixture
async def quick(redis_process: Any, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server without a clip cooldown, where a viewer stores at most 5 clips per session."""
    server = await start_server(redis_process.url, tmp_path, clips_cooldown_s=0, clips_max_per_viewer=5)
    try:
        yield server
    finally:
        await server.stop()


async def clip(viewer: Client, session_id: str, note: str) -> dict[str, Any]:
    ack = await viewer.call("clip_submit", {"session_id": session_id, "note": note})
    assert ack["ok"] is True, ack
    return dict(ack["clip"])


async def mine(server: ServerUnderTest, session_id: str, user: str, query: str = "") -> list[dict[str, Any]]:
    status, body = await http(server, "GET", f"/api/streams/{session_id}/clips/mine{query}", user=user)
    assert status == 200, body
    assert body["session_id"] == session_id
    return list(body["clips"])


async def test_a_viewer_gets_their_own_clips_newest_first_as_they_are_now(
    quick: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, owner = await started(quick, clients)
    bob = await connect(quick, clients, "bob")
    carol = await connect(quick, clients, "carol")
    first = await clip(bob, session_id, "first")
    await clip(carol, session_id, "carol's")
    second = await clip(bob, session_id, "second")
    third = await clip(bob, session_id, "third")

    listed = await mine(quick, session_id, "bob")
    assert [c["clip_id"] for c in listed] == [third["clip_id"], second["clip_id"], first["clip_id"]]
    assert listed[2] == first  # the viewer's shape, as the ack gave it
    assert all("submitted_by" not in c for c in listed)

    # The streamer edits one note, marks another clipped and deletes the third: shown as now.
    await owner.call("clip_update", {"session_id": session_id, "clip_id": first["clip_id"], "note": "renamed"})
    await owner.call("clip_update", {"session_id": session_id, "clip_id": third["clip_id"], "clipped": True})
    await owner.call("clip_delete", {"session_id": session_id, "clip_id": second["clip_id"]})
    listed = await mine(quick, session_id, "bob")
    assert [(c["clip_id"], c["note"], c["clipped"]) for c in listed] == [
        (third["clip_id"], "third", True),
        (first["clip_id"], "renamed", False),
    ]
    # Another device of bob's (another token, the same user) sees the same; carol only hers.
    other_device = quick.token("bob")
    status, body = await http(quick, "GET", f"/api/streams/{session_id}/clips/mine", token=other_device)
    assert status == 200 and body["clips"] == listed
    assert [c["note"] for c in await mine(quick, session_id, "carol")] == ["carol's"]
    assert await mine(quick, session_id, "alice") == []  # the owner clipped nothing

    # Cleared by the owner: gone. Bob clips again: there.
    await owner.call("clip_clear_viewer", {"session_id": session_id, "user_id": "bob"})
    assert await mine(quick, session_id, "bob") == []
    again = await clip(bob, session_id, "again")
    assert [c["clip_id"] for c in await mine(quick, session_id, "bob")] == [again["clip_id"]]


async def test_limit_keeps_the_newest_and_is_bounded(quick: ServerUnderTest, clients: list[Client]) -> None:
    session_id, owner = await started(quick, clients)
    guest = Client(quick.url, quick.token("guest-1", perms=GUEST_PERMISSIONS, guest=True))
    clients.append(guest)
    await guest.connect()
    made = [await clip(guest, session_id, f"n{n}") for n in range(5)]
    await owner.call("clip_delete", {"session_id": session_id, "clip_id": made[4]["clip_id"]})
    # The newest two still held: a deleted clip does not take a place.
    listed = await mine(quick, session_id, "guest-1", "?limit=2")
    assert [c["note"] for c in listed] == ["n3", "n2"]
    # The per-viewer cap bounds what the index holds: a refused click adds nothing.
    refused = await guest.call("clip_submit", {"session_id": session_id})
    assert refused["error"] == "quota_exceeded"
    assert [c["note"] for c in await mine(quick, session_id, "guest-1")] == ["n3", "n2", "n1", "n0"]
    # The own index holds the clips held, oldest first in the viewer's range; the deleted one left it.
    entries = await quick.services.redis.zrange(quick.services.keys.stream_own_index(session_id), 0, -1)
    assert [e.split(":")[2] for e in entries] == [c["clip_id"] for c in made[:4]]
    assert {e.split(":")[0] for e in entries} == {made[0]["viewer_tag"]}


async def test_clips_stored_before_the_index_are_found_too(quick: ServerUnderTest, clients: list[Client]) -> None:
    """A session from before the per-viewer index: its clips are found by their submitter."""
    session_id, owner = await started(quick, clients)
    bob = await connect(quick, clients, "bob")
    carol = await connect(quick, clients, "carol")
    older = [
        await clip(bob, session_id, "old 1"),
        await clip(carol, session_id, "hers"),
        await clip(bob, session_id, "old 2"),
    ]
    # As a release before the own index stored them (it kept ids beside the counts instead).
    await quick.services.redis.delete(quick.services.keys.stream_own_index(session_id))
    await owner.call("clip_delete", {"session_id": session_id, "clip_id": older[0]["clip_id"]})
    newer = await clip(bob, session_id, "new")
    assert [c["clip_id"] for c in await mine(quick, session_id, "bob")] == [newer["clip_id"], older[2]["clip_id"]]
    assert [c["note"] for c in await mine(quick, session_id, "bob", "?limit=1")] == ["new"]
    assert [c["note"] for c in await mine(quick, session_id, "carol")] == ["hers"]


@pytest.mark.parametrize(
    "path, user, status, code",
    [
        ("/api/streams/nope/clips/mine", "bob", 400, "invalid_session_id"),
        ("/api/streams/{id}/clips/mine", None, 401, "unauthorized"),
        ("/api/streams/{id}/clips/mine?limit=0", "bob", 400, "invalid_payload"),
        ("/api/streams/{id}/clips/mine?limit=201", "bob", 400, "invalid_payload"),
        ("/api/streams/{id}/clips/mine?limit=-1", "bob", 400, "invalid_payload"),
        ("/api/streams/{id}/clips/mine?limit=1e3", "bob", 400, "invalid_payload"),
        ("/api/streams/{id}/clips/mine?limit=" + "9" * 40, "bob", 400, "invalid_payload"),
        ("/api/streams/00000000-0000-4000-8000-000000000000/clips/mine", "bob", 404, "session_not_found"),
        ("/api/streams/{audience}/clips/mine", "bob", 404, "session_not_found"),
    ],
)
async def test_bad_requests_are_refused_and_change_nothing(
    server: ServerUnderTest, path: str, user: str | None, status: int, code: str
) -> None:
    session_id = await create_stream(server)
    _, record = await http(server, "GET", f"/api/streams/{session_id}")
    url = path.format(id=session_id, audience=record["audience_id"])
    answered, body = await http(server, "GET", url, user=user)
    assert (answered, body["error"]) == (status, code), body
    # The viewer's route is no way into the owner's: the review stays the owner's alone.
    answered, body = await http(server, "GET", f"/api/streams/{session_id}/clips", user="bob")
    assert (answered, body["error"]) == (403, "forbidden")


async def test_a_negative_limit_is_told_its_bound_as_zero_is(server: ServerUnderTest) -> None:
    """A "-5" is a whole number: it was refused as if it were not one ("must be a whole number")."""
    session_id = await create_stream(server)
    answers = [
        await http(server, "GET", f"/api/streams/{session_id}/clips/mine?limit={limit}", user="bob")
        for limit in ("0", "-5", "-", "--5")
    ]
    (zero, negative, dash, dashes) = [body for _, body in answers]
    assert [status for status, _ in answers] == [400] * 4
    assert negative["message"] == zero["message"], (negative, zero)
    assert "whole number" not in negative["message"], negative
    assert dash["message"] == dashes["message"] == "limit must be a whole number", (dash, dashes)


async def test_a_retried_click_indexes_the_session_among_the_viewers_when_the_first_try_could_not(
    quick: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """The viewer's index of the streams they clipped in lives in another hash slot than the clip:
    its own step after the clip's. Lost (a failover between the two), the click's retry, answered
    as stored, takes it again; before, the index entry was lost for good."""
    session_id, _ = await started(quick, clients)
    bob = await connect(quick, clients, "bob")
    click = {"session_id": session_id, "note": "again", "submission_id": "bob-click-0001"}
    first = await bob.call("clip_submit", click)
    assert first["ok"] is True and first["created"] is True, first
    index = quick.services.keys.user_clipped("bob")
    assert await redis.zscore(index, session_id) is not None
    await redis.delete(index)  # what the lost step leaves
    again = await bob.call("clip_submit", click)
    assert again["ok"] is True and again["created"] is False, again
    assert again["clip"]["clip_id"] == first["clip"]["clip_id"]
    assert await redis.zscore(index, session_id) is not None


@pytest.mark.parametrize("method", ["PATCH", "DELETE"])
async def test_a_clip_route_without_a_token_is_unauthorized_before_its_clip_id_is_read(
    server: ServerUnderTest, method: str
) -> None:
    """The documented order (invalid_session_id, unauthorized, invalid_payload): an anonymous
    caller learns nothing of what the route takes; the clip id was read first (400)."""
    session_id = await create_stream(server)
    answered, body = await http(server, method, f"/api/streams/{session_id}/clips/nope", user=None, json={})
    assert (answered, body["error"]) == (401, "unauthorized"), body
    answered, body = await http(server, method, f"/api/streams/{session_id}/clips/nope", json={})
    assert (answered, body["error"]) == (400, "invalid_payload"), body
