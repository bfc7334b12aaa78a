"""Shared parts of the identity tests: a server on a clock the test moves, and a cookie-aware caller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest_asyncio
from redis.asyncio import Redis

from handlers.auth_cookie import COOKIE_NAME
from storage.clock import Clock
from tests.helpers import RedisProcess, ServerUnderTest

ACCESS_TTL_S = 60


@pytest_asyncio.fixture
async def iserver(redis: Redis, redis_process: RedisProcess, tmp_path: Path) -> AsyncIterator[ServerUnderTest]:
    """A server with one-minute access tokens, on a clock the test shifts (``services.clock``)."""
    from tests.conftest import start_server

    srv = await start_server(
        redis_process.url, tmp_path, clock=Clock(), guest_token_ttl_s=ACCESS_TTL_S, revocation_poll_s=0.05
    )
    yield srv
    await srv.stop()


@dataclass
class Answer:
    """One HTTP answer: status, JSON body, and the refresh cookie it set ("" when it set none)."""

    status: int
    body: Any
    cookie: str | None
    cookie_attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Browser:
    """A browser as the auth routes see it: its refresh cookie, sent from this server's pages."""

    http: aiohttp.ClientSession
    url: str
    credential: str | None = None
    token: str = ""

    async def post(
        self, path: str, *, json: Any = None, origin: str | None = "", headers: dict[str, str] | None = None
    ) -> Answer:
        """POST as a page of this site would (``origin=""``), or from ``origin``, or without one (None)."""
        sent = dict(headers or {})
        if origin is not None:
            sent["Origin"] = origin or self.url
        if self.credential:
            sent["Cookie"] = f"{COOKIE_NAME}={self.credential}"
        async with self.http.post(self.url + path, json=json, headers=sent) as resp:
            return self._answer(resp, await resp.json())

    async def call(self, method: str, path: str, *, json: Any = None) -> Answer:
        """A bearer-token call with this browser's access token."""
        headers = {"Authorization": f"Bearer {self.token}", "Origin": self.url}
        async with self.http.request(method, self.url + path, json=json, headers=headers) as resp:
            return self._answer(resp, await resp.json())

    def _answer(self, resp: aiohttp.ClientResponse, body: Any) -> Answer:
        morsel = resp.cookies.get(COOKIE_NAME)
        cookie = morsel.value if morsel is not None else None
        attrs = {k: morsel[k] for k in ("httponly", "samesite", "path", "max-age", "secure")} if morsel else {}
        if cookie:
            self.credential = cookie
        if isinstance(body, dict) and "token" in body:
            self.token = body["token"]
        return Answer(resp.status, body, cookie, attrs)

    async def guest(self) -> Answer:
        """Become a new guest as the page does (a JSON request, so the cookie comes with it)."""
        return await self.post("/api/auth/guest", json={})

    async def refresh(self) -> Answer:
        """Restore this browser's identity from its cookie."""
        return await self.post("/api/auth/refresh", json={})
