"""What a retry of the same Socket.IO write answers (a client resending after a lost ack), for
the writes whose retry docs/PROTOCOL.md did not describe: a second clip_delete is not_found,
and a second job event queues a second job."""

from __future__ import annotations

import aiohttp

from tests.helpers import Client, ServerUnderTest
from tests.test_protocol_doc import PROTOCOL


def _doc() -> str:
    return " ".join(PROTOCOL.read_text(encoding="utf-8").split())


async def test_a_retried_clip_delete_is_not_found(server: ServerUnderTest, clients: list[Client]) -> None:
    token = server.token("alice")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
        async with http.post(server.url + "/api/streams", json={"title": "retries"}) as answer:
            session_id = (await answer.json())["session"]["session_id"]
    client = Client(server.url, token)
    clients.append(client)
    await client.connect()
    assert (await client.call("stream_set_state", {"session_id": session_id, "action": "start"}))["ok"]
    clip = (await client.call("clip_submit", {"session_id": session_id}))["clip"]
    request = {"session_id": session_id, "clip_id": clip["clip_id"]}
    assert (await client.call("clip_delete", request))["deleted"] is True
    assert (await client.call("clip_delete", request))["error"] == "not_found"
    assert "`not_found` for an unknown clip, one deleted already included" in _doc()


async def test_each_job_event_queues_a_job_of_its_own(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    for event, payload in (
        ("post_process_session", {"session_id": session_id}),
        ("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": ["ch000001"]}),
        ("session_done", {"session_id": session_id}),
    ):
        first, again = [await client.call(event, payload) for _ in range(2)]
        assert first["ok"] and again["ok"] and first["job_id"] != again["job_id"], (event, first, again)
    assert "without a `request_id`: a repeat, a retry after a lost ack included, queues another" in _doc()
