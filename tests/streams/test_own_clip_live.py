"""A viewer's clip reaches their other devices live (``own_clip`` on the user's own channel), and
nobody else: not another viewer, not the streamer's connection (PROTOCOL, "Your clips on every
device")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server
from tests.helpers import Client, ServerUnderTest
from tests.streams.helpers import connect, http, started, stored_unannounced


@pytest.fixture
async def quick(redis_process: Any, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server without a clip cooldown."""
    server = await start_server(redis_process.url, tmp_path, clips_cooldown_s=0)
    try:
        yield server
    finally:
        await server.stop()


async def following(server: ServerUnderTest, clients: list[Client], user: str) -> Client:
    """A connection of ``user`` that follows the user, as every page does at each connect."""
    client = await connect(server, clients, user)
    ack = await client.call("follow_user", {})
    assert ack["ok"] is True, ack
    return client


def own(client: Client, session_id: str) -> list[dict[str, Any]]:
    """The clips the connection was told of in ``session_id``."""
    return [dict(e["clip"]) for e in client.named("own_clip") if e["session_id"] == session_id]


async def test_a_clip_reaches_the_viewers_other_devices_and_nobody_else(
    quick: ServerUnderTest, clients: list[Client]
) -> None:
    session_id, owner = await started(quick, clients)
    assert (await owner.call("follow_user", {}))["ok"] is True  # alice follows her own channel
    laptop = await following(quick, clients, "bob")
    tablet = await following(quick, clients, "bob")  # a second open page of bob's
    carol = await following(quick, clients, "carol")
    phone = await following(quick, clients, "bob")

    ack = await phone.call(
        "clip_submit", {"session_id": session_id, "note": "bob's secret", "submission_id": "tap-0001"}
    )
    assert ack["ok"] is True, ack
    stored = ack["clip"]
    for device in (laptop, tablet, phone):  # the submitting connection is told too, beside its ack
        await device.wait_for(lambda device=device: own(device, session_id) == [stored])
    assert laptop.named("own_clip") == [{"session_id": session_id, "clip": stored}]
    assert "submitted_by" not in stored

    # A retry of the click is answered with its clip but not announced (each of a user's many
    # connections re-sending one clip, past the cooldown, was a message to all of them); a click
    # over HTTP is, after it (one link, in publish order: the retry's would have come first).
    for _ in range(3):
        again = await phone.call("clip_submit", {"session_id": session_id, "note": "x", "submission_id": "tap-0001"})
        assert again["ok"] is True and again["created"] is False and again["clip"] == stored, again
    status, body = await http(quick, "POST", f"/api/streams/{session_id}/clips", user="bob", json={"note": "by http"})
    assert status == 201, body
    await laptop.wait_for(lambda: len(own(laptop, session_id)) == 2)
    assert [c["clip_id"] for c in own(laptop, session_id)] == [stored["clip_id"], body["clip"]["clip_id"]]

    # Carol clips after bob: her own announcement comes to her once bob's would have (one Redis,
    # one pub/sub link, in publish order), and bob's never does. Nor does bob hear of hers.
    mine = await carol.call("clip_submit", {"session_id": session_id, "note": "carol's"})
    assert mine["ok"] is True, mine
    await carol.wait_for(lambda: own(carol, session_id) == [mine["clip"]])
    await laptop.wait_for(lambda: len(laptop.named("own_clip")) >= 2)
    for name, client in (("carol", carol), ("alice", owner)):
        notes = [c["note"] for c in own(client, session_id)]
        assert "bob's secret" not in notes and "by http" not in notes, (name, notes)
    assert owner.named("own_clip") == []
    assert all(c["note"] != "carol's" for c in own(laptop, session_id) + own(phone, session_id))


async def test_a_viewer_who_does_not_follow_hears_nothing(quick: ServerUnderTest, clients: list[Client]) -> None:
    """Only a connection that follows the user is sent its clips (a page follows at each connect)."""
    session_id, _ = await started(quick, clients)
    quiet = await connect(quick, clients, "bob")  # connected, follows nothing
    laptop = await following(quick, clients, "bob")
    phone = await connect(quick, clients, "bob")
    ack = await phone.call("clip_submit", {"session_id": session_id, "note": "n"})
    assert ack["ok"] is True, ack
    await laptop.wait_for(lambda: own(laptop, session_id) == [ack["clip"]])
    assert quiet.named("own_clip") == []


async def test_the_nodes_link_back_tells_each_following_connection_to_read_its_clips_again(
    quick: ServerUnderTest, clients: list[Client], redis: Any
) -> None:
    """A clip announced while this node's pub/sub link was down (a Redis restart, a failover)
    reached nobody here: the link coming back sends ``own_clips_resync`` once to every connection
    that follows its user (the badge's follow and the active session's alike), none to one that
    follows nothing, and the clips read then hold the one announced to nobody."""
    session_id, _ = await started(quick, clients)
    badge = await following(quick, clients, "bob")
    fab = await connect(quick, clients, "bob")
    assert (await fab.call("follow_active_session", {}))["ok"] is True
    carol = await following(quick, clients, "carol")
    quiet = await connect(quick, clients, "bob")
    ack = await badge.call("clip_submit", {"session_id": session_id, "note": "heard live"})
    assert ack["ok"] is True, ack
    await fab.wait_for(lambda: len(own(fab, session_id)) == 1)  # the channel is live for both

    # Stored as a click stores it, announced to nobody: what a lost announcement leaves.
    await stored_unannounced(quick, session_id, "bob", "announced to nobody")
    assert await redis.client_kill_filter(_type="pubsub") >= 1
    for client in (badge, fab, carol):
        await client.wait_for(lambda client=client: len(client.named("own_clips_resync")) == 1)
    # Told once each (a connection following both ways is one member) and the others nothing.
    status, mine = await http(quick, "GET", f"/api/streams/{session_id}/clips/mine", user="bob")
    assert status == 200, mine
    assert [c["note"] for c in mine["clips"]] == ["announced to nobody", "heard live"]
    ack = await carol.call("clip_submit", {"session_id": session_id, "note": "after the link is back"})
    assert ack["ok"] is True, ack
    await carol.wait_for(lambda: len(own(carol, session_id)) == 1)  # live again after the resync
    assert [len(c.named("own_clips_resync")) for c in (badge, fab, carol)] == [1, 1, 1]
    assert quiet.named("own_clips_resync") == [] and quiet.named("own_clip") == []
