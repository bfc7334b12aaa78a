"""Every refusal carries a human ``message`` (PROTOCOL.md, "Errors"), also one a Lua script
answered with its bare ``{false, code}``: the code repeated is not words a page can show."""

from __future__ import annotations

import time
import uuid
from typing import Any

import aiohttp

from handlers.errors import PLAIN_WORDS
from protocol.errors import ErrorCode
from tests.helpers import Client, ServerUnderTest


def _worded(body: dict[str, Any], code: str) -> None:
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    assert body["message"] != code, body


def test_every_code_has_its_words() -> None:
    assert set(PLAIN_WORDS) == set(ErrorCode)


async def test_script_refusals_over_socket_io_are_worded(server: ServerUnderTest, clients: list[Client]) -> None:
    bobs = await server.create_session("bob")
    alice = Client(server.url, server.token("alice"))
    clients.append(alice)
    await alice.connect()
    _worded(await alice.call("session_done", {"session_id": bobs}), "forbidden")
    _worded(await alice.call("session_done", {"session_id": str(uuid.uuid4())}), "session_not_found")
    history = (await alice.call("listening_history", {}))["session_id"]
    _worded(await alice.call("listening_delete", {"session_id": history, "id": str(uuid.uuid4())}), "not_found")
    now_ms = int(time.time() * 1000)
    upload = {"session_id": history, "item_id": "book", "device_id": "phone", "started_at": now_ms - 60_000}
    assert (await alice.call("listening_upload", {**upload, "client_id": "first", "ended_at": now_ms - 1000}))["ok"]
    overlapping = {**upload, "client_id": "second", "ended_at": now_ms - 2000}
    _worded(await alice.call("listening_upload", overlapping), "conflict")


async def test_script_refusals_over_http_are_worded(server: ServerUnderTest) -> None:
    headers = {"Authorization": f"Bearer {server.token('alice')}"}
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{server.url}/api/listening/sessions/{uuid.uuid4()}", headers=headers) as resp:
            assert resp.status == 404
            _worded(await resp.json(), "not_found")
        async with http.delete(f"{server.url}/voicebot/sessions/{uuid.uuid4()}", headers=headers) as resp:
            assert resp.status == 404
            _worded(await resp.json(), "session_not_found")
