"""Every refusal carries a human ``message`` (PROTOCOL.md, "Errors"), also one a Lua script
answered with its bare ``{false, code}``: the code repeated is not words a page can show."""

from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from handlers.errors import PLAIN_WORDS
from protocol.errors import ErrorCode
from storage.clock import Clock
from tests.conftest import start_server
from tests.helpers import Client, RedisProcess, ServerUnderTest


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


async def test_every_window_limit_says_when_its_window_turns(redis_process: RedisProcess, tmp_path: Path) -> None:
    """A per-minute limit's 429 (guest tokens, refreshes, creates) carries ``retry_after_s``: the
    seconds left in the minute the refused request was counted in, and ``Retry-After`` with it."""
    window_ms = 60_000
    now_ms = int(time.time() * 1000)
    # One second into a window, always moved back: tokens the server mints must not be from the
    # future to a check on the wall clock (1000 - now % window moved it up to 1 s forward when
    # the test started in a minute's first second, and the guest's token was "not valid yet").
    # Every request below falls in that window, and the answer is ~59 s.
    clock = Clock(shift_ms=-((now_ms - 1000) % window_ms))
    server = await start_server(
        redis_process.url, tmp_path, clock=clock, guests_per_min=1, creates_per_min=1, signins_per_min=1
    )
    window_end_ms = (clock.now_ms() // window_ms + 1) * window_ms
    alice = {"Authorization": f"Bearer {server.token('alice')}"}
    bob = {"Authorization": f"Bearer {server.token('bob')}"}
    try:
        async with aiohttp.ClientSession(base_url=server.url) as http:
            async with http.post("/api/auth/guest") as r:
                guest = {"Authorization": f"Bearer {(await r.json())['token']}"}
            asked = [
                ("/api/auth/guest", {}, None),
                ("/api/auth/refresh", guest, None),
                ("/voicebot/create_session", alice, {}),
                ("/api/streams", bob, {"title": "Twice"}),
            ]
            for path, headers, body in asked:
                async with http.post(path, headers=headers, json=body) as first:
                    assert first.status < 300 or path == "/api/auth/guest", (path, first.status, await first.text())
                low_ms = clock.now_ms()
                async with http.post(path, headers=headers, json=body) as refused:
                    answer = await refused.json()
                    high_ms = clock.now_ms()
                    assert (refused.status, answer["error"]) == (429, "rate_limited"), (path, answer)
                    wait_s = answer["retry_after_s"]
                    assert math.ceil((window_end_ms - high_ms) / 1000) <= wait_s, (path, wait_s)
                    assert wait_s <= math.ceil((window_end_ms - low_ms) / 1000), (path, wait_s)
                    assert refused.headers["Retry-After"] == str(wait_s), path
    finally:
        await server.stop()
