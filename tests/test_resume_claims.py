"""A resuming client's false claim costs only that client a snapshot (issue 20, finding 8): a new
epoch for everyone needs evidence the server itself issued (a sealed event id)."""

from __future__ import annotations

from typing import Any

import pytest

from auth.claims import GUEST_PERMISSIONS
from tests.helpers import OWNER, Client, ServerUnderTest
from tests.patterns.test_events import new_pattern


async def _toggle(server: ServerUnderTest, session_id: str, count: int) -> None:
    for i in range(count):
        await server.services.voice.set_status(session_id, ("recording", "paused")[i % 2], OWNER)


def _claims(epoch: str, offset: int, seen: dict[int, str]) -> list[dict[str, Any]]:
    return [
        {"epoch": epoch, "offset": offset + 5},  # ahead of the log, no id
        {"epoch": epoch, "offset": offset + 5, "last_id": seen[offset]},  # ahead, a real id of another offset
        {"epoch": epoch, "offset": offset, "last_id": "forged.1"},  # a wrong id at the head
        {"epoch": epoch, "offset": offset - 1, "last_id": seen[offset]},  # a real id at the wrong offset
        {"epoch": epoch, "offset": offset, "last_id": seen[offset][:-1] + ("0" if seen[offset][-1] != "0" else "1")},
    ]


async def test_false_resume_claims_never_restart_the_history(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    watcher = await server.subscriber(clients, session_id)
    await _toggle(server, session_id, 3)
    await watcher.wait_for(lambda: watcher.offsets(session_id)[-1:] == [4])
    position = await server.services.log.position(session_id)
    seen = {e["offset"]: e["id"] for _, e in watcher.events if isinstance(e, dict) and "id" in e and "offset" in e}
    attacker = Client(server.url, server.token("alice"))
    clients.append(attacker)
    await attacker.connect()
    for claim in _claims(position.epoch, position.offset, seen):
        ack = await attacker.call("subscribe_on_session", {"session_id": session_id, **claim})
        assert ack["ok"] and ack["recovered"] is False, (claim, ack)
        assert ack["epoch"] == position.epoch, claim  # the attacker got a snapshot of the same epoch
    assert len(attacker.named("session_snapshot")) == 5
    after = await server.services.log.position(session_id)
    assert (after.epoch, after.offset) == (position.epoch, position.offset)
    assert watcher.named("session_resync") == []
    # A genuine resume still replays.
    ack = await attacker.call(
        "subscribe_on_session",
        {"session_id": session_id, "epoch": position.epoch, "offset": 3, "last_id": seen[3]},
    )
    assert ack["recovered"] is True and ack["missed"] == 1


@pytest.mark.parametrize("offset_ahead", [1, 1000])
async def test_a_guest_claiming_ahead_on_a_pattern_link_restarts_nothing(
    server: ServerUnderTest, clients: list[Client], offset_ahead: int
) -> None:
    session_id = await new_pattern(server)
    epoch = (await server.services.log.position(session_id)).epoch
    offset = (await server.services.log.position(session_id)).offset
    guest = Client(server.url, server.token("guest-9", perms=GUEST_PERMISSIONS, guest=True))
    clients.append(guest)
    await guest.connect()
    for _ in range(20):
        ack = await guest.call(
            "subscribe_on_session", {"session_id": session_id, "epoch": epoch, "offset": offset + offset_ahead}
        )
        assert ack["ok"] and ack["epoch"] == epoch
    assert (await server.services.log.position(session_id)).epoch == epoch
