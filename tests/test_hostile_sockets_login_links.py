"""One user asking the bot's ``/login`` for link after link: each is a Redis key for
``SESSIONHUB_LOGIN_LINK_TTL_S``, so they count with the user's device links
(``SESSIONHUB_SIGNINS_PER_MIN``) and the rest are refused with nothing stored."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import start_server
from tests.helpers import to_window_start

PER_MIN = 5


async def test_a_user_mints_login_links_within_the_signins_limit(
    redis_process: Any, redis: Any, tmp_path: Path
) -> None:
    srv = await start_server(redis_process.url, tmp_path, signins_per_min=PER_MIN)
    pattern = srv.services.keys.login_token("*")
    to_window_start(srv.services.clock)  # the links a minute: all of the asks in one minute
    try:
        headers = {"Authorization": f"Bearer {srv.token('bob')}"}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def ask() -> tuple[int, dict[str, Any]]:
                async with http.post(srv.url + "/voicebot/bot/command", json={"text": "/login"}) as answer:
                    return answer.status, await answer.json()

            answers = await asyncio.gather(*(ask() for _ in range(4 * PER_MIN)))
        made = [body for status, body in answers if status == 200]
        refused = [body for status, body in answers if status != 200]
        assert len(made) == PER_MIN and all(body["login_url"] for body in made)
        assert {(status, body["error"]) for status, body in answers if status != 200} == {(429, "rate_limited")}
        assert all(body["retry_after_s"] > 0 for body in refused)
        stored = [key async for key in redis.scan_iter(match=pattern, count=1000)]
        assert len(stored) == PER_MIN, "a refused /login stored a link"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {srv.token('carol')}"}) as http:
            async with http.post(srv.url + "/voicebot/bot/command", json={"text": "/login"}) as answer:
                assert answer.status == 200, "another user's links are counted apart"
    finally:
        await srv.stop()
