"""The session-kind registry: a kind added by registering it gets subscribe, replay and snapshots."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from aiohttp import ClientSession

from auth.access import require_read, require_update
from auth.claims import Claims
from handlers.context import Services
from handlers.kinds import KindRegistry, SessionKind, Snapshot
from protocol.errors import CodedError, ErrorCode
from storage.events import Position
from storage.sessions import SessionMeta
from tests.helpers import Client, ServerUnderTest


class NoteKind(SessionKind):
    """A kind the product does not have: a note only its owner may read."""

    name = "test-note"

    def __init__(self, services: Services) -> None:
        self._s = services

    def check_read(self, claims: Claims, meta: SessionMeta) -> None:
        require_read(claims, meta.owner_id)

    def check_write(self, claims: Claims, meta: SessionMeta) -> None:
        require_update(claims, meta.owner_id)

    async def snapshot(self, session_id: str) -> Snapshot | None:
        async with self._s.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._s.keys.session(session_id))
            pipe.hmget(self._s.keys.log_meta(session_id), "epoch", "offset")
            record, (epoch, offset) = await pipe.execute()
        if record.get("kind") != self.name:
            return None
        return Snapshot(
            session={"text": record["text"]}, position=Position(epoch or "", int(offset or 0)), extra={"note": True}
        )

    def summary(self, record: dict[str, str]) -> dict[str, Any]:
        return {"title": record["text"], "url": f"/notes/{record['id']}"}


async def create_note(services: Services, owner: str, text: str) -> str:
    note_id = str(uuid.uuid4())
    now = services.clock.now_ms()
    await services.sessions.index(session_id=note_id, owner_id=owner, created_ms=now)
    fields = {"id": note_id, "kind": NoteKind.name, "owner_id": owner, "created_at": str(now), "text": text}
    await services.log.run(
        services.scripts.session_create,
        note_id,
        keys=[services.keys.session(note_id)],
        args=["session_update", json.dumps({"text": text}), *[v for pair in fields.items() for v in pair]],
    )
    return note_id


async def edit_note(services: Services, note_id: str, text: str) -> None:
    await services.log.run(
        services.scripts.session_update,
        note_id,
        keys=[services.keys.session(note_id)],
        args=["note_edited", json.dumps({"text": text}), "text", text],
    )


async def test_a_registered_kind_gets_snapshot_live_events_and_replay(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    services = server.services
    services.kinds.register(NoteKind(services))
    note_id = await create_note(services, "alice", "first")

    alice = Client(server.url, server.token("alice"))
    clients.append(alice)
    await alice.connect()
    ack = await alice.call("subscribe_on_session", {"session_id": note_id})
    assert ack["ok"] and ack["offset"] == 1
    [snapshot] = alice.named("session_snapshot")
    assert snapshot["kind"] == "test-note" and snapshot["session"] == {"text": "first"} and snapshot["note"] is True

    await edit_note(services, note_id, "second")
    await alice.wait_for(lambda: alice.offsets(note_id) == [2])
    assert alice.named("note_edited")[0]["data"] == {"text": "second"}
    await alice.close()

    await edit_note(services, note_id, "third")
    again = Client(server.url, server.token("alice"))
    clients.append(again)
    await again.connect()
    ack = await again.call("subscribe_on_session", {"session_id": note_id, "epoch": ack["epoch"], "offset": 2})
    assert ack["recovered"] is True and again.offsets(note_id) == [3]

    bob = Client(server.url, server.token("bob"))
    clients.append(bob)
    await bob.connect()
    assert (await bob.call("subscribe_on_session", {"session_id": note_id}))["error"] == "forbidden"


async def test_a_kind_not_registered_is_not_found(server: ServerUnderTest, clients: list[Client]) -> None:
    note_id = await create_note(server.services, "alice", "nobody serves this kind")
    alice = Client(server.url, server.token("alice"))
    clients.append(alice)
    await alice.connect()
    assert (await alice.call("subscribe_on_session", {"session_id": note_id}))["error"] == "session_not_found"


async def test_recent_sessions_list_every_registered_kind(server: ServerUnderTest) -> None:
    services = server.services
    services.kinds.register(NoteKind(services))
    voice_id = await server.create_session("alice", "a voice note")
    note_id = await create_note(services, "alice", "a test note")
    await create_note(services, "bob", "not alice's")
    async with ClientSession() as http:
        headers = {"Authorization": f"Bearer {server.token('alice')}"}
        async with http.get(f"{server.url}/api/me/sessions", headers=headers) as response:
            body = await response.json()
        assert response.status == 200
        assert [(e["session_id"], e["kind"], e["title"]) for e in body["sessions"]] == [
            (note_id, "test-note", "a test note"),
            (voice_id, "voice", "a voice note"),
        ]
        assert body["kinds"][0] == "voice" and body["kinds"][-1] == "test-note"
        async with http.get(f"{server.url}/api/me/sessions?limit=0", headers=headers) as response:
            assert response.status == 400 and (await response.json())["error"] == "invalid_payload"
        async with http.get(f"{server.url}/api/me/sessions") as response:
            assert response.status == 401


def test_a_kind_name_is_registered_once(server: ServerUnderTest) -> None:
    registry = KindRegistry(server.services.sessions)
    registry.register(NoteKind(server.services))
    with pytest.raises(ValueError):
        registry.register(NoteKind(server.services))


async def test_resolve_refuses_unknown_sessions(server: ServerUnderTest) -> None:
    with pytest.raises(CodedError) as info:
        await server.services.kinds.resolve(str(uuid.uuid4()))
    assert info.value.code is ErrorCode.SESSION_NOT_FOUND
