"""The status moves the FAB's flows need, over real Socket.IO, and the FAB's configuration."""

from __future__ import annotations

from typing import Any

import aiohttp

from storage.voice.repository import TRANSITIONS
from tests.helpers import Client, ServerUnderTest


async def recorder(server: ServerUnderTest, clients: list[Client], user: str = "alice") -> Client:
    client = Client(server.url, server.token(user))
    clients.append(client)
    await client.connect()
    return client


async def test_a_failed_done_hands_the_session_back_paused(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    alice = await recorder(server, clients)

    async def to(status: str) -> dict[str, Any]:
        return await alice.call("set_session_status", {"session_id": session_id, "status": status})

    # Done from a session that never recorded: ready -> final_uploading -> (close failed) -> paused.
    assert (await to("final_uploading"))["ok"]
    ack = await to("paused")
    assert ack["ok"] and (ack["previous"], ack["status"]) == ("final_uploading", "paused")
    # The FAB's cycle: record, cut, record, pause, resume, finish.
    for status in ("recording", "cutting", "recording", "paused", "recording", "final_uploading"):
        assert (await to(status))["ok"], status
    assert "final_uploading" in TRANSITIONS["paused"]


async def test_only_the_owner_moves_the_pictogram(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    mallory = await recorder(server, clients, "mallory")
    ack = await mallory.call("set_session_status", {"session_id": session_id, "status": "recording"})
    assert ack["error"] == "forbidden"
    for bad in (
        {"session_id": session_id, "status": 5},
        {"session_id": session_id},
        {"session_id": session_id, "status": "recording", "x": 1},
    ):
        assert (await mallory.call("set_session_status", bad))["error"] == "invalid_payload"
    # The connection is still usable.
    assert (await mallory.call("unsubscribe_from_session", {"session_id": session_id}))["ok"]


async def test_fab_configuration(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/voicebot/fab/config") as response:
        body = await response.json()
    config = server.services.voice.config
    assert body == {
        "max_chunk_ms": config.max_chunk_ms,
        "max_chunk_bytes": config.max_chunk_bytes,
        "mime_types": [
            "audio/webm;codecs=opus",
            "audio/webm",
            "audio/ogg;codecs=opus",
            "audio/ogg",
            "audio/mp4",
            "audio/aac",
        ],
    }


async def test_fab_script_is_served_with_the_pages(server: ServerUnderTest) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/", "/session"):
            async with http.get(server.url + path) as response:
                assert '<script type="module" src="/static/js/fab.js"></script>' in await response.text()
        async with http.get(f"{server.url}/static/js/fab.js") as response:
            assert response.status == 200 and "MediaRecorder" in await response.text()
