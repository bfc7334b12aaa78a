"""Payload bounds of Socket.IO events as docs/PROTOCOL.md states them, where the words could be
read two ways: what counts towards a list's bound."""

from __future__ import annotations

from tests.helpers import Client, ServerUnderTest
from tests.test_protocol_doc import PROTOCOL


async def test_chunk_ids_count_as_sent_duplicates_included(server: ServerUnderTest, clients: list[Client]) -> None:
    session_id = await server.create_session("alice")
    client = Client(server.url, server.token("alice"))
    clients.append(client)
    await client.connect()
    # 101 ids of which 100 distinct: over the bound, though the job would hold 100.
    ids = [*(f"c{n}" for n in range(100)), "c0"]
    ack = await client.call("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": ids})
    assert ack["error"] == "invalid_payload", ack
    ack = await client.call("create_tasks_from_chunks", {"session_id": session_id, "chunk_ids": [*ids[:99], "c0"]})
    assert ack["ok"] is True and ack["chunk_count"] == 99, ack
    # PROTOCOL.md said "1 to 100 ids (duplicates are dropped)": a client could count distinct ids.
    text = " ".join(PROTOCOL.read_text(encoding="utf-8").split())
    assert "1 to 100 ids as sent" in text and "a duplicate counts towards the 100, then is dropped" in text
