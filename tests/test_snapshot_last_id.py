"""A snapshot names the event it stands at (PROTOCOL.md: ``last_id``, "the id of the event there,
"" if none"), for every kind: a client keeps it and resumes with it, so the server can tell a
history Redis rewrote from the one the client saw."""

from __future__ import annotations

import aiohttp

from tests.helpers import Client, ServerUnderTest


async def _sessions_of_every_kind(server: ServerUnderTest, alice: Client) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/api/streams", json={"title": "Raid night"}, headers=headers) as resp:
            stream = (await resp.json())["session"]
        async with http.post(
            f"{server.url}/api/streams/{stream['session_id']}/state", json={"action": "start"}, headers=headers
        ):
            pass
        async with http.post(f"{server.url}/api/sessions", json={"name": "Loop"}) as resp:
            pattern_id = (await resp.json())["id"]
    return {
        "voice": await server.create_session("alice"),
        "stream": stream["session_id"],
        "stream_audience": stream["audience_id"],
        "pattern": pattern_id,
        "listening": (await alice.call("listening_history", {}))["session_id"],
    }


async def test_every_kind_of_snapshot_names_the_event_it_stands_at(
    server: ServerUnderTest, clients: list[Client]
) -> None:
    alice = Client(server.url, server.token("alice"))
    clients.append(alice)
    await alice.connect()
    for kind, session_id in (await _sessions_of_every_kind(server, alice)).items():
        ack = await alice.call("subscribe_on_session", {"session_id": session_id})
        snapshot = [
            data for name, data in alice.events if name == "session_snapshot" and data["session_id"] == session_id
        ][-1]
        stored = await server.services.log.position(session_id)
        assert stored.offset >= 1 and stored.last_id, (kind, stored)
        assert (snapshot["kind"], snapshot["offset"], snapshot["last_id"]) == (kind, stored.offset, stored.last_id)
        assert (ack["offset"], ack["last_id"]) == (stored.offset, stored.last_id), kind
